//! Per-table caches: an LRU of `maxRows` rows (and misses) valid for `ttl`,
//! or a whole table loaded at once (full-cache mode and the lists).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use lru::LruCache;

/// A cached row, or a cached miss (`row: None`), and when it was read.
#[derive(Debug)]
pub struct Entry<R> {
    /// The row; `None` = the database has no row for the key.
    pub row: Option<Arc<R>>,
    /// When it was read.
    pub loaded: Instant,
}

impl<R> Clone for Entry<R> {
    fn clone(&self) -> Self {
        Entry {
            row: self.row.clone(),
            loaded: self.loaded,
        }
    }
}

/// The keys of a batch an LRU cache could not answer.
#[derive(Debug)]
pub struct Lookup<R> {
    /// Keys to read from the database (not cached, or past their TTL).
    pub to_load: Vec<i64>,
    /// The expired copies among them, which may serve while the database is down.
    pub expired: Vec<(i64, Entry<R>)>,
}

/// An LRU cache of rows and misses.
#[derive(Debug)]
pub struct LruTable<R> {
    lru: Mutex<LruCache<i64, Entry<R>>>,
    ttl: Duration,
}

impl<R> LruTable<R> {
    /// At most `max_rows` entries (at least one), each valid for `ttl`.
    pub fn new(max_rows: u64, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(usize::try_from(max_rows).unwrap_or(usize::MAX).max(1))
            .unwrap_or(NonZeroUsize::MIN);
        LruTable {
            lru: Mutex::new(LruCache::new(cap)),
            ttl,
        }
    }

    /// Puts the fresh rows of `keys` into `out` (cached misses stay out of it)
    /// and says which keys must be read.
    pub fn lookup(&self, keys: &[i64], now: Instant, out: &mut AHashMap<i64, Arc<R>>) -> Lookup<R> {
        let mut to_load = Vec::new();
        let mut expired = Vec::new();
        let Ok(mut lru) = self.lru.lock() else {
            return Lookup {
                to_load: keys.to_vec(),
                expired,
            };
        };
        for &key in keys {
            match lru.get(&key) {
                Some(e) if now.saturating_duration_since(e.loaded) < self.ttl => {
                    if let Some(row) = &e.row {
                        out.insert(key, Arc::clone(row));
                    }
                }
                Some(e) => {
                    to_load.push(key);
                    expired.push((key, e.clone()));
                }
                None => to_load.push(key),
            }
        }
        Lookup { to_load, expired }
    }

    /// Caches what the database said about `key`.
    pub fn store(&self, key: i64, row: Option<Arc<R>>, loaded: Instant) {
        if let Ok(mut lru) = self.lru.lock() {
            lru.put(key, Entry { row, loaded });
        }
    }

    /// Entries cached now.
    pub fn len(&self) -> usize {
        self.lru.lock().map_or(0, |l| l.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole table read at once.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The rows.
    pub rows: T,
    /// When they were read.
    pub loaded: Instant,
}

/// A table held whole in memory and replaced on reload.
#[derive(Debug)]
pub struct FullTable<T> {
    current: Mutex<Option<Arc<Loaded<T>>>>,
}

impl<T> Default for FullTable<T> {
    fn default() -> Self {
        FullTable {
            current: Mutex::new(None),
        }
    }
}

impl<T> FullTable<T> {
    /// The table as last read, if it was.
    pub fn current(&self) -> Option<Arc<Loaded<T>>> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Replaces the table.
    pub fn replace(&self, rows: T, loaded: Instant) -> Arc<Loaded<T>> {
        let new = Arc::new(Loaded { rows, loaded });
        if let Ok(mut c) = self.current.lock() {
            *c = Some(Arc::clone(&new));
        }
        new
    }
}

/// Rows by key, of a full-cache table.
pub type RowMap<R> = AHashMap<i64, R>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_misses_expire_after_their_ttl() {
        let cache: LruTable<u32> = LruTable::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        cache.store(1, Some(Arc::new(10)), t0);
        cache.store(2, None, t0);
        let mut out = AHashMap::new();
        let l = cache.lookup(&[1, 2, 3], t0 + Duration::from_secs(5), &mut out);
        assert_eq!(l.to_load, vec![3]);
        assert_eq!(out.get(&1).map(|r| **r), Some(10));
        assert!(!out.contains_key(&2), "a cached miss answers with no row");
        out.clear();
        let l = cache.lookup(&[1, 2], t0 + Duration::from_secs(11), &mut out);
        assert_eq!(l.to_load, vec![1, 2]);
        assert_eq!(l.expired.len(), 2);
        assert!(out.is_empty());
        cache.store(3, None, t0);
        assert_eq!(cache.len(), 2, "maxRows bounds the cache");
    }
}
