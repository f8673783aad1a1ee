//! The merchant feature window of SPEC.md §8 (`merchant_avg_amount_7d`), kept per
//! merchant within one partition's state with the same head-index technique as the
//! user windows. In a distributed run each partition sees only its own users'
//! transactions of a merchant; see the README for that bound.

use std::collections::VecDeque;

use crate::window::SumAgg;

/// One merchant transaction as the window keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerchantEntry {
    /// Event time, ms since the epoch.
    pub time: i64,
    /// transaction_id.
    pub id: i64,
    /// Amount in cents.
    pub cents: i64,
}

/// One merchant's window state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerchantState {
    entries: VecDeque<MerchantEntry>,
    head: usize,
    agg: SumAgg,
    journal: Option<Journal>,
}

/// Entries added and dropped since the journal was last taken, so a store can
/// persist a busy merchant's window with one small write per transaction instead
/// of rewriting the whole window.
///
/// A store keeps one value per (time, id) and applies `added` in order, then
/// `removed`: an entry added and dropped within one journal ends up deleted, and
/// an entry that replaced one with the same (time, id) is in `added` only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    /// Entries inserted or replaced, in the order observed (for one (time, id), the
    /// last one is the current value).
    pub added: Vec<MerchantEntry>,
    /// Entries dropped (past the retention).
    pub removed: Vec<MerchantEntry>,
}

impl MerchantState {
    /// Rebuilds the state from stored entries (sorted by time, id); of entries with
    /// the same (time, id) the last one is kept.
    pub fn from_entries(
        entries: impl IntoIterator<Item = MerchantEntry>,
        window_ms: i64,
        retention_ms: i64,
    ) -> Self {
        let mut state = MerchantState::default();
        for e in entries {
            // One entry per (time, id), the last one, as `observe` keeps it.
            if state
                .entries
                .back()
                .is_some_and(|l| (l.time, l.id) == (e.time, e.id))
                && let Some(last) = state.entries.pop_back()
            {
                state.agg.remove(last.cents);
            }
            state.entries.push_back(e);
            state.agg.add(e.cents);
        }
        state.slide(window_ms, retention_ms);
        state
    }

