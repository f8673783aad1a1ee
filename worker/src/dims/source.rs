//! The database-backed [`Dimensions`] source. `prefetch` fills each batch's
//! view — one query per table for the batch's cache misses, chunks of
//! [`KEYS_PER_QUERY`] keys, a bounded number in flight — and the batch's
//! lookups then read that view without locks.
//!
//! When the database cannot be read, a copy past its TTL still serves for up
//! to `maxStaleness` more; a key with no such copy makes the batch wait: the
//! source retries with backoff until the database answers (or the worker
//! stops, which returns [`Unavailable`] and leaves the batch undecided). The
//! outage is in [`DimensionsHealth`] for `/status` meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use futures::{StreamExt, TryStreamExt};
use riskpipe_crds::{CacheMode, DimensionsSpec, TableSettings};
use riskpipe_engine::dimensions::{
    BatchKeys, BatchView, Dimensions, HistoryRow, MerchantProfile, StaticDimensions, Unavailable,
    UserProfile,
};

use crate::dims::cache::{FullTable, Loaded, LruTable, RowMap};
use crate::dims::db::{Credentials, Database, DbError, KEYS_PER_QUERY, TextRows};
use crate::dims::health::{DimensionsHealth, StatsSnapshot, TableStats};
use crate::dims::tables::{BadValues, TableDef, TextRow};

/// A query that takes longer than this counts as failed (a locked table, a
/// database that stopped answering).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before a retry; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// After a failure, batches that can be served from expired copies do not
/// query again for this long (the database is not hammered once per batch).
const QUIET_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How long the start waits for an unreachable database before failing.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a table is in its quiet period after a failure, and how to set it.
type Quiet<'a> = (&'a dyn Fn(Instant) -> bool, &'a dyn Fn(Option<Instant>));

/// Where the tables are and how they are cached.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `spec.dimensions.database.url` (no credentials in it).
    pub url: String,
    /// From the mounted Secret.
    pub credentials: Option<Credentials>,
    /// Users table and cache.
    pub users: TableCache,
    /// Merchants table and cache.
    pub merchants: TableCache,
    /// List tables: users, merchants, IPs, locations.
    pub lists: [String; 4],
    /// How often the lists are re-read.
    pub lists_refresh: Duration,
    /// How long past its TTL a copy serves while the database is down.
    pub max_staleness: Duration,
    /// Connections in the pool, and queries in flight per table.
    pub connections: u32,
}

/// A table's name and cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCache {
    /// Name in the database.
    pub table: String,
    /// LRU size.
    pub max_rows: u64,
    /// Validity (LRU) or reload interval (full).
    pub ttl: Duration,
    /// LRU or full.
    pub mode: CacheMode,
}

impl From<TableSettings<'_>> for TableCache {
    fn from(s: TableSettings<'_>) -> Self {
        TableCache {
            table: s.table.to_owned(),
            max_rows: s.max_rows,
            ttl: s.ttl,
            mode: s.mode,
        }
    }
}

impl DbSettings {
    /// The settings of `spec.dimensions` when it names a database.
    pub fn of(spec: &DimensionsSpec, credentials: Option<Credentials>) -> Option<Self> {
        let db = spec.database.as_ref()?;
        let l = &spec.lists;
        Some(DbSettings {
            url: db.url.clone(),
            credentials,
            users: spec.users.settings().into(),
            merchants: spec.merchants.settings().into(),
            lists: [
                l.users_table.clone(),
                l.merchants_table.clone(),
                l.ips_table.clone(),
                l.locations_table.clone(),
            ],
            lists_refresh: l.refresh_interval.as_std(),
            max_staleness: spec.max_staleness.as_std(),
            connections: 4,
        })
    }
}

enum Cache<R> {
    Lru(LruTable<R>),
    Full(FullTable<RowMap<R>>),
}

