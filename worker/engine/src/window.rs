//! Per-user behaviour windows (SPEC.md §4) and the user feature window of §8,
//! maintained incrementally.
//!
//! A user's state is the list of the user's recent transactions sorted by
//! (event time, transaction_id), plus one running aggregate per window length. Every
//! window ends at the user's newest event time (the *frontier*) and has a head index:
//! an in-order transaction appends, adds itself to each aggregate and advances the
//! heads past what fell out — O(1) amortised, no rescan. A late transaction is
//! inserted at its event time (so it counts for later ones), joins each frontier
//! aggregate it falls into, and its own windows, which end in the past, are summed
//! over that range alone. Transactions older than the longest window plus the
//! allowed lateness are dropped from the front, except the few newest of them
//! that "previous transaction" features may still need.

use std::collections::VecDeque;

use crate::config::WindowConfig;

/// What the windows keep of one transaction. Strings are kept as stable 64-bit
/// hashes (0 = null): only equality and distinctness are ever asked of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Event time, ms since the epoch.
    pub time: i64,
    /// transaction_id (orders ties in time).
    pub id: i64,
    /// Amount in cents.
    pub cents: i64,
    /// Hash of ip_address, 0 when null.
    pub ip: u64,
    /// Hash of device_id, 0 when null.
    pub device: u64,
    /// Hash of location, 0 when null.
    pub location: u64,
}

/// The stable hash of an optional string as stored in [`Entry`] (0 means null).
pub fn value_hash(value: Option<&str>) -> u64 {
    match value {
        None => 0,
        Some(s) => match xxhash_rust::xxh3::xxh3_64(s.as_bytes()) {
            0 => 1,
            h => h,
        },
    }
}

/// Count and exact sum of amounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SumAgg {
    /// Transactions in the window.
    pub count: u32,
    /// Sum of their amounts in cents.
    pub cents: i128,
    /// Sum of squared amounts in cents² (for the standard deviation).
    pub squares: i128,
}

impl SumAgg {
    pub(crate) fn add(&mut self, cents: i64) {
        self.count += 1;
        self.cents += i128::from(cents);
        self.squares += i128::from(cents) * i128::from(cents);
    }
    pub(crate) fn remove(&mut self, cents: i64) {
        self.count -= 1;
        self.cents -= i128::from(cents);
        self.squares -= i128::from(cents) * i128::from(cents);
    }
}

/// Multiset of non-null hashes (a small vector: a user has few distinct IPs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinctAgg {
    counts: Vec<(u64, u32)>,
}

impl DistinctAgg {
    fn add(&mut self, hash: u64) {
        if hash == 0 {
            return;
        }
        match self.counts.iter_mut().find(|(h, _)| *h == hash) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((hash, 1)),
        }
    }
    fn remove(&mut self, hash: u64) {
        if hash == 0 {
            return;
        }
        if let Some(i) = self.counts.iter().position(|(h, _)| *h == hash) {
            self.counts[i].1 -= 1;
            if self.counts[i].1 == 0 {
                self.counts.swap_remove(i);
            }
        }
    }
    /// Distinct values present.
    pub fn distinct(&self) -> u32 {
        self.counts.len() as u32
    }
}

/// The window features of one transaction, before any rule reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserWindowFeatures {
    /// Count and sum in the short window (`txn_count_1h`, `txn_amount_1h`).
    pub short: SumAgg,
    /// `distinct_ip_24h`.
    pub distinct_ips: u32,
    /// `distinct_device_24h`.
    pub distinct_devices: u32,
    /// Count, sum and squares in the user feature window (30 days).
    pub feature: SumAgg,
    /// The previous transaction by (event time, id), if any.
    pub previous: Option<Entry>,
    /// Whether this and the previous `run - 1` amounts are all small.
    pub small_amount_pattern: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Heads {
    short: usize,
    distinct: usize,
    feature: usize,
}

/// One user's window state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserState {
    entries: VecDeque<Entry>,
    heads: Heads,
    short: SumAgg,
    ips: DistinctAgg,
    devices: DistinctAgg,
    feature: SumAgg,
}

