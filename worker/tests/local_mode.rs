//! Local mode and replay through the real `riskpipe-worker` binary.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use std::collections::HashMap;

use assert_cmd::Command;
use riskpipe_crds::RiskPipeline;
use riskpipe_worker::engine::{
    Decision, DecisionWriter, Dimensions, Engine, FinalDecision, MemoryStore, parse_transaction,
};
use riskpipe_worker::local::generator::{FraudPattern, Generator, GeneratorConfig};
use riskpipe_worker::pipeline_config::engine_config;
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn worker() -> Command {
    let mut cmd = Command::cargo_bin("riskpipe-worker").expect("binary built");
    cmd.env("RISKPIPE_LOG", "warn");
    cmd
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Runs `riskpipe-worker replay` with the given files and extra arguments.
fn replay(tx: &Path, dims: &Path, out: &Path, extra: &[&std::ffi::OsStr]) -> Output {
    worker()
        .args(["replay", "--transactions"])
        .arg(tx)
        .arg("--dimensions")
        .arg(dims)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run riskpipe-worker replay")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A decision's JSON without the clock fields, which differ between runs.
fn without_clock(mut d: Value) -> Value {
    if let Some(o) = d.as_object_mut() {
        o.remove("decided_at");
        o.remove("processing_latency_ms");
    }
    d
}

/// Decides `records` in order through the engine alone (memory state, no batching,
/// no RocksDB) and returns each valid record's decision JSON without clock fields.
fn recompute<'a>(
    pipeline: &RiskPipeline,
    dims: &dyn Dimensions,
    records: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Value> {
    let cfg = engine_config(pipeline).expect("engine config");
    let writer = DecisionWriter::new(&cfg.pipeline, &cfg.rule_set_version);
    let engine = Engine::new(cfg);
    let mut store = MemoryStore::default();
    records
        .into_iter()
        .filter_map(|r| parse_transaction(r, engine.config().zone).ok())
        .map(|tx| {
            let Ok(d): Result<Decision, _> = engine.decide(&tx, dims, &mut store);
            without_clock(serde_json::from_str(&writer.to_json(&d)).expect("decision JSON"))
        })
        .collect()
}

/// Asserts that two lists of decisions are equal, naming the first field that is not.
fn assert_same_decisions(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "number of decisions");
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.as_object().unwrap(), w.as_object().unwrap());
        let keys = |o: &serde_json::Map<String, Value>| o.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            keys(g),
            keys(w),
            "fields of decision {}",
            w["transaction_id"]
        );
        for (k, v) in w {
            assert_eq!(&g[k], v, "decision {}: field {k}", w["transaction_id"]);
        }
    }
}

fn by_id(decisions: &[Value], id: i64) -> &Value {
    decisions
        .iter()
        .find(|d| d["transaction_id"] == id)
        .unwrap_or_else(|| panic!("no decision for {id}"))
}

