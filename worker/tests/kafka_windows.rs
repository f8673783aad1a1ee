//! Kafka mode's monitoring windows (SPEC §9) against the real broker of the test
//! environment: partitions' partials in their decisions' transactions, one fenced
//! merger, window and alert records exactly once across kill -9 (of workers and of
//! the merger right before its commit) and a rescale 2 → 3 → 1, each equal to a
//! recomputation from the committed decisions; a late record is counted.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use riskpipe_worker::local::generator::{Generator, GeneratorConfig};
use serde_json::Value;

/// Event time between two consecutive transactions of the stream.
const STEP_MS: i64 = 20;
/// Transactions per round (one round per replica count).
const ROUND: u64 = 12_000;

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

fn event_ms(d: &Value) -> i64 {
    let t = d["transaction_time"].as_str().unwrap();
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .and_utc()
        .timestamp_millis()
}

/// Produces `count` generated transactions whose event times continue the
/// stream at `first` (one every [`STEP_MS`], in production order, so in order
/// within each partition); ids are unique per round. Returns the next event time.
fn produce_round(bootstrap: &str, topic: &str, round: u64, fraud: f64, first: i64) -> i64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut t = first;
    for g in Generator::new(GeneratorConfig {
        users: 500,
        merchants: 40,
        rate_per_second: 0,
        count: ROUND,
        seed: 300 + round,
        fraud_ratio: fraud,
    }) {
        let mut v: Value = serde_json::from_slice(&g.json).unwrap();
        v["transaction_id"] =
            (v["transaction_id"].as_i64().unwrap() + round as i64 * 1_000_000).into();
        v["transaction_time"] = format_ms(t).into();
        t += STEP_MS;
        send_retrying(
            &producer,
            topic,
            &v["user_id"].to_string(),
            &serde_json::to_vec(&v).unwrap(),
        );
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    t
}

