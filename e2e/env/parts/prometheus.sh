# Prometheus and promtool for the monitoring tests (chart rules, dashboard queries,
# an alert firing against real workers): Debian's `prometheus` package, unpacked
# into the cache (no service, no user, no web-UI dependencies installed). Cheapest
# for a cold CI run: one ~30 MB .deb, no Go build (building Prometheus from its Go
# module takes many minutes on two cores); the package's Prometheus 2.x evaluates
# and unit-tests rules the same way as the 3.x in clusters, for what these tests use.
#
# Sourced by e2e/env/up (ensure_prometheus); run on its own it installs if needed and
# prints the folder holding `prometheus` and `promtool` (the tests do that, so they
# work whatever environment was started before).

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  # shellcheck source=../lib.sh
  source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
fi
PROMETHEUS_DIR="$RISKPIPE_CACHE/tools/prometheus"

ensure_prometheus() {
  [ -x "$PROMETHEUS_DIR/bin/promtool" ] && [ -x "$PROMETHEUS_DIR/bin/prometheus" ] && return 0
  local tmp started=$SECONDS
  tmp="$(mktemp -d)"
  env_log "unpacking Debian's prometheus package into $PROMETHEUS_DIR"
  if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    # The package lists may be missing on a fresh machine.
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
    (cd "$tmp" && apt-get download prometheus >/dev/null) ||
      env_die "apt-get download prometheus failed"
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root" || env_die "unpacking the prometheus package failed"
  rm -rf "$PROMETHEUS_DIR.tmp"
  mkdir -p "$PROMETHEUS_DIR.tmp/bin"
  cp "$tmp/root/usr/bin/prometheus" "$tmp/root/usr/bin/promtool" "$PROMETHEUS_DIR.tmp/bin/"
  basename "$tmp"/prometheus_*.deb >"$PROMETHEUS_DIR.tmp/PACKAGE"
  rm -rf "$PROMETHEUS_DIR" "$tmp"
  mv "$PROMETHEUS_DIR.tmp" "$PROMETHEUS_DIR"
  env_log "prometheus $(cat "$PROMETHEUS_DIR/PACKAGE") ready in $((SECONDS - started))s"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_prometheus
  echo "$PROMETHEUS_DIR/bin"
fi
