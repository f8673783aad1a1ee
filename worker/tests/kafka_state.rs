//! State that stays right at scale, against the real broker of the test
//! environment (`e2e/env/up`): large catch-ups through a small state cache,
//! stale local folders, retention passing a needed offset, start positions,
//! partitions added while running, namespaces, a crash landed at every step of
//! the record path, the final checkpoint on SIGTERM, restores that fall back to
//! checkpoints, and a local database that does not open.
//!
//! Every run is checked against an uninterrupted recomputation with the engine
//! (`common::reference`): every transaction_id exactly once (read_committed),
//! every window feature equal.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use riskpipe_worker::local::generator::GeneratorConfig;
use serde_json::Value;

/// One pipeline under test: its topics, manifest and state folders.
struct Pipeline {
    bootstrap: String,
    input: String,
    decisions: String,
    dead: String,
    manifest: PathBuf,
    dir: tempfile::TempDir,
}

impl Pipeline {
    /// Topics and a manifest whose `spec` ends with `snapshots` (see `manifest_with`).
    fn new(name: &str, snapshots: impl FnOnce(&Path) -> String) -> Self {
        let bootstrap = bootstrap();
        let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
        create_topics(
            &bootstrap,
            &[&input, &decisions, &dead, &format!("{decisions}-audit")],
        );
        let dir = tempfile::tempdir().unwrap();
        let snapshots = snapshots(dir.path());
        let manifest = manifest_with(
            dir.path(),
            &unique(name),
            &bootstrap,
            &input,
            &decisions,
            &dead,
            &snapshots,
        );
        Pipeline {
            bootstrap,
            input,
            decisions,
            dead,
            manifest,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Produces `count` transactions of `users` users; ids are unique per seed
    /// (seed × 10,000,000 is added), so later rounds never repeat an id.
    fn produce(&self, count: u64, users: u32, seed: u64, bad: &[&[u8]]) {
        produce_from(
            &self.bootstrap,
            &self.input,
            GeneratorConfig {
                users,
                merchants: 200,
                rate_per_second: 0,
                count,
                seed,
                fraud_ratio: 0.05,
            },
            seed as i64 * 10_000_000,
            bad,
        );
    }

    /// Starts worker `ordinal` of `replicas` on `state` with an HTTP endpoint;
    /// returns it and the endpoint's address.
    fn start(
        &self,
        state: &Path,
        ordinal: u32,
        replicas: u32,
        restore: Option<&Path>,
        env: &[(&str, &str)],
    ) -> (Worker, String) {
        let addr = format!("127.0.0.1:{}", free_port());
        let worker = start_worker_env(
            &self.manifest,
            state,
            ordinal,
            replicas,
            Some(&addr),
            restore,
            env,
        );
        (worker, addr)
    }

    /// Waits until the workers at `addrs` have handled `records` input offsets.
    fn wait_progress(&self, addrs: &[&str], records: i64) {
        wait_for(
            &format!("{records} records processed"),
            Duration::from_secs(600),
            || addrs.iter().map(|a| progress(a)).sum::<i64>() >= records,
        );
    }

    /// Reads every decision and asserts each exactly once, equal to an uninterrupted run.
    fn assert_decisions(&self, total: usize) -> HashMap<String, Value> {
        let out = read_committed(
            &self.bootstrap,
            &self.decisions,
            total,
            Duration::from_secs(600),
        );
        let reference = reference(&self.bootstrap, &self.input);
        assert_eq!(reference.len(), total, "the reference run");
        assert_exactly_once_and_equal(&out, &reference);
        reference
    }
}

/// Checkpoints every second into `DIR/chk`.
fn checkpoints(dir: &Path) -> String {
    format!(
        "  checkpoints:\n    interval: 1s\n    minPause: 1s\n    retain: 2\n    storage:\n      path: {}\n",
        dir.join("chk").display()
    )
}

/// No periodic checkpoints: only the final one on SIGTERM (interval one hour).
fn final_checkpoint_only(dir: &Path) -> String {
    format!(
        "  checkpoints:\n    interval: 1h\n    minPause: 1s\n    retain: 2\n    storage:\n      path: {}\n",
        dir.join("chk").display()
    )
}

/// Each partition's `/status` entry.
fn partitions(addr: &str) -> Vec<Value> {
    status(addr)
        .and_then(|st| st["partitions"].as_array().cloned())
        .unwrap_or_default()
}

/// Case 1: a replay of a large gap through a state cache far smaller than the
/// users it touches. A changed user evicted before its flush used to be read
/// back from RocksDB with its pre-batch value (and that older value written
/// last), losing updates for the whole window length.
#[test]
fn large_catch_up_through_a_small_cache_loses_no_update() {
    let _serial = serial();
    let total = 120_000u64;
    let p = Pipeline::new("catchup", final_checkpoint_only);
    let state = p.path("state");
    // 100 users per partition for 3,750 users per partition: eviction everywhere.
    let small = [("RISKPIPE_STATE_CACHE_ENTRIES", "800")];
    // 5 % of the stream, decided; the volume is copied then.
    p.produce(6_000, 30_000, 21, &[]);
    let (w, _) = p.start(&state, 0, 1, None, &small);
    w.terminate_after_all(&p, 6_000);
    let early = p.path("state-at-5pc");
    copy_dir(&state, &early);
    // Up to 70 %.
    p.produce(78_000, 30_000, 35, &[]);
    let (w, _) = p.start(&state, 0, 1, None, &small);
    w.terminate_after_all(&p, 84_000);
    // The volume holds what it held at 5 % (a partition that moved away and
    // back), and no checkpoint is newer (its storage was lost).
    replace_dir(&state, &early);
    std::fs::remove_dir_all(p.path("chk")).unwrap();
    p.produce(total - 84_000, 30_000, 36, &[]);
    let (w, addr) = p.start(&state, 0, 1, None, &small);
    p.assert_decisions(total as usize);
    let replayed = metric(&addr, "riskpipe_worker_caught_up_records_total");
    w.terminate();
    assert!(
        replayed >= 70_000.0,
        "the run must replay the gap into the state (replayed {replayed})"
    );
}

/// Case 2: a state folder left behind on a volume loses to a newer checkpoint,
/// and the folders of partitions a worker no longer owns are removed.
#[test]
fn stale_local_state_loses_to_a_newer_checkpoint() {
    let _serial = serial();
    let total = 40_000u64;
    let p = Pipeline::new("stale", checkpoints);
    p.produce(12_000, 5_000, 22, &[]);
    let state = p.path("state");
    let (w, _) = p.start(&state, 0, 1, None, &[]);
    w.terminate_after_all(&p, 12_000);
    let stale = p.path("state-stale");
    copy_dir(&state, &stale);
    p.produce(total - 12_000, 5_000, 37, &[]);
    let (w, _) = p.start(&state, 0, 1, None, &[]);
    w.terminate_after_all(&p, total);
    // Worker 0 of 2 gets the stale folder (all 8 partitions, 4 no longer its own).
    replace_dir(&state, &stale);
    let (w0, addr0) = p.start(&state, 0, 2, None, &[]);
    let (w1, addr1) = p.start(&p.path("state-1"), 1, 2, None, &[]);
    wait_for("both workers running", Duration::from_secs(120), || {
        partitions(&addr0).len() == 4 && partitions(&addr1).len() == 4
    });
    for part in partitions(&addr0) {
        let from = part["startSource"].as_str().unwrap_or_default();
        assert!(
            from.contains("chk-"),
            "partition {} resumed from {from:?}, not the newer checkpoint",
            part["partition"]
        );
    }
    assert_eq!(
        metric(&addr0, "riskpipe_worker_caught_up_records_total"),
        0.0,
        "nothing to replay: the checkpoint holds everything committed"
    );
    for odd in [1, 3, 5, 7] {
        assert!(
            !state.join(format!("partition-{odd:04}")).exists(),
            "the folder of partition {odd} (now worker 1's) is still there"
        );
    }
    p.produce(4_000, 5_000, 23, &[]);
    p.assert_decisions(total as usize + 4_000);
    w0.terminate();
    w1.terminate();
}

impl Worker {
    /// Waits until this worker (at its `/status`) and every other has decided
    /// `total` records, then stops it with SIGTERM.
    fn terminate_after_all(self, p: &Pipeline, total: u64) {
        let out = read_committed(
            &p.bootstrap,
            &p.decisions,
            total as usize,
            Duration::from_secs(600),
        );
        let distinct: std::collections::HashSet<&String> = out.iter().map(|(k, _)| k).collect();
        assert_eq!(distinct.len(), total as usize);
        self.terminate();
    }
}

/// Case 3: the offsets a partition must replay are gone (retention passed).
/// By default the partition stops and says what was lost and what to do;
/// with `onOffsetOutOfRange: earliest` it goes on and reports the loss.
#[test]
fn retention_passed_is_never_skipped_silently() {
    let _serial = serial();
    let total = 20_000u64;
    let p = Pipeline::new("retention", final_checkpoint_only);
    // 30 % first, decided and copied; then the rest.
    p.produce(6_000, 2_000, 24, &[]);
    let state = p.path("state");
    let (w, _) = p.start(&state, 0, 1, None, &[]);
    w.terminate_after_all(&p, 6_000);
    let stale = p.path("state-stale");
    copy_dir(&state, &stale);
    p.produce(total - 6_000, 2_000, 34, &[]);
    let (w, _) = p.start(&state, 0, 1, None, &[]);
    w.terminate_after_all(&p, total);
    // Only the stale state is left (no checkpoint newer than it).
    replace_dir(&state, &stale);
    std::fs::remove_dir_all(p.path("chk")).unwrap();
    // Retention removes the first 60 % of every partition.
    let lows = delete_records_before(&p.bootstrap, &p.input, |_, low, high| {
        low + (high - low) * 6 / 10
    });

    let (w, addr) = p.start(&state, 0, 1, None, &[]);
    wait_for("every partition stopped", Duration::from_secs(120), || {
        let parts = partitions(&addr);
        parts.len() == 8 && parts.iter().all(|p| p["stopped"].is_string())
    });
    for part in partitions(&addr) {
        let lost = &part["offsetOutOfRange"];
        let id = part["partition"].as_i64().unwrap() as i32;
        assert_eq!(lost["policy"], "fail", "{part}");
        assert_eq!(lost["lostTo"].as_i64(), Some(lows[&id]), "{part}");
        assert!(lost["lostFrom"].as_i64().unwrap() < lows[&id], "{part}");
        let why = part["stopped"].as_str().unwrap();
        assert!(
            why.contains("onOffsetOutOfRange") && why.contains("savepoint"),
            "{why}"
        );
    }
    assert!(
        metric(&addr, "riskpipe_worker_offsets_out_of_range_total") >= 8.0,
        "counted"
    );
    w.terminate();
    // A stopped partition records nothing: its state still says where it was.
    let (w, addr) = p.start(&state, 0, 1, None, &[]);
    wait_for(
        "every partition stopped again",
        Duration::from_secs(120),
        || {
            let parts = partitions(&addr);
            parts.len() == 8 && parts.iter().all(|p| p["stopped"].is_string())
        },
    );
    w.terminate();

    // Accepting the loss: the partitions go on from the oldest offset there.
    edit_manifest(
        &p.manifest,
        "startupMode: earliest",
        "startupMode: earliest\n      onOffsetOutOfRange: earliest",
    );
    let (w, addr) = p.start(&state, 0, 1, None, &[]);
    wait_for("every partition running", Duration::from_secs(120), || {
        let parts = partitions(&addr);
        parts.len() == 8
            && parts
                .iter()
                .all(|p| p["stopped"].is_null() && p["offsetOutOfRange"]["policy"] == "earliest")
    });
    p.produce(2_000, 2_000, 25, &[]);
    let out = read_committed(
        &p.bootstrap,
        &p.decisions,
        total as usize + 2_000,
        Duration::from_secs(300),
    );
    w.terminate();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (k, _) in &out {
        *seen.entry(k.as_str()).or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        total as usize + 2_000,
        "the new records decided"
    );
    assert!(seen.values().all(|n| *n == 1), "nothing decided twice");
}

/// Case 4: a partition that never processed a record keeps the start position
/// it resolved (`latest`) across a restart, instead of jumping to the new end.
#[test]
fn start_position_is_recorded_before_the_first_record() {
    let _serial = serial();
    let p = Pipeline::new("startpos", checkpoints);
    edit_manifest(&p.manifest, "startupMode: earliest", "startupMode: latest");
    p.produce(500, 300, 26, &[]);
    let state = p.path("state");
    let (w, addr) = p.start(&state, 0, 1, None, &[]);
    wait_for("partitions opened", Duration::from_secs(120), || {
        partitions(&addr).len() == 8
    });
    w.terminate();
    // While the worker is away, new transactions arrive: they must be decided.
    produce_more(&p.bootstrap, &p.input, 7);
    let (w, _) = p.start(&state, 0, 1, None, &[]);
    let out = read_committed(&p.bootstrap, &p.decisions, 3_000, Duration::from_secs(180));
    w.terminate();
    let ids: std::collections::BTreeSet<i64> =
        out.iter().map(|(k, _)| k.parse().unwrap()).collect();
    assert_eq!(out.len(), 3_000, "each new transaction exactly once");
    assert_eq!(ids.len(), 3_000);
    assert!(
        ids.iter().all(|id| (7_000_000..8_000_000).contains(id)),
        "only what came after the recorded start"
    );
}

/// Case 4: partitions added to the input topic while the workers run are taken
/// on by the worker the assignment rule names, from their beginning.
#[test]
fn partitions_added_while_running_are_taken_on() {
    let _serial = serial();
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    create_topics_with(&config, &[&input], 4);
    create_topics(
        &bootstrap,
        &[&decisions, &dead, &format!("{decisions}-audit")],
    );
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("grow"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk"),
    );
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let workers: Vec<Worker> = (0..2)
        .map(|o| {
            start_worker(
                &m,
                &dir.path().join(format!("state-{o}")),
                o,
                2,
                Some(&addrs[o as usize]),
                None,
            )
        })
        .collect();
    produce_more(&bootstrap, &input, 1);
    let first = read_committed(&bootstrap, &decisions, 3_000, Duration::from_secs(180));
    assert_eq!(first.len(), 3_000);
    add_partitions(&bootstrap, &input, 8);
    wait_for(
        "the new partitions taken on",
        Duration::from_secs(120),
        || addrs.iter().map(|a| partitions(a).len()).sum::<usize>() == 8,
    );
    for (o, a) in addrs.iter().enumerate() {
        let owned: Vec<i64> = partitions(a)
            .iter()
            .map(|p| p["partition"].as_i64().unwrap())
            .collect();
        assert!(
            owned.iter().all(|p| p % 2 == o as i64),
            "worker {o} owns {owned:?}"
        );
    }
    produce_more(&bootstrap, &input, 2);
    let out = read_committed(&bootstrap, &decisions, 6_000, Duration::from_secs(180));
    for w in workers {
        w.terminate();
    }
    let reference = reference(&bootstrap, &input);
    assert_exactly_once_and_equal(&out, &reference);
}

/// Case 5: two pipelines of one name in two namespaces, on one topic, each
/// decide everything once (no shared transactional ids, group or checkpoints);
/// and a pipeline from before namespaces were in its names moves on without a
/// gap or a repeat when its manifest gains the namespace.
#[test]
fn namespaces_keep_pipelines_of_one_name_apart() {
    let _serial = serial();
    let total = 10_000u64;
    let p = Pipeline::new("ns", checkpoints);
    let staging_decisions = unique("decisions-staging");
    create_topics(
        &p.bootstrap,
        &[&staging_decisions, &format!("{staging_decisions}-audit")],
    );
    let staging = p.path("staging.yaml");
    std::fs::copy(&p.manifest, &staging).unwrap();
    edit_manifest(
        &staging,
        &format!("topic: {}\n", p.decisions),
        &format!("topic: {staging_decisions}\n"),
    );
    set_namespace(&staging, "staging");
    set_namespace(&p.manifest, "prod");
    p.produce(total, 2_000, 27, &[]);
    let (prod, _) = p.start(&p.path("state-prod"), 0, 1, None, &[]);
    let stage = start_worker(&staging, &p.path("state-staging"), 0, 1, None, None);
    let reference = reference(&p.bootstrap, &p.input);
    let out = read_committed(
        &p.bootstrap,
        &p.decisions,
        total as usize,
        Duration::from_secs(300),
    );
    assert_exactly_once_and_equal(&out, &reference);
    let out = read_committed(
        &p.bootstrap,
        &staging_decisions,
        total as usize,
        Duration::from_secs(300),
    );
    assert_exactly_once_and_equal(&out, &reference);
    prod.terminate();
    stage.terminate();
}

/// Case 5, migration: offsets and checkpoints of a pipeline from before
/// namespaces were part of its identity are picked up by the namespaced one.
#[test]
fn a_pipeline_gaining_its_namespace_goes_on_without_gap_or_repeat() {
    let _serial = serial();
    let total = 20_000u64;
    let p = Pipeline::new("migrate", checkpoints);
    p.produce(total, 2_000, 28, &[]);
    let (w, addr) = p.start(&p.path("state"), 0, 1, None, &[]);
    p.wait_progress(&[&addr], 8_000);
    w.terminate();
    // The checkpoints where versions before per-pipeline folders wrote them.
    let root = p.path("chk").join("checkpoints");
    let own = root.join(p.manifest.file_stem().unwrap());
    for entry in std::fs::read_dir(&own).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), root.join(entry.file_name())).unwrap();
    }
    std::fs::remove_dir(&own).unwrap();
    // The upgraded worker on a fresh volume: only the legacy group's offsets and
    // the legacy checkpoints tell it where it was.
    set_namespace(&p.manifest, "prod");
    let (w, addr) = p.start(&p.path("state-new"), 0, 1, None, &[]);
    p.assert_decisions(total as usize);
    for part in partitions(&addr) {
        let from = part["startSource"].as_str().unwrap_or_default();
        assert!(from.contains("chk-"), "restored from {from:?}");
    }
    w.terminate();
}

