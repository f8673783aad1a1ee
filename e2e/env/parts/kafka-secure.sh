# A second Kafka node (same 4.1.1 jars as parts/kafka.sh, its own KRaft quorum and
# data) whose only client listener is SASL_SSL: TLS with a CA made here by openssl at
# every start, and SCRAM-SHA-512 users created when the storage is formatted. The
# plaintext broker of parts/kafka.sh is left alone. Needs KAFKA_LIBS
# (ensure_kafka_jars). Writes into the env file (kafka_secure_env):
#   KAFKA_SECURE_BOOTSTRAP   host:port of the SASL_SSL listener
#   KAFKA_SECURE_CA          PEM file of the CA that signed the broker's certificate
#   KAFKA_SECURE_MECHANISM   SCRAM-SHA-512
#   KAFKA_SECURE_USERNAME / KAFKA_SECURE_PASSWORD   a client user (random password)

KAFKA_SECURE_CLUSTER_ID="cmlza3BpcGUtc2VjdXJlLQ"
KAFKA_SECURE_DIR="$RUN_DIR/kafka-secure"
KAFKA_SECURE_USERNAME="riskpipe"

# kafka_secure_pki DIR: a CA and a server certificate for 127.0.0.1/localhost, the
# server's key as unencrypted PKCS#8 beside its certificate (Kafka's PEM keystore).
kafka_secure_pki() {
  local pki="$1"
  mkdir -p "$pki"
  (
    set -e
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=riskpipe-e2e-kafka-ca" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key.pem -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.pem
    openssl pkcs8 -topk8 -nocrypt -in server.key.pem -out server.pk8.pem
    cat server.pk8.pem server.pem >server.keystore.pem
    chmod 600 ca.key server.key.pem server.pk8.pem server.keystore.pem
  ) >>"$LOG_DIR/kafka-secure.log" 2>&1 || env_die "making the SASL_SSL broker's certificates failed; see $LOG_DIR/kafka-secure.log"
}

start_kafka_secure() {
  local dir="$KAFKA_SECURE_DIR" admin_pw user_pw
  rm -rf "$dir"
  mkdir -p "$dir/data"
  kafka_secure_pki "$dir/pki"
  admin_pw="$(openssl rand -hex 16)"
  user_pw="$(openssl rand -hex 16)"
  printf '%s' "$user_pw" >"$dir/user.password"
  chmod 600 "$dir/user.password"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,CONTROLLER://127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
ssl.keystore.type=PEM
ssl.keystore.location=$dir/pki/server.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$dir/pki/ca.pem
ssl.client.auth=none
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# As for the main broker: a stalled test machine must not make the node fence itself.
broker.session.timeout.ms=60000
PROPS
  chmod 600 "$dir/server.properties"
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
  if ! java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format -t "$KAFKA_SECURE_CLUSTER_ID" \
    -c "$dir/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_pw]" \
    --add-scram "SCRAM-SHA-512=[name=$KAFKA_SECURE_USERNAME,password=$user_pw]" \
    >>"$LOG_DIR/kafka-secure.log" 2>&1; then
    env_die "formatting the SASL_SSL Kafka's storage failed; see $LOG_DIR/kafka-secure.log"
  fi
  start_bg kafka-secure "$LOG_DIR/kafka-secure.log" java -Xms128m -Xmx512m -XX:+UseG1GC \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
}

kafka_secure_ready() {
  tcp_open 127.0.0.1 "$KAFKA_SECURE_PORT" && grep -q "Kafka Server started" "$LOG_DIR/kafka-secure.log"
}

# kafka_secure_env: the env file's lines for this part.
kafka_secure_env() {
  echo "export KAFKA_SECURE_BOOTSTRAP='127.0.0.1:$KAFKA_SECURE_PORT'"
  echo "export KAFKA_SECURE_CA='$KAFKA_SECURE_DIR/pki/ca.pem'"
  echo "export KAFKA_SECURE_MECHANISM='SCRAM-SHA-512'"
  echo "export KAFKA_SECURE_USERNAME='$KAFKA_SECURE_USERNAME'"
  echo "export KAFKA_SECURE_PASSWORD='$(cat "$KAFKA_SECURE_DIR/user.password")'"
}