#[test]
fn replay_decides_sample_data_and_dead_letters_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("decisions.jsonl");
    let dl = dir.path().join("dead.jsonl");
    let data = examples().join("data");
    let result = replay(
        &data.join("transactions.jsonl"),
        &data,
        &out,
        &[std::ffi::OsStr::new("--dead-letters"), dl.as_os_str()],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let decisions = lines(&out);
    assert_eq!(decisions.len(), 7, "one decision per valid line");
    let dead = lines(&dl);
    assert_eq!(dead.len(), 5);
    let reasons: Vec<(u64, String)> = dead
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        reasons[0].0 == 8 && reasons[0].1.contains("more than 2 decimals"),
        "{reasons:?}"
    );
    assert!(reasons[1].0 == 9 && reasons[1].1.contains("missing required field 'amount'"));
    assert!(reasons[2].0 == 10 && reasons[2].1.contains("'user_id'"));
    assert!(reasons[3].0 == 11 && reasons[3].1.contains("not a JSON object"));
    assert!(reasons[4].0 == 12 && reasons[4].1.contains("negative"));
    assert_eq!(dead[3]["raw"], "this is not json");

    // 1: ordinary purchase, history row says 2/hour: approve.
    let d1 = by_id(&decisions, 1);
    assert_eq!(d1["final_decision"], "APPROVE");
    assert_eq!(d1["base_risk_score"], 10);
    assert_eq!(d1["historical_count"], 2);
    // 2: 5000 > max_single 2000 × 2 → +50; > history max 600 × 2 → EXTREME → review.
    let d2 = by_id(&decisions, 2);
    assert_eq!(d2["amount_anomaly_score"], 50);
    assert_eq!(d2["amount_anomaly"], "EXTREME_AMOUNT_ANOMALY");
    assert_eq!(d2["final_decision"], "MANUAL_REVIEW");
    assert_eq!(d2["txn_count_1h"], 2);
    assert_eq!(d2["risk_reasons"], "金額異常");
    // 3: HIGH-risk merchant → delayed; fraud rate carried.
    let d3 = by_id(&decisions, 3);
    assert_eq!(d3["final_decision"], "DELAYED_APPROVAL");
    assert_eq!(d3["merchant_fraud_rate"].as_f64(), Some(0.045));
    // 4: night (+15) + HIGH user (75) = 90 > 70; blacklisted IP; high-risk location
    // from the table; overnight bar hours (18–02) make 03:00 off-hours but night wins.
    let d4 = by_id(&decisions, 4);
    assert_eq!(d4["time_anomaly_score"], 15);
    assert_eq!(d4["total_risk_score"], 90);
    assert_eq!(d4["blacklist_status"], "BLACKLIST_IP");
    assert_eq!(d4["geo_risk"], "HIGH_GEO_RISK");
    assert_eq!(d4["final_decision"], "MANUAL_REVIEW");
    // 5: blacklisted user, epoch-ms time, nulls everywhere.
    let d5 = by_id(&decisions, 5);
    assert_eq!(d5["blacklist_status"], "BLACKLIST_USER");
    assert_eq!(d5["final_decision"], "REJECT");
    assert_eq!(d5["transaction_time"], "2024-03-01 12:00:00.000");
    // 6: empty profile row = no profile values; blacklisted merchant.
    let d6 = by_id(&decisions, 6);
    assert_eq!(d6["base_risk_score"], 0);
    assert_eq!(d6["blacklist_status"], "BLACKLIST_MERCHANT");
    // 7: third transaction of 1001 within the hour, new location.
    let d7 = by_id(&decisions, 7);
    assert_eq!(d7["txn_count_1h"], 3);
    assert_eq!(d7["txn_amount_1h"].to_string(), "5180.5");
    assert_eq!(d7["geo_risk"], "LOCATION_CHANGE_RISK");
    assert_eq!(d7["distinct_ip_24h"], 2);
    assert_eq!(
        d7["frequency_anomaly"], "NORMAL_FREQUENCY",
        "3 is not > 2 × 2"
    );
    assert_eq!(d7["pipeline"], "replay");
}

#[test]
fn replay_decisions_equal_the_engine_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("decisions.jsonl");
    let data = examples().join("data");
    let tx_file = data.join("transactions.jsonl");
    let result = replay(&tx_file, &data, &out, &[]);
    assert!(result.status.success(), "{}", stderr(&result));
    let got: Vec<Value> = lines(&out).into_iter().map(without_clock).collect();
    let mut pipeline = RiskPipeline::new(
        "replay",
        riskpipe_crds::RiskPipelineSpec::with_source(riskpipe_crds::SourceSpec::kafka()),
    );
    pipeline.metadata.name = Some("replay".to_owned());
    let (dims, _) = riskpipe_worker::dims_csv::load_dimensions(&data).expect("sample dimensions");
    let text = std::fs::read(&tx_file).unwrap();
    let want = recompute(&pipeline, &dims, text.split(|b| *b == b'\n'));
    assert_eq!(want.len(), 7);
    assert_same_decisions(&got, &want);
}

