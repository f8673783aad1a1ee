#!/usr/bin/env bash
# The README's first command: build riskpipe and run the local generator pipeline
# (no Kubernetes, no Kafka). Installs the system packages it needs on a fresh
# Debian/Ubuntu machine. Extra arguments go to `riskpipe-worker run`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
riskpipe_build_deps
riskpipe_rocksdb
cd "$RISKPIPE_ROOT"
riskpipe_log "building riskpipe-worker"
cargo build --locked -p riskpipe-worker --bin riskpipe-worker
manifest="${RISKPIPE_MANIFEST:-deploy/examples/local-generator.yaml}"
riskpipe_log "running $manifest"
exec "$CARGO_TARGET_DIR/debug/riskpipe-worker" run -f "$manifest" "$@"