/// A crash landed at each step of the record path (not at random), and a
/// commit that fails: every decision, audit record and dead letter exactly
/// once, every feature equal to an uninterrupted run.
#[test]
fn a_crash_at_every_step_of_the_record_path_loses_and_repeats_nothing() {
    let _serial = serial();
    let total = 30_000u64;
    let p = Pipeline::new("faults", checkpoints);
    let future = br#"{"transaction_id":990000001,"user_id":7,"amount":"12.00","merchant_id":3,"transaction_time":"2096-01-01 00:00:00"}"#;
    let bad: [&[u8]; 4] = [
        b"{broken",
        br#"{"transaction_id":2}"#,
        &[0xff, 0xfe],
        future,
    ];
    p.produce(total, 3_000, 29, &bad);
    let state = p.path("state");
    // Each crash comes within the first cycle (8 partitions × at most 500
    // records), so every step is reached whatever the machine's speed.
    for step in [
        "before_produce:2",
        "after_produce:2",
        "before_commit:2",
        "after_commit:2",
        "after_state_write:2",
    ] {
        let (mut w, _) = p.start(
            &state,
            0,
            1,
            None,
            &[&AUDIT_ENV[..], &[("RISKPIPE_FAULT_INJECTION", step)]].concat(),
        );
        wait_for(
            &format!("the worker to crash at {step}"),
            Duration::from_secs(180),
            || w.child.try_wait().unwrap().is_some(),
        );
        let code = w.child.wait().unwrap();
        assert!(
            !code.success(),
            "{step}: the worker must have aborted ({code})"
        );
        eprintln!("crashed at {step}");
    }
    // A failed commit: the transaction is aborted and the batch decided again.
    let (w, addr) = p.start(
        &state,
        0,
        1,
        None,
        &[
            &AUDIT_ENV[..],
            &[("RISKPIPE_FAULT_INJECTION", "fail_commit:1")],
        ]
        .concat(),
    );
    let reference = p.assert_decisions(total as usize);
    assert!(
        metric(&addr, "riskpipe_worker_errors_total") >= 1.0,
        "the injected commit failure was counted"
    );
    let audited = read_committed(
        &p.bootstrap,
        &format!("{}-audit", p.decisions),
        total as usize,
        Duration::from_secs(120),
    );
    assert_audit_exactly_once(&audited, &reference);
    let dead = read_committed(&p.bootstrap, &p.dead, 4, Duration::from_secs(60));
    w.terminate();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, v) in &dead {
        *kinds
            .entry(v["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(dead.len(), 4, "each dead letter exactly once: {kinds:?}");
    assert_eq!(kinds.get("future_event_time"), Some(&1), "{kinds:?}");
}

/// The final checkpoint on SIGTERM alone (no periodic one to cover for it)
/// holds every partition at its committed offset.
#[test]
fn sigterm_takes_a_final_checkpoint_that_holds_everything() {
    let _serial = serial();
    let total = 10_000u64;
    let p = Pipeline::new("final", final_checkpoint_only);
    p.produce(total, 1_000, 30, &[]);
    let (w, _) = p.start(&p.path("state"), 0, 1, None, &[]);
    w.terminate_after_all(&p, total);
    // A new volume: only the final checkpoint knows the windows.
    let (w, addr) = p.start(&p.path("state-new"), 0, 1, None, &[]);
    wait_for("partitions opened", Duration::from_secs(120), || {
        partitions(&addr).len() == 8
    });
    for part in partitions(&addr) {
        let from = part["startSource"].as_str().unwrap_or_default();
        assert!(from.contains("chk-"), "restored from {from:?}");
    }
    assert_eq!(
        metric(&addr, "riskpipe_worker_caught_up_records_total"),
        0.0,
        "the final checkpoint is at the committed offsets"
    );
    p.produce(2_000, 1_000, 31, &[]);
    p.assert_decisions(total as usize + 2_000);
    w.terminate();
}

/// Case 8: a savepoint that lacks a partition falls back to the newest
/// checkpoint holding it; a local database that does not open is restored
/// from a checkpoint instead of crash-looping.
#[test]
fn restores_fall_back_to_checkpoints() {
    let _serial = serial();
    let total = 12_000u64;
    let p = Pipeline::new("fallback", checkpoints);
    p.produce(total, 1_000, 32, &[]);
    let (w0, a0) = p.start(&p.path("s0"), 0, 2, None, &[]);
    let (w1, _) = p.start(&p.path("s1"), 1, 2, None, &[]);
    let out = read_committed(
        &p.bootstrap,
        &p.decisions,
        total as usize,
        Duration::from_secs(300),
    );
    assert_eq!(out.len(), total as usize);
    // A savepoint of worker 0's partitions only.
    let savepoint = p.path("sp");
    let body = format!(r#"{{"path":"{}"}}"#, savepoint.display());
    let created = http_json("POST", &a0, "/savepoints", Some(&body));
    let id = created["id"].as_str().expect("savepoint id").to_owned();
    wait_for("the savepoint", Duration::from_secs(60), || {
        http_json("GET", &a0, &format!("/savepoints/{id}"), None)["state"] == "completed"
    });
    w0.terminate();
    w1.terminate();
    // One fresh worker restores from it: the odd partitions come from checkpoints.
    let state = p.path("s-one");
    let (w, addr) = p.start(&state, 0, 1, Some(&savepoint), &[]);
    wait_for("partitions opened", Duration::from_secs(120), || {
        partitions(&addr).len() == 8
    });
    for part in partitions(&addr) {
        let id = part["partition"].as_i64().unwrap();
        let from = part["startSource"].as_str().unwrap_or_default();
        let want = if id % 2 == 0 {
            "/sp/partition-"
        } else {
            "/chk-"
        };
        assert!(from.contains(want), "partition {id} restored from {from:?}");
    }
    w.terminate();
    // Partition 0's database no longer opens.
    let db = state.join("partition-0000");
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("MANIFEST") || name == "CURRENT" {
            std::fs::write(&path, b"not a manifest").unwrap();
        }
    }
    let (w, addr) = p.start(&state, 0, 1, None, &[]);
    wait_for("partitions opened", Duration::from_secs(120), || {
        partitions(&addr).len() == 8
    });
    let p0 = partitions(&addr)
        .into_iter()
        .find(|x| x["partition"] == 0)
        .unwrap();
    assert!(
        p0["startSource"]
            .as_str()
            .unwrap_or_default()
            .contains("chk-"),
        "{p0}"
    );
    let aside = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("partition-0000.broken-")
        });
    assert!(aside, "the broken database is kept aside for inspection");
    p.produce(1_000, 1_000, 33, &[]);
    p.assert_decisions(total as usize + 1_000);
    w.terminate();
}

