//! Property test: decisions made through the worker's real state store (RocksDB in
//! a temporary folder, a tiny write-back cache so users and merchants are evicted
//! between flushes) equal those made through the in-memory store and the window
//! features of the reference model, across flushes at random points, clean
//! restarts (flush, drop, reopen) and crashes (drop without a flush, reopen, replay
//! from the recorded offset, as the worker does after a crash).
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../engine/tests/support/windows_model.rs"]
mod windows_model;

use std::collections::HashSet;
use std::path::Path;

use proptest::prelude::*;
use riskpipe_engine::config::EngineConfig;
use riskpipe_engine::features::mean_and_stddev;
use riskpipe_engine::window::{Entry, value_hash};
use riskpipe_engine::{Cents, Decision, Engine, MemoryStore, StaticDimensions, Transaction};
use riskpipe_worker::state::PartitionState;
use windows_model::{Action, Model, Tx, cfg, stream_with};

fn text(prefix: &str, n: u64) -> Option<String> {
    (n != 0).then(|| format!("{prefix}{n}"))
}

fn transaction(tx: &Tx) -> Transaction {
    Transaction {
        transaction_id: tx.id,
        user_id: tx.user,
        amount: Cents(tx.cents),
        merchant_id: tx.merchant,
        transaction_type: None,
        event_time_ms: tx.time,
        ip_address: text("10.0.0.", tx.ip),
        device_id: text("device-", tx.device),
        location: text("city-", tx.location),
    }
}

/// The window entry the engine keeps for `t`.
fn entry(t: &Transaction) -> Entry {
    Entry {
        time: t.event_time_ms,
        id: t.transaction_id,
        cents: t.amount.0,
        ip: value_hash(t.ip_address.as_deref()),
        device: value_hash(t.device_id.as_deref()),
        location: value_hash(t.location.as_deref()),
    }
}

fn open(dir: &Path, cache: usize) -> Result<PartitionState, TestCaseError> {
    PartitionState::open(dir, cache).map_err(|e| TestCaseError::fail(format!("open: {e}")))
}

/// Checks the window fields of `d` against the model, which observes `t`.
fn check_windows(
    d: &Decision,
    t: &Transaction,
    model: &mut Model,
    cfg: &EngineConfig,
    at: usize,
) -> Result<(), TestCaseError> {
    let w = &cfg.windows;
    let e = entry(t);
    let user = model.users.entry(t.user_id).or_default().observe(e, w);
    let want = user.retained;
    if let Some(exact) = user.exact {
        prop_assert_eq!(want, exact, "tx {}: retention lost an entry", at);
    }
    prop_assert_eq!(d.txn_count_1h, want.short.count, "tx {} txn_count_1h", at);
    prop_assert_eq!(
        d.txn_amount_1h_cents,
        want.short.cents,
        "tx {} txn_amount_1h",
        at
    );
    prop_assert_eq!(
        d.distinct_ip_24h,
        want.distinct_ips,
        "tx {} distinct_ip_24h",
        at
    );
    prop_assert_eq!(
        d.distinct_device_24h,
        want.distinct_devices,
        "tx {} distinct_device_24h",
        at
    );
    prop_assert_eq!(
        d.small_amount_pattern,
        want.small_amount_pattern,
        "tx {} small",
        at
    );
    let (avg, stddev) =
        mean_and_stddev(want.feature.count, want.feature.cents, want.feature.squares);
    prop_assert_eq!(d.user_avg_amount_30d, avg, "tx {} user_avg_amount_30d", at);
    prop_assert_eq!(
        d.user_amount_stddev_30d,
        stddev,
        "tx {} user_amount_stddev_30d",
        at
    );
    let since = want
        .previous
        .map(|p| e.time.div_euclid(1000) - p.time.div_euclid(1000));
    prop_assert_eq!(
        d.time_since_last_txn,
        since,
        "tx {} time_since_last_txn",
        at
    );
    let ratio = want
        .previous
        .filter(|p| p.cents != 0)
        .map(|p| e.cents as f64 / p.cents as f64);
    prop_assert_eq!(
        d.amount_ratio_to_prev,
        ratio,
        "tx {} amount_ratio_to_prev",
        at
    );
    let (retained, exact, _) = model
        .merchants
        .entry(t.merchant_id)
        .or_default()
        .observe(e.time, e.id, e.cents, w);
    if let Some(exact) = exact {
        prop_assert_eq!(
            retained,
            exact,
            "tx {}: merchant retention lost an entry",
            at
        );
    }
    let (merchant_avg, _) = mean_and_stddev(retained.0, retained.1, 0);
    prop_assert_eq!(
        d.merchant_avg_amount_7d,
        merchant_avg,
        "tx {} merchant_avg_amount_7d",
        at
    );
    Ok(())
}

