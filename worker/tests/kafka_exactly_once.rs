//! The Kafka worker against the real broker of the test environment
//! (`e2e/env/up`): round trip, dead letters, kill -9 chaos, rescale through
//! checkpoints, and savepoint restore — each checked against an uninterrupted
//! recomputation with the engine itself.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use riskpipe_worker::engine::{
    Engine, EngineConfig, MemoryStore, StaticDimensions, parse_transaction,
};
use riskpipe_worker::generator::{Generator, GeneratorConfig};
use serde_json::Value;

const PARTITIONS: i32 = 8;

/// These tests each run several workers on a two-core machine: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bootstrap() -> String {
    let env = riskpipe_e2e::env::TestEnv::load().unwrap_or_else(|e| panic!("{e}"));
    env.get("KAFKA_BOOTSTRAP")
        .unwrap_or_else(|e| panic!("{e}"))
        .to_owned()
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

fn create_topics(bootstrap: &str, topics: &[&str]) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Sends one record, waiting while the producer's queue is full.
fn send_retrying(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    let mut rec = BaseRecord::to(topic).key(key.as_bytes()).payload(payload);
    loop {
        match producer.send(rec) {
            Ok(()) => return,
            Err((_, back)) => {
                rec = back;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Produces generated transactions keyed by user_id, plus `bad` malformed records.
fn produce(bootstrap: &str, topic: &str, count: u64, bad: &[&[u8]]) -> Vec<Vec<u8>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    let records: Vec<Vec<u8>> = Generator::new(GeneratorConfig {
        users: 2_000,
        merchants: 100,
        rate_per_second: 0,
        count,
        seed: 11,
        fraud_ratio: 0.05,
    })
    .map(|g| g.json)
    .collect();
    for r in &records {
        let v: Value = serde_json::from_slice(r).unwrap();
        let key = v["user_id"].to_string();
        send_retrying(&producer, topic, &key, r);
    }
    for (i, b) in bad.iter().enumerate() {
        let key = format!("bad-{i}");
        producer
            .send(BaseRecord::to(topic).key(key.as_bytes()).payload(*b))
            .map_err(|(e, _)| e)
            .expect("produce bad record");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    records
}

fn manifest(
    dir: &Path,
    name: &str,
    bootstrap: &str,
    input: &str,
    decisions: &str,
    dead: &str,
    checkpoints: &Path,
) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: {name}\nspec:\n  source:\n    kafka:\n      bootstrapServers: \"{bootstrap}\"\n      topic: {input}\n      startupMode: earliest\n      maxBatchSize: 500\n      maxBatchDelay: 20ms\n  sinks:\n    decisions:\n      kafka:\n        topic: {decisions}\n    deadLetters:\n      kafka:\n        topic: {dead}\n  checkpoints:\n    interval: 1s\n    minPause: 1s\n    retain: 2\n    storage:\n      path: {}\n",
            checkpoints.display()
        ),
    )
    .unwrap();
    path
}

struct Worker {
    child: Child,
}

fn start_worker(
    manifest: &Path,
    state: &Path,
    ordinal: u32,
    replicas: u32,
    http: Option<&str>,
    restore: Option<&Path>,
) -> Worker {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskpipe-worker"));
    cmd.arg("run")
        .arg("-f")
        .arg(manifest)
        .arg("--state-dir")
        .arg(state)
        .args([
            "--ordinal",
            &ordinal.to_string(),
            "--replicas",
            &replicas.to_string(),
        ])
        .env("RISKPIPE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(addr) = http {
        cmd.args(["--http-addr", addr]);
    }
    if let Some(sp) = restore {
        cmd.arg("--restore-from").arg(sp);
    }
    Worker {
        child: cmd.spawn().expect("start riskpipe-worker"),
    }
}

impl Worker {
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    fn terminate(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "worker exited with {status} after SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "worker did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reads a topic with read_committed until `want` distinct keys or the deadline;
/// returns every record as (key, value) — duplicates included.
fn read_committed(
    bootstrap: &str,
    topic: &str,
    want: usize,
    deadline: Duration,
) -> Vec<(String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut keys = std::collections::HashSet::new();
    let end = Instant::now() + deadline;
    let mut quiet_since = Instant::now();
    while Instant::now() < end {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value: Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON output");
                keys.insert(key.clone());
                out.push((key, value));
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if keys.len() >= want && quiet_since.elapsed() > Duration::from_secs(2) => break,
            None => {}
        }
    }
    out
}

/// What an uninterrupted run decides: the engine over each partition's records
/// in offset order (read back from the input topic), one state per partition.
fn reference(bootstrap: &str, topic: &str) -> HashMap<String, Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("ref"))
        .create()
        .expect("consumer");
    let mut by_partition: BTreeMap<i32, Vec<Vec<u8>>> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        while (got.len() as i64) < high - low {
            if let Some(Ok(m)) = consumer.poll(Duration::from_secs(5)) {
                got.push(m.payload().unwrap_or_default().to_vec());
            }
        }
        by_partition.insert(p, got);
    }
    let engine = Engine::new(EngineConfig {
        pipeline: "ref".to_owned(),
        ..EngineConfig::default()
    });
    let writer = riskpipe_worker::engine::DecisionWriter::new("ref", "v1");
    let dims = StaticDimensions::default();
    let mut out = HashMap::new();
    for records in by_partition.values() {
        let mut store = MemoryStore::default();
        for r in records {
            if let Ok(tx) = parse_transaction(r, engine.config().zone) {
                let d = engine.decide(&tx, &dims, &mut store).unwrap();
                out.insert(
                    tx.transaction_id.to_string(),
                    serde_json::from_str(&writer.to_json(&d)).unwrap(),
                );
            }
        }
    }
    out
}