/// Case 6: a transaction delivered twice (same id, same time) counts once in
/// the merchant's window in memory as on disk, so a restart — the state read
/// back from RocksDB — changes no `merchant_avg_amount_7d`.
#[test]
fn duplicate_deliveries_count_once_across_a_restart() {
    let _serial = serial();
    let p = Pipeline::new("dups", checkpoints);
    let originals = produce_from(
        &p.bootstrap,
        &p.input,
        GeneratorConfig {
            users: 200,
            merchants: 20,
            rate_per_second: 0,
            count: 5_000,
            seed: 38,
            fraud_ratio: 0.05,
        },
        380_000_000,
        &[],
    );
    // Every tenth transaction again, as a producer retry without idempotence would.
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &p.bootstrap)
        .create()
        .unwrap();
    let again: Vec<&Vec<u8>> = originals.iter().step_by(10).collect();
    for r in &again {
        let v: Value = serde_json::from_slice(r).unwrap();
        send_retrying(&producer, &p.input, &v["user_id"].to_string(), r);
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    let state = p.path("state");
    let (w, _) = p.start(&state, 0, 1, None, &[]);
    w.terminate_after_all(&p, 5_000);
    // After the restart the merchants' windows come from RocksDB.
    p.produce(2_000, 200, 39, &[]);
    let (w, _) = p.start(&state, 0, 1, None, &[]);
    let out = read_committed(&p.bootstrap, &p.decisions, 7_000, Duration::from_secs(300));
    w.terminate();
    // Each delivery against the same delivery of an uninterrupted run (a late
    // second delivery may see other windows than the first).
    let reference = reference_all(&p.bootstrap, &p.input);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (k, v) in &out {
        let n = seen.entry(k.as_str()).or_default();
        let r = &reference[k][*n];
        *n += 1;
        for f in FEATURES {
            assert_eq!(
                v[f], r[f],
                "transaction {k}: {f} differs from an uninterrupted run"
            );
        }
    }
    assert_eq!(seen.len(), 7_000);
    let twice = seen.values().filter(|n| **n == 2).count();
    assert_eq!(twice, again.len(), "one decision per delivery");
    assert!(seen.values().all(|n| *n <= 2));
}

