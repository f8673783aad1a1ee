# Sourced by the README's commands and by .ci/run: one cache folder outside the
# checkout, the system packages the build needs, and a RocksDB static library built
# once per librocksdb-sys version and reused by every profile.
#
# Variables it sets: RISKPIPE_CACHE, CARGO_TARGET_DIR, ROCKSDB_LIB_DIR, ROCKSDB_STATIC.

RISKPIPE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export RISKPIPE_ROOT
export RISKPIPE_CACHE="${RISKPIPE_CACHE:-$HOME/.cache/riskpipe}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$RISKPIPE_CACHE/target}"
mkdir -p "$RISKPIPE_CACHE"

riskpipe_log() { printf '[riskpipe %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# System packages: libclang for RocksDB's bindings, a C/C++ toolchain and cmake for
# librdkafka. Installed only when missing, so a warm machine skips apt entirely.
riskpipe_apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  riskpipe_log "installing system packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

riskpipe_build_deps() {
  riskpipe_apt_install libclang-dev clang build-essential cmake pkg-config zlib1g-dev libssl-dev
  command -v cargo >/dev/null 2>&1 || {
    riskpipe_log "cargo not found: install Rust with rustup (https://rustup.rs) and retry"
    return 1
  }
}

# Builds RocksDB's C++ once (about 40 min on two cores) into the cache, keyed by the
# librocksdb-sys version in Cargo.lock, then points librocksdb-sys at it so debug,
# release and CI builds all link the same archive instead of compiling it again.
riskpipe_rocksdb() {
  local version
  version="$(awk '/^name = "librocksdb-sys"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$RISKPIPE_ROOT/Cargo.lock")"
  [ -n "$version" ] || { riskpipe_log "librocksdb-sys not found in Cargo.lock"; return 1; }
  local dir="$RISKPIPE_CACHE/rocksdb/$version"
  if [ ! -f "$dir/librocksdb.a" ]; then
    riskpipe_log "building RocksDB $version once into $dir (slow: ~40 min cold on 2 cores)"
    local build="$RISKPIPE_CACHE/rocksdb-build"
    (cd "$RISKPIPE_ROOT" && env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_TARGET_DIR="$build" \
      cargo build --locked --release -p librocksdb-sys) || return 1
    local lib
    lib="$(ls -t "$build"/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1)"
    [ -n "$lib" ] || { riskpipe_log "RocksDB build produced no librocksdb.a under $build"; return 1; }
    mkdir -p "$dir"
    cp "$lib" "$dir/librocksdb.a.tmp" && mv "$dir/librocksdb.a.tmp" "$dir/librocksdb.a"
    rm -rf "$build"
  fi
  export ROCKSDB_LIB_DIR="$dir"
  export ROCKSDB_STATIC=1
}
