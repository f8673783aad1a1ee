# Apache Kafka: one KRaft node (broker + controller) from the broker's jars on Maven
# Central, with single-node settings for transactions. Sets KAFKA_LIBS.

# A fixed cluster id (22 characters of base64url for 16 bytes): data is wiped per run.
KAFKA_CLUSTER_ID="cmlza3BpcGUtZTJlLWthZg"

ensure_kafka_jars() {
  local v
  v="$(kafka_version)"
  [ -n "$v" ] || env_die "cannot read kafka.version from $E2E_DIR/kafka/pom.xml"
  KAFKA_LIBS="$ENV_HOME/kafka/$v/libs"
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  command -v mvn >/dev/null 2>&1 || env_apt_install maven
  env_log "fetching Kafka $v jars with Maven into $KAFKA_LIBS — log: $BUILD_LOG_DIR/kafka-fetch.log"
  mkdir -p "$BUILD_LOG_DIR"
  rm -rf "$KAFKA_LIBS"
  if ! mvn -B -f "$E2E_DIR/kafka/pom.xml" -Dmaven.repo.local="$ENV_HOME/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
    >"$BUILD_LOG_DIR/kafka-fetch.log" 2>&1; then
    tail -n 30 "$BUILD_LOG_DIR/kafka-fetch.log" >&2
    env_die "fetching Kafka jars failed; see $BUILD_LOG_DIR/kafka-fetch.log"
  fi
  touch "$KAFKA_LIBS/.complete"
}

start_kafka() {
  local dir="$RUN_DIR/kafka"
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
# One node: every internal topic has one replica, so transactions and groups work.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# A test machine of two cores can stall the broker for tens of seconds (a cargo
# build flushing gigabytes); with the default 9 s session the one node fenced
# itself and took every partition offline mid-test.
broker.session.timeout.ms=60000
PROPS
  cat >"$dir/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
  command -v java >/dev/null 2>&1 || env_apt_install openjdk-17-jre-headless
  if ! java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" \
    -c "$dir/server.properties" >>"$LOG_DIR/kafka.log" 2>&1; then
    env_die "formatting Kafka storage failed; see $LOG_DIR/kafka.log"
  fi
  start_bg kafka "$LOG_DIR/kafka.log" java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
}

kafka_ready() {
  tcp_open 127.0.0.1 "$KAFKA_PORT" && grep -q "Kafka Server started" "$LOG_DIR/kafka.log"
}