/// Produces `count` generated transactions (ids offset by `id_base`) into
/// partition 0 of `topic` only, so one partition holds more than the consumer
/// prefetches; returns their transaction_ids in offset order.
fn produce_to_partition_zero(
    bootstrap: &str,
    topic: &str,
    count: u64,
    id_base: i64,
) -> Vec<String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let generator = riskpipe_worker::local::generator::Generator::new(GeneratorConfig {
        users: 2_000,
        merchants: 200,
        rate_per_second: 0,
        count,
        seed: 41,
        fraud_ratio: 0.05,
    });
    let mut ids = Vec::with_capacity(count as usize);
    for g in generator {
        let mut v: Value = serde_json::from_slice(&g.json).unwrap();
        let id = v["transaction_id"].as_i64().unwrap() + id_base;
        v["transaction_id"] = id.into();
        let json = serde_json::to_vec(&v).unwrap();
        let key = v["user_id"].to_string();
        send_record_retrying(
            &producer,
            BaseRecord::to(topic)
                .partition(0)
                .key(key.as_bytes())
                .payload(&json[..]),
        );
        ids.push(id.to_string());
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    ids
}

/// Partition 0's `/status` entry.
fn partition_zero(addr: &str) -> Value {
    partitions(addr)
        .into_iter()
        .find(|p| p["partition"] == 0)
        .unwrap_or(Value::Null)
}

