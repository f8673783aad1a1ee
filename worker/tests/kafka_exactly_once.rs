//! The Kafka worker against the real broker of the test environment
//! (`e2e/env/up`): round trip, dead letters, kill -9 chaos, rescale through
//! checkpoints, and savepoint restore — each checked against an uninterrupted
//! recomputation with the engine itself.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

#[test]
fn round_trip_with_dead_letters() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    let mut huge = br#"{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 900 * 1024));
    huge.extend_from_slice(br#""}"#);
    let bad: [&[u8]; 4] = [
        b"{broken",
        &[0xff, 0x00, 0xfe],
        br#"{"transaction_id":1}"#,
        &huge,
    ];
    produce(&bootstrap, &input, 2_000, &bad);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("rt"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk"),
    );
    let worker = start_worker(
        &m,
        &dir.path().join("state"),
        0,
        1,
        Some("127.0.0.1:0"),
        None,
    );
    let out = read_committed(&bootstrap, &decisions, 2_000, Duration::from_secs(120));
    let dl = read_committed(&bootstrap, &dead, 4, Duration::from_secs(30));
    worker.terminate();
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
    let first = &out[0].1;
    for field in [
        "total_risk_score",
        "reason_codes",
        "decided_at",
        "processing_latency_ms",
        "pipeline",
        "rule_set_version",
    ] {
        assert!(first.get(field).is_some(), "decision lacks {field}");
    }
    assert_eq!(dl.len(), 4, "{dl:?}");
    let kinds: Vec<&str> = dl
        .iter()
        .map(|(_, v)| v["kind"].as_str().unwrap())
        .collect();
    for k in ["malformed_json", "missing_field"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let cut = dl
        .iter()
        .find(|(_, v)| v["raw_truncated"] == true)
        .expect("the huge record's dead letter");
    assert_eq!(cut.1["raw_bytes"], 900 * 1024 + 10);
    assert!(
        dl.iter()
            .all(|(_, v)| v["partition"].is_i64() && v["offset"].is_i64())
    );
}

#[test]
fn kill_nine_ten_times_loses_and_duplicates_nothing() {
    let _serial = serial();
    let total = 200_000u64;
    let run = ChaosRun::start("chaos", total);
    let (m, state) = (run.manifest.clone(), run.state.clone());
    let mut rng = SmallRng::seed_from_u64(99);
    for kill in 0..10 {
        let worker = start_worker_env(&m, &state, 0, 1, None, None, &AUDIT_ENV);
        std::thread::sleep(Duration::from_millis(rng.random_range(800..2_500)));
        worker.kill9();
        eprintln!("kill -9 #{}", kill + 1);
    }
    let run = run.fed();
    let worker = start_worker_env(&m, &state, 0, 1, None, None, &AUDIT_ENV);
    let out = read_committed(
        &run.bootstrap,
        &run.decisions,
        total as usize,
        Duration::from_secs(600),
    );
    run.assert_outputs(worker, &out);
}

/// A chaos run: input, decisions, dead-letter and audit topics, a thread
/// producing `total` transactions into the input, and the pipeline manifest.
struct ChaosRun {
    bootstrap: String,
    input: String,
    decisions: String,
    audit: String,
    total: u64,
    manifest: std::path::PathBuf,
    state: std::path::PathBuf,
    feeder: Option<std::thread::JoinHandle<Vec<Vec<u8>>>>,
    _dir: tempfile::TempDir,
}

impl ChaosRun {
    fn start(name: &str, total: u64) -> Self {
        let bootstrap = bootstrap();
        let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
        let audit = format!("{decisions}-audit");
        create_topics(&bootstrap, &[&input, &decisions, &dead, &audit]);
        let (feed_bootstrap, feed_input) = (bootstrap.clone(), input.clone());
        let feeder = std::thread::spawn(move || produce(&feed_bootstrap, &feed_input, total, &[]));
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest(
            dir.path(),
            &unique(name),
            &bootstrap,
            &input,
            &decisions,
            &dead,
            &dir.path().join("chk"),
        );
        ChaosRun {
            state: dir.path().join("state"),
            bootstrap,
            input,
            decisions,
            audit,
            total,
            manifest,
            feeder: Some(feeder),
            _dir: dir,
        }
    }

    /// Waits until every input transaction is produced.
    fn fed(mut self) -> Self {
        if let Some(feeder) = self.feeder.take() {
            feeder.join().expect("producer thread");
        }
        self
    }

    /// Reads the audit topic, stops `worker`, and asserts every transaction_id
    /// exactly once in `decisions` and on the audit topic, with features equal
    /// to an uninterrupted run.
    fn assert_outputs(&self, worker: Worker, decisions: &[(String, serde_json::Value)]) {
        let audited = read_committed(
            &self.bootstrap,
            &self.audit,
            self.total as usize,
            Duration::from_secs(120),
        );
        worker.terminate();
        let reference = reference(&self.bootstrap, &self.input);
        assert_exactly_once_and_equal(decisions, &reference);
        assert_audit_exactly_once(&audited, &reference);
    }
}

#[test]
fn rescale_two_three_one_through_checkpoints() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");
    let m = manifest(
        dir.path(),
        &unique("rescale"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &chk,
    );
    let mut produced = 0usize;
    for (round, replicas) in [2u32, 3, 1].into_iter().enumerate() {
        // Each round gets fresh local folders: state moves only through checkpoints.
        produced += 3_000;
        produce_more(&bootstrap, &input, round as u64);
        let workers: Vec<Worker> = (0..replicas)
            .map(|o| {
                start_worker(
                    &m,
                    &dir.path().join(format!("state-r{round}-w{o}")),
                    o,
                    replicas,
                    None,
                    None,
                )
            })
            .collect();
        let seen = read_committed(&bootstrap, &decisions, produced, Duration::from_secs(180));
        assert!(
            seen.len() >= produced,
            "round {round}: {} of {produced} decisions",
            seen.len()
        );
        for w in workers {
            w.terminate(); // SIGTERM: final checkpoint of the owned partitions
        }
    }
    let out = read_committed(&bootstrap, &decisions, produced, Duration::from_secs(60));
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
}

#[test]
fn savepoint_wipe_restore_continue() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    produce_more(&bootstrap, &input, 0);
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("sp"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk-unused"),
    );
    let state = dir.path().join("state");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let worker = start_worker(&m, &state, 0, 1, Some(&addr), None);
    let _ = read_committed(&bootstrap, &decisions, 3_000, Duration::from_secs(120));
    let sp_dir = dir.path().join("savepoint-1");
    let body = format!("{{\"path\":\"{}\"}}", sp_dir.display());
    let created: Value = http_json("POST", &addr, "/savepoints", Some(&body));
    let id = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: Value = http_json("GET", &addr, &format!("/savepoints/{id}"), None);
        if s["state"] == "completed" {
            break;
        }
        assert_ne!(s["state"], "failed", "{s}");
        assert!(Instant::now() < deadline, "savepoint not completed: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status: Value = http_json("GET", &addr, "/status", None);
    assert_eq!(
        status["ownedPartitions"].as_array().unwrap().len(),
        PARTITIONS as usize
    );
    let metrics = http_text(&addr, "/metrics");
    assert!(
        metrics.contains("riskpipe_worker_decisions_total"),
        "{metrics}"
    );
    worker.kill9();
    std::fs::remove_dir_all(&state).unwrap();
    produce_more(&bootstrap, &input, 1);
    let worker = start_worker(&m, &state, 0, 1, None, Some(&sp_dir));
    let out = read_committed(&bootstrap, &decisions, 6_000, Duration::from_secs(180));
    worker.terminate();
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
}

/// Stops the test environment's broker (SIGTERM, a controlled shutdown), keeps
/// it down for `down_for`, starts it again with the same command line and data,
/// and waits until it answers metadata requests.
fn bounce_broker(bootstrap: &str, down_for: Duration) {
    use std::os::unix::process::CommandExt;
    let env = riskpipe_e2e::env::TestEnv::load().unwrap_or_else(|e| panic!("{e}"));
    let pid_file = std::path::Path::new(env.get("RISKPIPE_ENV_PID_DIR").unwrap()).join("kafka.pid");
    let log = std::path::Path::new(env.get("RISKPIPE_ENV_LOG_DIR").unwrap()).join("kafka.log");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    let target = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::kill_process(target, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the broker did not stop within 90 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("broker stopped; down for {down_for:?}");
    // The outage itself: a fixed time on purpose, not a wait for a condition.
    std::thread::sleep(down_for);
    let out = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    // The broker outlives this test (the environment's `down` stops it), so it
    // is never waited for here.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(&cmdline[0])
        .args(&cmdline[1..])
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("restart the broker");
    std::fs::write(&pid_file, child.id().to_string()).unwrap();
    let probe: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        use rdkafka::consumer::Consumer;
        let up = probe
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| m.brokers().len() == 1 && !m.topics().is_empty());
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker did not come back within 120 s"
        );
    }
    eprintln!("broker back");
}