/// Runs `txs` through a real store with `cache` entries and through memory.
fn run(txs: &[Tx], cache: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let cfg = EngineConfig {
        windows: cfg(),
        ..EngineConfig::default()
    };
    let engine = Engine::new(cfg.clone());
    let dims = StaticDimensions::default();
    let mut state = Some(open(dir.path(), cache)?);
    let mut memory = MemoryStore::default();
    let mut model = Model::default();
    // The memory store and the model as of the last flush, and its offset.
    let mut flushed = (0usize, memory.clone(), model.clone());
    let mut crashed = HashSet::new();
    let flush = |state: &mut PartitionState, at: usize| {
        state
            .flush_at(at as i64)
            .map_err(|e| TestCaseError::fail(format!("flush: {e}")))
    };
    let mut i = 0;
    while i < txs.len() {
        let tx = &txs[i];
        let store = state
            .as_mut()
            .ok_or_else(|| TestCaseError::fail("no state"))?;
        match tx.action {
            Action::None => {}
            Action::Flush => {
                flush(store, i)?;
                flushed = (i, memory.clone(), model.clone());
            }
            Action::Reload => {
                flush(store, i)?;
                flushed = (i, memory.clone(), model.clone());
                // Closed before it is opened again (RocksDB's lock).
                drop(state.take());
                state = Some(open(dir.path(), cache)?);
            }
            Action::Crash if crashed.insert(i) => {
                // Unflushed changes are lost; replay from the recorded offset.
                drop(state.take());
                let reopened = open(dir.path(), cache)?;
                let next = reopened
                    .next_offset()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .unwrap_or(0);
                prop_assert_eq!(next, flushed.0 as i64, "crash before tx {}", i);
                state = Some(reopened);
                (memory, model) = (flushed.1.clone(), flushed.2.clone());
                i = flushed.0;
                continue;
            }
            Action::Crash => {}
        }
        let store = state
            .as_mut()
            .ok_or_else(|| TestCaseError::fail("no state"))?;
        let t = transaction(tx);
        let got = engine
            .decide(&t, &dims, store)
            .map_err(|e| TestCaseError::fail(format!("tx {i}: {e}")))?;
        let Ok(want) = engine.decide(&t, &dims, &mut memory);
        prop_assert_eq!(&got, &want, "tx {}: real store differs from memory", i);
        check_windows(&got, &t, &mut model, &cfg, i)?;
        i += 1;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Few users, a cache of 1 to 8 entries: nearly every lookup evicts a
    /// changed user or merchant before its flush.
    #[test]
    fn decisions_through_rocksdb_equal_memory_and_model(
        txs in stream_with(40, 3, 12, 1..300, [40, 3, 2, 1]),
        cache in 1usize..8,
    ) {
        run(&txs, cache)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3))]

    /// More users than the cache holds many times over between flushes (the
    /// production shape of eviction), with rare restarts and crashes.
    #[test]
    fn decisions_at_scale_through_a_small_cache(
        txs in stream_with(6_000, 3, 500, 6_000..8_000, [400, 6, 2, 1]),
        cache in 64usize..512,
    ) {
        run(&txs, cache)?;
    }
}