/// Transactions of new users, each `(partition, transaction_id, event time)`,
/// into the given input partitions.
fn produce_at(bootstrap: &str, topic: &str, records: &[(i32, i64, i64)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (partition, id, t) in records {
        let payload = format!(
            r#"{{"transaction_id":{id},"user_id":{},"amount":"12.50","merchant_id":7,"transaction_time":"{}"}}"#,
            900_000_000 + id,
            format_ms(*t)
        );
        let key = id.to_string();
        send_record_retrying(
            &producer,
            BaseRecord::to(topic)
                .partition(*partition)
                .key(key.as_bytes())
                .payload(payload.as_bytes()),
        );
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The ⌈q·n⌉-th smallest.
fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn windows_exactly_once_across_kill_nine_and_rescale() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    let (metrics_topic, alerts_topic) = (unique("metrics"), unique("alerts"));
    let audit = format!("{decisions}-audit");
    create_topics(
        &bootstrap,
        &[
            &input,
            &decisions,
            &dead,
            &audit,
            &metrics_topic,
            &alerts_topic,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("win"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk"),
    );
    edit_manifest(
        &m,
        "    audit:\n",
        &format!(
            "    metrics:\n      kafka:\n        topic: {metrics_topic}\n    alerts:\n      kafka:\n        topic: {alerts_topic}\n    audit:\n"
        ),
    );
    // Restarts on this shared machine can take many seconds: a killed worker's
    // partitions must not count as idle meanwhile.
    edit_manifest(
        &m,
        "  checkpoints:\n",
        "  monitoring:\n    idleTimeout: 60s\n  checkpoints:\n",
    );
    // Event times of an hour ago, on a minute boundary, so the windows are whole.
    let t0 = (chrono::Utc::now().timestamp_millis() - 3_600_000).div_euclid(300_000) * 300_000;
    let mut next_t = t0;
    let mut produced = 0usize;
    let mut rng = SmallRng::seed_from_u64(13);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Each worker decides one record a millisecond at most, so kills land mid-stream.
    let slow = [("RISKPIPE_FAULT_INJECTION", "slow_record:1")];
    let mut kills = 0;
    // (replicas, kills, fraud ratio: round 2 rejects more, so it alerts)
    for (round, (replicas, round_kills, fraud)) in [(2u32, 5, 0.05), (3, 3, 0.45), (1, 2, 0.05)]
        .into_iter()
        .enumerate()
    {
        next_t = produce_round(&bootstrap, &input, round as u64, fraud, next_t);
        produced += ROUND as usize;
        let start = |o: u32, env: &[(&str, &str)]| {
            let http = (o == 0 && replicas == 1).then_some(addr.as_str());
            start_worker_env(
                &m,
                &dir.path().join(format!("state-r{round}-w{o}")),
                o,
                replicas,
                http,
                None,
                env,
            )
        };
        let mut workers: Vec<Worker> = (0..replicas).map(|o| start(o, &slow)).collect();
        for k in 0..round_kills {
            std::thread::sleep(Duration::from_millis(rng.random_range(1_000..2_500)));
            let merger_crash = round == 0 && k == 1;
            let victim = if merger_crash {
                0
            } else {
                rng.random_range(0..replicas) as usize
            };
            workers.remove(victim).kill9();
            kills += 1;
            eprintln!("round {round}: kill -9 #{kills} (worker {victim})");
            if merger_crash {
                // The merger (worker 0) dies right before its third commit.
                let armed = [(
                    "RISKPIPE_FAULT_INJECTION",
                    "slow_record:1,merger_before_commit:3",
                )];
                let mut w = start(0, &armed);
                wait_for(
                    "the merger's injected crash",
                    Duration::from_secs(120),
                    || w.child.try_wait().unwrap().is_some(),
                );
                eprintln!("round {round}: the merger died before its commit");
            }
            workers.insert(victim, start(victim as u32, &slow));
        }
        let seen = read_committed(&bootstrap, &decisions, produced, Duration::from_secs(300));
        assert!(
            seen.len() >= produced,
            "round {round}: {} of {produced} decisions",
            seen.len()
        );
        if replicas > 1 {
            for w in workers {
                w.terminate(); // SIGTERM: final checkpoint, the partitions move
            }
        } else {
            // The last round's worker runs on: it closes the windows below.
            let last_t = next_t - STEP_MS;
            // One record per partition two minutes after the stream: the
            // watermark passes every window of the stream.
            let close_t = last_t + 120_000;
            let closing: Vec<_> = (0..PARTITIONS)
                .map(|p| (p, 5_000_000 + p as i64, close_t))
                .collect();
            produce_at(&bootstrap, &input, &closing);
            let worker = workers.pop().unwrap();
            let last_minute = last_t.div_euclid(60_000) * 60_000;
            let perf_windows = ((last_minute - t0) / 60_000 + 1) as usize;
            let health_windows = ((close_t - 10_000 - t0) / 300_000) as usize;
            let want = perf_windows + health_windows;
            let records =
                read_committed(&bootstrap, &metrics_topic, want, Duration::from_secs(120));
            let alerts = read_committed(&bootstrap, &alerts_topic, 0, Duration::from_secs(10));
            // A record of a written minute, into partition 3: late, counted.
            produce_at(&bootstrap, &input, &[(3, 6_000_000, t0 + 30_000)]);
            wait_for("the late record counted", Duration::from_secs(60), || {
                metric(&addr, "riskpipe_worker_window_late_records_total") >= 1.0
            });
            assert_eq!(
                metric(&addr, "riskpipe_worker_window_late_records_total"),
                1.0
            );
            let out = read_committed(
                &bootstrap,
                &decisions,
                produced + PARTITIONS as usize + 1,
                Duration::from_secs(120),
            );
            worker.terminate();
            assert!(kills >= 10, "{kills} kills");
            assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
            check_windows(
                &out,
                &records,
                &alerts,
                t0,
                last_t,
                perf_windows,
                health_windows,
            );
            return;
        }
    }
    unreachable!("the last round returns");
}

/// Every window and alert record exactly once, equal to a recomputation from the
/// committed decisions of the stream (event times `t0..=last_t`).
fn check_windows(
    decisions: &[(String, Value)],
    records: &[(String, Value)],
    alerts: &[(String, Value)],
    t0: i64,
    last_t: i64,
    perf_windows: usize,
    health_windows: usize,
) {
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (k, _) in records.iter().chain(alerts) {
        *keys.entry(k.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "window or alert records twice: {dups:?}");
    let stream: Vec<&Value> = decisions
        .iter()
        // The late record (counted, in no window) is not part of the stream.
        .filter(|(k, _)| k != "6000000")
        .map(|(_, d)| d)
        .filter(|d| (t0..=last_t).contains(&event_ms(d)))
        .collect();
    let in_window = |start: i64, size: i64| -> Vec<&Value> {
        stream
            .iter()
            .copied()
            .filter(|d| (start..start + size).contains(&event_ms(d)))
            .collect()
    };
    let perf: BTreeMap<i64, &Value> = records
        .iter()
        .filter(|(_, v)| v["record_type"] == "performance")
        .map(|(_, v)| (v["window_start"].as_i64().unwrap(), v))
        .collect();
    let health: BTreeMap<i64, &Value> = records
        .iter()
        .filter(|(_, v)| v["record_type"] == "health")
        .map(|(_, v)| (v["window_start"].as_i64().unwrap(), v))
        .collect();
    let want_perf: Vec<i64> = (0..perf_windows as i64).map(|i| t0 + i * 60_000).collect();
    assert_eq!(perf.keys().copied().collect::<Vec<_>>(), want_perf);
    let want_health: Vec<i64> = (0..health_windows as i64)
        .map(|i| t0 + i * 300_000)
        .collect();
    assert_eq!(health.keys().copied().collect::<Vec<_>>(), want_health);
    let mut expected_alerts = Vec::new();
    for (start, w) in &perf {
        let rows = in_window(*start, 60_000);
        let n = rows.len() as f64;
        let count = |k: &str| rows.iter().filter(|d| d["final_decision"] == k).count() as u64;
        assert_eq!(w["total_transactions"], rows.len() as u64, "{start}");
        assert_eq!(w["rejected_count"], count("REJECT"), "{start}");
        assert_eq!(w["review_count"], count("MANUAL_REVIEW"), "{start}");
        assert_eq!(w["approved_count"], count("APPROVE"), "{start}");
        let rate = count("REJECT") as f64 / n;
        assert!((f(&w["rejection_rate"]) - rate).abs() < 1e-12, "{start}");
        let latency = rows
            .iter()
            .map(|d| f(&d["processing_latency_ms"]))
            .sum::<f64>()
            / n;
        assert!(
            (f(&w["avg_processing_latency_ms"]) - latency).abs() <= 1e-9 * latency.max(1.0),
            "{start}: {} vs {latency}",
            w["avg_processing_latency_ms"]
        );
        let high = rows
            .iter()
            .filter(|d| d["total_risk_score"].as_i64().unwrap() > 70)
            .count() as f64
            / n;
        assert!((f(&w["high_risk_ratio"]) - high).abs() < 1e-12, "{start}");
        if rate > 0.1 || latency > 1000.0 || high > 0.3 {
            expected_alerts.push(*start);
        }
    }
    let mut got_alerts: Vec<i64> = alerts
        .iter()
        .map(|(_, a)| a["window_start"].as_i64().unwrap())
        .collect();
    got_alerts.sort_unstable();
    assert!(!expected_alerts.is_empty(), "the fraud-heavy round alerts");
    assert_eq!(
        got_alerts, expected_alerts,
        "one alert per window meeting the condition"
    );
    for (start, h) in &health {
        let rows = in_window(*start, 300_000);
        assert_eq!(h["total_transactions"], rows.len() as u64, "health {start}");
        assert!((f(&h["tps"]) - rows.len() as f64 / 300.0).abs() < 1e-9);
        let mut sorted: Vec<f64> = rows
            .iter()
            .map(|d| f(&d["processing_latency_ms"]))
            .collect();
        sorted.sort_by(f64::total_cmp);
        for (field, q) in [("p95_latency", 0.95), ("p99_latency", 0.99)] {
            let (got, want) = (f(&h[field]), exact_quantile(&sorted, q));
            // The sketch's stated error: 1 % relative (plus whole-µs rounding).
            assert!(
                (got - want).abs() <= 0.01 * want + 0.0005,
                "health {start} {field}: {got} vs exact {want}"
            );
        }
        assert_eq!(h["error_count"], 0);
    }
}

/// A partition that never receives a record holds the windows back only for
/// `idleTimeout`: with partition 5 silent, every minute of the stream is written
/// once the merger has waited that long, and not before.
#[test]
fn a_silent_partition_holds_windows_only_for_the_idle_timeout() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    let metrics_topic = unique("metrics");
    let audit = format!("{decisions}-audit");
    create_topics(
        &bootstrap,
        &[&input, &decisions, &dead, &audit, &metrics_topic],
    );
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("idle"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk"),
    );
    edit_manifest(
        &m,
        "    audit:\n",
        &format!("    metrics:\n      kafka:\n        topic: {metrics_topic}\n    audit:\n"),
    );
    edit_manifest(
        &m,
        "  checkpoints:\n",
        "  monitoring:\n    idleTimeout: 8s\n  checkpoints:\n",
    );
    let t0 = (chrono::Utc::now().timestamp_millis() - 3_600_000).div_euclid(300_000) * 300_000;
    // Three minutes of event time into every partition but 5.
    let mut records = Vec::new();
    for i in 0..180 {
        for p in (0..PARTITIONS).filter(|p| *p != 5) {
            records.push((p, records.len() as i64 + 1, t0 + i * 1_000 + p as i64));
        }
    }
    produce_at(&bootstrap, &input, &records);
    let started = Instant::now();
    let worker = start_worker(&m, &dir.path().join("state"), 0, 1, None, None);
    let records = read_committed(&bootstrap, &metrics_topic, 2, Duration::from_secs(120));
    let waited = started.elapsed();
    worker.terminate();
    let perf: Vec<i64> = records
        .iter()
        .filter(|(_, v)| v["record_type"] == "performance")
        .map(|(_, v)| v["window_start"].as_i64().unwrap())
        .collect();
    // The watermark: the last second minus 10 s, so the first two minutes close.
    assert_eq!(perf, [t0, t0 + 60_000], "{records:?}");
    for (_, v) in &records {
        assert_eq!(v["total_transactions"], 7 * 60, "{v}");
    }
    assert!(
        waited >= Duration::from_secs(8),
        "written after {waited:?}: before partition 5 was idle"
    );
}