const FEATURES: [&str; 12] = [
    "txn_count_1h",
    "txn_amount_1h",
    "distinct_ip_24h",
    "distinct_device_24h",
    "small_amount_pattern",
    "user_avg_amount_30d",
    "user_amount_stddev_30d",
    "merchant_avg_amount_7d",
    "time_since_last_txn",
    "amount_ratio_to_prev",
    "geo_risk",
    "final_decision",
];

fn assert_exactly_once_and_equal(out: &[(String, Value)], reference: &HashMap<String, Value>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (k, _) in out {
        *seen.entry(k.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated decisions: {dups:?}");
    let missing: Vec<_> = reference
        .keys()
        .filter(|k| !seen.contains_key(k.as_str()))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "missing decisions ({} of {}): {missing:?}",
        reference.len() - seen.len().min(reference.len()),
        reference.len()
    );
    assert_eq!(seen.len(), reference.len());
    for (k, v) in out {
        let r = &reference[k];
        for f in FEATURES {
            assert_eq!(
                v[f], r[f],
                "transaction {k}: {f} differs from an uninterrupted run"
            );
        }
    }
}

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
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(&bootstrap, &[&input, &decisions, &dead]);
    let total = 200_000u64;
    let producer_bootstrap = bootstrap.clone();
    let producer_input = input.clone();
    let feeder =
        std::thread::spawn(move || produce(&producer_bootstrap, &producer_input, total, &[]));
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("chaos"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk"),
    );
    let state = dir.path().join("state");
    let mut rng = SmallRng::seed_from_u64(99);
    for kill in 0..10 {
        let worker = start_worker(&m, &state, 0, 1, None, None);
        std::thread::sleep(Duration::from_millis(rng.random_range(800..2_500)));
        worker.kill9();
        eprintln!("kill -9 #{}", kill + 1);
    }
    feeder.join().expect("producer thread");
    let worker = start_worker(&m, &state, 0, 1, None, None);
    let out = read_committed(
        &bootstrap,
        &decisions,
        total as usize,
        Duration::from_secs(600),
    );
    worker.terminate();
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
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

fn produce_more(bootstrap: &str, topic: &str, round: u64) {
    // Distinct seeds per round but the same users, so windows span the rescales.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let generator = Generator::new(GeneratorConfig {
        users: 300,
        merchants: 20,
        rate_per_second: 0,
        count: 3_000,
        seed: 1000 + round,
        fraud_ratio: 0.05,
    });
    for g in generator {
        let v: Value = serde_json::from_slice(&g.json).unwrap();
        // Unique ids across rounds.
        let id = v["transaction_id"].as_i64().unwrap() + round as i64 * 1_000_000;
        let mut v = v;
        v["transaction_id"] = id.into();
        // Later rounds happen later in event time.
        let payload = serde_json::to_vec(&v).unwrap();
        let key = v["user_id"].to_string();
        send_retrying(&producer, topic, &key, &payload);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_raw(method: &str, addr: &str, path: &str, body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(mut s) => {
                let body = body.unwrap_or("");
                write!(
                    s,
                    "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                let mut text = String::new();
                s.read_to_string(&mut text).unwrap();
                return text
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_owned())
                    .unwrap_or_default();
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
    }
}

fn http_json(method: &str, addr: &str, path: &str, body: Option<&str>) -> Value {
    let text = http_raw(method, addr, path, body);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

fn http_text(addr: &str, path: &str) -> String {
    http_raw("GET", addr, path, None)
}
