#!/usr/bin/env bash
# Throughput benchmark (prints figures; not part of the test suite): the engine on
# one thread with RocksDB state, bytes of state per user, and replay file to file.
set -euo pipefail
source "$(dirname "$0")/env.sh"
riskpipe_build_deps
riskpipe_rocksdb
cd "$RISKPIPE_ROOT"
cargo build --locked --release -p riskpipe-worker --bin riskpipe-worker
export RISKPIPE_WORKER_BIN="$CARGO_TARGET_DIR/release/riskpipe-worker"
cargo bench --locked -p riskpipe-worker --bench throughput 2>&1 | grep -v "^\s*$"
