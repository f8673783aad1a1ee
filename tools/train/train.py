#!/usr/bin/env python3
"""Train a riskpipe fraud model from a labelled history and export it to ONNX.

Input: the JSONL that `riskpipe-worker run|replay --features-out FILE` writes
(one line per decision: transaction_id, event_time_ms, the rules' final_decision,
the model features), labels either in it (`is_fraud`, the generator's) or in a
CSV `transaction_id,is_fraud` given with --labels.

It splits by event time (train on the earlier part, test on the later), trains a
gradient-boosted tree ensemble (scikit-learn HistGradientBoostingClassifier) and a
logistic regression, exports both to ONNX for `spec.ml.model.file`, picks the
operating point on the last part of the training period (the lowest threshold
whose validation recall reaches --target-recall, never looking at the test
period), and writes a report for the test period: precision / recall /
false-positive rate of the rules alone, of each model alone, and of the example
pipeline (the rules' REJECTs + the model; deploy/examples/model-pipeline.yaml),
a precision-recall curve and a score histogram. Same input and seed, same output.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np

FLAGGED_BY_RULES = {"REJECT", "MANUAL_REVIEW", "DELAYED_APPROVAL"}
META = {"transaction_id", "event_time_ms", "final_decision", "ml_risk_probability", "is_fraud"}


def load(features_path, labels_path):
    rows, labels_in_file = [], True
    with open(features_path) as f:
        for line in f:
            rows.append(json.loads(line))
    if not rows:
        sys.exit(f"{features_path}: no rows")
    names = [k for k in rows[0] if k not in META]
    ids = np.array([r["transaction_id"] for r in rows], dtype=np.int64)
    times = np.array([r["event_time_ms"] for r in rows], dtype=np.int64)
    rules = np.array([r["final_decision"] in FLAGGED_BY_RULES for r in rows])
    rules_reject = np.array([r["final_decision"] == "REJECT" for r in rows])
    X = np.array([[np.nan if r[n] is None else r[n] for n in names] for r in rows], dtype=np.float32)
    if labels_path:
        table = {}
        with open(labels_path) as f:
            for rec in csv.DictReader(f):
                table[int(rec["transaction_id"])] = int(rec["is_fraud"])
        y = np.array([table.get(int(i), -1) for i in ids])
    else:
        if "is_fraud" not in rows[0]:
            sys.exit("no labels: the features file has no is_fraud and no --labels was given")
        y = np.array([r.get("is_fraud", -1) for r in rows])
    keep = y >= 0
    if (~keep).sum():
        print(f"{(~keep).sum()} rows without a label are left out", file=sys.stderr)
    return names, times[keep], rules[keep], rules_reject[keep], X[keep], y[keep].astype(int)


def rates(flagged, y):
    tp = int((flagged & (y == 1)).sum())
    fp = int((flagged & (y == 0)).sum())
    fn = int((~flagged & (y == 1)).sum())
    tn = int((~flagged & (y == 0)).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def threshold_for_recall(scores, y, always, target):
    """Lowest-FPR threshold t with recall(always | score > t) >= target."""
    pos = y == 1
    need = int(np.ceil(target * pos.sum()))
    caught_always = int((always & pos).sum())
    if caught_always >= need:
        return 1.0
    cand = np.sort(scores[pos & ~always])[::-1]
    k = need - caught_always
    if k > len(cand):
        return 0.0
    # "> t" must include the k-th highest score.
    return float(np.nextafter(np.float32(cand[k - 1]), np.float32(-1)))


def export(model, names, path, seed):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, len(names)]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    meta = onx.metadata_props.add()
    meta.key, meta.value = "riskpipe.features", ",".join(names)
    meta = onx.metadata_props.add()
    meta.key, meta.value = "riskpipe.training_seed", str(seed)
    onx.producer_name = "riskpipe-train"
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())


def plots(out, test_y, curves, points, hist_scores):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for label, s in curves.items():
        p, r, _ = precision_recall_curve(test_y, s)
        ax.plot(r, p, label=label)
    for label, m in points.items():
        ax.plot(m["recall"], m["precision"], "o", label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall, test period")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "pr_curve.png"), dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 51)
    ax.hist(hist_scores[test_y == 0], bins=bins, alpha=0.6, label="legitimate", log=True)
    ax.hist(hist_scores[test_y == 1], bins=bins, alpha=0.6, label="fraud", log=True)
    ax.set_xlabel("model probability (tree ensemble)")
    ax.set_ylabel("transactions (log)")
    ax.set_title("Score histogram, test period")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "score_histogram.png"), dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True, help="JSONL from --features-out")
    ap.add_argument("--labels", help="CSV transaction_id,is_fraud (default: is_fraud in the features file)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--test-fraction", type=float, default=0.3, help="latest share of the time range to test on")
    ap.add_argument("--target-recall", type=float, default=0.8)
    ap.add_argument("--trees", type=int, default=100)
    args = ap.parse_args()

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names, t, rules, rules_reject, X, y = load(args.features, args.labels)
    order = np.argsort(t, kind="stable")
    t, rules, rules_reject, X, y = t[order], rules[order], rules_reject[order], X[order], y[order]
    # Split at event-time quantiles (a few late events far in the past must not
    # stretch a split by time range).
    split_t = t[int(len(t) * (1 - args.test_fraction))]
    train, test = t < split_t, t >= split_t
    # Validation: the last fifth of the training period, for the operating point.
    val_t = t[train][int(train.sum() * 0.8)]
    fit, val = train & (t < val_t), train & (t >= val_t)

    tree = HistGradientBoostingClassifier(
        max_iter=args.trees, learning_rate=0.1, max_leaf_nodes=15,
        early_stopping=False, random_state=args.seed,
    )
    linear = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), LogisticRegression(max_iter=2000, random_state=args.seed))
    report = {"features": names, "rows": {"train": int(train.sum()), "test": int(test.sum()),
              "fraud_train": int(y[train].sum()), "fraud_test": int(y[test].sum())},
              "split_event_time_ms": int(split_t), "seed": args.seed, "models": {}}
    os.makedirs(args.out, exist_ok=True)
    scores_test = {}
    for key, model in (("tree", tree), ("linear", linear)):
        # The operating point: fit on the earlier 80 % of training, threshold on the rest.
        model.fit(X[fit], y[fit])
        s_val = model.predict_proba(X[val])[:, 1].astype(np.float32)
        th_model = threshold_for_recall(s_val, y[val], np.zeros(val.sum(), bool), args.target_recall)
        th_pipeline = threshold_for_recall(s_val, y[val], rules_reject[val], args.target_recall)
        # The exported model: refit on the whole training period.
        model.fit(X[train], y[train])
        path = os.path.join(args.out, f"{key}.onnx")
        export(model, names, path, args.seed)
        s = model.predict_proba(X[test])[:, 1].astype(np.float32)
        scores_test[key] = s
        report["models"][key] = {
            "file": path,
            "threshold_model_alone": th_model,
            "threshold_pipeline": th_pipeline,
            "model_alone": rates(s > th_model, y[test]),
            "pipeline": rates(rules_reject[test] | (s > th_pipeline), y[test]),
        }
    report["rules_alone"] = rates(rules[test], y[test])
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    tm = report["models"]["tree"]
    plots(args.out, y[test], {"tree ensemble": scores_test["tree"], "logistic": scores_test["linear"]},
          {"rules alone": report["rules_alone"], "rules + tree model": tm["pipeline"]}, scores_test["tree"])

    def line(label, m):
        return f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {100 * m['false_positive_rate']:.2f} % |"

    md = [
        "# riskpipe training report", "",
        f"Test period: events after {split_t} ms ({report['rows']['test']} transactions, {report['rows']['fraud_test']} fraud); "
        f"trained on {report['rows']['train']} earlier ones ({report['rows']['fraud_train']} fraud). Seed {args.seed}.",
        f"Split at the 70 % quantile of event time. Operating point: the threshold reaching recall {args.target_recall} on the last fifth of the training period.", "",
        "| decision path (test period; flagged = not APPROVE) | precision | recall | false-positive rate |",
        "|---|---|---|---|",
        line("rules alone (the seed's rule set)", report["rules_alone"]),
        line(f"tree ensemble alone (p > {tm['threshold_model_alone']:.4f})", tm["model_alone"]),
        line(f"logistic alone (p > {report['models']['linear']['threshold_model_alone']:.4f})", report["models"]["linear"]["model_alone"]),
        line(f"rules' REJECT + tree ensemble (p > {tm['threshold_pipeline']:.4f}): the example pipeline", tm["pipeline"]),
        line(f"rules' REJECT + logistic (p > {report['models']['linear']['threshold_pipeline']:.4f})", report["models"]["linear"]["pipeline"]),
        "", "![precision-recall](pr_curve.png)", "", "![score histogram](score_histogram.png)", "",
    ]
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md[:11]))


if __name__ == "__main__":
    main()
