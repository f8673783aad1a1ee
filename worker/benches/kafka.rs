//! Kafka benchmark (prints figures; not a test): one worker against the real
//! broker of the test environment (`e2e/env/up`).
//!
//! 1. Throughput: N transactions are produced first, then the worker starts; the
//!    figure is N divided by the time until every decision is visible to a
//!    read_committed consumer.
//! 2. Latency at a fixed rate (half the measured throughput by default): the
//!    producer stamps each record; the reader computes "produced → decision
//!    visible (read_committed)" for each decision; p50 / p99 / p99.9 are printed.
//!
//! Run: `scripts/bench-kafka.sh` (`RISKPIPE_BENCH_TX`, default 200,000;
//! `RISKPIPE_BENCH_WINDOWS=1` adds a metrics sink, so the SPEC §9 windows'
//! partials and merger run too: their cost is the difference).
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use riskpipe_worker::local::generator::{Generator, GeneratorConfig};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn main() {
    let env = riskpipe_e2e::env::TestEnv::load().unwrap_or_else(|e| panic!("{e}"));
    let bootstrap = env
        .get("KAFKA_BOOTSTRAP")
        .expect("KAFKA_BOOTSTRAP")
        .to_owned();
    let n: usize = std::env::var("RISKPIPE_BENCH_TX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let exe = std::env::var("RISKPIPE_WORKER_BIN")
        .expect("RISKPIPE_WORKER_BIN (scripts/bench-kafka.sh sets it)");
    let records: Vec<(String, Vec<u8>)> = Generator::new(GeneratorConfig {
        users: 1_000_000,
        merchants: 10_000,
        rate_per_second: 0,
        count: n as u64,
        seed: 5,
        fraud_ratio: 0.02,
    })
    .map(|g| {
        let v: serde_json::Value = serde_json::from_slice(&g.json).expect("json");
        (v["user_id"].to_string(), g.json)
    })
    .collect();

    let drain = run(&bootstrap, &exe, &records, None);
    let rate = drain.rate();
    println!(
        "KAFKA throughput: {rate:.0} tx/s with one worker (produce first, then drain); worker CPU {:.2} cores → {:.0} tx per worker-core-second; peak RSS {:.0} MiB",
        drain.worker_cpu_s / drain.wall_s,
        records.len() as f64 / drain.worker_cpu_s.max(1e-9),
        drain.peak_rss_mib
    );
    for (what, r) in [("half", rate / 2.0), ("a tenth of", rate / 10.0)] {
        let r = r.max(100.0);
        let mut latencies = run(&bootstrap, &exe, &records, Some(r)).latencies;
        latencies.sort_unstable();
        let q =
            |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "KAFKA latency at {what} that rate, {r:.0} tx/s (produced → decision visible, read_committed): p50 {} ms  p99 {} ms  p99.9 {} ms  ({} samples)",
            q(0.5),
            q(0.99),
            q(0.999),
            latencies.len()
        );
    }
}

/// What one run measured.
struct Run {
    records: usize,
    wall_s: f64,
    /// CPU seconds (user + system) the worker process used while measured.
    worker_cpu_s: f64,
    /// The worker's peak resident memory, MiB.
    peak_rss_mib: f64,
    /// Produced → decision visible, ms (runs at a fixed rate only).
    latencies: Vec<i64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.records as f64 / self.wall_s
    }
}

