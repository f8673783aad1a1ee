//! A stream generator and a reference model of the windows, shared by the engine's
//! property test and the worker's real-store test (which includes this file by
//! path).
//!
//! The model keeps, per user and per merchant, every transaction seen (keyed by
//! (time, id), the last one winning) and what the state retains by the documented
//! rule (SPEC.md §4, `window.rs`): everything within the retention of the newest
//! event time, plus the `run − 1` newest older ones for users. Features are
//! summed from scratch over those sets.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use riskpipe_engine::Cents;
use riskpipe_engine::config::WindowConfig;
use riskpipe_engine::window::{Entry, SumAgg};

/// Short windows so a few hundred transactions cross every boundary.
pub fn cfg() -> WindowConfig {
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

/// What happens to the state before a transaction is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Write what changed.
    Flush,
    /// Write what changed, then reload the state from what was written.
    Reload,
    /// Lose what changed since the last flush and replay from there (the worker
    /// after a crash); the engine's test treats it as `Reload`.
    Crash,
}

/// One generated transaction. `ip`, `device` and `location` are small numbers, 0
/// for null; a test maps them to strings or hashes.
#[derive(Debug, Clone)]
pub struct Tx {
    /// The user.
    pub user: i64,
    /// The merchant.
    pub merchant: i64,
    /// Event time, ms.
    pub time: i64,
    /// transaction_id.
    pub id: i64,
    /// Amount, cents.
    pub cents: i64,
    /// IP number, 0 = null.
    pub ip: u64,
    /// Device number, 0 = null.
    pub device: u64,
    /// Location number, 0 = null.
    pub location: u64,
    /// What happens to the state first.
    pub action: Action,
}

impl Tx {
    /// The window entry with the test's own stand-in hashes.
    pub fn entry(&self) -> Entry {
        Entry {
            time: self.time,
            id: self.id,
            cents: self.cents,
            ip: self.ip * 11,
            device: self.device * 13,
            location: self.location * 17,
        }
    }
}

/// How a generated transaction's time relates to the stream's clock.
#[derive(Debug, Clone)]
struct Raw {
    user: i64,
    merchant: i64,
    step: i64,
    lateness: i64,
    tie: bool,
    duplicate: Option<(prop::sample::Index, bool)>,
    cents: i64,
    ip: u64,
    device: u64,
    location: u64,
    action: Action,
}

/// Times are on a 250 ms grid, so arrivals land exactly on window boundaries
/// (`t − W`, the allowed lateness, the retention) often enough to catch an
/// off-by-one there.
const GRID_MS: i64 = 250;

fn grid(range: std::ops::RangeInclusive<i64>) -> impl Strategy<Value = i64> {
    (range.start() / GRID_MS..=range.end() / GRID_MS).prop_map(|k| k * GRID_MS)
}

/// Relative weights of [`Action::None`], `Flush`, `Reload` and `Crash`.
pub type ActionWeights = [u32; 4];

/// The weights of [`stream`]: a flush, reload or crash every 8 transactions or so.
pub const ACTIONS: ActionWeights = [40, 3, 2, 1];

fn raw(
    users: i64,
    hot_users: i64,
    merchants: i64,
    actions: ActionWeights,
) -> impl Strategy<Value = Raw> {
    let user = prop_oneof![1 => 0..hot_users, 1 => 0..users];
    // Mostly small steps; now and then a gap longer than any retention.
    let step = prop_oneof![30 => grid(0..=4_000), 1 => grid(60_000..=250_000)];
    // Late arrivals: inside the short window, before the short / distinct /
    // feature heads, past the allowed lateness and past the retention.
    let lateness = prop_oneof![
        6 => Just(0i64),
        4 => grid(0..=10_000),
        2 => grid(10_000..=35_000),
        1 => grid(35_000..=70_000),
        1 => grid(70_000..=150_000),
    ];
    let duplicate = prop::option::weighted(0.1, (any::<prop::sample::Index>(), any::<bool>()));
    let [none, flush, reload, crash] = actions;
    let action = prop_oneof![
        none => Just(Action::None),
        flush => Just(Action::Flush),
        reload => Just(Action::Reload),
        crash => Just(Action::Crash),
    ];
    (
        (
            user,
            0..merchants,
            step,
            lateness,
            prop::bool::weighted(0.1),
        ),
        (
            duplicate,
            // Amounts on both sides of the small-amount limit (10_000).
            prop_oneof![1 => 0i64..10_000, 1 => 10_000i64..20_000],
            0u64..5,
            0u64..4,
            0u64..3,
            action,
        ),
    )
        .prop_map(
            |(
                (user, merchant, step, lateness, tie),
                (duplicate, cents, ip, device, location, action),
            )| Raw {
                user,
                merchant,
                step,
                lateness,
                tie,
                duplicate,
                cents,
                ip,
                device,
                location,
                action,
            },
        )
}

