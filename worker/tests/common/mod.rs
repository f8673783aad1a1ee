//! Helpers of the Kafka worker tests (`kafka_exactly_once`, `kafka_s3_snapshots`):
//! topics, producing generated transactions, running the worker binary, reading
//! outputs with read_committed, the uninterrupted reference run, and HTTP calls.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use riskpipe_worker::engine::{Engine, EngineConfig, MemoryStore, StaticDimensions};
use riskpipe_worker::local::generator::{Generator, GeneratorConfig};
use serde_json::Value;

/// Partitions of every test topic.
pub const PARTITIONS: i32 = 8;

/// These tests each run several workers on a two-core machine: one at a time.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the lock of [`SERIAL`] for one test.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The test environment's Kafka bootstrap address.
pub fn bootstrap() -> String {
    let env = riskpipe_e2e::env::TestEnv::load().unwrap_or_else(|e| panic!("{e}"));
    env.get("KAFKA_BOOTSTRAP")
        .unwrap_or_else(|e| panic!("{e}"))
        .to_owned()
}

/// A name no other test run uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Creates topics of [`PARTITIONS`] partitions.
pub fn create_topics(bootstrap: &str, topics: &[&str]) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    create_topics_with(&config, topics, PARTITIONS);
}

/// Creates topics of `partitions` partitions through an admin client made from
/// `config` (e.g. one with TLS/SASL settings).
pub fn create_topics_with(config: &ClientConfig, topics: &[&str], partitions: i32) {
    let admin: AdminClient<_> = config.create().expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin_call(|options| admin.create_topics(&new, options)).expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// Runs one admin request (with a 30 s operation timeout) to its end.
pub fn admin_call<F: std::future::Future>(request: impl FnOnce(&AdminOptions) -> F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    rt.block_on(request(&options))
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send_retrying(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) {
    send_record_retrying(
        producer,
        BaseRecord::to(topic).key(key.as_bytes()).payload(payload),
    );
}

/// Sends one prepared record (e.g. to a chosen partition), waiting while the
/// producer's queue is full.
pub fn send_record_retrying(producer: &BaseProducer, record: BaseRecord<'_, [u8], [u8]>) {
    let mut rec = record;
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
pub fn produce(bootstrap: &str, topic: &str, count: u64, bad: &[&[u8]]) -> Vec<Vec<u8>> {
    produce_with(
        bootstrap,
        topic,
        GeneratorConfig {
            users: 2_000,
            merchants: 100,
            rate_per_second: 0,
            count,
            seed: 11,
            fraud_ratio: 0.05,
        },
        bad,
    )
}

/// Produces what `generator` generates, keyed by user_id, plus `bad` records.
pub fn produce_with(
    bootstrap: &str,
    topic: &str,
    generator: GeneratorConfig,
    bad: &[&[u8]],
) -> Vec<Vec<u8>> {
    produce_from(bootstrap, topic, generator, 0, bad)
}

/// As [`produce_with`], with `id_base` added to every transaction_id (so
/// several rounds of one topic never share an id).
pub fn produce_from(
    bootstrap: &str,
    topic: &str,
    generator: GeneratorConfig,
    id_base: i64,
    bad: &[&[u8]],
) -> Vec<Vec<u8>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Idempotent: a broker restart mid-stream must not duplicate input records.
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    let records: Vec<Vec<u8>> = Generator::new(generator)
        .map(|g| {
            if id_base == 0 {
                return g.json;
            }
            let mut v: Value = serde_json::from_slice(&g.json).unwrap();
            v["transaction_id"] = (v["transaction_id"].as_i64().unwrap() + id_base).into();
            serde_json::to_vec(&v).unwrap()
        })
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

/// A pipeline manifest with checkpoints every second (two kept) in the folder
/// `checkpoints`.
pub fn manifest(
    dir: &Path,
    name: &str,
    bootstrap: &str,
    input: &str,
    decisions: &str,
    dead: &str,
    checkpoints: &Path,
) -> PathBuf {
    let snapshots = format!(
        "  checkpoints:\n    interval: 1s\n    minPause: 1s\n    retain: 2\n    storage:\n      path: {}\n",
        checkpoints.display()
    );
    manifest_with(dir, name, bootstrap, input, decisions, dead, &snapshots)
}

/// A pipeline manifest whose `spec` ends with `snapshots` (YAML indented by two
/// spaces: `checkpoints:` and `savepoints:`). Its audit topic is
/// `<decisions>-audit`; the audit log is on only for workers given [`AUDIT_ENV`].
pub fn manifest_with(
    dir: &Path,
    name: &str,
    bootstrap: &str,
    input: &str,
    decisions: &str,
    dead: &str,
    snapshots: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: {name}\nspec:\n  source:\n    kafka:\n      bootstrapServers: \"{bootstrap}\"\n      topic: {input}\n      startupMode: earliest\n      maxBatchSize: 500\n      maxBatchDelay: 20ms\n  sinks:\n    decisions:\n      kafka:\n        topic: {decisions}\n    deadLetters:\n      kafka:\n        topic: {dead}\n    audit:\n      kafka:\n        topic: {decisions}-audit\n{snapshots}"
        ),
    )
    .unwrap();
    path
}

/// Local-mode audit keys (SPEC §10) for a worker's environment.
pub const AUDIT_ENV: [(&str, &str); 3] = [
    (
        "RISKPIPE_AUDIT_ENCRYPTION_KEY",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ),
    ("RISKPIPE_AUDIT_ENCRYPTION_KEY_ID", "test-2026"),
    ("RISKPIPE_AUDIT_HMAC_KEY", "an hmac key for the tests"),
];

/// Asserts one audit record per reference decision, each with the decision's
/// outcome, its user_id only encrypted (decrypting to the decision's user) and
/// the IP masked.
pub fn assert_audit_exactly_once(audit: &[(String, Value)], reference: &HashMap<String, Value>) {
    let keys = riskpipe_worker::audit::AuditKeys::new(
        AUDIT_ENV[1].1,
        AUDIT_ENV[0].1.as_bytes(),
        AUDIT_ENV[2].1.as_bytes(),
    )
    .expect("audit keys");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (k, v) in audit {
        *seen.entry(k.as_str()).or_default() += 1;
        let r = reference
            .get(k)
            .unwrap_or_else(|| panic!("audit record {k} has no decision"));
        assert_eq!(v["risk_decision"], r["final_decision"], "audit {k}");
        assert_eq!(v["operation_type"], "RISK_ASSESSMENT");
        let token = v["user_id"].as_str().expect("encrypted user_id");
        assert!(token.starts_with("test-2026:"), "{token}");
        let tx_id: i64 = k.parse().expect("numeric key");
        let user = keys.decrypt_user_id(token, tx_id).expect("decrypts");
        assert_eq!(Some(user), r["user_id"].as_i64(), "audit {k}");
        assert!(!v.to_string().contains(&format!("\"user_id\":{user}")));
        if let Some(ip) = v["ip_address"].as_str() {
            assert!(
                ip.ends_with("*.*") || ip.starts_with("***"),
                "unmasked ip {ip}"
            );
        }
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated audit records: {dups:?}");
    assert_eq!(seen.len(), reference.len(), "audit records missing");
}

/// A running worker process.
pub struct Worker {
    /// The process.
    pub child: Child,
}

/// Starts `riskpipe-worker run` on `manifest`.
pub fn start_worker(
    manifest: &Path,
    state: &Path,
    ordinal: u32,
    replicas: u32,
    http: Option<&str>,
    restore: Option<&Path>,
) -> Worker {
    start_worker_env(manifest, state, ordinal, replicas, http, restore, &[])
}

/// As [`start_worker`], with extra environment variables.
pub fn start_worker_env(
    manifest: &Path,
    state: &Path,
    ordinal: u32,
    replicas: u32,
    http: Option<&str>,
    restore: Option<&Path>,
    env: &[(&str, &str)],
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
        // RISKPIPE_TEST_WORKER_LOG=info shows the workers' progress (checkpoints, restores).
        .env(
            "RISKPIPE_LOG",
            std::env::var("RISKPIPE_TEST_WORKER_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .envs(env.iter().copied())
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

/// A worker still running when its test panics is killed, not left behind.
impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Worker {
    /// SIGKILL, then reaps the process.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// SIGTERM; asserts a clean exit within 60 s.
    pub fn terminate(mut self) {
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

/// A read_committed consumer of `topic`'s `partitions` from their beginning,
/// made from `config` (e.g. one with TLS/SASL settings).
pub fn committed_reader(mut config: ClientConfig, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = config
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Reads a topic with read_committed until `want` distinct keys or the deadline;
/// returns every record as (key, value) — duplicates included.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    want: usize,
    deadline: Duration,
) -> Vec<(String, Value)> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let consumer = committed_reader(config, topic, PARTITIONS);
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
pub fn reference(bootstrap: &str, topic: &str) -> HashMap<String, Value> {
    reference_all(bootstrap, topic)
        .into_iter()
        .filter_map(|(k, mut v)| v.pop().map(|last| (k, last)))
        .collect()
}

/// As [`reference`], with every decision of a transaction_id delivered more
/// than once, in delivery order.
pub fn reference_all(bootstrap: &str, topic: &str) -> HashMap<String, Vec<Value>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("ref"))
        .create()
        .expect("consumer");
    // Each partition's records: payload and Kafka timestamp, in offset order.
    type Records = Vec<(Vec<u8>, Option<i64>)>;
    let mut by_partition: BTreeMap<i32, Records> = BTreeMap::new();
    let partitions = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap()
        .topics()[0]
        .partitions()
        .len() as i32;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let mut next = low;
        while next < high {
            if let Some(Ok(m)) = consumer.poll(Duration::from_secs(5)) {
                next = m.offset() + 1;
                got.push((
                    m.payload().unwrap_or_default().to_vec(),
                    m.timestamp().to_millis(),
                ));
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
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for records in by_partition.values() {
        let mut store = MemoryStore::default();
        for (r, ts) in records {
            let input = riskpipe_worker::record::Input::whole(r, *ts);
            if let Ok(tx) = riskpipe_worker::record::parse(&input, &engine) {
                let d = engine.decide(&tx, &dims, &mut store).unwrap();
                out.entry(tx.transaction_id.to_string())
                    .or_default()
                    .push(serde_json::from_str(&writer.to_json(&d)).unwrap());
            }
        }
    }
    out
}

/// The decision fields compared with the reference run.
pub const FEATURES: [&str; 12] = [
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

/// Every reference transaction decided exactly once, with the reference's features.
pub fn assert_exactly_once_and_equal(out: &[(String, Value)], reference: &HashMap<String, Value>) {
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

/// Produces 3,000 more transactions of the same 300 users (ids unique per round).
pub fn produce_more(bootstrap: &str, topic: &str, round: u64) {
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

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; returns the body (retries connecting for 30 s).
pub fn http_raw(method: &str, addr: &str, path: &str, body: Option<&str>) -> String {
    http_call(method, addr, path, body).1
}

/// One HTTP/1.1 request; returns the status code and the body (retries connecting
/// for 30 s).
pub fn http_call(method: &str, addr: &str, path: &str, body: Option<&str>) -> (u16, String) {
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
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let body = text
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_owned())
                    .unwrap_or_default();
                return (status, body);
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
    }
}

/// One HTTP request whose answer is JSON.
pub fn http_json(method: &str, addr: &str, path: &str, body: Option<&str>) -> Value {
    let text = http_raw(method, addr, path, body);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
}

/// `GET path` as text.
pub fn http_text(addr: &str, path: &str) -> String {
    http_raw("GET", addr, path, None)
}

/// Waits for `what` until `deadline`, polling every 100 ms.
pub fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < end, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A worker's `/status`, or `None` while it does not answer.
pub fn status(addr: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// The sum of the owned partitions' next offsets in `/status` (records done).
pub fn progress(addr: &str) -> i64 {
    status(addr).map_or(0, |st| {
        st["partitions"].as_array().map_or(0, |ps| {
            ps.iter().filter_map(|p| p["nextOffset"].as_i64()).sum()
        })
    })
}

/// A metric's value from a worker's `/metrics` (0 when absent).
pub fn metric(addr: &str, name: &str) -> f64 {
    http_text(addr, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Copies a folder tree (a worker's state) to `to`, which must not exist.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Replaces the folder `dir` with a copy of `with`.
pub fn replace_dir(dir: &Path, with: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    copy_dir(with, dir);
}

/// Deletes every record before `before(partition, low, high)` in each partition
/// of `topic` (as retention would), returning the new oldest offsets.
pub fn delete_records_before(
    bootstrap: &str,
    topic: &str,
    before: impl Fn(i32, i64, i64) -> i64,
) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        tpl.add_partition_offset(topic, p, Offset::Offset(before(p, low, high)))
            .unwrap();
    }
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let done = admin_call(|options| admin.delete_records(&tpl, options)).expect("delete records");
    done.elements()
        .iter()
        .map(|e| {
            assert!(
                e.error().is_ok(),
                "deleting records of {}: {:?}",
                e.partition(),
                e.error()
            );
            (e.partition(), e.offset().to_raw().unwrap())
        })
        .collect()
}

/// Grows `topic` to `partitions` partitions.
pub fn add_partitions(bootstrap: &str, topic: &str, partitions: usize) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let grow = rdkafka::admin::NewPartitions::new(topic, partitions);
    for r in
        admin_call(|options| admin.create_partitions([&grow], options)).expect("create partitions")
    {
        r.expect("partitions added");
    }
}

/// Puts `metadata.namespace: namespace` into a manifest written by [`manifest_with`].
pub fn set_namespace(manifest: &Path, namespace: &str) {
    let yaml = std::fs::read_to_string(manifest).unwrap();
    let yaml = yaml.replacen(
        "metadata:\n",
        &format!("metadata:\n  namespace: {namespace}\n"),
        1,
    );
    std::fs::write(manifest, yaml).unwrap();
}

/// Replaces `from` with `to` in a manifest.
pub fn edit_manifest(manifest: &Path, from: &str, to: &str) {
    let yaml = std::fs::read_to_string(manifest).unwrap();
    assert!(yaml.contains(from), "the manifest has no {from:?}");
    std::fs::write(manifest, yaml.replacen(from, to, 1)).unwrap();
}