struct Table<R> {
    def: TableDef,
    ttl: Duration,
    cache: Cache<R>,
    stats: TableStats,
    quiet_until: std::sync::Mutex<Option<Instant>>,
    parse: fn(&TextRow<'_>) -> R,
}

impl<R> Table<R> {
    fn new(def: TableDef, c: &TableCache, parse: fn(&TextRow<'_>) -> R) -> Self {
        Table {
            def,
            ttl: c.ttl,
            cache: match c.mode {
                CacheMode::Lru => Cache::Lru(LruTable::new(c.max_rows, c.ttl)),
                CacheMode::Full => Cache::Full(FullTable::default()),
            },
            stats: TableStats::default(),
            quiet_until: std::sync::Mutex::new(None),
            parse,
        }
    }

    fn quiet(&self, now: Instant) -> bool {
        self.quiet_until
            .lock()
            .ok()
            .and_then(|q| *q)
            .is_some_and(|until| now < until)
    }

    fn set_quiet(&self, until: Option<Instant>) {
        if let Ok(mut q) = self.quiet_until.lock() {
            *q = until;
        }
    }
}

/// The lists as last read.
#[derive(Debug, Default)]
struct Lists {
    dims: StaticDimensions,
}

/// One table's rows in a batch's view.
enum TableView<R> {
    Rows(AHashMap<i64, Arc<R>>),
    Full(Arc<Loaded<RowMap<R>>>),
}

impl<R> TableView<R> {
    fn get(&self, key: i64) -> Option<&R> {
        match self {
            TableView::Rows(rows) => rows.get(&key).map(AsRef::as_ref),
            TableView::Full(all) => all.rows.get(&key),
        }
    }
}

struct DbView<'s> {
    users: TableView<UserProfile>,
    merchants: TableView<MerchantProfile>,
    lists: Arc<Loaded<Lists>>,
    history: &'s StaticDimensions,
}

impl Dimensions for DbView<'_> {
    fn user(&self, user_id: i64) -> Option<&UserProfile> {
        self.users.get(user_id)
    }
    fn merchant(&self, merchant_id: i64) -> Option<&MerchantProfile> {
        self.merchants.get(merchant_id)
    }
    fn history(&self, user_id: i64, date_days: i32, hour: u8) -> Option<HistoryRow> {
        self.history.history(user_id, date_days, hour)
    }
    fn user_blacklisted(&self, user_id: i64) -> bool {
        self.lists.rows.dims.user_blacklisted(user_id)
    }
    fn merchant_blacklisted(&self, merchant_id: i64) -> bool {
        self.lists.rows.dims.merchant_blacklisted(merchant_id)
    }
    fn ip_blacklisted(&self, ip: &str) -> bool {
        self.lists.rows.dims.ip_blacklisted(ip)
    }
    fn location_high_risk(&self, location: &str) -> bool {
        self.lists.rows.dims.location_high_risk(location)
    }
}

/// Dimension tables in a MySQL/MariaDB or PostgreSQL database.
pub struct DbDimensions {
    runtime: tokio::runtime::Runtime,
    db: Database,
    users: Table<UserProfile>,
    merchants: Table<MerchantProfile>,
    list_defs: [TableDef; 4],
    lists: FullTable<Lists>,
    lists_refresh: Duration,
    lists_stats: TableStats,
    lists_quiet: std::sync::Mutex<Option<Instant>>,
    max_staleness: Duration,
    in_flight: usize,
    history: StaticDimensions,
    health: Arc<DimensionsHealth>,
    bad: BadValues,
    stop: Arc<AtomicBool>,
}

/// A failed start: a schema error names the table and column.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime could not be built.
    #[error("starting the database client: {0}")]
    Runtime(#[from] std::io::Error),
    /// The database refused or could not be reached in time.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The worker was stopped while waiting for the database.
    #[error("stopped while waiting for the dimension database")]
    Stopped,
}

