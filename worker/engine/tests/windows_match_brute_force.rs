//! Property tests: the incremental windows equal a recomputation from scratch, for
//! random streams with out-of-order arrival (before every window's head, past the
//! allowed lateness and past the retention), gaps longer than the retention, ties
//! in time, redelivered duplicates of (time, id), null values, and state saved and
//! reloaded mid-stream the way the worker stores it (users through the codec,
//! merchants as one stored value per (time, id) written from the journal).
//!
//! Within the allowed lateness a transaction's features are exact over every
//! transaction seen (SPEC.md §4); beyond it they are computed over what the state
//! retains, which the model in `support/windows_model.rs` follows.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/windows_model.rs"]
mod windows_model;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use riskpipe_engine::codec;
use riskpipe_engine::config::WindowConfig;
use riskpipe_engine::merchant::{Journal, MerchantEntry, MerchantState};
use riskpipe_engine::window::{Entry, UserState};
use windows_model::{Action, Arrival, MerchantModel, UserModel, cfg, stream};

/// A merchant's entries as the worker's store holds them: one value per
/// (time, id), journals applied puts first, then deletes.
#[derive(Default)]
struct Disk(BTreeMap<(i64, i64), i64>);

impl Disk {
    fn apply(&mut self, journal: Journal) {
        for e in &journal.added {
            self.0.insert((e.time, e.id), e.cents);
        }
        for e in &journal.removed {
            self.0.remove(&(e.time, e.id));
        }
    }

    fn entries(&self) -> Vec<MerchantEntry> {
        self.0
            .iter()
            .map(|(&(time, id), &cents)| MerchantEntry { time, id, cents })
            .collect()
    }

    fn load(&mut self, cfg: &WindowConfig) -> MerchantState {
        let stored = self.entries();
        let retention = cfg.merchant_feature_ms + cfg.allowed_lateness_ms;
        let mut state =
            MerchantState::from_entries(stored.clone(), cfg.merchant_feature_ms, retention);
        // As the worker's load: what is past the retention already is deleted.
        for e in &stored[..stored.len() - state.entries().len()] {
            self.0.remove(&(e.time, e.id));
        }
        state.enable_journal();
        state
    }
}

