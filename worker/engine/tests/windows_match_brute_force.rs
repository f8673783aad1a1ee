//! Property tests: the incremental windows equal a recomputation from scratch over
//! every transaction processed so far, for random streams with out-of-order
//! arrival, ties in time, null values, and state saved and reloaded mid-stream.

use proptest::prelude::*;
use riskpipe_engine::Cents;
use riskpipe_engine::codec;
use riskpipe_engine::config::WindowConfig;
use riskpipe_engine::merchant::{MerchantEntry, MerchantState};
use riskpipe_engine::window::{Entry, SumAgg, UserState};

fn cfg() -> WindowConfig {
    WindowConfig {
        short_ms: 10_000,
        distinct_ms: 30_000,
        small_amount_limit: Cents(10_000),
        small_amount_run: 3,
        user_feature_ms: 60_000,
        merchant_feature_ms: 40_000,
        allowed_lateness_ms: 20_000,
        max_future_skew_ms: 300_000,
    }
}

#[derive(Debug, Clone)]
struct Tx {
    user: i64,
    merchant: i64,
    entry: Entry,
    reload: bool,
}

fn stream() -> impl Strategy<Value = Vec<Tx>> {
    prop::collection::vec(
        (
            0i64..3,                    // user
            0i64..3,                    // merchant
            0i64..4_000,                // time step
            0i64..=10_000,              // lateness (≤ allowed / 2)
            prop::bool::weighted(0.15), // tie with previous time
            0i64..20_000,               // cents
            0u64..5,                    // ip (0 = null)
            0u64..4,                    // device (0 = null)
            0u64..3,                    // location (0 = null)
            prop::bool::weighted(0.05), // reload state from bytes
        ),
        1..200,
    )
    .prop_map(|raw| {
        let mut clock = 1_000_000i64;
        let mut last_time = clock;
        raw.into_iter()
            .enumerate()
            .map(
                |(i, (user, merchant, step, late, tie, cents, ip, device, location, reload))| {
                    clock += step;
                    let time = if tie { last_time } else { clock - late };
                    last_time = time;
                    Tx {
                        user,
                        merchant,
                        entry: Entry {
                            time,
                            // Ids are not in time order, so ties are broken by id.
                            id: ((i as i64) * 7919) % 1_000_003,
                            cents,
                            ip: ip * 11,
                            device: device * 13,
                            location: location * 17,
                        },
                        reload,
                    }
                },
            )
            .collect()
    })
}

fn sum_over<'a>(entries: impl Iterator<Item = &'a Entry>) -> SumAgg {
    let mut agg = SumAgg::default();
    for e in entries {
        agg.count += 1;
        agg.cents += i128::from(e.cents);
        agg.squares += i128::from(e.cents) * i128::from(e.cents);
    }
    agg
}

fn distinct(values: impl Iterator<Item = u64>) -> u32 {
    let mut v: Vec<u64> = values.filter(|h| *h != 0).collect();
    v.sort_unstable();
    v.dedup();
    v.len() as u32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn user_windows_equal_recomputation(txs in stream()) {
        let cfg = cfg();
        let mut states: std::collections::HashMap<i64, UserState> = Default::default();
        let mut seen: Vec<(i64, Entry)> = Vec::new();
        for tx in &txs {
            let state = states.entry(tx.user).or_default();
            if tx.reload {
                let mut bytes = Vec::new();
                codec::encode_user(state, &mut bytes);
                *state = codec::decode_user(&bytes, &cfg).unwrap();
            }
            let got = state.observe(tx.entry, &cfg);
            seen.push((tx.user, tx.entry));

            let t = tx.entry.time;
            let mine: Vec<&Entry> = seen.iter().filter(|(u, _)| *u == tx.user).map(|(_, e)| e).collect();
            let within = |len: i64| mine.iter().copied().filter(move |e| e.time >= t - len && e.time <= t);
            let mut before: Vec<&Entry> = mine
                .iter()
                .copied()
                .filter(|e| (e.time, e.id) < (t, tx.entry.id))
                .collect();
            before.sort_by_key(|e| (e.time, e.id));

            prop_assert_eq!(got.short, sum_over(within(cfg.short_ms)));
            prop_assert_eq!(got.feature, sum_over(within(cfg.user_feature_ms)));
            prop_assert_eq!(got.distinct_ips, distinct(within(cfg.distinct_ms).map(|e| e.ip)));
            prop_assert_eq!(got.distinct_devices, distinct(within(cfg.distinct_ms).map(|e| e.device)));
            prop_assert_eq!(got.previous, before.last().map(|e| **e));
            let small = tx.entry.cents < cfg.small_amount_limit.0
                && before.len() >= 2
                && before[before.len() - 2..].iter().all(|e| e.cents < cfg.small_amount_limit.0);
            prop_assert_eq!(got.small_amount_pattern, small);
        }
    }

    #[test]
    fn merchant_window_equals_recomputation(txs in stream()) {
        let cfg = cfg();
        let retention = cfg.merchant_feature_ms + cfg.allowed_lateness_ms;
        let mut states: std::collections::HashMap<i64, MerchantState> = Default::default();
        let mut seen: Vec<(i64, Entry)> = Vec::new();
        for tx in &txs {
            let state = states.entry(tx.merchant).or_default();
            if tx.reload {
                let mut bytes = Vec::new();
                codec::encode_merchant(state, &mut bytes);
                *state = codec::decode_merchant(&bytes, &cfg).unwrap();
            }
            let e = MerchantEntry { time: tx.entry.time, id: tx.entry.id, cents: tx.entry.cents };
            let got = state.observe(e, cfg.merchant_feature_ms, retention);
            seen.push((tx.merchant, tx.entry));
            let t = e.time;
            let expected = sum_over(
                seen.iter()
                    .filter(|(m, x)| *m == tx.merchant && x.time >= t - cfg.merchant_feature_ms && x.time <= t)
                    .map(|(_, x)| x),
            );
            prop_assert_eq!(got.count, expected.count);
            prop_assert_eq!(got.cents, expected.cents);
        }
    }
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
