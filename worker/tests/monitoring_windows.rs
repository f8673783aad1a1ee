//! Local mode writes the SPEC §9 window and alert records beside its decisions
//! (`<stem>.windows.jsonl`, `.health.jsonl`, `.alerts.jsonl`), through the real
//! `riskpipe-worker` binary: every 1-minute record equals a recomputation from the
//! decisions of that minute, every 5-minute record's counts equal its minutes', and
//! an alert is written for exactly the windows whose figures meet the seed's
//! condition.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn local_window_records_equal_a_recomputation_from_the_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("gen.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: gen\nspec:\n  source:\n    generator:\n      users: 2000\n      merchants: 100\n      count: 30000\n      seed: 5\n      fraudRatio: 0.3\n  sinks:\n    decisions:\n      file:\n        path: out.jsonl\n",
    )
    .unwrap();
    let out = Command::cargo_bin("riskpipe-worker")
        .unwrap()
        .env("RISKPIPE_LOG", "warn,riskpipe_worker::monitoring=info")
        .args(["run", "--no-progress", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decisions = lines(&dir.path().join("out.jsonl"));
    let windows = lines(&dir.path().join("out.windows.jsonl"));
    let health = lines(&dir.path().join("out.health.jsonl"));
    let alerts = lines(&dir.path().join("out.alerts.jsonl"));
    assert_eq!(decisions.len(), 30_000);

    // Decisions by minute of event time, in the order they were decided (the file's):
    // a record whose minute ended at or before the watermark (the largest event time
    // before it − 10 s) is late — the generator sends delayed night-time batches.
    // The pipeline's zone is UTC (the default): wall time is event time.
    let event_ms = |d: &Value| {
        let t = d["transaction_time"].as_str().unwrap();
        chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap_or_else(|e| panic!("{t}: {e}"))
            .and_utc()
            .timestamp_millis()
    };
    let mut by_minute: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    let (mut max_event, mut late) = (i64::MIN, 0u64);
    for d in &decisions {
        let ms = event_ms(d);
        let start = ms.div_euclid(60_000) * 60_000;
        if start + 60_000 <= max_event.saturating_sub(10_000) {
            late += 1;
        } else {
            by_minute.entry(start).or_default().push(d);
        }
        max_event = max_event.max(ms);
    }
    assert!(late > 0, "the generator's delayed batches are late");
    // The worker logs the late count (without the terminal colours).
    let log: String = {
        let raw = String::from_utf8_lossy(&out.stderr);
        let mut text = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                text.push(c);
            }
        }
        text
    };
    assert!(
        log.contains(&format!("late_records={late}")),
        "expected {late} late:\n{log}"
    );
    assert!(
        by_minute.len() >= 2,
        "the stream spans {} minute(s)",
        by_minute.len()
    );
    assert_eq!(
        windows.len(),
        by_minute.len(),
        "one record per minute with decisions"
    );
    let mut expected_alerts = Vec::new();
    for (w, (minute, rows)) in windows.iter().zip(&by_minute) {
        let n = rows.len() as f64;
        let count = |k: &str| rows.iter().filter(|d| d["final_decision"] == k).count() as u64;
        assert_eq!(w["window_start"], *minute, "{minute}");
        assert_eq!(w["total_transactions"], rows.len() as u64, "{minute}");
        assert_eq!(w["rejected_count"], count("REJECT"), "{minute}");
        assert_eq!(w["review_count"], count("MANUAL_REVIEW"), "{minute}");
        assert_eq!(w["approved_count"], count("APPROVE"), "{minute}");
        assert_eq!(f(&w["window_end"]) - f(&w["window_start"]), 60_000.0);
        let rate = count("REJECT") as f64 / n;
        assert!((f(&w["rejection_rate"]) - rate).abs() < 1e-12, "{minute}");
        let latency = rows
            .iter()
            .map(|d| f(&d["processing_latency_ms"]))
            .sum::<f64>()
            / n;
        assert!(
            (f(&w["avg_processing_latency_ms"]) - latency).abs() <= 1e-6 * latency.max(1.0),
            "{minute}: {} vs {latency}",
            w["avg_processing_latency_ms"]
        );
        let high = rows
            .iter()
            .filter(|d| d["total_risk_score"].as_i64().unwrap() > 70)
            .count() as f64
            / n;
        assert!((f(&w["high_risk_ratio"]) - high).abs() < 1e-12, "{minute}");
        if rate > 0.1 || latency > 1000.0 || high > 0.3 {
            expected_alerts.push(w["window_start"].clone());
        }
    }
    // One alert per window meeting the seed's condition, in order, nothing else.
    let got: Vec<Value> = alerts.iter().map(|a| a["window_start"].clone()).collect();
    assert_eq!(got, expected_alerts);
    for a in &alerts {
        assert!(
            ["CRITICAL", "HIGH", "MEDIUM", "NORMAL"].contains(&a["alert_level"].as_str().unwrap())
        );
        assert!(a["alert_message"].is_string());
    }
    // Health windows: their totals are the sums of their minutes'.
    let total: u64 = health
        .iter()
        .map(|h| h["total_transactions"].as_u64().unwrap())
        .sum();
    assert_eq!(total + late, 30_000);
    for h in &health {
        let (start, end) = (f(&h["window_start"]), f(&h["window_end"]));
        assert_eq!(end - start, 300_000.0);
        let inside: u64 = windows
            .iter()
            .filter(|w| f(&w["window_start"]) >= start && f(&w["window_end"]) <= end)
            .map(|w| w["total_transactions"].as_u64().unwrap())
            .sum();
        assert_eq!(h["total_transactions"].as_u64().unwrap(), inside);
        assert!((f(&h["tps"]) - inside as f64 / 300.0).abs() < 1e-9);
        assert!(f(&h["p99_latency"]) >= f(&h["p95_latency"]));
    }
}
