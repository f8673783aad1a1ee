# An S3-compatible object store for the checkpoint and savepoint tests: s3s-fs
# (Apache-2.0, the s3s project's filesystem-backed S3 server; MinIO's server is AGPL
# and not used), on loopback, with fixed test credentials and one bucket.
#
# Built once from crates.io with `cargo install --locked` into the cache (measured
# 2026-11-28: 241 s cold on the two-core machine while other builds ran; 9.7 MB
# binary), in a target folder of its own so it never waits on, or invalidates, the
# workspace's build; skipped when the binary is there.

# 0.14.1 is the newest release whose rust-version (1.92) the machine's toolchain meets;
# 0.15 and later need Rust 1.96.
S3S_FS_VERSION=0.14.1
S3S_FS_DIR="$RISKPIPE_CACHE/tools/s3s-fs-$S3S_FS_VERSION"
S3S_FS="$S3S_FS_DIR/bin/s3s-fs"
S3_ACCESS_KEY_ID=riskpipe-test
S3_SECRET_ACCESS_KEY=riskpipe-test-secret
S3_REGION=us-east-1
# Created empty at every start; tests use unique prefixes inside it.
S3_BUCKET=riskpipe-test

ensure_s3s_fs() {
  [ -x "$S3S_FS" ] && return 0
  local build="$ENV_HOME/s3s-fs-build" log="$BUILD_LOG_DIR/s3s-fs-$S3S_FS_VERSION.log" started=$SECONDS
  mkdir -p "$BUILD_LOG_DIR"
  env_log "building s3s-fs $S3S_FS_VERSION once into $S3S_FS_DIR (a few minutes cold; log $log)"
  if ! CARGO_TARGET_DIR="$build" cargo install --locked --version "$S3S_FS_VERSION" \
    --features binary --root "$S3S_FS_DIR" s3s-fs >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    env_die "building s3s-fs failed; see $log"
  fi
  rm -rf "$build"
  env_log "s3s-fs built in $((SECONDS - started))s"
}

start_s3() {
  local root="$RUN_DIR/s3"
  rm -rf "$root"
  # s3s-fs keeps each bucket as a folder under its root.
  mkdir -p "$root/$S3_BUCKET"
  start_bg s3 "$LOG_DIR/s3.log" env RUST_LOG=warn "$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" \
    --access-key "$S3_ACCESS_KEY_ID" --secret-key "$S3_SECRET_ACCESS_KEY" "$root"
}

s3_ready() { tcp_open 127.0.0.1 "$S3_PORT"; }

# The env file's lines for the S3 store.
s3_env() {
  echo "export S3_ENDPOINT='http://127.0.0.1:$S3_PORT'"
  echo "export S3_BUCKET='$S3_BUCKET'"
  echo "export S3_REGION='$S3_REGION'"
  echo "export S3_ACCESS_KEY_ID='$S3_ACCESS_KEY_ID'"
  echo "export S3_SECRET_ACCESS_KEY='$S3_SECRET_ACCESS_KEY'"
}