/// Case 3, while running: retention passes the position of a running worker
/// that has fallen behind (its prefetched input drained, the next fetch out of
/// range). Under `fail` the partition stops with the exact lost range and
/// decides nothing more; under `earliest` a running partition seeks to the
/// oldest offset and goes on. Each decided transaction exactly once.
#[test]
fn retention_passing_a_running_worker_is_never_skipped_silently() {
    let _serial = serial();
    let p = Pipeline::new("retention-live", final_checkpoint_only);
    let first = produce_to_partition_zero(&p.bootstrap, &p.input, 60_000, 0);
    let slow = [("RISKPIPE_FAULT_INJECTION", "slow_record:1")];
    let state = p.path("state");
    let (w, addr) = p.start(&state, 0, 1, None, &slow);
    p.wait_progress(&[&addr], 2_000);
    let lows = delete_records_before(
        &p.bootstrap,
        &p.input,
        |part, low, _| {
            if part == 0 { 50_000 } else { low }
        },
    );
    assert_eq!(lows[&0], 50_000);
    wait_for("partition 0 stopped", Duration::from_secs(120), || {
        partition_zero(&addr)["stopped"].is_string()
    });
    let part = partition_zero(&addr);
    let lost = &part["offsetOutOfRange"];
    assert_eq!(lost["policy"], "fail", "{part}");
    assert_eq!(lost["lostTo"].as_i64(), Some(50_000), "{part}");
    let stopped_at = lost["lostFrom"].as_i64().unwrap();
    assert!((2_000..50_000).contains(&stopped_at), "{part}");
    assert_eq!(part["nextOffset"].as_i64(), Some(stopped_at), "{part}");
    let why = part["stopped"].as_str().unwrap();
    assert!(
        why.contains(&format!("partition 0: offsets {stopped_at}..50000")),
        "the error names the partition and the lost range: {why}"
    );
    assert!(
        why.contains("onOffsetOutOfRange") && why.contains("savepoint"),
        "{why}"
    );
    assert!(metric(&addr, "riskpipe_worker_offsets_out_of_range_total") >= 1.0);
    // A stopped partition decides nothing more, however long the worker runs on.
    let still = progress(&addr);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        progress(&addr),
        still,
        "a stopped partition makes no progress"
    );
    w.terminate();
    let decided = |want: usize| {
        let out = read_committed(&p.bootstrap, &p.decisions, want, Duration::from_secs(120));
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (k, _) in out {
            *seen.entry(k).or_default() += 1;
        }
        seen
    };
    let seen = decided(stopped_at as usize);
    assert!(seen.values().all(|n| *n == 1), "nothing decided twice");
    // Exactly the records before the stop, none of the lost range.
    let expected: std::collections::HashSet<&String> =
        first[..stopped_at as usize].iter().collect();
    assert_same_ids(&seen, &expected, &first.iter().collect::<Vec<_>>());

    // Accepting the loss: the partition goes on from the oldest offset, and a
    // second retention pass while it runs moves it to the new oldest offset.
    edit_manifest(
        &p.manifest,
        "startupMode: earliest",
        "startupMode: earliest\n      onOffsetOutOfRange: earliest",
    );
    let second = produce_to_partition_zero(&p.bootstrap, &p.input, 60_000, 100_000_000);
    let (w, addr) = p.start(&state, 0, 1, None, &slow);
    p.wait_progress(&[&addr], 52_000);
    let part = partition_zero(&addr);
    assert_eq!(
        part["offsetOutOfRange"]["lostTo"].as_i64(),
        Some(50_000),
        "{part}"
    );
    delete_records_before(&p.bootstrap, &p.input, |part, low, _| {
        if part == 0 { 100_000 } else { low }
    });
    wait_for(
        "partition 0 moved past the second lost range",
        Duration::from_secs(120),
        || partition_zero(&addr)["offsetOutOfRange"]["lostTo"] == 100_000,
    );
    let part = partition_zero(&addr);
    let lost = &part["offsetOutOfRange"];
    assert!(part["stopped"].is_null(), "{part}");
    assert_eq!(lost["policy"], "earliest", "{part}");
    let skipped_from = lost["lostFrom"].as_i64().unwrap();
    assert!((52_000..100_000).contains(&skipped_from), "{part}");
    p.wait_progress(&[&addr], 120_000);
    w.terminate();
    let all: Vec<&String> = first.iter().chain(second.iter()).collect();
    let expected: std::collections::HashSet<&String> = all[..stopped_at as usize]
        .iter()
        .chain(all[50_000..skipped_from as usize].iter())
        .chain(all[100_000..].iter())
        .copied()
        .collect();
    let seen = decided(expected.len());
    assert!(seen.values().all(|n| *n == 1), "nothing decided twice");
    assert_same_ids(&seen, &expected, &all);
}

