#!/usr/bin/env bash
# Kafka benchmark (prints figures; not part of the test suite): throughput of one
# worker through the real broker, and produce → decision latency at half that rate.
set -euo pipefail
source "$(dirname "$0")/env.sh"
riskpipe_build_deps
riskpipe_rocksdb
cd "$RISKPIPE_ROOT"
e2e/env/up >/dev/null
cargo build --locked --release -p riskpipe-worker --bin riskpipe-worker
export RISKPIPE_WORKER_BIN="$CARGO_TARGET_DIR/release/riskpipe-worker"
cargo bench --locked -p riskpipe-worker --bench kafka 2>&1 | grep -E "KAFKA|error|panicked"
