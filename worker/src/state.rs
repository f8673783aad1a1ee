//! Window state in RocksDB: one database per owned partition, with a bounded
//! write-back cache in front of it.
//!
//! The engine reads and updates state through [`PartitionState`] (a
//! [`StateStore`]); what changed is written in one `WriteBatch` per micro-batch by
//! [`PartitionState::flush`], together with the caller's metadata (such as the
//! source position), so state and position always move together.
//!
//! Keys: `u` + user id (8 bytes, big-endian) for users; one key per merchant
//! window entry (`M` + merchant + time + id), written and deleted as the window
//! moves, so a busy merchant costs one small write per transaction; `meta/…` for
//! metadata. One database per partition lets a partition's
//! state move to another worker alone.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use ahash::AHashMap;
use lru::LruCache;
use riskpipe_engine::codec::{self, CodecError};
use riskpipe_engine::config::WindowConfig;
use riskpipe_engine::merchant::{MerchantEntry, MerchantState};
use riskpipe_engine::store::StateStore;
use riskpipe_engine::window::UserState;
use rocksdb::{DB, Options, WriteBatch, WriteOptions};

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB refused an operation.
    #[error("state store {path}: {source}")]
    Rocks {
        /// The database folder.
        path: PathBuf,
        /// The RocksDB error.
        source: rocksdb::Error,
    },
    /// A stored value could not be decoded.
    #[error("state store {path}: key {key:?}: {source}")]
    Codec {
        /// The database folder.
        path: PathBuf,
        /// The key whose value is bad.
        key: Vec<u8>,
        /// What is wrong with it.
        source: CodecError,
    },
}

#[derive(Default)]
struct Cached<T> {
    value: T,
    dirty: bool,
}

/// Figures about the cache, for metrics and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that read RocksDB.
    pub misses: u64,
    /// Keys written by flushes.
    pub writes: u64,
}

/// Users (and as many merchants) a worker caches in memory, shared evenly by its
/// partitions, in every mode; `RISKPIPE_STATE_CACHE_ENTRIES` overrides it.
pub const CACHE_ENTRIES_PER_WORKER: usize = 800_000;

/// The fewest entries a partition's cache holds, however many partitions share it.
pub const MIN_CACHE_ENTRIES_PER_PARTITION: usize = 10_000;

/// Name of the metadata value holding the next input position to apply (a Kafka
/// offset, or a local source's next line), written by every flush with the state
/// it belongs to.
pub const NEXT_OFFSET: &str = "offset";

/// The cache size of each of `partitions` partitions of one worker: the worker's
/// budget ([`CACHE_ENTRIES_PER_WORKER`], or `RISKPIPE_STATE_CACHE_ENTRIES` when set
/// — tests use a small one to exercise eviction at scale) shared evenly.
pub fn cache_entries(partitions: usize) -> usize {
    let budget = std::env::var("RISKPIPE_STATE_CACHE_ENTRIES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    match budget {
        Some(entries) => (entries / partitions.max(1)).max(1),
        None => (CACHE_ENTRIES_PER_WORKER / partitions.max(1)).max(MIN_CACHE_ENTRIES_PER_PARTITION),
    }
}

/// One partition's state.
pub struct PartitionState {
    db: DB,
    path: PathBuf,
    users: LruCache<i64, Cached<UserState>>,
    merchants: LruCache<i64, Cached<MerchantState>>,
    /// Changed users evicted from the cache before their flush. They are read
    /// back from here (never from RocksDB, which still holds the value from
    /// before the batch) and written by the next flush.
    spilled_users: AHashMap<i64, UserState>,
    /// Changed merchants evicted before their flush, with their unwritten journal.
    spilled_merchants: AHashMap<i64, MerchantState>,
    dirty_users: Vec<i64>,
    dirty_merchants: Vec<i64>,
    batch: WriteBatch,
    scratch: Vec<u8>,
    stats: CacheStats,
}