/// Asserts the decided ids are `expected`, naming the offsets that differ.
fn assert_same_ids(
    seen: &HashMap<String, usize>,
    expected: &std::collections::HashSet<&String>,
    by_offset: &[&String],
) {
    let offset_of: HashMap<&String, usize> = by_offset
        .iter()
        .enumerate()
        .map(|(o, id)| (*id, o))
        .collect();
    let mut missing: Vec<usize> = expected
        .iter()
        .filter(|id| !seen.contains_key(**id))
        .map(|id| offset_of[*id])
        .collect();
    let mut extra: Vec<usize> = seen
        .keys()
        .filter(|id| !expected.contains(id))
        .map(|id| offset_of.get(id).copied().unwrap_or(usize::MAX))
        .collect();
    missing.sort_unstable();
    extra.sort_unstable();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "decided ids differ: {} missing (offsets {:?} … {:?}), {} extra (offsets {:?} … {:?})",
        missing.len(),
        missing.first(),
        missing.last(),
        extra.len(),
        extra.first(),
        extra.last()
    );
}

/// Case 8: a micro-batch that takes longer than the transaction budget to
/// decide (slow lookups, a huge batch) is cut, so no transaction outlives
/// `transaction.timeout.ms`; the rest goes first into the next transaction.
/// A crash between the cut transactions' commits loses and repeats nothing.
#[test]
fn a_slow_batch_is_cut_to_keep_its_transaction_within_budget() {
    let _serial = serial();
    let p = Pipeline::new("txn-budget", checkpoints);
    // maxBatchSize 5,000: each partition's whole backlog is one micro-batch.
    edit_manifest(&p.manifest, "maxBatchSize: 500", "maxBatchSize: 5000");
    let total = 4_000u64;
    p.produce(total, 500, 43, &[]);
    let state = p.path("state");
    // 2 ms per record, a 150 ms budget: every 500-record batch is cut several times.
    let (mut w, _) = p.start(
        &state,
        0,
        1,
        None,
        &[(
            "RISKPIPE_FAULT_INJECTION",
            "slow_record:2,transaction_budget:150,after_commit:12",
        )],
    );
    wait_for(
        "the crash after the 12th commit",
        Duration::from_secs(120),
        || matches!(w.child.try_wait(), Ok(Some(_))),
    );
    drop(w);
    let (w, addr) = p.start(
        &state,
        0,
        1,
        None,
        &[(
            "RISKPIPE_FAULT_INJECTION",
            "slow_record:2,transaction_budget:150",
        )],
    );
    p.wait_progress(&[&addr], total as i64);
    let cuts = metric(&addr, "riskpipe_worker_transactions_cut_total");
    w.terminate();
    assert!(cuts >= 8.0, "batches were cut ({cuts} cuts)");
    p.assert_decisions(total as usize);
}