#[test]
fn broker_stopped_and_restarted_mid_stream() {
    let _serial = serial();
    let total = 60_000u64;
    let run = ChaosRun::start("bounce", total);
    let (bootstrap, decisions) = (run.bootstrap.clone(), run.decisions.clone());
    let (m, state) = (run.manifest.clone(), run.state.clone());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut worker = start_worker_env(&m, &state, 0, 1, Some(&addr), None, &AUDIT_ENV);
    // The broker goes away while decisions are flowing (not once the stream is
    // decided): as soon as 5,000 records are done, and the rest still to do.
    wait_for("5,000 records decided", Duration::from_secs(120), || {
        progress(&addr) >= 5_000
    });
    let at_bounce = progress(&addr);
    bounce_broker(&bootstrap, Duration::from_secs(8));
    assert!(
        at_bounce < total as i64,
        "the stream was already decided when the broker went away ({at_bounce} of {total})"
    );
    let run = run.fed();
    // Like Kubernetes: a worker that gave up during the outage is started again.
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    let out = loop {
        if let Ok(Some(status)) = worker.child.try_wait() {
            restarts += 1;
            eprintln!("worker exited during the outage ({status}); restarting it");
            assert!(
                restarts <= 3,
                "the worker keeps exiting after the broker is back"
            );
            worker = start_worker_env(&m, &state, 0, 1, None, None, &AUDIT_ENV);
        }
        let out = read_committed(
            &bootstrap,
            &decisions,
            total as usize,
            Duration::from_secs(20),
        );
        let distinct: std::collections::HashSet<&String> = out.iter().map(|(k, _)| k).collect();
        if distinct.len() >= total as usize {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} decisions 300 s after the broker came back",
            distinct.len()
        );
    };
    eprintln!("worker restarts after the bounce: {restarts}");
    run.assert_outputs(worker, &out);
}