    /// The stored transactions, oldest first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &MerchantEntry> {
        self.entries.iter()
    }

    /// Starts recording added and dropped entries (see [`Journal`]).
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(Journal::default);
    }

    /// The changes since the last call (empty without a journal).
    pub fn take_journal(&mut self) -> Journal {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn slide(&mut self, window_ms: i64, retention_ms: i64) {
        let Some(frontier) = self.entries.back().map(|e| e.time) else {
            return;
        };
        while let Some(e) = self.entries.get(self.head) {
            if e.time >= frontier.saturating_sub(window_ms) {
                break;
            }
            self.agg.remove(e.cents);
            self.head += 1;
        }
        let oldest_kept = frontier.saturating_sub(retention_ms);
        while self.head > 0 && self.entries.front().is_some_and(|e| e.time < oldest_kept) {
            if let (Some(e), Some(j)) = (self.entries.pop_front(), self.journal.as_mut()) {
                j.removed.push(e);
            }
            self.head -= 1;
        }
    }

    /// Adds a transaction; returns the count and sum of the merchant's transactions
    /// in `[t − window, t]`, this one included.
    ///
    /// A transaction whose (time, id) is already in the window replaces that entry
    /// instead of joining it: the store keeps one value per (merchant, time, id), so
    /// counting both would make the window differ after a reload (and a
    /// transaction_id is unique, so the second one is a redelivery).
    pub fn observe(&mut self, e: MerchantEntry, window_ms: i64, retention_ms: i64) -> SumAgg {
        let key = (e.time, e.id);
        let frontier = self.entries.back().map_or(e.time, |l| l.time.max(e.time));
        let pos = match self.entries.back() {
            // `>=`: a duplicate of the newest entry must find it, not append.
            Some(last) if (last.time, last.id) >= key => {
                self.entries.partition_point(|x| (x.time, x.id) < key)
            }
            _ => self.entries.len(),
        };
        // The journal records only the new value: a put of the same key overwrites
        // the old one, while a delete of the old one would run after the put (see
        // [`Journal`]) and remove the replacement.
        if let Some(j) = self.journal.as_mut() {
            j.added.push(e);
        }
        match self.entries.get_mut(pos) {
            Some(old) if (old.time, old.id) == key => {
                let old_cents = std::mem::replace(old, e).cents;
                if pos >= self.head {
                    self.agg.remove(old_cents);
                    self.agg.add(e.cents);
                }
            }
            _ => {
                self.entries.insert(pos, e);
                if e.time >= frontier.saturating_sub(window_ms) {
                    self.agg.add(e.cents);
                } else {
                    self.head += 1;
                }
            }
        }
        if e.time == frontier {
            self.slide(window_ms, retention_ms);
            return self.agg;
        }
        let from = e.time.saturating_sub(window_ms);
        let start = self.entries.partition_point(|x| x.time < from);
        let end = self.entries.partition_point(|x| x.time <= e.time);
        let mut agg = SumAgg::default();
        for x in self.entries.range(start..end) {
            agg.add(x.cents);
        }
        self.slide(window_ms, retention_ms);
        agg
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const WINDOW: i64 = 10_000;
    const RETENTION: i64 = 15_000;

    fn e(time: i64, id: i64, cents: i64) -> MerchantEntry {
        MerchantEntry { time, id, cents }
    }

    /// What a store keyed by (time, id) holds after applying journals the way the
    /// worker does (puts, then deletes).
    #[derive(Default)]
    struct Disk(BTreeMap<(i64, i64), i64>);

    impl Disk {
        fn apply(&mut self, journal: Journal) {
            for x in &journal.added {
                self.0.insert((x.time, x.id), x.cents);
            }
            for x in &journal.removed {
                self.0.remove(&(x.time, x.id));
            }
        }
        fn load(&self) -> MerchantState {
            let entries = self
                .0
                .iter()
                .map(|(&(time, id), &cents)| e(time, id, cents));
            let mut state = MerchantState::from_entries(entries, WINDOW, RETENTION);
            state.enable_journal();
            state
        }
    }

    fn journaled() -> MerchantState {
        let mut state = MerchantState::default();
        state.enable_journal();
        state
    }

    #[test]
    fn a_duplicate_at_the_frontier_replaces_the_entry() {
        let mut state = journaled();
        let mut disk = Disk::default();
        state.observe(e(1_000, 7, 100), WINDOW, RETENTION);
        let agg = state.observe(e(1_000, 7, 300), WINDOW, RETENTION);
        assert_eq!((agg.count, agg.cents), (1, 300));
        assert_eq!(
            state.entries().copied().collect::<Vec<_>>(),
            [e(1_000, 7, 300)]
        );
        disk.apply(state.take_journal());
        assert_eq!(disk.0.into_iter().collect::<Vec<_>>(), [((1_000, 7), 300)]);
    }

    #[test]
    fn a_late_duplicate_replaces_the_entry_in_memory_and_on_disk() {
        let mut state = journaled();
        let mut disk = Disk::default();
        state.observe(e(1_000, 7, 100), WINDOW, RETENTION);
        state.observe(e(2_000, 8, 10), WINDOW, RETENTION);
        disk.apply(state.take_journal());
        // Redelivered after a flush: the journal must not delete what it puts.
        let agg = state.observe(e(1_000, 7, 100), WINDOW, RETENTION);
        assert_eq!((agg.count, agg.cents), (1, 100));
        disk.apply(state.take_journal());
        let next = e(3_000, 9, 1);
        let mut reloaded = disk.load();
        let live = state.observe(next, WINDOW, RETENTION);
        assert_eq!(reloaded.observe(next, WINDOW, RETENTION), live);
        assert_eq!((live.count, live.cents), (3, 111));
    }

    #[test]
    fn a_duplicate_before_the_head_stays_out_of_the_window() {
        let mut state = journaled();
        let mut disk = Disk::default();
        state.observe(e(1_000, 1, 5), WINDOW, RETENTION);
        state.observe(e(12_000, 2, 7), WINDOW, RETENTION);
        let agg = state.observe(e(1_000, 1, 50), WINDOW, RETENTION);
        assert_eq!((agg.count, agg.cents), (1, 50));
        disk.apply(state.take_journal());
        let next = e(12_500, 3, 1);
        let live = state.observe(next, WINDOW, RETENTION);
        assert_eq!((live.count, live.cents), (2, 8));
        assert_eq!(disk.load().observe(next, WINDOW, RETENTION), live);
        assert_eq!(disk.0.get(&(1_000, 1)), Some(&50));
    }

    #[test]
    fn stored_duplicates_load_as_one_entry() {
        let state =
            MerchantState::from_entries([e(1, 1, 10), e(1, 1, 20), e(2, 2, 1)], WINDOW, RETENTION);
        assert_eq!(state.entries().len(), 2);
        assert_eq!((state.agg.count, state.agg.cents), (2, 21));
    }
}
