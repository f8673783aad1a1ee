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
    /// How often `hash` occurs; `None` for the null hash 0.
    pub fn count_of(&self, hash: u64) -> Option<u32> {
        if hash == 0 {
            return None;
        }
        Some(
            self.counts
                .iter()
                .find(|(h, _)| *h == hash)
                .map_or(0, |(_, n)| *n),
        )
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
    /// Transactions of the distinct window with this one's IP, it included
    /// (`None` without an IP): 1 means the IP is new in the window.
    pub ip_count: Option<u32>,
    /// Likewise for the device.
    pub device_count: Option<u32>,
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
    ///
    /// Of entries with the same (time, id), as a state written before duplicates
    /// were replaced may hold, the last one is kept (as [`Self::observe`] does).
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>, cfg: &WindowConfig) -> Self {
        let mut state = UserState::default();
        for e in entries {
            if state
                .entries
                .back()
                .is_some_and(|l| (l.time, l.id) == (e.time, e.id))
                && let Some(last) = state.entries.pop_back()
            {
                state.remove_from_all(&last);
            }
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

    fn remove_from_all(&mut self, e: &Entry) {
        self.short.remove(e.cents);
        self.ips.remove(e.ip);
        self.devices.remove(e.device);
        self.feature.remove(e.cents);
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
    ///
    /// A transaction whose (time, id) is already kept replaces that entry: a
    /// transaction_id is unique (SPEC.md §1), so it is a redelivery and counts once.
    pub fn observe(&mut self, e: Entry, cfg: &WindowConfig) -> UserWindowFeatures {
        let key = (e.time, e.id);
        let pos = match self.entries.back() {
            // `>=`: a duplicate of the newest entry must find it, not append.
            Some(last) if (last.time, last.id) >= key => {
                self.entries.partition_point(|x| (x.time, x.id) < key)
            }
            _ => self.entries.len(),
        };
        let in_order = pos == self.entries.len();
        let frontier = self.frontier().map_or(e.time, |f| f.max(e.time));
        if self
            .entries
            .get(pos)
            .is_some_and(|old| (old.time, old.id) == key)
        {
            self.replace(pos, e);
        } else {
            self.insert(pos, in_order, frontier, e, cfg);
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

    /// Replaces the entry at `pos`, which has `e`'s (time, id): the frontier and the
    /// heads stay, and each frontier aggregate that held the old entry swaps it.
    fn replace(&mut self, pos: usize, e: Entry) {
        let old = std::mem::replace(&mut self.entries[pos], e);
        if pos >= self.heads.short {
            self.short.remove(old.cents);
            self.short.add(e.cents);
        }
        if pos >= self.heads.distinct {
            self.ips.remove(old.ip);
            self.ips.add(e.ip);
            self.devices.remove(old.device);
            self.devices.add(e.device);
        }
        if pos >= self.heads.feature {
            self.feature.remove(old.cents);
            self.feature.add(e.cents);
        }
    }

    /// Inserts a new entry at `pos` and adds it to the aggregates it falls into.
    fn insert(&mut self, pos: usize, in_order: bool, frontier: i64, e: Entry, cfg: &WindowConfig) {
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
            ip_count: self.ips.count_of(self.entries[pos].ip),
            device_count: self.devices.count_of(self.entries[pos].device),
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
            ip_count: ips.count_of(self.entries[pos].ip),
            device_count: devices.count_of(self.entries[pos].device),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn cfg() -> WindowConfig {
        WindowConfig {
            short_ms: 10_000,
            distinct_ms: 30_000,
            user_feature_ms: 60_000,
            allowed_lateness_ms: 20_000,
            ..WindowConfig::default()
        }
    }

    fn e(time: i64, id: i64, cents: i64, ip: u64) -> Entry {
        Entry {
            time,
            id,
            cents,
            ip,
            device: ip,
            location: 0,
        }
    }

    fn reloaded(state: &UserState, cfg: &WindowConfig) -> UserState {
        let mut bytes = Vec::new();
        codec::encode_user(state, &mut bytes);
        codec::decode_user(&bytes, cfg).unwrap()
    }

    #[test]
    fn a_duplicate_counts_once() {
        let cfg = cfg();
        let mut state = UserState::default();
        state.observe(e(1_000, 7, 100, 1), &cfg);
        let w = state.observe(e(1_000, 7, 100, 1), &cfg);
        assert_eq!((w.short.count, w.short.cents), (1, 100));
        assert_eq!(w.feature.count, 1);
        assert_eq!(w.distinct_ips, 1);
        assert_eq!(w.previous, None);
        assert_eq!(state.entries().len(), 1);
    }

    #[test]
    fn a_late_duplicate_replaces_its_entry_in_every_window() {
        let cfg = cfg();
        let mut state = UserState::default();
        state.observe(e(1_000, 7, 100, 1), &cfg);
        state.observe(e(2_000, 8, 50, 2), &cfg);
        // Same (time, id) with other values: the last one counts.
        let w = state.observe(e(1_000, 7, 300, 3), &cfg);
        assert_eq!((w.short.count, w.short.cents), (1, 300));
        let next = e(3_000, 9, 1, 2);
        let mut again = reloaded(&state, &cfg);
        let live = state.observe(next, &cfg);
        assert_eq!(again.observe(next, &cfg), live);
        assert_eq!((live.short.count, live.short.cents), (3, 351));
        assert_eq!((live.distinct_ips, live.distinct_devices), (2, 2));
        assert_eq!(live.previous, Some(e(2_000, 8, 50, 2)));
    }

    #[test]
    fn a_duplicate_before_a_head_leaves_that_window_alone() {
        let cfg = cfg();
        let mut state = UserState::default();
        state.observe(e(1_000, 1, 5, 1), &cfg);
        state.observe(e(20_000, 2, 7, 2), &cfg);
        // Outside the short window, inside the distinct and feature windows.
        let w = state.observe(e(1_000, 1, 9, 3), &cfg);
        assert_eq!(w.short.count, 1);
        let live = state.observe(e(20_500, 3, 1, 2), &cfg);
        assert_eq!((live.short.count, live.short.cents), (2, 8));
        assert_eq!(live.distinct_ips, 2);
        assert_eq!((live.feature.count, live.feature.cents), (3, 17));
        let next = e(21_000, 4, 2, 3);
        assert_eq!(
            reloaded(&state, &cfg).observe(next, &cfg),
            state.observe(next, &cfg)
        );
    }

    #[test]
    fn stored_duplicates_load_as_one_entry() {
        let cfg = cfg();
        let state = UserState::from_entries([e(1, 1, 10, 1), e(1, 1, 20, 2), e(2, 2, 1, 2)], &cfg);
        assert_eq!(state.entries().len(), 2);
        assert_eq!((state.short.count, state.short.cents), (2, 21));
        assert_eq!(state.ips.distinct(), 1);
    }
}
