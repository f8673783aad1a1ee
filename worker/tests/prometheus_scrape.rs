//! A real Prometheus scrapes two real workers (Kafka mode, the real broker) while
//! transactions and malformed records (2.9 %) flow: every worker query of the Grafana
//! dashboard returns data, the error ratio Prometheus computes matches the share of
//! malformed records produced, and the chart's error-rate alert fires in Prometheus.
//!
//! The rules are `deploy/monitoring/riskpipe-rules.yaml` (equal to the chart's, see
//! operator/tests/monitoring.rs) with `for:` set to 0s and the groups evaluated every
//! second; Prometheus scrapes every second. Operator series (restarts, scaling,
//! conditions) are not scraped here: their panels fall back to 0 or are skipped.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use riskpipe_worker::local::generator::GeneratorConfig;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The folder holding `prometheus` (installed on first use by the env part).
fn prometheus_bin() -> PathBuf {
    riskpipe_e2e::tools::prometheus_bin().unwrap_or_else(|e| panic!("{e}"))
}

/// A Prometheus server killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(dir: &Path, pipeline: &str, workers: &[String]) -> Prometheus {
    let rules = std::fs::read_to_string(root().join("deploy/monitoring/riskpipe-rules.yaml"))
        .unwrap()
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if t.starts_with("for: ") {
                format!("{indent}for: 0s\n")
            } else if t.starts_with("interval: ") {
                format!("{indent}interval: 1s\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>();
    std::fs::write(dir.join("rules.yaml"), rules).unwrap();
    let targets = workers
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yaml]\nscrape_configs:\n  - job_name: riskpipe-workers\n    static_configs:\n      - targets: [{targets}]\n        labels: {{namespace: e2e, pipeline: {pipeline}}}\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(prometheus_bin().join("prometheus"))
        .current_dir(dir)
        .arg("--config.file=prometheus.yml")
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    let p = Prometheus { child, addr };
    wait_for("prometheus ready", Duration::from_secs(60), || {
        http_call("GET", &p.addr, "/-/ready", None).0 == 200
    });
    p
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant query.
fn query(p: &Prometheus, q: &str) -> Vec<Value> {
    let body = http_json(
        "GET",
        &p.addr,
        &format!("/api/v1/query?query={}", encode(q)),
        None,
    );
    assert_eq!(body["status"], "success", "{q}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Each worker query of the dashboard, variables as Grafana sends them for "All".
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("charts/riskpipe/dashboards/riskpipe.json")).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "15s")
                .replace("$namespace", ".*")
                .replace("$pipeline", ".*");
            out.push((p["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    out
}

#[test]
fn prometheus_scrapes_workers_every_dashboard_query_has_data_and_the_error_alert_fires() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("prom-tx"), unique("prom-dec"), unique("prom-dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = "prom";
    let manifest = manifest(
        dir.path(),
        pipeline,
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("checkpoints"),
    );

    // 100 transactions and 3 malformed records every 0.5 s: 3/103 = 2.9 % errors,
    // above the 1 % alert, well below the 5 % restart level.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, bootstrap, input) = (stop.clone(), bootstrap.clone(), input.clone());
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let bad: [&[u8]; 3] = [b"not json", b"{", b"nope"];
                produce_from(
                    &bootstrap,
                    &input,
                    GeneratorConfig {
                        users: 500,
                        merchants: 50,
                        rate_per_second: 0,
                        count: 100,
                        seed: 100 + round,
                        fraud_ratio: 0.2,
                    },
                    i64::try_from(round).unwrap() * 1_000,
                    &bad,
                );
                round += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let _workers: Vec<Worker> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            start_worker(
                &manifest,
                &dir.path().join(format!("state-{i}")),
                u32::try_from(i).unwrap(),
                2,
                Some(a),
                None,
            )
        })
        .collect();
    let prom = start_prometheus(dir.path(), pipeline, &addrs);

    let queries = dashboard_queries();
    let worker_queries: Vec<_> = queries
        .iter()
        .filter(|(_, q)| !q.contains("riskpipe_operator_"))
        .collect();
    assert!(worker_queries.len() >= 14, "{worker_queries:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let empty: Vec<String> = worker_queries
            .iter()
            .filter(|(_, q)| query(&prom, q).is_empty())
            .map(|(t, q)| format!("{t}: {q}"))
            .collect();
        if empty.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dashboard queries without data after 120 s:\n{}",
            empty.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Both workers are scraped and their series carry the pipeline's labels.
    let up = query(&prom, "up{job=\"riskpipe-workers\"} == 1");
    assert_eq!(up.len(), 2, "{up:?}");

    let firing =
        "ALERTS{alertname=\"RiskpipeErrorRateHigh\", alertstate=\"firing\", pipeline=\"prom\"}";
    wait_for(
        "RiskpipeErrorRateHigh fires",
        Duration::from_secs(120),
        || !query(&prom, firing).is_empty(),
    );
    // The recorded ratio reaches the produced share once a few scrapes are in (the
    // first ones extrapolate series that appeared mid-range).
    let mut value = 0.0;
    wait_for(
        "the recorded error ratio is the produced 3/103",
        Duration::from_secs(60),
        || {
            let ratio = query(&prom, "riskpipe:error_ratio:rate5m{pipeline=\"prom\"}");
            value = ratio
                .first()
                .and_then(|r| r["value"][1].as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            (0.02..0.04).contains(&value)
        },
    );
    // Below the restart level (5 %): once the first scrapes' extrapolation has
    // passed, the high-error alert fires and the restart alert does not.
    wait_for(
        "RiskpipeErrorRateHigh firing without RiskpipeErrorRateRestart",
        Duration::from_secs(60),
        || {
            !query(&prom, firing).is_empty()
                && query(
                    &prom,
                    "ALERTS{alertname=\"RiskpipeErrorRateRestart\", alertstate=\"firing\"}",
                )
                .is_empty()
        },
    );
    assert!(value > 0.0);
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
}
