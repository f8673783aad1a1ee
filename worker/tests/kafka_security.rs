//! The worker against the test environment's SASL_SSL broker (`e2e/env/parts/
//! kafka-secure.sh`: TLS with the environment's CA, SCRAM-SHA-512): the manifest's
//! `securitySecretRef` names a Secret folder under `--secrets-dir` whose keys are
//! librdkafka properties; decisions arrive; wrong credentials, a missing Secret and a
//! property outside security./sasl./ssl. are clear errors within a deadline.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use riskpipe_e2e::env::{TestEnv, keys};
use riskpipe_worker::local::generator::{Generator, GeneratorConfig};
use serde_json::Value;

const PARTITIONS: i32 = 2;
const SECRET: &str = "kafka-client";

/// The broker tests start a worker each: one at a time on a two-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where the SASL_SSL broker is and how to log in to it.
struct Secure {
    bootstrap: String,
    ca_path: PathBuf,
    mechanism: String,
    username: String,
    password: String,
}

impl Secure {
    fn load() -> Self {
        // `load` also fails when a part of the environment has died.
        let env = TestEnv::load().unwrap_or_else(|e| panic!("{e}"));
        let get = |k: &str| env.get(k).unwrap_or_else(|e| panic!("{e}")).to_owned();
        Secure {
            bootstrap: get(keys::KAFKA_SECURE_BOOTSTRAP),
            ca_path: PathBuf::from(get(keys::KAFKA_SECURE_CA)),
            mechanism: get(keys::KAFKA_SECURE_MECHANISM),
            username: get(keys::KAFKA_SECURE_USERNAME),
            password: get(keys::KAFKA_SECURE_PASSWORD),
        }
    }

    /// A client config for the test's own admin, producer and readers.
    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", &self.mechanism)
            .set("sasl.username", &self.username)
            .set("sasl.password", &self.password)
            .set("ssl.ca.location", self.ca_path.display().to_string());
        c
    }

    /// A Secret folder as the operator mounts it: one file per librdkafka property,
    /// the CA as PEM text (`ssl.ca.pem`), values with a trailing newline as
    /// `kubectl create secret --from-file` of `echo`ed files would have.
    fn write_secret(&self, secrets_dir: &Path, password: &str, extra: &[(&str, &str)]) {
        let folder = secrets_dir.join(SECRET);
        std::fs::create_dir_all(&folder).unwrap();
        let ca = std::fs::read_to_string(&self.ca_path).expect("the environment's CA");
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", self.mechanism.as_str()),
            ("sasl.username", self.username.as_str()),
            ("sasl.password", password),
            ("ssl.ca.pem", ca.as_str()),
        ]
        .iter()
        .chain(extra)
        {
            std::fs::write(folder.join(k), format!("{}\n", v.trim_end())).unwrap();
        }
    }
}

fn unique(name: &str) -> String {
    common::unique(name)
}

fn create_topics(secure: &Secure, topics: &[&str]) {
    common::create_topics_with(&secure.client(), topics, PARTITIONS);
}

/// Produces `count` generated transactions keyed by user_id; returns their ids.
fn produce(secure: &Secure, topic: &str, count: u64) -> HashSet<String> {
    let producer: BaseProducer = secure.client().create().expect("producer");
    let mut ids = HashSet::new();
    for g in Generator::new(GeneratorConfig {
        users: 50,
        merchants: 10,
        rate_per_second: 0,
        count,
        seed: 5,
        fraud_ratio: 0.05,
    }) {
        let v: Value = serde_json::from_slice(&g.json).unwrap();
        ids.insert(v["transaction_id"].to_string());
        let key = v["user_id"].to_string();
        producer
            .send(BaseRecord::to(topic).key(key.as_bytes()).payload(&g.json))
            .map_err(|(e, _)| e)
            .expect("produce");
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush to the SASL_SSL broker");
    ids
}

fn manifest(dir: &Path, name: &str, bootstrap: &str, input: &str, decisions: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: {name}\nspec:\n  source:\n    kafka:\n      bootstrapServers: \"{bootstrap}\"\n      topic: {input}\n      startupMode: earliest\n      maxBatchSize: 100\n      maxBatchDelay: 20ms\n      securitySecretRef:\n        name: {SECRET}\n  sinks:\n    decisions:\n      kafka:\n        topic: {decisions}\n    deadLetters:\n      kafka:\n        topic: {decisions}-dead\n  checkpoints:\n    interval: 1s\n    minPause: 1s\n    retain: 2\n    storage:\n      path: {}\n",
            dir.join("checkpoints").display()
        ),
    )
    .unwrap();
    path
}