#[test]
fn replay_with_manifest_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("decisions.jsonl");
    let data = examples().join("data");
    let result = replay(
        &data.join("transactions.jsonl"),
        &data,
        &out,
        &[
            std::ffi::OsStr::new("-f"),
            examples().join("file-pipeline.yaml").as_os_str(),
        ],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    // Default dead-letter file next to the output.
    assert_eq!(
        lines(&dir.path().join("decisions.dead-letters.jsonl")).len(),
        5
    );
    let decisions = lines(&out);
    // rejectScore 90: total 90 is not > 90, reviewScore 60 → review.
    assert_eq!(by_id(&decisions, 4)["final_decision"], "MANUAL_REVIEW");
    // The manifest's inline IP blacklist.
    assert_eq!(
        by_id(&decisions, 6)["blacklist_status"],
        "BLACKLIST_MERCHANT"
    );
    assert_eq!(by_id(&decisions, 1)["rule_set_version"], "2024-03-strict");
    assert_eq!(by_id(&decisions, 1)["pipeline"], "file-pipeline");
}

#[test]
fn file_pipeline_run_matches_replay() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("p.yaml");
    let data = examples().join("data");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: replay\nspec:\n  source:\n    file:\n      path: {}\n  dimensions:\n    directory: {}\n  sinks:\n    decisions:\n      file:\n        path: run.jsonl\n",
            data.join("transactions.jsonl").display(),
            data.display()
        ),
    )
    .unwrap();
    let run = worker()
        .args(["run", "--no-progress", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let replay_out = dir.path().join("replay.jsonl");
    let replay = replay(&data.join("transactions.jsonl"), &data, &replay_out, &[]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let strip = |mut v: Vec<Value>| {
        for d in &mut v {
            let o = d.as_object_mut().unwrap();
            o.remove("decided_at");
            o.remove("processing_latency_ms");
        }
        v
    };
    assert_eq!(
        strip(lines(&dir.path().join("run.jsonl"))),
        strip(lines(&replay_out))
    );
    assert!(stderr(&run).contains("riskpipe summary"));
}

#[test]
fn generator_run_prints_summary_with_detection_quality() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("gen.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: gen\nspec:\n  source:\n    generator:\n      users: 5000\n      merchants: 200\n      count: 20000\n      seed: 7\n      fraudRatio: 0.05\n  sinks:\n    decisions:\n      file:\n        path: out.jsonl\n",
    )
    .unwrap();
    let run = worker()
        .args(["run", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    let decisions = lines(&dir.path().join("out.jsonl"));
    assert_eq!(decisions.len(), 20_000);
    check_against_the_generator(&manifest, &decisions, &err);
    for needle in [
        "records      20000",
        "REJECT",
        "APPROVE",
        "precision",
        "recall",
        "false-positive rate",
        "account_takeover",
    ] {
        assert!(err.contains(needle), "summary lacks {needle}:\n{err}");
    }
    // Same seed, same stream: a second run decides identically.
    let again = dir.path().join("again.jsonl");
    let run2 = worker()
        .args(["run", "-f"])
        .arg(&manifest)
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(run2.status.success());
    let a: Vec<_> = decisions
        .iter()
        .map(|d| {
            (
                d["transaction_id"].clone(),
                d["final_decision"].clone(),
                d["total_risk_score"].clone(),
            )
        })
        .collect();
    let b: Vec<_> = lines(&again)
        .iter()
        .map(|d| {
            (
                d["transaction_id"].clone(),
                d["final_decision"].clone(),
                d["total_risk_score"].clone(),
            )
        })
        .collect();
    assert_eq!(a, b);
}

/// Recomputes, from the same seeded generator, every decision of the run through
/// the engine alone and the summary's counts and detection figures from the
/// generator's labels and the decisions file, and compares them with the run's.
fn check_against_the_generator(manifest: &Path, decisions: &[Value], summary: &str) {
    let pipeline = RiskPipeline::from_yaml(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let g = pipeline
        .spec
        .source
        .generator
        .as_ref()
        .expect("generator source");
    let generator = Generator::new(GeneratorConfig {
        users: g.users as u32,
        merchants: g.merchants as u32,
        rate_per_second: g.rate_per_second as u32,
        count: g.count as u64,
        seed: g.seed as u64,
        fraud_ratio: g.fraud_ratio,
    });
    let dims = generator.dimensions();
    let generated: Vec<_> = generator.collect();
    let labels: HashMap<i64, Option<FraudPattern>> = generated
        .iter()
        .map(|t| (t.transaction_id, t.label))
        .collect();
    let want = recompute(
        &pipeline,
        &*dims,
        generated.iter().map(|t| t.json.as_slice()),
    );
    let got: Vec<Value> = decisions.iter().cloned().map(without_clock).collect();
    assert_same_decisions(&got, &want);

    let mut counts = [0u64; 4];
    let (mut tp, mut fp, mut tn, mut fneg) = (0u64, 0u64, 0u64, 0u64);
    let mut patterns: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for d in decisions {
        let decision = d["final_decision"].as_str().unwrap();
        let i = FinalDecision::ALL
            .iter()
            .position(|f| f.as_str() == decision)
            .unwrap_or_else(|| panic!("unknown decision {decision}"));
        counts[i] += 1;
        let flagged = decision != "APPROVE";
        let id = d["transaction_id"].as_i64().unwrap();
        match labels[&id] {
            Some(p) => {
                let entry = patterns.entry(p.name()).or_default();
                entry.1 += 1;
                entry.0 += u64::from(flagged);
                if flagged { tp += 1 } else { fneg += 1 }
            }
            None if flagged => fp += 1,
            None => tn += 1,
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let total = decisions.len() as f64;
    let mut expected = vec![format!("  records      {} in", decisions.len())];
    for (d, n) in FinalDecision::ALL.iter().zip(counts) {
        expected.push(format!(
            "  {:<17}{:>10}  ({:.2}%)\n",
            d.as_str(),
            n,
            n as f64 * 100.0 / total
        ));
    }
    expected.push(format!(
        "  detection    precision {:.3}  recall {:.3}  false-positive rate {:.4}  (flagged = not APPROVE; TP {tp} FP {fp} TN {tn} FN {fneg})\n",
        ratio(tp, tp + fp),
        ratio(tp, tp + fneg),
        ratio(fp, fp + tn),
    ));
    assert!(
        tp > 0 && fp + tn > 0,
        "the stream has both fraud and normal traffic"
    );
    assert_eq!(
        patterns.len(),
        FraudPattern::ALL.len(),
        "every fraud pattern occurs"
    );
    for (pattern, (flagged, n)) in &patterns {
        expected.push(format!(
            "    {pattern:<20} recall {:.3} ({flagged}/{n})\n",
            ratio(*flagged, *n)
        ));
    }
    for line in expected {
        assert!(
            summary.contains(&line),
            "summary lacks {line:?}:\n{summary}"
        );
    }
}

#[test]
fn bad_manifests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "spec:\n  source:\n    file:\n      path: x\n  colour: blue\n",
            "colour",
        ),
        (
            "spec:\n  source:\n    file:\n      path: x\n  rules:\n    decision:\n      rejectScore: 50\n      reviewScore: 70\n",
            "rejectScore",
        ),
        (
            "spec:\n  source:\n    file:\n      path: x\n  parallelism: many\n",
            "parallelism",
        ),
        ("spec:\n  source: {}\n", "source"),
        (
            "spec:\n  source:\n    file:\n      path: x\n  timeZone: Mars/Olympus\n",
            "Mars/Olympus",
        ),
    ];
    for (spec, needle) in cases {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, format!("apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: bad\n{spec}")).unwrap();
        let out = worker()
            .args(["run", "--no-progress", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "accepted:\n{spec}");
        let err = stderr(&out);
        assert!(
            err.contains(needle),
            "error for {needle:?} does not name it:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let missing = worker()
        .args(["run", "-f", "/nonexistent/p.yaml"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/p.yaml"));
}

#[test]
fn garbage_and_huge_lines_are_dead_letters_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let tx = dir.path().join("tx.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"transaction_id\":1,\"user_id\":1,\"amount\":1,\"merchant_id\":1,\"transaction_time\":\"2024-03-01 12:00:00\"}\n");
    bytes.extend_from_slice(&[0xff, 0xfe, 0x00, 0x01, b'\n']);
    bytes.extend_from_slice(b"{\"transaction_id\":2,\"pad\":\"");
    bytes.extend(std::iter::repeat_n(b'x', 3 << 20));
    bytes.extend_from_slice(b"\"}\n");
    bytes.extend_from_slice(b"{\"transaction_id\":3,\"user_id\":1,\"amount\":1e2,\"merchant_id\":1,\"transaction_time\":\"2024-03-01 12:00:01\"}\n");
    bytes.extend_from_slice(b"{\"transaction_id\":4,\"user_id\":1,\"amount\":\"1\",\"merchant_id\":1,\"transaction_time\":\"2024-03-01 12:00:02\",\"ip_address\":[1]}\n");
    std::fs::write(&tx, bytes).unwrap();
    let empty = dir.path().join("dims");
    std::fs::create_dir(&empty).unwrap();
    let out = dir.path().join("out.jsonl");
    let dl = dir.path().join("dl.jsonl");
    let result = replay(
        &tx,
        &empty,
        &out,
        &[std::ffi::OsStr::new("--dead-letters"), dl.as_os_str()],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let decisions = lines(&out);
    assert_eq!(
        decisions
            .iter()
            .map(|d| d["transaction_id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 3]
    );
    let dead = lines(&dl);
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0]["kind"], "malformed_json");
    assert_eq!(dead[0]["raw"], Value::Null);
    assert_eq!(dead[0]["raw_base64"], "//4AAQ==");
    assert_eq!(dead[1]["kind"], "oversized");
    assert_eq!(dead[1]["line"], 3);
    assert!(dead[2]["reason"].as_str().unwrap().contains("ip_address"));
}

#[test]
fn bad_dimension_cell_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("user_risk_profiles.csv"),
        "user_id,risk_score\n1,5\n2,high\n",
    )
    .unwrap();
    let tx = dir.path().join("tx.jsonl");
    std::fs::write(&tx, "").unwrap();
    let out = replay(&tx, dir.path(), &dir.path().join("o.jsonl"), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("user_risk_profiles.csv:3") && err.contains("risk_score"),
        "{err}"
    );
}

#[test]
fn audit_log_protects_personal_data_with_keys_from_a_secrets_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = examples().join("data");
    // The Secrets as the operator mounts them: one folder per Secret, a file per key.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("audit-keys")).unwrap();
    let key_hex = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
    std::fs::write(secrets.join("audit-keys/k2026"), key_hex).unwrap();
    std::fs::write(secrets.join("audit-keys/hmac"), "the local hmac key\n").unwrap();
    let manifest = dir.path().join("p.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: audited\nspec:\n  source:\n    file:\n      path: {}\n  dimensions:\n    directory: {}\n  sinks:\n    decisions:\n      file:\n        path: run.jsonl\n    audit:\n      file:\n        path: audit.jsonl\n  secrets:\n    encryptionKeyRef:\n      name: audit-keys\n      key: k2026\n    hmacKeyRef:\n      name: audit-keys\n      key: hmac\n",
            data.join("transactions.jsonl").display(),
            data.display()
        ),
    )
    .unwrap();
    let run = worker()
        .args(["run", "--no-progress", "--secrets-dir"])
        .arg(&secrets)
        .arg("-f")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(!stderr(&run).contains(key_hex), "a key reached the log");
    let decisions = lines(&dir.path().join("run.jsonl"));
    let audit = lines(&dir.path().join("audit.jsonl"));
    assert_eq!(audit.len(), decisions.len());
    let keys =
        riskpipe_worker::audit::AuditKeys::new("k2026", key_hex.as_bytes(), b"the local hmac key")
            .unwrap();
    for (a, d) in audit.iter().zip(&decisions) {
        assert_eq!(a["transaction_id"], d["transaction_id"]);
        assert_eq!(a["risk_decision"], d["final_decision"]);
        let token = a["user_id"].as_str().expect("encrypted user_id");
        assert!(token.starts_with("k2026:"), "{token}");
        let tx = d["transaction_id"].as_i64().unwrap();
        assert_eq!(
            Some(keys.decrypt_user_id(token, tx).unwrap()),
            d["user_id"].as_i64()
        );
        if let Some(ip) = a["ip_address"].as_str() {
            assert!(
                ip.ends_with(".*.*") || ip.contains(":*") || ip.starts_with("***"),
                "{ip}"
            );
            assert_ne!(Some(ip), d["ip_address"].as_str());
        }
    }
    // Without keys the audit log is off, and the run says so.
    let run = worker()
        .args(["run", "--no-progress", "--secrets-dir"])
        .arg(dir.path().join("no-secrets"))
        .arg("-f")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(stderr(&run).contains("audit-keys"), "{}", stderr(&run));
}
