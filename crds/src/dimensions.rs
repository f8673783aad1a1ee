//! `spec.dimensions`: the looked-up tables (SPEC §2) and their caches.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{duration::Duration, refs::SecretRef};

/// Profile tables, history summary and lists the rules look up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DimensionsSpec {
    /// Folder of CSV files (local mode): user_risk_profiles.csv,
    /// merchant_risk_profiles.csv, transaction_history_summary.csv, blacklist_*.csv,
    /// high_risk_locations.csv. A missing file is an empty table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Database holding the tables (MySQL/MariaDB or PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
    /// User risk profiles, keyed by user_id.
    pub users: UsersTable,
    /// Merchant risk profiles, keyed by merchant_id.
    pub merchants: MerchantsTable,
    /// Hourly history summary, keyed by (user_id, date_key, hour_key).
    pub history: HistoryTable,
    /// Blacklists.
    pub lists: ListsSpec,
    /// While the database cannot be read, a cached row (or cached miss) past
    /// its TTL, or a full-cache table past its reload, still serves until it
    /// is this old; a record whose row is older or not cached waits for the
    /// database (default 10 min).
    pub max_staleness: Duration,
}

impl Default for DimensionsSpec {
    fn default() -> Self {
        DimensionsSpec {
            directory: None,
            database: None,
            users: UsersTable::default(),
            merchants: MerchantsTable::default(),
            history: HistoryTable::default(),
            lists: ListsSpec::default(),
            max_staleness: Duration::from_millis(10 * 60_000),
        }
    }
}

/// A database connection for the dimension tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseSpec {
    /// Connection URL without credentials: `mysql://host:3306/risk_db` or
    /// `postgres://host:5432/risk_db`.
    #[schemars(regex(pattern = r"^(mysql|postgres|postgresql)://"))]
    pub url: String,
    /// Secret with keys `username` and `password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// How a table is cached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CacheMode {
    /// Rows are looked up per micro-batch and kept in an LRU cache of `maxRows`
    /// entries for `ttl` (Flink's PARTIAL lookup cache).
    #[default]
    Lru,
    /// The whole table is loaded at start and reloaded every `ttl` (Flink's
    /// FULL lookup cache), for small tables such as merchants.
    Full,
}

/// A table's name and cache settings with defaults resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSettings<'a> {
    /// Table name (or CSV file stem in local mode).
    pub table: &'a str,
    /// Most cached rows.
    pub max_rows: u64,
    /// How long a cached row (or a cached miss) stays valid.
    pub ttl: std::time::Duration,
    /// LRU lookups or the whole table in memory.
    pub mode: CacheMode,
}

/// Declares a looked-up table and its cache, with its own defaults (the seed's
/// `lookup.cache.*` settings differ per table), so a manifest that overrides only
/// `cache.ttl` keeps that table's `maxRows` and name.
macro_rules! lookup_table {
    (
        $(#[$table_doc:meta])* $table:ident,
        $(#[$cache_doc:meta])* $cache:ident,
        table = $name:literal, max_rows = $rows:literal, ttl_ms = $ttl:expr
    ) => {
        $(#[$table_doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
        pub struct $table {
            /// Table name in the database (or CSV file stem in local mode).
            #[schemars(length(min = 1, max = 128))]
            pub table: String,
            /// Lookup cache.
            pub cache: $cache,
        }

        impl Default for $table {
            fn default() -> Self {
                Self {
                    table: $name.into(),
                    cache: $cache::default(),
                }
            }
        }

        impl $table {
            /// Name and cache settings in one value.
            pub fn settings(&self) -> TableSettings<'_> {
                TableSettings {
                    table: &self.table,
                    max_rows: u64::try_from(self.cache.max_rows).unwrap_or(0),
                    ttl: self.cache.ttl.as_std(),
                    mode: self.cache.mode,
                }
            }
        }

        $(#[$cache_doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
        pub struct $cache {
            /// Most rows kept in the cache (per worker).
            #[schemars(range(min = 0))]
            pub max_rows: i64,
            /// How long a cached row (or a cached miss) stays valid; in
            /// `full` mode, how often the whole table is reloaded.
            pub ttl: Duration,
            /// `lru` (default): rows looked up per micro-batch; `full`: the
            /// whole table in memory, reloaded every `ttl`.
            pub mode: CacheMode,
        }

        impl Default for $cache {
            fn default() -> Self {
                Self {
                    max_rows: $rows,
                    ttl: Duration::from_millis($ttl),
                    mode: CacheMode::Lru,
                }
            }
        }
    };
}

lookup_table!(
    /// The user risk profile table (SPEC §2, `user_risk_profile`).
    UsersTable,
    /// Cache of user profiles (seed: 100,000 rows, 30 min).
    UsersCache,
    table = "user_risk_profiles", max_rows = 100_000, ttl_ms = 30 * 60_000
);

lookup_table!(
    /// The merchant risk profile table (SPEC §2, `merchant_risk_profile`).
    MerchantsTable,
    /// Cache of merchant profiles (seed: 50,000 rows, 1 h).
    MerchantsCache,
    table = "merchant_risk_profiles", max_rows = 50_000, ttl_ms = 3_600_000
);

lookup_table!(
    /// The hourly history summary (SPEC §2, `transaction_history_summary`).
    HistoryTable,
    /// Cache of history rows (100,000 rows, 1 h).
    HistoryCache,
    table = "transaction_history_summary", max_rows = 100_000, ttl_ms = 3_600_000
);

/// Blacklists (SPEC §6): tables re-read periodically, plus entries inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ListsSpec {
    /// How often the list tables are re-read.
    pub refresh_interval: Duration,
    /// Table of blacklisted user_ids (or CSV file stem in local mode).
    #[schemars(length(min = 1, max = 128))]
    pub users_table: String,
    /// Table of blacklisted merchant_ids.
    #[schemars(length(min = 1, max = 128))]
    pub merchants_table: String,
    /// Table of blacklisted IP addresses (`ip_address`: an address or a CIDR
    /// range, IPv4 or IPv6).
    #[schemars(length(min = 1, max = 128))]
    pub ips_table: String,
    /// Table of high-risk locations (column `location`).
    #[schemars(length(min = 1, max = 128))]
    pub locations_table: String,
    /// Blacklisted user_ids, in addition to the table.
    pub blacklist_users: Vec<i64>,
    /// Blacklisted merchant_ids, in addition to the table.
    pub blacklist_merchants: Vec<i64>,
    /// Blacklisted IP addresses or CIDR ranges, in addition to the table.
    pub blacklist_ips: Vec<String>,
}

impl Default for ListsSpec {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_millis(5 * 60_000),
            users_table: "blacklist_users".into(),
            merchants_table: "blacklist_merchants".into(),
            ips_table: "blacklist_ips".into(),
            locations_table: "high_risk_locations".into(),
            blacklist_users: Vec::new(),
            blacklist_merchants: Vec::new(),
            blacklist_ips: Vec::new(),
        }
    }
}