impl DbDimensions {
    /// Connects, checks every table and column (a missing one is an error
    /// naming it, before any record is decided), and loads the lists and the
    /// full-cache tables. An unreachable database is waited for up to two
    /// minutes. History rows come from `history` (the CSV folder, if any).
    pub fn start(
        settings: &DbSettings,
        history: StaticDimensions,
        health: Arc<DimensionsHealth>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("riskpipe-dims")
            .enable_all()
            .build()?;
        let db = {
            let _guard = runtime.enter();
            Database::connect_lazy(
                &settings.url,
                settings.credentials.as_ref(),
                settings.connections,
            )?
        };
        let [bu, bm, bi, hl] = &settings.lists;
        let list_defs = [
            TableDef::list("spec.dimensions.lists.usersTable", bu, "user_id"),
            TableDef::list("spec.dimensions.lists.merchantsTable", bm, "merchant_id"),
            TableDef::list("spec.dimensions.lists.ipsTable", bi, "ip_address"),
            TableDef::list("spec.dimensions.lists.locationsTable", hl, "location"),
        ];
        let this = DbDimensions {
            runtime,
            db,
            users: Table::new(
                TableDef::users(&settings.users.table),
                &settings.users,
                |r| r.user(),
            ),
            merchants: Table::new(
                TableDef::merchants(&settings.merchants.table),
                &settings.merchants,
                |r| r.merchant(),
            ),
            list_defs,
            lists: FullTable::default(),
            lists_refresh: settings.lists_refresh,
            lists_stats: TableStats::default(),
            lists_quiet: std::sync::Mutex::new(None),
            max_staleness: settings.max_staleness,
            in_flight: settings.connections.max(1) as usize,
            history,
            health,
            bad: BadValues::default(),
            stop,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let defs: Vec<&TableDef> = [&this.users.def, &this.merchants.def]
            .into_iter()
            .chain(this.list_defs.iter())
            .collect();
        for def in defs {
            this.at_start(deadline, &def.name, || {
                this.runtime.block_on(this.db.check(def))
            })?;
        }
        this.at_start(deadline, "lists", || this.load_lists().map(drop))?;
        if matches!(this.users.cache, Cache::Full(_)) {
            this.at_start(deadline, &this.users.def.name, || {
                this.reload_full(&this.users).map(drop)
            })?;
        }
        if matches!(this.merchants.cache, Cache::Full(_)) {
            this.at_start(deadline, &this.merchants.def.name, || {
                this.reload_full(&this.merchants).map(drop)
            })?;
        }
        Ok(this)
    }

    /// Retries `step` while the database is unreachable, until `deadline`.
    fn at_start<T>(
        &self,
        deadline: Instant,
        table: &str,
        mut step: impl FnMut() -> Result<T, DbError>,
    ) -> Result<T, StartError> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match step() {
                Ok(v) => {
                    self.health.recovered(table);
                    return Ok(v);
                }
                Err(e @ (DbError::Schema { .. } | DbError::Url(_))) => return Err(e.into()),
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(e) => {
                    self.health.failed(table, &e.to_string());
                    if !self.sleep(backoff) {
                        return Err(StartError::Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Sleeps up to `d`; false when the worker stops meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        !self.stop.load(Ordering::Relaxed)
    }

    /// Outages for `/status`.
    pub fn health(&self) -> &Arc<DimensionsHealth> {
        &self.health
    }

    /// Bad values read so far.
    pub fn bad_values(&self) -> u64 {
        self.bad.count()
    }

    /// Counters of the users, merchants and list tables.
    pub fn stats(&self) -> [(&str, StatsSnapshot); 3] {
        [
            (self.users.def.name.as_str(), self.users.stats.snapshot()),
            (
                self.merchants.def.name.as_str(),
                self.merchants.stats.snapshot(),
            ),
            ("lists", self.lists_stats.snapshot()),
        ]
    }

    /// Runs one query with the timeout and the table's counters.
    async fn timed<T>(
        &self,
        stats: &TableStats,
        query: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let started = Instant::now();
        TableStats::add(&stats.queries, 1);
        let result = match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Query(format!(
                "no answer within {} s",
                QUERY_TIMEOUT.as_secs()
            ))),
        };
        TableStats::add(&stats.query_micros, started.elapsed().as_micros() as u64);
        if result.is_err() {
            TableStats::add(&stats.errors, 1);
        }
        result
    }

    fn parse_rows<R>(&self, table: &Table<R>, rows: TextRows) -> RowMap<R> {
        TableStats::add(&table.stats.rows_loaded, rows.len() as u64);
        let mut out = RowMap::with_capacity(rows.len());
        for (key, values) in rows {
            let Ok(k) = key.trim().parse::<i64>() else {
                self.bad.report_key(&table.def.name, &key, table.def.key);
                continue;
            };
            let row = TextRow {
                table: &table.def.name,
                key: &key,
                values: &values,
                bad: &self.bad,
            };
            out.insert(k, (table.parse)(&row));
        }
        out
    }

    /// Reads the rows of `keys`, a bounded number of queries in flight.
    fn read_keys<R>(&self, table: &Table<R>, keys: &[i64]) -> Result<RowMap<R>, DbError> {
        let rows: Vec<TextRows> = self.runtime.block_on(
            futures::stream::iter(keys.chunks(KEYS_PER_QUERY))
                .map(|chunk| self.timed(&table.stats, self.db.rows(&table.def, chunk)))
                .buffer_unordered(self.in_flight)
                .try_collect(),
        )?;
        Ok(self.parse_rows(table, rows.into_iter().flatten().collect()))
    }

    fn reload_full<R>(&self, table: &Table<R>) -> Result<Arc<Loaded<RowMap<R>>>, DbError> {
        let Cache::Full(full) = &table.cache else {
            return Err(DbError::Query("not a full-cache table".to_owned()));
        };
        let started = Instant::now();
        let rows = self
            .runtime
            .block_on(self.timed(&table.stats, self.db.all_rows(&table.def)))?;
        let rows = self.parse_rows(table, rows);
        tracing::debug!(table = %table.def.name, rows = rows.len(), "full-cache table loaded");
        Ok(full.replace(rows, started))
    }

    fn load_lists(&self) -> Result<Arc<Loaded<Lists>>, DbError> {
        let started = Instant::now();
        let mut dims = StaticDimensions::default();
        let read = |def: &TableDef| {
            self.runtime
                .block_on(self.timed(&self.lists_stats, self.db.all_rows(def)))
        };
        let [users, merchants, ips, locations] = &self.list_defs;
        for (key, _) in read(users)? {
            match key.trim().parse() {
                Ok(id) => {
                    dims.blacklist_users.insert(id);
                }
                Err(_) => self.bad.report_key(&users.name, &key, users.key),
            }
        }
        for (key, _) in read(merchants)? {
            match key.trim().parse() {
                Ok(id) => {
                    dims.blacklist_merchants.insert(id);
                }
                Err(_) => self.bad.report_key(&merchants.name, &key, merchants.key),
            }
        }
        for (ip, _) in read(ips)? {
            let ip = ip.trim();
            if !ip.is_empty() {
                dims.add_blacklisted_ip(ip);
            }
        }
        for (location, _) in read(locations)? {
            let location = location.trim();
            if !location.is_empty() {
                dims.high_risk_locations.insert(location.to_owned());
            }
        }
        let n = dims.blacklist_users.len()
            + dims.blacklist_merchants.len()
            + dims.blacklist_ips.len()
            + dims.blacklist_ip_ranges.len()
            + dims.high_risk_locations.len();
        TableStats::add(&self.lists_stats.rows_loaded, n as u64);
        Ok(self.lists.replace(Lists { dims }, started))
    }

    /// Retries `attempt` with backoff until it serves, or the worker stops.
    fn waiting<T>(
        &self,
        table: &str,
        mut attempt: impl FnMut() -> Result<T, DbError>,
    ) -> Result<T, Unavailable> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let reason = e.to_string();
                    self.health.failed(table, &reason);
                    if !self.sleep(backoff) {
                        return Err(Unavailable {
                            table: table.to_owned(),
                            reason,
                        });
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// A whole table (full-cache or lists) for this batch: reloaded when older
    /// than `every`; on failure the old copy serves while younger than
    /// `every + maxStaleness`.
    fn whole<T>(
        &self,
        name: &str,
        full: &FullTable<T>,
        every: Duration,
        stats: &TableStats,
        quiet: Quiet<'_>,
        reload: impl Fn() -> Result<Arc<Loaded<T>>, DbError>,
    ) -> Result<Arc<Loaded<T>>, Unavailable> {
        self.waiting(name, || {
            let now = Instant::now();
            let current = full.current();
            let servable = |c: &Arc<Loaded<T>>, limit: Duration| {
                now.saturating_duration_since(c.loaded) < limit
            };
            if let Some(c) = current.as_ref().filter(|c| servable(c, every)) {
                TableStats::add(&stats.hits, 1);
                return Ok(Arc::clone(c));
            }
            let stale_ok = current
                .as_ref()
                .filter(|c| servable(c, every + self.max_staleness));
            if let Some(c) = stale_ok.filter(|_| (quiet.0)(now)) {
                TableStats::add(&stats.stale_served, 1);
                return Ok(Arc::clone(c));
            }
            match reload() {
                Ok(fresh) => {
                    (quiet.1)(None);
                    self.health.recovered(name);
                    Ok(fresh)
                }
                Err(e) => match stale_ok {
                    Some(c) => {
                        self.health.failed(name, &e.to_string());
                        (quiet.1)(Some(now + QUIET_AFTER_FAILURE));
                        TableStats::add(&stats.stale_served, 1);
                        Ok(Arc::clone(c))
                    }
                    None => Err(e),
                },
            }
        })
    }

    fn table_view<R>(&self, table: &Table<R>, keys: &[i64]) -> Result<TableView<R>, Unavailable> {
        let name = table.def.name.as_str();
        let quiet = |now| table.quiet(now);
        let set_quiet = |until| table.set_quiet(until);
        let lru = match &table.cache {
            Cache::Full(full) => {
                return self
                    .whole(
                        name,
                        full,
                        table.ttl,
                        &table.stats,
                        (&quiet, &set_quiet),
                        || self.reload_full(table),
                    )
                    .map(TableView::Full);
            }
            Cache::Lru(lru) => lru,
        };
        self.waiting(name, || {
            let now = Instant::now();
            let mut out = AHashMap::with_capacity(keys.len());
            let lookup = lru.lookup(keys, now, &mut out);
            let answered = keys.len() - lookup.to_load.len();
            if lookup.to_load.is_empty() {
                TableStats::add(&table.stats.hits, answered as u64);
                return Ok(TableView::Rows(out));
            }
            let limit = self.max_staleness + table.ttl;
            let all_stale_ok = lookup.expired.len() == lookup.to_load.len()
                && lookup
                    .expired
                    .iter()
                    .all(|(_, e)| now.saturating_duration_since(e.loaded) < limit);
            let serve_stale = |out: &mut AHashMap<i64, Arc<R>>| {
                for (key, e) in &lookup.expired {
                    if let Some(row) = &e.row {
                        out.insert(*key, Arc::clone(row));
                    }
                }
                TableStats::add(&table.stats.stale_served, lookup.expired.len() as u64);
            };
            if all_stale_ok && table.quiet(now) {
                TableStats::add(&table.stats.hits, answered as u64);
                serve_stale(&mut out);
                return Ok(TableView::Rows(out));
            }
            match self.read_keys(table, &lookup.to_load) {
                Ok(mut rows) => {
                    TableStats::add(&table.stats.hits, answered as u64);
                    TableStats::add(&table.stats.misses, lookup.to_load.len() as u64);
                    for &key in &lookup.to_load {
                        let row = rows.remove(&key).map(Arc::new);
                        if let Some(row) = &row {
                            out.insert(key, Arc::clone(row));
                        }
                        lru.store(key, row, now);
                    }
                    table.set_quiet(None);
                    self.health.recovered(name);
                    Ok(TableView::Rows(out))
                }
                Err(e) if all_stale_ok => {
                    self.health.failed(name, &e.to_string());
                    table.set_quiet(Some(now + QUIET_AFTER_FAILURE));
                    TableStats::add(&table.stats.hits, answered as u64);
                    serve_stale(&mut out);
                    Ok(TableView::Rows(out))
                }
                Err(e) => Err(e),
            }
        })
    }

    fn lists_now(&self) -> Result<Arc<Loaded<Lists>>, Unavailable> {
        let quiet = |now: Instant| {
            self.lists_quiet
                .lock()
                .ok()
                .and_then(|q| *q)
                .is_some_and(|until| now < until)
        };
        let set_quiet = |until: Option<Instant>| {
            if let Ok(mut q) = self.lists_quiet.lock() {
                *q = until;
            }
        };
        self.whole(
            "lists",
            &self.lists,
            self.lists_refresh,
            &self.lists_stats,
            (&quiet, &set_quiet),
            || self.load_lists(),
        )
    }
}

impl Dimensions for DbDimensions {
    /// The batch's view: lists, then users, then merchants; each waits while
    /// its table cannot serve.
    fn prefetch<'s>(&'s self, keys: &BatchKeys) -> Result<Option<BatchView<'s>>, Unavailable> {
        let lists = self.lists_now()?;
        let users = self.table_view(&self.users, &keys.users)?;
        let merchants = self.table_view(&self.merchants, &keys.merchants)?;
        Ok(Some(Box::new(DbView {
            users,
            merchants,
            lists,
            history: &self.history,
        })))
    }
    // Outside a batch (never in the record step, which always prefetches)
    // only the full-cache tables and the lists answer.
    fn user(&self, user_id: i64) -> Option<&UserProfile> {
        let _ = user_id;
        None
    }
    fn merchant(&self, merchant_id: i64) -> Option<&MerchantProfile> {
        let _ = merchant_id;
        None
    }
    fn history(&self, user_id: i64, date_days: i32, hour: u8) -> Option<HistoryRow> {
        self.history.history(user_id, date_days, hour)
    }
    fn user_blacklisted(&self, user_id: i64) -> bool {
        self.lists
            .current()
            .is_some_and(|l| l.rows.dims.user_blacklisted(user_id))
    }
    fn merchant_blacklisted(&self, merchant_id: i64) -> bool {
        self.lists
            .current()
            .is_some_and(|l| l.rows.dims.merchant_blacklisted(merchant_id))
    }
    fn ip_blacklisted(&self, ip: &str) -> bool {
        self.lists
            .current()
            .is_some_and(|l| l.rows.dims.ip_blacklisted(ip))
    }
    fn location_high_risk(&self, location: &str) -> bool {
        self.lists
            .current()
            .is_some_and(|l| l.rows.dims.location_high_risk(location))
    }
}
