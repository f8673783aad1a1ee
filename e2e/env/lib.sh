# Shared by e2e/env/up, e2e/env/down and the parts/*.sh they source: paths, pinned
# versions, ports, logging and waits. Sourcing it defines things and runs nothing.

E2E_ENV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
E2E_DIR="$(cd "$E2E_ENV_DIR/.." && pwd)"
# The project's own cache settings (RISKPIPE_CACHE, CARGO_TARGET_DIR, apt helper).
# shellcheck source=../../scripts/env.sh
source "$E2E_DIR/../scripts/env.sh"

# Everything of the environment lives under one folder outside the checkout.
ENV_HOME="$RISKPIPE_CACHE/env"
# Per-run state (certificates, data, logs, pids): wiped when the environment starts.
RUN_DIR="$ENV_HOME/run"
LOG_DIR="$RUN_DIR/logs"
PID_DIR="$RUN_DIR/pids"
ENV_FILE="$ENV_HOME/env.sh"
# Build logs outlive a run.
BUILD_LOG_DIR="$ENV_HOME/build-logs"

# Pinned versions: the Go module's go.mod pins Kubernetes, etcd and Helm; the pom pins
# Kafka. Read from there so one edit moves a version.
k8s_version()  { awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$E2E_DIR/k8s/go.mod"; }
etcd_version() { awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$E2E_DIR/k8s/go.mod"; }
helm_version() { awk '$1 == "helm.sh/helm/v4" && $2 ~ /^v/ {print $2; exit}' "$E2E_DIR/k8s/go.mod"; }
kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$E2E_DIR/kafka/pom.xml" | head -n 1; }

# Loopback ports; override any of them in the environment.
: "${ETCD_PORT:=23790}"
: "${ETCD_PEER_PORT:=23800}"
: "${APISERVER_PORT:=16443}"
: "${KCM_PORT:=10357}"
: "${KAFKA_PORT:=19092}"
: "${KAFKA_CONTROLLER_PORT:=19093}"
# The second, SASL_SSL-only Kafka (parts/kafka-secure.sh).
: "${KAFKA_SECURE_PORT:=19094}"
: "${KAFKA_SECURE_CONTROLLER_PORT:=19095}"
# The S3-compatible object store (parts/s3.sh).
: "${S3_PORT:=19900}"
: "${MARIADB_PORT:=13306}"
: "${POSTGRES_PORT:=15432}"
: "${PODRUNNER_NODE:=riskpipe-e2e-node}"
# Pods get <prefix>.2-254; the node is <prefix>.1. Two environments need two prefixes.
: "${PODRUNNER_IP_PREFIX:=127.0.1}"
# Services get virtual addresses that nothing routes to (no kube-proxy here).
: "${SERVICE_CIDR:=10.0.0.0/24}"
: "${SERVICE_APISERVER_IP:=10.0.0.1}"

env_log() { printf '[e2e/env %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
env_die() { env_log "ERROR: $*"; exit 1; }

# pid_alive NAME: the process recorded in $PID_DIR/NAME.pid is running.
pid_alive() {
  local f="$PID_DIR/$1.pid"
  [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start_bg NAME LOGFILE CMD...: starts CMD detached in its own session, records its pid.
start_bg() {
  local name="$1" log="$2"
  shift 2
  mkdir -p "$PID_DIR" "$(dirname "$log")"
  # fd 9 is up's lock: a server must not keep holding it.
  setsid "$@" >>"$log" 2>&1 </dev/null 9>&- &
  echo $! >"$PID_DIR/$name.pid"
}

# stop_pid NAME [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace period.
stop_pid() {
  local name="$1" grace="${2:-20}" f="$PID_DIR/$1.pid" pid i
  [ -s "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    env_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      env_log "$name did not stop in ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

# wait_until WHAT DEADLINE_SECONDS LOG PIDNAME CMD...: polls CMD until it succeeds.
# Fails with a message naming WHAT and LOG when the deadline passes or the process
# PIDNAME (if not "-") has died.
wait_until() {
  local what="$1" deadline="$2" log="$3" pidname="$4"
  shift 4
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ "$pidname" != "-" ] && ! pid_alive "$pidname"; then
      env_log "$what: the process exited; last lines of $log:"
      tail -n 30 "$log" >&2 2>/dev/null || true
      env_die "$what failed to start; see its log: $log"
    fi
    if ((SECONDS - start >= deadline)); then
      env_log "$what: not ready after ${deadline}s; last lines of $log:"
      tail -n 30 "$log" >&2 2>/dev/null || true
      env_die "$what not ready within ${deadline}s; see its log: $log"
    fi
    sleep 0.5
  done
  env_log "$what ready after $((SECONDS - start))s"
}

# tcp_open HOST PORT: something accepts connections there.
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Go: module and build caches under the cache folder; the machine's toolchain only.
go_env() {
  export GOMODCACHE="$ENV_HOME/go/mod"
  export GOCACHE="$ENV_HOME/go/build"
  export GOTOOLCHAIN=local
  export GOFLAGS="-mod=readonly -buildvcs=false"
}

# env_apt_install PKG...: Debian packages, without letting their install scripts start
# system services (this environment runs its own servers on its own ports).
env_apt_install() {
  local policy=/usr/sbin/policy-rc.d created=""
  if [ "$(id -u)" -eq 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created=1
  fi
  local rc=0
  riskpipe_apt_install "$@" || rc=$?
  [ -n "$created" ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || env_die "installing $* with apt-get failed"
}

# check_ports_free: every port of the environment is free on 127.0.0.1, or fail naming
# the holder and the variable that moves the port.
check_ports_free() {
  local var port busy=()
  for var in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_SECURE_PORT KAFKA_SECURE_CONTROLLER_PORT S3_PORT MARIADB_PORT POSTGRES_PORT; do
    port="${!var}"
    if tcp_open 127.0.0.1 "$port"; then
      local holder
      holder="$(ss -ltnpH "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\))).*/\1/p' | head -n 1)"
      busy+=("$var=$port (${holder:-unknown process})")
    fi
  done
  if [ "${#busy[@]}" -gt 0 ]; then
    env_log "ports in use by something that e2e/env/up did not start:"
    printf '  %s\n' "${busy[@]}" >&2
    env_die "stop those processes, or move the environment, e.g. KAFKA_PORT=29092 KAFKA_CONTROLLER_PORT=29093 e2e/env/up"
  fi
}
