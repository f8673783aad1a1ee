//! Throughput benchmark: prints figures, asserts nothing.
//!
//! 1. Engine on one core: parse → decide → JSON, with state in RocksDB (flushed
//!    per micro-batch) for the seed's 1,000,000 users and 10,000 merchants.
//! 2. State size per user after compaction.
//! 3. Replay, file to file, as a whole process pinned to one core.
//!
//! Run: `scripts/bench.sh` (or `cargo bench -p riskpipe-worker --bench throughput`).
//! Environment: `RISKPIPE_BENCH_TX` (default 2,000,000), `RISKPIPE_BENCH_ROUNDS` (3).
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use riskpipe_worker::engine::dimensions::Dimensions;
use riskpipe_worker::engine::{DecisionWriter, Engine, EngineConfig, parse_transaction};
use riskpipe_worker::local::generator::{Generator, GeneratorConfig};
use riskpipe_worker::state::PartitionState;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n = env_usize("RISKPIPE_BENCH_TX", 2_000_000);
    let rounds = env_usize("RISKPIPE_BENCH_ROUNDS", 3);
    let cfg = GeneratorConfig {
        users: 1_000_000,
        merchants: 10_000,
        rate_per_second: 0,
        count: n as u64,
        seed: 42,
        fraud_ratio: 0.02,
    };
    eprintln!("generating {n} transactions (1,000,000 users, 10,000 merchants)…");
    let generator = Generator::new(cfg.clone());
    let dims = generator.dimensions();
    let records: Vec<Vec<u8>> = generator.map(|g| g.json).collect();
    let input_bytes: usize = records.iter().map(|r| r.len() + 1).sum();

    // 1. Engine with RocksDB state, one thread.
    let mut rates = Vec::new();
    let mut bytes_per_user = 0.0;
    for round in 0..rounds {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut state = PartitionState::open(&dir.path().join("p0"), 200_000).expect("open state");
        let engine = Engine::new(EngineConfig::default());
        let writer = DecisionWriter::new("bench", "v1");
        let mut out = Vec::with_capacity(2048);
        let mut sink = 0usize;
        let started = Instant::now();
        for (i, r) in records.iter().enumerate() {
            let tx = parse_transaction(r, engine.config().zone).expect("generated record is valid");
            let d = engine
                .decide(&tx, &dims as &dyn Dimensions, &mut state)
                .expect("decide");
            out.clear();
            writer.write(&d, &mut out);
            sink += out.len();
            if i % 1024 == 1023 {
                state
                    .flush(&[("position", &(i as u64).to_be_bytes())])
                    .expect("flush");
            }
        }
        state.flush(&[]).expect("flush");
        let secs = started.elapsed().as_secs_f64();
        let rate = n as f64 / secs;
        let stats = state.stats();
        println!(
            "engine round {round}: {n} tx in {secs:.2} s = {rate:.0} tx/s (cache hits {} misses {}, {} MiB of decisions)",
            stats.hits,
            stats.misses,
            sink >> 20
        );
        rates.push(rate);
        if round == 0 {
            state.compact().expect("compact");
            let users = state.count_users().max(1);
            bytes_per_user = state.approximate_bytes() as f64 / users as f64;
            println!(
                "state: {} users, {:.1} MiB on disk after compaction = {bytes_per_user:.0} bytes/user (merchant windows included)",
                users,
                state.approximate_bytes() as f64 / (1 << 20) as f64
            );
        }
    }
    println!(
        "ENGINE median: {:.0} tx/s on one thread, state in RocksDB",
        median(rates)
    );
    println!("STATE: {bytes_per_user:.0} bytes per user");

    // 3. Replay, file to file, whole process.
    let dir = tempfile::tempdir().expect("temp dir");
    let tx_path = dir.path().join("tx.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tx_path).expect("create"));
    for r in &records {
        f.write_all(r)
            .and_then(|()| f.write_all(b"\n"))
            .expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    let dims_dir = dir.path().join("dims");
    write_dimension_csvs(&dims_dir, &cfg);
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .canonicalize()
        .ok();
    let exe = std::env::var("RISKPIPE_WORKER_BIN")
        .ok()
        .or_else(|| bin.map(|b| b.join("release/riskpipe-worker").display().to_string()));
    let Some(exe) = exe.filter(|e| Path::new(e).exists()) else {
        println!(
            "REPLAY skipped: set RISKPIPE_WORKER_BIN to a release riskpipe-worker (scripts/bench.sh does)"
        );
        return;
    };
    let pin = Command::new("taskset").arg("--version").output().is_ok();
    let mut replay_rates = Vec::new();
    for round in 0..rounds {
        let out = dir.path().join("out.jsonl");
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", &exe]);
            c
        } else {
            Command::new(&exe)
        };
        cmd.env("RISKPIPE_LOG", "warn")
            .arg("replay")
            .arg("--transactions")
            .arg(&tx_path)
            .arg("--dimensions")
            .arg(&dims_dir)
            .arg("--out")
            .arg(&out);
        let started = Instant::now();
        let status = cmd.output().expect("run replay");
        let secs = started.elapsed().as_secs_f64();
        assert!(
            status.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let rate = n as f64 / secs;
        println!(
            "replay round {round}: {n} tx ({:.0} MiB in) in {secs:.2} s = {rate:.0} tx/s, whole process{}",
            input_bytes as f64 / (1 << 20) as f64,
            if pin { ", pinned to core 0" } else { "" }
        );
        replay_rates.push(rate);
    }
    println!(
        "REPLAY median: {:.0} tx/s file to file (includes loading 1,000,000 user profiles)",
        median(replay_rates)
    );
}

fn write_dimension_csvs(dir: &Path, cfg: &GeneratorConfig) {
    std::fs::create_dir_all(dir).expect("dims dir");
    let generator = Generator::new(cfg.clone());
    let dims = generator.dimensions();
    let mut users = std::io::BufWriter::new(
        std::fs::File::create(dir.join("user_risk_profiles.csv")).expect("csv"),
    );
    writeln!(
        users,
        "user_id,risk_score,risk_level,avg_daily_amount,max_single_amount"
    )
    .expect("csv");
    for u in 0..i64::from(cfg.users) {
        if let Some(p) = dims.user(u) {
            writeln!(
                users,
                "{u},{},{},{},{}",
                p.risk_score.unwrap_or(0),
                p.risk_level.as_deref().unwrap_or(""),
                p.avg_daily_amount
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                p.max_single_amount
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            )
            .expect("csv");
        }
    }
    users.flush().expect("csv");
    let mut merchants = std::io::BufWriter::new(
        std::fs::File::create(dir.join("merchant_risk_profiles.csv")).expect("csv"),
    );
    writeln!(
        merchants,
        "merchant_id,risk_level,fraud_rate,business_hours_start,business_hours_end"
    )
    .expect("csv");
    for m in 0..i64::from(cfg.merchants) {
        if let Some(p) = dims.merchant(m) {
            writeln!(
                merchants,
                "{m},{},{},{:02}:00:00,{:02}:00:00",
                p.risk_level.as_deref().unwrap_or(""),
                p.fraud_rate.map(|d| d.to_string()).unwrap_or_default(),
                p.business_hours_start.unwrap_or(0),
                p.business_hours_end.unwrap_or(23)
            )
            .expect("csv");
        }
    }
    merchants.flush().expect("csv");
}
