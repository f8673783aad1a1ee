//! A trained model in the decision path (issue 14), end to end with the real
//! tools: the training tool (Python venv from tools/train, cached under
//! $RISKPIPE_CACHE) trains a 100-tree ensemble and a logistic model on the
//! generator's labelled features, the worker serves each, and onnxruntime scores
//! the same 10,000 rows: equal within 1e-5. Bad model files fail at start with a
//! message naming the cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> String {
    let out = Command::new("bash")
        .arg(root().join("tools/train/venv.sh"))
        .output()
        .expect("venv.sh runs");
    assert!(
        out.status.success(),
        "venv.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

fn manifest(dir: &Path, name: &str, count: u32, seed: u32, ml: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text = format!(
        "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: {name}\nspec:\n  source:\n    generator: {{users: 20000, merchants: 1000, count: {count}, seed: {seed}, fraudRatio: 0.05}}\n  sinks:\n    decisions: {{file: {{path: {name}.decisions.jsonl}}}}\n    deadLetters: {{file: {{path: {name}.dead.jsonl}}}}\n{ml}"
    );
    std::fs::write(&path, text).expect("write manifest");
    path
}

fn worker_run(manifest: &Path, features: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_riskpipe-worker"))
        .args(["run", "--no-progress", "-f"])
        .arg(manifest)
        .arg("--features-out")
        .arg(features)
        .output()
        .expect("worker runs")
}

fn check(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn worker_equals_onnxruntime_and_bad_models_are_refused() {
    let py = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let train_features = d.join("train.features.jsonl");
    let out = worker_run(&manifest(d, "history", 40_000, 3, ""), &train_features);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = check(
        Command::new(&py)
            .arg(root().join("tools/train/train.py"))
            .arg("--features")
            .arg(&train_features)
            .arg("--out")
            .arg(d.join("model"))
            .args(["--trees", "100", "--seed", "1"]),
    );
    println!("{report}");
    for png in ["pr_curve.png", "score_histogram.png"] {
        assert!(d.join("model").join(png).metadata().expect(png).len() > 1000);
    }

    for kind in ["tree", "linear"] {
        let model = d.join("model").join(format!("{kind}.onnx"));
        let ml = format!("  ml:\n    model: {{file: {}}}\n", model.display());
        let features = d.join(format!("{kind}.features.jsonl"));
        let out = worker_run(&manifest(d, kind, 10_000, 11, &ml), &features);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parity = check(
            Command::new(&py)
                .arg(root().join("tools/train/parity.py"))
                .arg("--model")
                .arg(&model)
                .arg("--features")
                .arg(&features)
                .args(["--rows", "10000", "--tolerance", "1e-5"]),
        );
        println!("{parity}");
        let decisions =
            std::fs::read_to_string(d.join(format!("{kind}.decisions.jsonl"))).expect("decisions");
        let first = decisions.lines().next().expect("a decision");
        assert!(
            first.contains(&format!("\"ml_model\":\"{kind}\"")),
            "{first}"
        );
        assert!(first.contains("\"ml_model_version\":\""), "{first}");
        if kind == "linear" {
            assert!(
                first.contains("\"ml_top_features\":[{\"feature\":"),
                "{first}"
            );
        }
    }

    // A file that is not ONNX.
    let garbage = d.join("garbage.onnx");
    std::fs::write(&garbage, b"\xff\xff\xff\xff not a model").expect("write");
    let ml = format!("  ml:\n    model: {{file: {}}}\n", garbage.display());
    let out = worker_run(&manifest(d, "garbage", 10, 1, &ml), &d.join("g.jsonl"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not a readable ONNX model") && err.contains("garbage.onnx"),
        "{err}"
    );

    // A model whose inputs name a feature riskpipe does not have.
    let renamed = d.join("renamed.onnx");
    check(Command::new(&py).arg("-c").arg(format!(
        "import onnx; m = onnx.load('{}'); p = [p for p in m.metadata_props if p.key == 'riskpipe.features'][0]; p.value = p.value.replace('amount_zscore_30d', 'shoe_size'); onnx.save(m, '{}')",
        d.join("model/tree.onnx").display(),
        renamed.display()
    )));
    let ml = format!("  ml:\n    model: {{file: {}}}\n", renamed.display());
    let out = worker_run(&manifest(d, "renamed", 10, 1, &ml), &d.join("r.jsonl"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("'shoe_size', which is not a riskpipe feature")
            && err.contains("spec.ml.model.file"),
        "{err}"
    );
}
