#!/usr/bin/env bash
# The training tool on the generator's labelled data: runs the seed's rules over
# deploy/examples/local-generator.yaml writing the model features, trains, exports
# out/model/{tree,linear}.onnx and writes out/model/report.md (+ PNGs).
# Any bank's history works the same way:
#   riskpipe-worker replay --transactions T.jsonl --dimensions DIR --out D.jsonl --features-out F.jsonl
#   "$(bash tools/train/venv.sh)" tools/train/train.py --features F.jsonl --labels labels.csv --out DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
mkdir -p out
cargo build --release -p riskpipe-worker --bin riskpipe-worker
"$CARGO_TARGET_DIR/release/riskpipe-worker" run -f deploy/examples/local-generator.yaml \
  --no-progress --features-out out/local-generator.features.jsonl
"$(bash tools/train/venv.sh)" tools/train/train.py --features out/local-generator.features.jsonl \
  --out out/model --seed 42 "$@"
