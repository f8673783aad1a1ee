#!/usr/bin/env python3
"""Checks that riskpipe's model runtime equals onnxruntime's.

Reads the JSONL of `riskpipe-worker run --features-out` made with
`spec.ml.model.file` = MODEL, feeds the same features (f32, null = NaN) to
onnxruntime, and compares its positive-class probability with the worker's
`ml_risk_probability`, row by row. Exits non-zero naming the worst row if any
differs by more than --tolerance (or if the worker gave null where onnxruntime
gave a probability).
"""
import argparse
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args()
    meta = {p.key: p.value for p in onnx.load(args.model).metadata_props}
    names = meta["riskpipe.features"].split(",")
    rows = []
    with open(args.features) as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= args.rows:
                break
    if len(rows) < args.rows:
        sys.exit(f"only {len(rows)} rows in {args.features}, {args.rows} asked")
    X = np.array([[np.nan if r[n] is None else r[n] for n in names] for r in rows], dtype=np.float32)
    worker = np.array([np.nan if r["ml_risk_probability"] is None else r["ml_risk_probability"] for r in rows])
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in sess.get_outputs()]
    probs = sess.run(["probabilities" if "probabilities" in outputs else outputs[-1]], {sess.get_inputs()[0].name: X})[0]
    expected = probs[:, -1].astype(np.float64)
    diff = np.abs(expected - worker)
    diff[np.isnan(worker)] = np.inf
    worst = int(np.argmax(diff))
    nan_rows = int(np.isnan(X).any(axis=1).sum())
    print(f"{args.model}: {len(rows)} rows ({nan_rows} with a null feature), max |worker - onnxruntime| = {diff[worst]:.3g} "
          f"(row {worst}, transaction {rows[worst]['transaction_id']})")
    if diff[worst] > args.tolerance:
        print(f"  worker {worker[worst]!r} onnxruntime {expected[worst]!r}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