fn user_key(id: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'u';
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn merchant_prefix(id: i64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'M';
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// One merchant window entry: `M` + merchant + time + id (sign-flipped, so keys
/// sort by time), value = cents.
fn merchant_entry_key(merchant: i64, e: &MerchantEntry) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..9].copy_from_slice(&merchant_prefix(merchant));
    k[9..17].copy_from_slice(&((e.time as u64) ^ (1 << 63)).to_be_bytes());
    k[17..].copy_from_slice(&((e.id as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// Puts a merchant's added window entries and deletes its dropped ones, in that
/// order, so an entry added and dropped in one batch ends up deleted.
fn write_journal(
    batch: &mut WriteBatch,
    merchant: i64,
    journal: riskpipe_engine::merchant::Journal,
) {
    for e in &journal.added {
        batch.put(merchant_entry_key(merchant, e), e.cents.to_le_bytes());
    }
    for e in &journal.removed {
        batch.delete(merchant_entry_key(merchant, e));
    }
}

fn merchant_entry_from(key: &[u8], value: &[u8]) -> Option<MerchantEntry> {
    let time = u64::from_be_bytes(key.get(9..17)?.try_into().ok()?) ^ (1 << 63);
    let id = u64::from_be_bytes(key.get(17..25)?.try_into().ok()?) ^ (1 << 63);
    let cents = i64::from_le_bytes(value.try_into().ok()?);
    Some(MerchantEntry {
        time: time as i64,
        id: id as i64,
        cents,
    })
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = b"meta/".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

impl PartitionState {
    /// Opens (or creates) the database of one partition in `dir`, caching up to
    /// `cache_entries` users and as many merchants in memory (at least one).
    ///
    /// A changed entry evicted before its batch is flushed is kept aside until
    /// that flush, so a batch may touch more keys than the cache holds; what is
    /// kept aside is bounded by the keys one batch touches, so callers with large
    /// batches (catch-up) flush in chunks.
    pub fn open(dir: &Path, cache_entries: usize) -> Result<Self, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(2);
        opts.set_write_buffer_size(64 << 20);
        opts.increase_parallelism(2);
        let db = DB::open(&opts, dir).map_err(|source| StateError::Rocks {
            path: dir.to_owned(),
            source,
        })?;
        let cap = NonZeroUsize::new(cache_entries).unwrap_or(NonZeroUsize::MIN);
        Ok(PartitionState {
            db,
            path: dir.to_owned(),
            users: LruCache::new(cap),
            merchants: LruCache::new(cap),
            spilled_users: AHashMap::new(),
            spilled_merchants: AHashMap::new(),
            dirty_users: Vec::new(),
            dirty_merchants: Vec::new(),
            batch: WriteBatch::default(),
            scratch: Vec::with_capacity(256),
            stats: CacheStats::default(),
        })
    }

    /// Cache figures so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    fn rocks(&self, source: rocksdb::Error) -> StateError {
        StateError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    /// The next input position the state has applied everything before
    /// ([`NEXT_OFFSET`]), when recorded.
    pub fn next_offset(&self) -> Result<Option<i64>, StateError> {
        Ok(self
            .meta(NEXT_OFFSET)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_be_bytes))
    }

    /// Flushes with the next input position as [`NEXT_OFFSET`].
    pub fn flush_at(&mut self, next_offset: i64) -> Result<(), StateError> {
        self.flush(&[(NEXT_OFFSET, &next_offset.to_be_bytes())])
    }

    /// Reads a metadata value written by [`PartitionState::flush`].
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(meta_key(name)).map_err(|e| self.rocks(e))
    }

    /// Writes every changed user and merchant plus `meta` in one atomic batch.
    pub fn flush(&mut self, meta: &[(&str, &[u8])]) -> Result<(), StateError> {
        for id in std::mem::take(&mut self.dirty_users) {
            if let Some(c) = self.users.peek_mut(&id)
                && c.dirty
            {
                c.dirty = false;
                self.scratch.clear();
                codec::encode_user(&c.value, &mut self.scratch);
                self.batch.put(user_key(id), &self.scratch);
                self.stats.writes += 1;
            }
        }
        for id in std::mem::take(&mut self.dirty_merchants) {
            if let Some(c) = self.merchants.peek_mut(&id)
                && c.dirty
            {
                c.dirty = false;
                write_journal(&mut self.batch, id, c.value.take_journal());
                self.stats.writes += 1;
            }
        }
        for (id, value) in std::mem::take(&mut self.spilled_users) {
            self.scratch.clear();
            codec::encode_user(&value, &mut self.scratch);
            self.batch.put(user_key(id), &self.scratch);
            self.stats.writes += 1;
        }
        for (id, mut value) in std::mem::take(&mut self.spilled_merchants) {
            write_journal(&mut self.batch, id, value.take_journal());
            self.stats.writes += 1;
        }
        for (name, value) in meta {
            self.batch.put(meta_key(name), value);
        }
        let batch = std::mem::take(&mut self.batch);
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.db.write_opt(batch, &opts).map_err(|e| self.rocks(e))
    }

    /// Approximate bytes of live state on disk (SST files plus memtables).
    pub fn approximate_bytes(&self) -> u64 {
        let prop = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables")
    }

    /// Counts stored users (a full scan: for reports, not the hot path).
    pub fn count_users(&self) -> u64 {
        self.db
            .prefix_iterator(b"u")
            .take_while(|r| r.as_ref().is_ok_and(|(k, _)| k.first() == Some(&b'u')))
            .count() as u64
    }

    /// Forgets every cached value, changed or not: after an aborted transaction the
    /// changes of its batch must not survive. The database is untouched.
    pub fn discard_cache(&mut self) {
        self.users.clear();
        self.merchants.clear();
        self.spilled_users.clear();
        self.spilled_merchants.clear();
        self.dirty_users.clear();
        self.dirty_merchants.clear();
        self.batch = WriteBatch::default();
    }

    /// Writes a consistent RocksDB checkpoint (hard links where possible) of the
    /// flushed state into `dir`, which must not exist yet.
    pub fn checkpoint_to(&self, dir: &Path) -> Result<(), StateError> {
        let checkpoint =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(|e| self.rocks(e))?;
        checkpoint.create_checkpoint(dir).map_err(|e| self.rocks(e))
    }

    /// Bytes of the files in a folder (the size of a written checkpoint).
    pub fn folder_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Flushes memtables to SST files (so size figures are on-disk figures).
    pub fn compact(&self) -> Result<(), StateError> {
        self.db.flush().map_err(|e| self.rocks(e))?;
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        Ok(())
    }

    /// Keeps an evicted changed user aside until the next flush.
    fn spill_user(&mut self, id: i64, c: Cached<UserState>) {
        if c.dirty {
            self.spilled_users.insert(id, c.value);
        }
    }

    /// Keeps an evicted changed merchant (and its journal) aside until the next flush.
    fn spill_merchant(&mut self, id: i64, c: Cached<MerchantState>) {
        if c.dirty {
            self.spilled_merchants.insert(id, c.value);
        }
    }

    /// Changed values kept aside since the last flush (evicted before it).
    pub fn spilled(&self) -> usize {
        self.spilled_users.len() + self.spilled_merchants.len()
    }

    fn read_user(&self, user_id: i64, cfg: &WindowConfig) -> Result<UserState, StateError> {
        let key = user_key(user_id);
        match self.db.get_pinned(key).map_err(|e| self.rocks(e))? {
            Some(bytes) => codec::decode_user(&bytes, cfg).map_err(|source| StateError::Codec {
                path: self.path.clone(),
                key: key.to_vec(),
                source,
            }),
            None => Ok(UserState::default()),
        }
    }

    fn load_merchant(
        &mut self,
        merchant_id: i64,
        cfg: &WindowConfig,
    ) -> Result<MerchantState, StateError> {
        let prefix = merchant_prefix(merchant_id);
        let mut entries = Vec::new();
        for item in self.db.iterator(rocksdb::IteratorMode::From(
            &prefix,
            rocksdb::Direction::Forward,
        )) {
            let (key, value) = item.map_err(|e| self.rocks(e))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let entry = merchant_entry_from(&key, &value).ok_or_else(|| StateError::Codec {
                path: self.path.clone(),
                key: key.to_vec(),
                source: CodecError::Corrupt,
            })?;
            entries.push(entry);
        }
        let stored = entries.clone();
        let mut state = MerchantState::from_entries(
            entries,
            cfg.merchant_feature_ms,
            cfg.merchant_feature_ms + cfg.allowed_lateness_ms,
        );
        // Entries already past the retention when loaded are deleted too.
        for e in &stored[..stored.len() - state.entries().len()] {
            self.batch.delete(merchant_entry_key(merchant_id, e));
        }
        state.enable_journal();
        Ok(state)
    }
}

impl StateStore for PartitionState {
    type Error = StateError;

    fn user(&mut self, user_id: i64, cfg: &WindowConfig) -> Result<&mut UserState, StateError> {
        if self.users.contains(&user_id) {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
            // A changed value evicted before the flush is newer than RocksDB's.
            let (value, dirty) = match self.spilled_users.remove(&user_id) {
                Some(value) => (value, true),
                None => (self.read_user(user_id, cfg)?, false),
            };
            if self.users.len() == self.users.cap().get()
                && let Some((id, old)) = self.users.pop_lru()
            {
                self.spill_user(id, old);
            }
            self.users.put(user_id, Cached { value, dirty });
            if dirty {
                self.dirty_users.push(user_id);
            }
        }
        let c = self.users.get_or_insert_mut(user_id, Cached::default);
        if !c.dirty {
            c.dirty = true;
            self.dirty_users.push(user_id);
        }
        Ok(&mut c.value)
    }

    fn merchant(
        &mut self,
        merchant_id: i64,
        cfg: &WindowConfig,
    ) -> Result<&mut MerchantState, StateError> {
        if self.merchants.contains(&merchant_id) {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
            let (value, dirty) = match self.spilled_merchants.remove(&merchant_id) {
                Some(value) => (value, true),
                None => (self.load_merchant(merchant_id, cfg)?, false),
            };
            if self.merchants.len() == self.merchants.cap().get()
                && let Some((id, old)) = self.merchants.pop_lru()
            {
                self.spill_merchant(id, old);
            }
            self.merchants.put(merchant_id, Cached { value, dirty });
            if dirty {
                self.dirty_merchants.push(merchant_id);
            }
        }
        let c = self
            .merchants
            .get_or_insert_mut(merchant_id, Cached::default);
        if !c.dirty {
            c.dirty = true;
            self.dirty_merchants.push(merchant_id);
        }
        Ok(&mut c.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskpipe_engine::parse_transaction;
    use riskpipe_engine::{Engine, EngineConfig, MemoryStore, StaticDimensions, Transaction};

    fn tx(id: i64, user: i64, merchant: i64, secs: i64, cents: i64) -> Transaction {
        let json = format!(
            r#"{{"transaction_id":{id},"user_id":{user},"amount":"{}.{:02}","merchant_id":{merchant},"transaction_time":{},"ip_address":"10.0.{}.1"}}"#,
            cents / 100,
            cents % 100,
            1_700_000_000_000 + secs * 1000,
            id % 7
        );
        parse_transaction(json.as_bytes(), riskpipe_engine::Zone::Utc).unwrap()
    }

    /// An update evicted before its flush and read again must come back, not the
    /// value RocksDB held before the batch (and the flush must not write that
    /// older value last).
    #[test]
    fn evicted_then_reread_update_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig::default();
        let mut state = PartitionState::open(dir.path(), 2).unwrap();
        let engine = Engine::new(cfg.clone());
        let dims = StaticDimensions::default();
        // User 1 is written once and flushed, so RocksDB holds one entry.
        engine
            .decide(&tx(1, 1, 9, 0, 500), &dims, &mut state)
            .unwrap();
        state.flush(&[]).unwrap();
        // In the next batch user 1 changes, is evicted by two other users, then read again.
        engine
            .decide(&tx(2, 1, 9, 10, 500), &dims, &mut state)
            .unwrap();
        engine
            .decide(&tx(3, 2, 8, 11, 500), &dims, &mut state)
            .unwrap();
        engine
            .decide(&tx(4, 3, 7, 12, 500), &dims, &mut state)
            .unwrap();
        assert!(state.spilled() > 0, "the test must evict a changed user");
        let d = engine
            .decide(&tx(5, 1, 9, 13, 500), &dims, &mut state)
            .unwrap();
        assert_eq!(d.txn_count_1h, 3, "user 1's second transaction was lost");
        // Evict it again, flush, reopen: what is on disk is the newest value.
        engine
            .decide(&tx(6, 2, 8, 14, 500), &dims, &mut state)
            .unwrap();
        engine
            .decide(&tx(7, 3, 7, 15, 500), &dims, &mut state)
            .unwrap();
        state.flush(&[("offset", &7i64.to_be_bytes())]).unwrap();
        assert_eq!(state.spilled(), 0);
        drop(state);
        let mut state = PartitionState::open(dir.path(), 2).unwrap();
        let d = engine
            .decide(&tx(8, 1, 9, 16, 500), &dims, &mut state)
            .unwrap();
        assert_eq!(d.txn_count_1h, 4);
        // The merchant window (merchant 9: ids 1, 2, 5, 8) survived the evictions too.
        assert_eq!(d.merchant_avg_amount_7d, 5.0, "merchant 9's entries");
        assert_eq!(state.meta("offset").unwrap().unwrap(), 7i64.to_be_bytes());
    }

    /// Many users through a tiny cache, flushed at uneven points and reopened
    /// once: every decision's window features equal those of an in-memory store.
    #[test]
    fn tiny_cache_matches_memory_store_across_flushes_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default());
        let dims = StaticDimensions::default();
        let mut reference = MemoryStore::default();
        let mut state = Some(PartitionState::open(dir.path(), 16).unwrap());
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..20_000i64 {
            let user = (next() % 500) as i64;
            let merchant = (next() % 40) as i64;
            let cents = (next() % 30_000) as i64;
            let t = tx(i, user, merchant, i * 3, cents);
            let s = state.as_mut().unwrap();
            let got = engine.decide(&t, &dims, s).unwrap();
            let want = engine.decide(&t, &dims, &mut reference).unwrap();
            assert_eq!(
                (
                    got.txn_count_1h,
                    got.txn_amount_1h_cents,
                    got.distinct_ip_24h,
                    got.small_amount_pattern,
                    got.user_avg_amount_30d,
                    got.merchant_avg_amount_7d,
                    got.time_since_last_txn,
                ),
                (
                    want.txn_count_1h,
                    want.txn_amount_1h_cents,
                    want.distinct_ip_24h,
                    want.small_amount_pattern,
                    want.user_avg_amount_30d,
                    want.merchant_avg_amount_7d,
                    want.time_since_last_txn,
                ),
                "transaction {i}"
            );
            if next() % 1_500 == 0 {
                s.flush(&[]).unwrap();
            }
            if i == 12_345 {
                s.flush(&[]).unwrap();
                drop(state.take());
                state = Some(PartitionState::open(dir.path(), 16).unwrap());
            }
        }
    }

    /// After an aborted batch nothing of it survives, evicted or not.
    #[test]
    fn discarded_batch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default());
        let dims = StaticDimensions::default();
        let mut state = PartitionState::open(dir.path(), 1).unwrap();
        engine
            .decide(&tx(1, 1, 1, 0, 100), &dims, &mut state)
            .unwrap();
        state.flush(&[]).unwrap();
        engine
            .decide(&tx(2, 1, 1, 1, 100), &dims, &mut state)
            .unwrap();
        engine
            .decide(&tx(3, 2, 2, 2, 100), &dims, &mut state)
            .unwrap();
        state.discard_cache();
        assert_eq!(state.spilled(), 0);
        state.flush(&[]).unwrap();
        let d = engine
            .decide(&tx(4, 1, 1, 3, 100), &dims, &mut state)
            .unwrap();
        assert_eq!(
            d.txn_count_1h, 2,
            "only the flushed transaction and this one"
        );
    }
}
