//! Model inference cost per record (issue 14): prints figures, asserts nothing.
//!
//! Run `bash tools/train/example.sh` once (writes out/model/tree.onnx, a 100-tree
//! ensemble, and out/local-generator.features.jsonl), then
//! `cargo bench -p riskpipe-engine --bench model`.
//! Environment: `RISKPIPE_BENCH_MODEL`, `RISKPIPE_BENCH_FEATURES` (paths),
//! `RISKPIPE_BENCH_ROWS` (default 100,000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use riskpipe_engine::features::{MODEL_FEATURES, ModelFeatures};
use riskpipe_engine::model::OnnxModel;

fn path(var: &str, default: &str) -> PathBuf {
    std::env::var(var).map_or_else(
        |_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(default)
        },
        PathBuf::from,
    )
}

fn main() {
    let rows: usize = std::env::var("RISKPIPE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let features_path = path(
        "RISKPIPE_BENCH_FEATURES",
        "out/local-generator.features.jsonl",
    );
    let mut models = Vec::new();
    for name in ["tree", "linear"] {
        let p = path("RISKPIPE_BENCH_MODEL", &format!("out/model/{name}.onnx"));
        if p.exists() && !models.iter().any(|(q, _): &(PathBuf, _)| *q == p) {
            let bytes = std::fs::read(&p).expect("read model");
            models.push((p, OnnxModel::from_bytes(name, &bytes).expect("model loads")));
        }
    }
    if models.is_empty() || !features_path.exists() {
        println!("no model or features — run `bash tools/train/example.sh` first");
        return;
    }
    let file = std::fs::File::open(&features_path).expect("features");
    let mut features = Vec::with_capacity(rows);
    for line in std::io::BufReader::new(file).lines().take(rows) {
        let v: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json");
        let mut f = ModelFeatures {
            values: [f32::NAN; MODEL_FEATURES.len()],
        };
        for (i, name) in MODEL_FEATURES.iter().enumerate() {
            if let Some(x) = v[name].as_f64() {
                f.values[i] = x as f32;
            }
        }
        features.push(f);
    }
    let n = features.len();
    for (p, model) in &models {
        let mut best = f64::MAX;
        let mut best_explained = f64::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let mut sum = 0.0;
            for f in &features {
                sum += model.probability(f).unwrap_or(0.0);
            }
            std::hint::black_box(sum);
            best = best.min(started.elapsed().as_nanos() as f64 / n as f64);
            let started = Instant::now();
            let mut tops = 0;
            for f in &features {
                tops += model.predict(f).top_features.len();
            }
            std::hint::black_box(tops);
            best_explained = best_explained.min(started.elapsed().as_nanos() as f64 / n as f64);
        }
        println!(
            "MODEL {} ({} features, {n} rows): {best:.0} ns/record probability, {best_explained:.0} ns/record with top features (best of 5)",
            p.display(),
            model.features().len()
        );
    }
}