/// Starts a worker whose manifest says `startup` instead of `startupMode:
/// earliest`, on a topic that already holds round 1; produces round 2 before
/// the worker starts or once it is ready; returns the transaction ids decided.
fn decided_with_startup(
    startup: impl FnOnce() -> String,
    round_two_first: bool,
) -> std::collections::BTreeSet<i64> {
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    produce_more(&bootstrap, &input, 1);
    let startup = startup();
    // Round 2 must be stamped strictly after the startup timestamp.
    let after = std::time::SystemTime::now() + Duration::from_millis(2);
    while std::time::SystemTime::now() < after {
        std::hint::spin_loop();
    }
    if round_two_first {
        produce_more(&bootstrap, &input, 2);
    }
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("startup"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk"),
    );
    let yaml = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, yaml.replace("startupMode: earliest", &startup)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let worker = start_worker(&m, &dir.path().join("state"), 0, 1, Some(&addr), None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_call("GET", &addr, "/readyz", None).0 != 200 {
        assert!(Instant::now() < deadline, "worker not ready within 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    if !round_two_first {
        produce_more(&bootstrap, &input, 2);
    }
    let out = read_committed(&bootstrap, &decisions, 3_000, Duration::from_secs(120));
    worker.terminate();
    out.iter().map(|(k, _)| k.parse::<i64>().unwrap()).collect()
}

#[test]
fn startup_modes_latest_and_timestamp_skip_what_came_before() {
    let _serial = serial();
    let round_two = |ids: &std::collections::BTreeSet<i64>| {
        assert_eq!(ids.len(), 3_000, "every round-2 transaction once");
        assert!(
            ids.iter().all(|id| (2_000_000..3_000_000).contains(id)),
            "a transaction from before the start position was decided"
        );
    };
    // Latest: what was there before the start is skipped.
    round_two(&decided_with_startup(
        || "startupMode: latest".to_owned(),
        false,
    ));
    // Timestamp: both rounds are there before the start; only the one stamped at
    // or after the timestamp is decided (earliest would take round 1 too, latest
    // neither).
    round_two(&decided_with_startup(
        || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            format!("startupMode: timestamp\n      startupTimestamp: {now}")
        },
        true,
    ));
}
