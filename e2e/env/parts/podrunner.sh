# The pod runner in place of a kubelet: registers Node $PODRUNNER_NODE and runs
# riskpipe Pods as local processes on 127.0.1.N.

start_podrunner() {
  mkdir -p "$RUN_DIR/pods"
  start_bg podrunner "$LOG_DIR/podrunner.log" env RUST_LOG="${PODRUNNER_LOG:-info,kube=warn}" \
    "$PODRUNNER_BIN_DIR/riskpipe-podrunner" \
    --kubeconfig "$ADMIN_KUBECONFIG" \
    --node-name "$PODRUNNER_NODE" \
    --pods-dir "$RUN_DIR/pods" \
    --bin-dir "$PODRUNNER_BIN_DIR" \
    --ip-prefix "$PODRUNNER_IP_PREFIX" \
    --pod-env "KUBECONFIG=$ADMIN_KUBECONFIG"
}

podrunner_ready() {
  [ "$("$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" get node "$PODRUNNER_NODE" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = "True" ]
}

# Pod processes are in process groups of their own: when the runner could not stop
# them (it was killed), stop every process whose working directory is a Pod folder.
stop_orphan_pod_processes() {
  local pods="$RUN_DIR/pods" p cwd
  [ -d "$pods" ] || return 0
  for p in /proc/[0-9]*; do
    cwd="$(readlink "$p/cwd" 2>/dev/null)" || continue
    case "$cwd" in
      "$pods"/*)
        env_log "stopping leftover pod process ${p#/proc/} in $cwd"
        kill -KILL "${p#/proc/}" 2>/dev/null || true
        ;;
    esac
  done
}