/// Streams of `len` transactions over `users` users (half of them from the first
/// `hot_users`, so those see many late and duplicate arrivals) and `merchants`
/// merchants: out-of-order arrival up to far past the retention, gaps longer than
/// the retention, equal times, redelivered duplicates of (time, id) with the same
/// or other values, and flushes, reloads and crashes at random points.
pub fn stream(
    users: i64,
    hot_users: i64,
    merchants: i64,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Tx>> {
    stream_with(users, hot_users, merchants, len, ACTIONS)
}

/// [`stream`] with other weights of the state actions.
pub fn stream_with(
    users: i64,
    hot_users: i64,
    merchants: i64,
    len: std::ops::Range<usize>,
    actions: ActionWeights,
) -> impl Strategy<Value = Vec<Tx>> {
    let raws = prop::collection::vec(raw(users, hot_users.min(users), merchants, actions), len);
    raws.prop_map(|raws| {
        let mut clock = 1_000_000i64;
        let mut out: Vec<Tx> = Vec::with_capacity(raws.len());
        for (i, r) in raws.into_iter().enumerate() {
            clock += r.step;
            let action = r.action;
            if let (Some((pick, same)), false) = (r.duplicate, out.is_empty()) {
                let mut tx = out[pick.index(out.len())].clone();
                if !same {
                    (tx.cents, tx.ip, tx.device, tx.location) =
                        (r.cents, r.ip, r.device, r.location);
                }
                tx.action = action;
                out.push(tx);
                continue;
            }
            let time = match out.last() {
                Some(last) if r.tie => last.time,
                _ => clock - r.lateness,
            };
            out.push(Tx {
                user: r.user,
                merchant: r.merchant,
                time,
                // Ids are not in time order, so ties are broken by id.
                id: ((i as i64) * 7919) % 1_000_003,
                cents: r.cents,
                ip: r.ip,
                device: r.device,
                location: r.location,
                action,
            });
        }
        out
    })
}

/// A user's window features as the engine reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// `txn_count_1h` / `txn_amount_1h`.
    pub short: SumAgg,
    /// `distinct_ip_24h`.
    pub distinct_ips: u32,
    /// `distinct_device_24h`.
    pub distinct_devices: u32,
    /// The feature window.
    pub feature: SumAgg,
    /// The previous transaction.
    pub previous: Option<Entry>,
    /// `small_amount_pattern`.
    pub small_amount_pattern: bool,
}

type Set = BTreeMap<(i64, i64), Entry>;

fn within(set: &Set, t: i64, len: i64) -> impl Iterator<Item = &Entry> {
    set.range((t.saturating_sub(len), i64::MIN)..=(t, i64::MAX))
        .map(|(_, e)| e)
}

fn sum<'a>(entries: impl Iterator<Item = &'a Entry>) -> SumAgg {
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

/// Recomputes a user's features for `e` (already in `set`) from scratch.
pub fn user_features(set: &Set, e: &Entry, cfg: &WindowConfig) -> Expected {
    let t = e.time;
    let before: Vec<&Entry> = set.range(..(t, e.id)).rev().map(|(_, x)| x).collect();
    let run = cfg.small_amount_run.max(1);
    let small = |x: &Entry| x.cents < cfg.small_amount_limit.0;
    Expected {
        short: sum(within(set, t, cfg.short_ms)),
        distinct_ips: distinct(within(set, t, cfg.distinct_ms).map(|x| x.ip)),
        distinct_devices: distinct(within(set, t, cfg.distinct_ms).map(|x| x.device)),
        feature: sum(within(set, t, cfg.user_feature_ms)),
        previous: before.first().map(|x| **x),
        small_amount_pattern: small(e)
            && before.len() >= run - 1
            && before[..run - 1].iter().all(|x| small(x)),
    }
}

/// What a category of arrival was, for the generator's coverage test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arrival {
    /// The first transaction of a key.
    First,
    /// After the newest one.
    InOrder,
    /// At the newest event time, ordered before it by id.
    TieAtFrontier,
    /// Late, inside the short window.
    LateInShort,
    /// Late, before the short window's head.
    BeforeShortHead,
    /// Late, before the distinct window's head.
    BeforeDistinctHead,
    /// Late, before the feature window's head (users) or the window's (merchants).
    BeforeFeatureHead,
    /// Later than the allowed lateness.
    PastAllowedLateness,
    /// Older than the retention.
    PastRetention,
    /// After a gap longer than the retention.
    AfterLongGap,
    /// A (time, id) already kept.
    Duplicate,
    /// A (time, id) already kept, before the short window's head.
    DuplicateBeforeHead,
    /// An equal time with another id already kept.
    EqualTime,
}

/// One user's model.
#[derive(Debug, Clone, Default)]
pub struct UserModel {
    all: Set,
    kept: Set,
    frontier: Option<i64>,
}

/// What one observation should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Over what the state retains: what the engine must return, always.
    pub retained: Expected,
    /// Over every transaction seen, when the arrival is within the allowed
    /// lateness (SPEC.md §4's exact windows); then it equals `retained`.
    pub exact: Option<Expected>,
    /// The arrival's categories.
    pub arrivals: [Option<Arrival>; 4],
}

