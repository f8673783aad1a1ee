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

/// One partition's state.
pub struct PartitionState {
    db: DB,
    path: PathBuf,
    users: LruCache<i64, Cached<UserState>>,
    merchants: LruCache<i64, Cached<MerchantState>>,
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
    /// `cache_entries` users and as many merchants in memory.
    ///
    /// The cache must hold more keys than one micro-batch touches (4,096 at least),
    /// so a changed entry is never evicted before its batch is flushed; should it
    /// happen anyway, the entry is written into the pending batch, not lost.
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
        let cap = NonZeroUsize::new(cache_entries.max(4096)).unwrap_or(NonZeroUsize::MIN);
        Ok(PartitionState {
            db,
            path: dir.to_owned(),
            users: LruCache::new(cap),
            merchants: LruCache::new(cap),
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

    /// Writes an evicted dirty value into the pending batch so nothing is lost.
    fn spill_user(&mut self, id: i64, c: Cached<UserState>) {
        if c.dirty {
            self.scratch.clear();
            codec::encode_user(&c.value, &mut self.scratch);
            self.batch.put(user_key(id), &self.scratch);
        }
    }

    fn spill_merchant(&mut self, id: i64, mut c: Cached<MerchantState>) {
        if c.dirty {
            write_journal(&mut self.batch, id, c.value.take_journal());
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
            let key = user_key(user_id);
            let value = match self.db.get_pinned(key).map_err(|e| self.rocks(e))? {
                Some(bytes) => {
                    codec::decode_user(&bytes, cfg).map_err(|source| StateError::Codec {
                        path: self.path.clone(),
                        key: key.to_vec(),
                        source,
                    })?
                }
                None => UserState::default(),
            };
            if self.users.len() == self.users.cap().get()
                && let Some((id, old)) = self.users.pop_lru()
            {
                self.spill_user(id, old);
            }
            self.users.put(
                user_id,
                Cached {
                    value,
                    dirty: false,
                },
            );
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
            let value = self.load_merchant(merchant_id, cfg)?;
            if self.merchants.len() == self.merchants.cap().get()
                && let Some((id, old)) = self.merchants.pop_lru()
            {
                self.spill_merchant(id, old);
            }
            self.merchants.put(
                merchant_id,
                Cached {
                    value,
                    dirty: false,
                },
            );
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