impl UserState {
    /// Rebuilds the aggregates from stored entries (sorted by time, id), as after a
    /// load from the state store.
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>, cfg: &WindowConfig) -> Self {
        let mut state = UserState::default();
        for e in entries {
            state.entries.push_back(e);
            state.add_to_all(&e);
        }
        state.slide(cfg);
        state
    }

    /// The stored transactions, oldest first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Whether no transaction is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn frontier(&self) -> Option<i64> {
        self.entries.back().map(|e| e.time)
    }

    fn add_to_all(&mut self, e: &Entry) {
        self.short.add(e.cents);
        self.ips.add(e.ip);
        self.devices.add(e.device);
        self.feature.add(e.cents);
    }

    /// Advances each head past entries that left its window, then drops entries
    /// older than the retention.
    fn slide(&mut self, cfg: &WindowConfig) {
        let Some(frontier) = self.frontier() else {
            return;
        };
        while let Some(e) = self.entries.get(self.heads.short) {
            if e.time >= frontier.saturating_sub(cfg.short_ms) {
                break;
            }
            self.short.remove(e.cents);
            self.heads.short += 1;
        }
        while let Some(e) = self.entries.get(self.heads.distinct) {
            if e.time >= frontier.saturating_sub(cfg.distinct_ms) {
                break;
            }
            let (ip, device) = (e.ip, e.device);
            self.ips.remove(ip);
            self.devices.remove(device);
            self.heads.distinct += 1;
        }
        while let Some(e) = self.entries.get(self.heads.feature) {
            if e.time >= frontier.saturating_sub(cfg.user_feature_ms) {
                break;
            }
            self.feature.remove(e.cents);
            self.heads.feature += 1;
        }
        // SQL's LAG has no time limit: the newest `run - 1` transactions older than
        // the retention stay, so "previous" stays exact for any gap in a user's
        // activity (and for late arrivals within the allowed lateness).
        let oldest_kept = frontier.saturating_sub(cfg.user_retention_ms());
        let keep_old = cfg.small_amount_run.max(2) - 1;
        while let Some(e) = self.entries.get(keep_old) {
            let evictable = e.time < oldest_kept
                && self.heads.short > 0
                && self.heads.distinct > 0
                && self.heads.feature > 0;
            if !evictable {
                break;
            }
            self.entries.pop_front();
            self.heads.short -= 1;
            self.heads.distinct -= 1;
            self.heads.feature -= 1;
        }
    }

    /// Adds a transaction and returns its window features.
    pub fn observe(&mut self, e: Entry, cfg: &WindowConfig) -> UserWindowFeatures {
        let key = (e.time, e.id);
        let pos = match self.entries.back() {
            Some(last) if (last.time, last.id) > key => {
                self.entries.partition_point(|x| (x.time, x.id) < key)
            }
            _ => self.entries.len(),
        };
        let in_order = pos == self.entries.len();
        let frontier = self.frontier().map_or(e.time, |f| f.max(e.time));
        self.entries.insert(pos, e);
        if in_order {
            self.add_to_all(&e);
        } else {
            // A late entry joins each frontier window it falls into; one before a
            // window's head shifts that head.
            if e.time >= frontier.saturating_sub(cfg.short_ms) {
                self.short.add(e.cents);
            } else {
                self.heads.short += 1;
            }
            if e.time >= frontier.saturating_sub(cfg.distinct_ms) {
                self.ips.add(e.ip);
                self.devices.add(e.device);
            } else {
                self.heads.distinct += 1;
            }
            if e.time >= frontier.saturating_sub(cfg.user_feature_ms) {
                self.feature.add(e.cents);
            } else {
                self.heads.feature += 1;
            }
        }
        let features = if e.time == frontier {
            self.slide_and_read(pos, cfg)
        } else {
            self.read_range(pos, cfg)
        };
        if e.time != frontier {
            // Frontier unchanged: only a late entry past the retention can go.
            self.slide(cfg);
        }
        features
    }

    /// Features of a transaction at the frontier: the running aggregates.
    fn slide_and_read(&mut self, pos: usize, cfg: &WindowConfig) -> UserWindowFeatures {
        // Sliding may evict entries at the front; `pos` is relative to the front.
        let before = self.entries.len();
        self.slide(cfg);
        let pos = pos - (before - self.entries.len());
        UserWindowFeatures {
            short: self.short,
            distinct_ips: self.ips.distinct(),
            distinct_devices: self.devices.distinct(),
            feature: self.feature,
            previous: pos.checked_sub(1).map(|i| self.entries[i]),
            small_amount_pattern: self.small_run(pos, cfg),
        }
    }

    /// Features of a late transaction: its windows end before the frontier, so they
    /// are summed over their own range.
    fn read_range(&self, pos: usize, cfg: &WindowConfig) -> UserWindowFeatures {
        let t = self.entries[pos].time;
        let end = self.entries.partition_point(|x| x.time <= t);
        let start_of = |len: i64| {
            let from = t.saturating_sub(len);
            self.entries.partition_point(|x| x.time < from)
        };
        let mut short = SumAgg::default();
        for e in self.entries.range(start_of(cfg.short_ms)..end) {
            short.add(e.cents);
        }
        let mut ips = DistinctAgg::default();
        let mut devices = DistinctAgg::default();
        for e in self.entries.range(start_of(cfg.distinct_ms)..end) {
            ips.add(e.ip);
            devices.add(e.device);
        }
        let mut feature = SumAgg::default();
        for e in self.entries.range(start_of(cfg.user_feature_ms)..end) {
            feature.add(e.cents);
        }
        UserWindowFeatures {
            short,
            distinct_ips: ips.distinct(),
            distinct_devices: devices.distinct(),
            feature,
            previous: pos.checked_sub(1).map(|i| self.entries[i]),
            small_amount_pattern: self.small_run(pos, cfg),
        }
    }

    fn small_run(&self, pos: usize, cfg: &WindowConfig) -> bool {
        let run = cfg.small_amount_run.max(1);
        if pos + 1 < run {
            return false;
        }
        (pos + 1 - run..=pos).all(|i| self.entries[i].cents < cfg.small_amount_limit.0)
    }
}
