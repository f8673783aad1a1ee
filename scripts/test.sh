#!/usr/bin/env bash
# The README's second command (and what .ci/run calls): installs what the build
# needs, starts the real test environment (Kafka, Kubernetes control plane,
# MariaDB, PostgreSQL) when the project has it, checks formatting and lints, and
# runs every test of the workspace.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RISKPIPE_ROOT"
started=$(date +%s)
riskpipe_build_deps
riskpipe_rocksdb

if [ -x e2e/env/up ]; then
  riskpipe_log "starting the test environment (e2e/env/up)"
  e2e/env/up
  trap 'e2e/env/down || true' EXIT
fi

riskpipe_log "cargo fmt --check"
cargo fmt --all -- --check
riskpipe_log "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
riskpipe_log "cargo test"
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$RISKPIPE_CACHE/last-test.log"
status=${PIPESTATUS[0]}
riskpipe_log "tests finished in $(( $(date +%s) - started )) s with status $status"
exit "$status"