impl UserModel {
    /// Observes `e` and returns the expected features.
    pub fn observe(&mut self, e: Entry, cfg: &WindowConfig) -> Observed {
        let key = (e.time, e.id);
        let arrivals = self.classify(&e, cfg);
        let on_time = self
            .frontier
            .is_none_or(|f| e.time >= f - cfg.allowed_lateness_ms);
        self.all.insert(key, e);
        self.kept.insert(key, e);
        self.frontier = Some(self.frontier.map_or(e.time, |f| f.max(e.time)));
        let retained = user_features(&self.kept, &e, cfg);
        let exact = on_time.then(|| user_features(&self.all, &e, cfg));
        self.evict(cfg);
        Observed {
            retained,
            exact,
            arrivals,
        }
    }

    fn evict(&mut self, cfg: &WindowConfig) {
        let Some(f) = self.frontier else { return };
        let oldest_kept = f.saturating_sub(cfg.user_retention_ms());
        let keep_old = cfg.small_amount_run.max(2) - 1;
        let old = self.kept.range(..(oldest_kept, i64::MIN)).count();
        for _ in keep_old..old {
            self.kept.pop_first();
        }
    }

    fn classify(&self, e: &Entry, cfg: &WindowConfig) -> [Option<Arrival>; 4] {
        let Some(f) = self.frontier else {
            return [Some(Arrival::First), None, None, None];
        };
        let t = e.time;
        let position = if t > f + cfg.user_retention_ms() {
            Arrival::AfterLongGap
        } else if t > f
            || self
                .kept
                .last_key_value()
                .is_some_and(|(k, _)| *k <= (t, e.id))
        {
            Arrival::InOrder
        } else if t == f {
            Arrival::TieAtFrontier
        } else if t < f - cfg.user_retention_ms() {
            Arrival::PastRetention
        } else if t < f - cfg.allowed_lateness_ms - cfg.user_feature_ms {
            Arrival::PastAllowedLateness
        } else if t < f - cfg.user_feature_ms {
            Arrival::BeforeFeatureHead
        } else if t < f - cfg.distinct_ms {
            Arrival::BeforeDistinctHead
        } else if t < f - cfg.short_ms {
            Arrival::BeforeShortHead
        } else {
            Arrival::LateInShort
        };
        let late = (t < f - cfg.allowed_lateness_ms).then_some(Arrival::PastAllowedLateness);
        let duplicate = self
            .kept
            .contains_key(&(t, e.id))
            .then_some(if t < f - cfg.short_ms {
                Arrival::DuplicateBeforeHead
            } else {
                Arrival::Duplicate
            });
        let equal = self
            .kept
            .range((t, i64::MIN)..=(t, i64::MAX))
            .any(|(k, _)| k.1 != e.id)
            .then_some(Arrival::EqualTime);
        [Some(position), late, duplicate, equal]
    }
}

/// One merchant's model.
#[derive(Debug, Clone, Default)]
pub struct MerchantModel {
    all: BTreeMap<(i64, i64), i64>,
    kept: BTreeMap<(i64, i64), i64>,
    frontier: Option<i64>,
}

/// What a merchant observation should return: (count, cents) over what the state
/// retains, and over everything seen when within the allowed lateness.
pub type MerchantObserved = ((u32, i128), Option<(u32, i128)>, Option<Arrival>);

impl MerchantModel {
    /// Observes a merchant transaction.
    pub fn observe(
        &mut self,
        time: i64,
        id: i64,
        cents: i64,
        cfg: &WindowConfig,
    ) -> MerchantObserved {
        let window = cfg.merchant_feature_ms;
        let retention = window + cfg.allowed_lateness_ms;
        let arrival = self.frontier.map(|f| {
            if self.kept.contains_key(&(time, id)) {
                Arrival::Duplicate
            } else if time > f + retention {
                Arrival::AfterLongGap
            } else if time < f - retention {
                Arrival::PastRetention
            } else if time < f - window {
                Arrival::BeforeFeatureHead
            } else {
                Arrival::InOrder
            }
        });
        let on_time = self
            .frontier
            .is_none_or(|f| time >= f - cfg.allowed_lateness_ms);
        self.all.insert((time, id), cents);
        self.kept.insert((time, id), cents);
        let f = self.frontier.map_or(time, |f| f.max(time));
        self.frontier = Some(f);
        let over = |set: &BTreeMap<(i64, i64), i64>| {
            set.range((time.saturating_sub(window), i64::MIN)..=(time, i64::MAX))
                .fold((0u32, 0i128), |(n, s), (_, c)| (n + 1, s + i128::from(*c)))
        };
        let retained = over(&self.kept);
        let exact = on_time.then(|| over(&self.all));
        self.kept = self
            .kept
            .split_off(&(f.saturating_sub(retention), i64::MIN));
        (retained, exact, arrival)
    }
}

/// The models of a whole stream.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Per user.
    pub users: HashMap<i64, UserModel>,
    /// Per merchant.
    pub merchants: HashMap<i64, MerchantModel>,
}