/// The worker binary with its stderr captured line by line (and echoed).
struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Worker {
    fn start(manifest: &Path, dir: &Path, secrets: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_riskpipe-worker"))
            .arg("run")
            .arg("-f")
            .arg(manifest)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--secrets-dir")
            .arg(secrets)
            .env("RISKPIPE_LOG", "info")
            .env_remove("RISKPIPE_SECRETS_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start riskpipe-worker");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("worker: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// Waits until the worker exits or a stderr line satisfies `pred`; then reads
    /// what is left of stderr for a moment. Returns the exit status if it exited.
    fn wait_for(&mut self, deadline: Duration, pred: impl Fn(&str) -> bool) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            self.drain();
            if self.seen.iter().any(|l| pred(l)) {
                return None;
            }
            if let Some(status) = self.exited() {
                // Let the reader thread hand over the last lines.
                let quiet = Instant::now() + Duration::from_secs(2);
                while let Ok(line) = self
                    .lines
                    .recv_timeout(quiet.saturating_duration_since(Instant::now()))
                {
                    self.seen.push(line);
                }
                return Some(status);
            }
            assert!(
                Instant::now() < end,
                "the worker neither exited nor logged what was expected within {deadline:?}; \
                 stderr:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(mut self) -> ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "worker did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `topic` with read_committed over SASL_SSL until every id of `want` is
/// seen, while the worker runs; returns every record's key (duplicates included).
fn read_decisions(
    secure: &Secure,
    topic: &str,
    want: &HashSet<String>,
    worker: &mut Worker,
) -> Vec<(String, Value)> {
    let consumer = common::committed_reader(secure.client(), topic, PARTITIONS);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let end = Instant::now() + Duration::from_secs(180);
    while !want.iter().all(|id| seen.contains(id)) {
        if let Some(status) = worker.exited() {
            worker.drain();
            panic!(
                "the worker exited with {status} before every decision arrived ({} of {}); \
                 stderr:\n{}",
                seen.len(),
                want.len(),
                worker.seen.join("\n")
            );
        }
        assert!(
            Instant::now() < end,
            "only {} of {} decisions arrived within 180 s",
            seen.len(),
            want.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let value: Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON decision");
                seen.insert(key.clone());
                out.push((key, value));
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => worker.drain(),
        }
    }
    out
}

#[test]
fn decisions_flow_through_sasl_ssl_with_the_secret_folder() {
    let _serial = serial();
    let secure = Secure::load();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    secure.write_secret(&secrets, &secure.password, &[]);
    let input = unique("sec-in");
    let decisions = unique("sec-decisions");
    create_topics(&secure, &[&input, &decisions, &format!("{decisions}-dead")]);
    let ids = produce(&secure, &input, 300);
    let name = unique("secure");
    let manifest = manifest(dir.path(), &name, &secure.bootstrap, &input, &decisions);

    let mut worker = Worker::start(&manifest, dir.path(), &secrets);
    let out = read_decisions(&secure, &decisions, &ids, &mut worker);
    worker.drain();
    let status = worker.terminate();
    assert!(
        status.success(),
        "worker exited with {status} after SIGTERM"
    );

    assert_eq!(out.len(), ids.len(), "each decision exactly once");
    for (key, v) in &out {
        assert_eq!(&v["transaction_id"].to_string(), key);
        assert!(v["final_decision"].is_string(), "{v}");
    }
}

/// Starts a worker whose Secret folder holds `password` and, unless `with_ca`, no
/// `ssl.ca.pem`; it must exit non-zero within 60 s with a stderr line containing
/// every one of `expected` and never the password.
fn assert_broker_refuses(password: &str, with_ca: bool, expected: &[&str]) {
    let _serial = serial();
    let secure = Secure::load();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    secure.write_secret(&secrets, password, &[]);
    if !with_ca {
        std::fs::remove_file(secrets.join(SECRET).join("ssl.ca.pem")).unwrap();
    }
    let input = unique("sec-refused-in");
    create_topics(&secure, &[&input]);
    let manifest = manifest(
        dir.path(),
        &unique("refused"),
        &secure.bootstrap,
        &input,
        "unused",
    );

    let mut worker = Worker::start(&manifest, dir.path(), &secrets);
    let status = worker
        .wait_for(Duration::from_secs(60), |_| false)
        .expect("exited");
    assert!(
        !status.success(),
        "the worker exited 0 although the broker refused it"
    );
    let line = worker
        .seen
        .iter()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", worker.seen.join("\n")));
    for e in expected {
        assert!(line.contains(e), "expected {e:?} in {line}");
    }
    for l in &worker.seen {
        assert!(
            !l.contains(password),
            "the password appears in the log: {l}"
        );
    }
}

#[test]
fn wrong_password_is_a_named_authentication_error() {
    assert_broker_refuses(
        "not-the-password",
        true,
        &[
            "refused the TLS/SASL settings of Secret 'kafka-client'",
            "Authentication failed",
            "SCRAM-SHA-512",
        ],
    );
}

#[test]
fn unknown_ca_is_a_named_tls_error() {
    let password = Secure::load().password;
    assert_broker_refuses(
        &password,
        false,
        &[
            "refused the TLS/SASL settings of Secret 'kafka-client'",
            "SSL",
            "certificate verify failed",
        ],
    );
}

/// Runs the worker against a Secret folder that fails to load; it must exit non-zero
/// at once with a message containing every one of `expected`.
fn assert_refused(setup: impl FnOnce(&Path), expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    setup(&secrets);
    // No broker is contacted: the Secret is checked first.
    let manifest = manifest(dir.path(), "refused", "127.0.0.1:1", "in", "out");
    let mut worker = Worker::start(&manifest, dir.path(), &secrets);
    let status = worker
        .wait_for(Duration::from_secs(30), |_| false)
        .expect("exited");
    assert!(!status.success());
    let all = worker.seen.join("\n");
    for e in expected {
        assert!(all.contains(e), "expected {e:?} in:\n{all}");
    }
    assert!(
        !all.contains("hunter2"),
        "a secret value in the log:\n{all}"
    );
}

#[test]
fn missing_secret_folder_names_secret_and_folder() {
    assert_refused(
        |_| {},
        &[
            "spec.source.kafka.securitySecretRef",
            "Secret 'kafka-client' is not mounted",
            "/secrets/kafka-client",
        ],
    );
}

#[test]
fn property_outside_security_sasl_ssl_is_refused() {
    assert_refused(
        |secrets| {
            let folder = secrets.join(SECRET);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("security.protocol"), "SASL_SSL\n").unwrap();
            std::fs::write(folder.join("sasl.password"), "hunter2\n").unwrap();
            std::fs::write(folder.join("bootstrap.servers"), "evil:9092\n").unwrap();
        },
        &[
            "key 'bootstrap.servers'",
            "Secret 'kafka-client'",
            "not a TLS/SASL property",
        ],
    );
}