/// A process's peak resident set (`VmHWM` of `/proc/PID/status`), KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds a process has used so far (`/proc/PID/stat` utime + stime, in
/// the kernel's fixed 100 ticks per second).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the line; 12 and 13 after "pid (name)".
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits until the worker answers `/readyz` with 200 (its partitions are open
/// and assigned), so start-up time is not counted as throughput or latency.
fn wait_ready(addr: std::net::SocketAddr, worker: &mut std::process::Child) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = worker.try_wait() {
            panic!("the worker exited before it was ready: {status}");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let mut answer = String::new();
            let asked = s.write_all(b"GET /readyz HTTP/1.0\r\nHost: bench\r\n\r\n");
            let read = asked.and_then(|()| s.read_to_string(&mut answer));
            if read.is_ok() && answer.split(' ').nth(1) == Some("200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the worker was not ready within 120 s");
}

/// Runs one worker over the records; with a rate, produces while it runs.
/// Returns what it measured.
fn run(bootstrap: &str, exe: &str, records: &[(String, Vec<u8>)], rate: Option<f64>) -> Run {
    let tag = format!("{}-{}", std::process::id(), now_ms());
    let (input, decisions, dead, metrics) = (
        format!("bench-tx-{tag}"),
        format!("bench-dec-{tag}"),
        format!("bench-dl-{tag}"),
        format!("bench-met-{tag}"),
    );
    let windows = std::env::var("RISKPIPE_BENCH_WINDOWS").is_ok_and(|v| v == "1");
    let metrics_sink = if windows {
        format!("    metrics:\n      kafka:\n        topic: {metrics}\n")
    } else {
        String::new()
    };
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topics: Vec<NewTopic<'_>> = [&input, &decisions, &dead, &metrics]
        .iter()
        .map(|t| NewTopic::new(t, 8, TopicReplication::Fixed(1)))
        .collect();
    for r in rt
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .expect("create topics")
    {
        r.expect("topic");
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let send = |key: &str, payload: &[u8]| {
        let mut rec = BaseRecord::to(&input).key(key.as_bytes()).payload(payload);
        loop {
            match producer.send(rec) {
                Ok(()) => return,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    };
    if rate.is_none() {
        for (k, r) in records {
            send(k, r);
        }
        producer.flush(Duration::from_secs(120)).expect("flush");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let manifest = dir.path().join("bench.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: bench-{tag}\nspec:\n  source:\n    kafka:\n      bootstrapServers: \"{bootstrap}\"\n      topic: {input}\n      startupMode: earliest\n  sinks:\n    decisions:\n      kafka:\n        topic: {decisions}\n    deadLetters:\n      kafka:\n        topic: {dead}\n{metrics_sink}"),
    )
    .expect("manifest");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut worker = Command::new(exe)
        .args(["run", "-f"])
        .arg(&manifest)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--http-addr")
        .arg(http.to_string())
        .env(
            "RISKPIPE_LOG",
            std::env::var("RISKPIPE_BENCH_WORKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("worker");
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-reader-{tag}"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("reader");
    reader.subscribe(&[&decisions]).expect("subscribe");
    wait_ready(http, &mut worker);
    let started = Instant::now();
    let cpu_before = cpu_seconds(worker.id());
    let mut produced_at: HashMap<i64, i64> = HashMap::new();
    let mut next = 0usize;
    let mut seen = 0usize;
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    while seen < records.len() && Instant::now() < deadline {
        if let Some(r) = rate {
            let due = (started.elapsed().as_secs_f64() * r) as usize;
            while next < records.len().min(due) {
                let (k, payload) = &records[next];
                produced_at.insert(next as i64 + 1, now_ms());
                send(k, payload);
                next += 1;
            }
            producer.poll(Duration::ZERO);
        }
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(1)) {
            seen += 1;
            if rate.is_some() {
                let id: i64 = std::str::from_utf8(m.key().unwrap_or_default())
                    .ok()
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(0);
                if let Some(t) = produced_at.remove(&id) {
                    latencies.push(now_ms() - t);
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let worker_cpu_s = cpu_seconds(worker.id()) - cpu_before;
    let peak_rss_mib = peak_rss_kib(worker.id()) as f64 / 1024.0;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(
        seen,
        records.len(),
        "not every decision arrived within 15 minutes"
    );
    Run {
        records: records.len(),
        wall_s: secs,
        worker_cpu_s,
        peak_rss_mib,
        latencies,
    }
}
