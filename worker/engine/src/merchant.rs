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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    /// Entries inserted.
    pub added: Vec<MerchantEntry>,
    /// Entries dropped (past the retention).
    pub removed: Vec<MerchantEntry>,
}

impl MerchantState {
    /// Rebuilds the state from stored entries (sorted by time, id).
    pub fn from_entries(
        entries: impl IntoIterator<Item = MerchantEntry>,
        window_ms: i64,
        retention_ms: i64,
    ) -> Self {
        let mut state = MerchantState::default();
        for e in entries {
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
    pub fn observe(&mut self, e: MerchantEntry, window_ms: i64, retention_ms: i64) -> SumAgg {
        let key = (e.time, e.id);
        let frontier = self.entries.back().map_or(e.time, |l| l.time.max(e.time));
        let pos = match self.entries.back() {
            Some(last) if (last.time, last.id) > key => {
                self.entries.partition_point(|x| (x.time, x.id) < key)
            }
            _ => self.entries.len(),
        };
        self.entries.insert(pos, e);
        if let Some(j) = self.journal.as_mut() {
            j.added.push(e);
        }
        if e.time >= frontier.saturating_sub(window_ms) {
            self.agg.add(e.cents);
        } else {
            self.head += 1;
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
