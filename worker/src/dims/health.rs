//! What the dimension source tells `/status` and the metrics: per table, its
//! counters, and whether it is unavailable now (since when, the last error).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use riskpipe_contract::DimensionOutage;

/// Counters of one table.
#[derive(Debug, Default)]
pub struct TableStats {
    /// Lookups answered from the cache (rows and cached misses).
    pub hits: AtomicU64,
    /// Lookups that went to the database.
    pub misses: AtomicU64,
    /// Rows read from the database.
    pub rows_loaded: AtomicU64,
    /// Queries sent.
    pub queries: AtomicU64,
    /// Queries that failed.
    pub errors: AtomicU64,
    /// Lookups answered by a copy past its TTL while the database was down.
    pub stale_served: AtomicU64,
    /// Total query time, microseconds.
    pub query_micros: AtomicU64,
}

/// A plain copy of [`TableStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`TableStats::hits`].
    pub hits: u64,
    /// See [`TableStats::misses`].
    pub misses: u64,
    /// See [`TableStats::rows_loaded`].
    pub rows_loaded: u64,
    /// See [`TableStats::queries`].
    pub queries: u64,
    /// See [`TableStats::errors`].
    pub errors: u64,
    /// See [`TableStats::stale_served`].
    pub stale_served: u64,
    /// See [`TableStats::query_micros`].
    pub query_micros: u64,
}

impl TableStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            hits: get(&self.hits),
            misses: get(&self.misses),
            rows_loaded: get(&self.rows_loaded),
            queries: get(&self.queries),
            errors: get(&self.errors),
            stale_served: get(&self.stale_served),
            query_micros: get(&self.query_micros),
        }
    }
}

/// Called with the outages whenever they change.
pub type Listener = Box<dyn Fn(Vec<DimensionOutage>) + Send + Sync>;

/// Outages of every table, shared with `/status`.
#[derive(Default)]
pub struct DimensionsHealth {
    outages: Mutex<BTreeMap<String, DimensionOutage>>,
    listener: Mutex<Option<Listener>>,
}

impl std::fmt::Debug for DimensionsHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DimensionsHealth")
            .field("outages", &self.outages())
            .finish_non_exhaustive()
    }
}

impl DimensionsHealth {
    /// Calls `listener` with the outages now and after every change (the
    /// Kafka worker writes them into its `/status`).
    pub fn on_change(&self, listener: Listener) {
        listener(self.outages());
        if let Ok(mut l) = self.listener.lock() {
            *l = Some(listener);
        }
    }

    fn changed(&self) {
        let outages = self.outages();
        if let Ok(l) = self.listener.lock()
            && let Some(l) = l.as_ref()
        {
            l(outages);
        }
    }

    /// `table` failed with `error` (the first failure sets `since`).
    pub fn failed(&self, table: &str, error: &str) {
        {
            let Ok(mut outages) = self.outages.lock() else {
                return;
            };
            self.record_failure(&mut outages, table, error);
        }
        self.changed();
    }

    fn record_failure(
        &self,
        outages: &mut BTreeMap<String, DimensionOutage>,
        table: &str,
        error: &str,
    ) {
        match outages.get_mut(table) {
            Some(o) => o.error = error.to_owned(),
            None => {
                tracing::warn!(
                    table,
                    error,
                    "dimension table unavailable: records that need it wait"
                );
                outages.insert(
                    table.to_owned(),
                    DimensionOutage {
                        table: table.to_owned(),
                        error: error.to_owned(),
                        since_ms: crate::record::now_ms(),
                    },
                );
            }
        }
    }

    /// `table` answered again.
    pub fn recovered(&self, table: &str) {
        let removed = self.outages.lock().ok().and_then(|mut o| o.remove(table));
        if let Some(o) = removed {
            let ms = crate::record::now_ms() - o.since_ms;
            tracing::info!(
                table,
                unavailable_ms = ms,
                "dimension table available again"
            );
            self.changed();
        }
    }

    /// The tables unavailable now.
    pub fn outages(&self) -> Vec<DimensionOutage> {
        self.outages
            .lock()
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default()
    }
}