fn reload_user(state: &UserState, cfg: &WindowConfig) -> UserState {
    let mut bytes = Vec::new();
    codec::encode_user(state, &mut bytes);
    codec::decode_user(&bytes, cfg).expect("own encoding decodes")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn user_windows_equal_recomputation(txs in stream(3, 3, 3, 1..250)) {
        let cfg = cfg();
        let mut states: HashMap<i64, UserState> = HashMap::new();
        let mut models: HashMap<i64, UserModel> = HashMap::new();
        for (i, tx) in txs.iter().enumerate() {
            let state = states.entry(tx.user).or_default();
            if matches!(tx.action, Action::Reload | Action::Crash) {
                *state = reload_user(state, &cfg);
            }
            let got = state.observe(tx.entry(), &cfg);
            let want = models.entry(tx.user).or_default().observe(tx.entry(), &cfg);
            prop_assert_eq!(got.short, want.retained.short, "tx {} short", i);
            prop_assert_eq!(got.feature, want.retained.feature, "tx {} feature", i);
            prop_assert_eq!(got.distinct_ips, want.retained.distinct_ips, "tx {} ips", i);
            prop_assert_eq!(got.distinct_devices, want.retained.distinct_devices, "tx {} devices", i);
            prop_assert_eq!(got.previous, want.retained.previous, "tx {} previous", i);
            prop_assert_eq!(got.small_amount_pattern, want.retained.small_amount_pattern, "tx {} small", i);
            if let Some(exact) = want.exact {
                prop_assert_eq!(want.retained, exact, "tx {}: the model's retention lost an entry", i);
            }
            // What the store would write now reads back to the same future.
            let reloaded: Vec<Entry> = reload_user(state, &cfg).entries().copied().collect();
            prop_assert_eq!(reloaded, state.entries().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn merchant_window_equals_recomputation(txs in stream(3, 3, 3, 1..250)) {
        let cfg = cfg();
        let retention = cfg.merchant_feature_ms + cfg.allowed_lateness_ms;
        let mut states: HashMap<i64, MerchantState> = HashMap::new();
        let mut disks: HashMap<i64, Disk> = HashMap::new();
        let mut models: HashMap<i64, MerchantModel> = HashMap::new();
        for (i, tx) in txs.iter().enumerate() {
            let state = states.entry(tx.merchant).or_insert_with(|| {
                let mut s = MerchantState::default();
                s.enable_journal();
                s
            });
            let disk = disks.entry(tx.merchant).or_default();
            if tx.action != Action::None {
                disk.apply(state.take_journal());
                // Memory matches disk after every flush.
                prop_assert_eq!(state.entries().copied().collect::<Vec<_>>(), disk.entries(), "tx {}", i);
                if tx.action != Action::Flush {
                    *state = disk.load(&cfg);
                }
            }
            let e = MerchantEntry { time: tx.time, id: tx.id, cents: tx.cents };
            let got = state.observe(e, cfg.merchant_feature_ms, retention);
            let (retained, exact, _) = models.entry(tx.merchant).or_default().observe(tx.time, tx.id, tx.cents, &cfg);
            prop_assert_eq!((got.count, got.cents), retained, "tx {}", i);
            if let Some(exact) = exact {
                prop_assert_eq!(retained, exact, "tx {}: the model's retention lost an entry", i);
            }
        }
    }
}

/// The generator reaches every branch the windows have: each kind of arrival
/// happens in a fixed sample of streams, for users and for merchants.
#[test]
fn the_generator_covers_every_kind_of_arrival() {
    let cfg = cfg();
    let mut runner = TestRunner::deterministic();
    let strategy = stream(3, 3, 3, 200..250);
    let mut users = BTreeSet::new();
    let mut merchants = BTreeSet::new();
    let mut actions = BTreeSet::new();
    for _ in 0..40 {
        let txs = strategy
            .new_tree(&mut runner)
            .expect("strategy generates")
            .current();
        let mut user_models: HashMap<i64, UserModel> = HashMap::new();
        let mut merchant_models: HashMap<i64, MerchantModel> = HashMap::new();
        for tx in &txs {
            let seen = user_models
                .entry(tx.user)
                .or_default()
                .observe(tx.entry(), &cfg);
            users.extend(seen.arrivals.into_iter().flatten());
            let (_, _, arrival) = merchant_models
                .entry(tx.merchant)
                .or_default()
                .observe(tx.time, tx.id, tx.cents, &cfg);
            merchants.extend(arrival);
            actions.insert(format!("{:?}", tx.action));
        }
    }
    use Arrival::*;
    let all_users = [
        First,
        InOrder,
        TieAtFrontier,
        LateInShort,
        BeforeShortHead,
        BeforeDistinctHead,
        BeforeFeatureHead,
        PastAllowedLateness,
        PastRetention,
        AfterLongGap,
        Duplicate,
        DuplicateBeforeHead,
        EqualTime,
    ];
    let missing: Vec<_> = all_users.iter().filter(|a| !users.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "user arrivals never generated: {missing:?}"
    );
    let all_merchants = [
        InOrder,
        BeforeFeatureHead,
        PastRetention,
        AfterLongGap,
        Duplicate,
    ];
    let missing: Vec<_> = all_merchants
        .iter()
        .filter(|a| !merchants.contains(a))
        .collect();
    assert!(
        missing.is_empty(),
        "merchant arrivals never generated: {missing:?}"
    );
    assert_eq!(actions.len(), 4, "{actions:?}");
}

#[test]
fn old_entries_leave_state() {
    let cfg = cfg();
    let mut state = UserState::default();
    for i in 0..1000 {
        state.observe(
            Entry {
                time: i * 1000,
                id: i,
                cents: 1,
                ip: 0,
                device: 0,
                location: 0,
            },
            &cfg,
        );
    }
    // Retention is 60 s + 20 s lateness at one transaction per second, plus the
    // two older transactions kept for "previous" features.
    assert!(
        state.entries().len() <= 83,
        "kept {}",
        state.entries().len()
    );
}
