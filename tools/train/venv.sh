#!/usr/bin/env bash
# Creates (once) the training tool's Python venv under $RISKPIPE_CACHE and prints
# its python path. Re-created when requirements.txt changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${RISKPIPE_CACHE:-$HOME/.cache/riskpipe}"
stamp="$(sha256sum "$here/requirements.txt" | cut -c1-16)"
venv="$cache/train-venv-$stamp"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.ready" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  touch "$venv/.ready"
fi
echo "$venv/bin/python"
