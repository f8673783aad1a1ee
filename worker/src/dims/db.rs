//! The one async client for both databases (sqlx): connect with the mounted
//! credentials, check that the tables and columns exist, and read rows with
//! every column as text — the misses of a batch in one query per table
//! (`IN (…)` on MySQL/MariaDB, `= ANY($1)` on PostgreSQL).

use std::str::FromStr;
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};

use crate::dims::tables::TableDef;

/// Keys per lookup query: a batch with more distinct misses is split.
pub const KEYS_PER_QUERY: usize = 1000;

/// A read of the database failed (never with credentials: the URL is not in it).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL could not be parsed.
    #[error("spec.dimensions.database.url is not a MySQL or PostgreSQL URL: {0}")]
    Url(String),
    /// A table or column is missing, or the query was refused.
    #[error("{setting} '{table}': {reason}")]
    Schema {
        /// The manifest field naming the table.
        setting: &'static str,
        /// The table.
        table: String,
        /// What is missing.
        reason: String,
    },
    /// The database could not be reached or answered with an error.
    #[error("{0}")]
    Query(String),
}

/// A table or column name that is not a plain identifier.
fn check_identifier(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a table name (letters, digits and '_', optionally schema.table)"
        ))
    }
}

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MySQL or MariaDB.
    MySql,
    /// PostgreSQL.
    Postgres,
}

impl Flavor {
    fn quote(self, name: &str) -> String {
        let q = match self {
            Flavor::MySql => '`',
            Flavor::Postgres => '"',
        };
        name.split('.')
            .map(|part| format!("{q}{part}{q}"))
            .collect::<Vec<_>>()
            .join(".")
    }

    fn as_text(self, column: &str) -> String {
        let c = self.quote(column);
        match self {
            Flavor::MySql => format!("CAST({c} AS CHAR)"),
            Flavor::Postgres => format!("{c}::text"),
        }
    }

    /// `SELECT key, col… FROM table` with every column as text.
    fn select(self, table: &TableDef) -> String {
        let mut columns = vec![self.as_text(table.key)];
        columns.extend(table.columns.iter().map(|c| self.as_text(c)));
        format!(
            "SELECT {} FROM {}",
            columns.join(", "),
            self.quote(&table.name)
        )
    }
}

/// Rows read as text: the key and the value columns.
pub type TextRows = Vec<(String, Vec<Option<String>>)>;

enum Pool {
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// A connection pool to the dimension database.
pub struct Database {
    pool: Pool,
}

/// Login from the mounted Secret.
#[derive(Clone)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: secrecy::SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn query_error(e: &sqlx::Error) -> DbError {
    DbError::Query(e.to_string())
}

impl Database {
    /// A pool of at most `connections` to `url` (TLS as its `sslmode` /
    /// `ssl-mode` asks), logging in with `credentials` when given. Connections
    /// are opened lazily: an unreachable database fails the first query.
    pub fn connect_lazy(
        url: &str,
        credentials: Option<&Credentials>,
        connections: u32,
    ) -> Result<Self, DbError> {
        use secrecy::ExposeSecret;
        let acquire = Duration::from_secs(5);
        let pool = if url.starts_with("mysql://") {
            let mut opts =
                MySqlConnectOptions::from_str(url).map_err(|e| DbError::Url(e.to_string()))?;
            if let Some(c) = credentials {
                opts = opts
                    .username(&c.username)
                    .password(c.password.expose_secret());
            }
            opts = opts.disable_statement_logging();
            Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(acquire)
                    .connect_lazy_with(opts),
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts =
                PgConnectOptions::from_str(url).map_err(|e| DbError::Url(e.to_string()))?;
            if let Some(c) = credentials {
                opts = opts
                    .username(&c.username)
                    .password(c.password.expose_secret());
            }
            opts = opts.disable_statement_logging();
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(connections)
                    .acquire_timeout(acquire)
                    .connect_lazy_with(opts),
            )
        } else {
            return Err(DbError::Url(
                "it must start with mysql://, postgres:// or postgresql://".to_owned(),
            ));
        };
        Ok(Database { pool })
    }

    /// Which database this is.
    pub fn flavor(&self) -> Flavor {
        match self.pool {
            Pool::MySql(_) => Flavor::MySql,
            Pool::Postgres(_) => Flavor::Postgres,
        }
    }

    /// Checks that `table` has its key and value columns: a missing table or
    /// column is a [`DbError::Schema`] naming it; an unreachable database a
    /// [`DbError::Query`].
    pub async fn check(&self, table: &TableDef) -> Result<(), DbError> {
        let schema = |reason: String| DbError::Schema {
            setting: table.setting,
            table: table.name.clone(),
            reason,
        };
        check_identifier(&table.name).map_err(schema)?;
        let flavor = self.flavor();
        let probe = |columns: &str| {
            format!(
                "SELECT {columns} FROM {} WHERE 1 = 0",
                flavor.quote(&table.name)
            )
        };
        match self.execute(&probe("1")).await {
            Ok(()) => {}
            Err(e) if is_refusal(&e) => {
                return Err(schema(format!("the table cannot be read: {e}")));
            }
            Err(e) => return Err(query_error(&e)),
        }
        for column in std::iter::once(&table.key).chain(table.columns) {
            match self.execute(&probe(&flavor.quote(column))).await {
                Ok(()) => {}
                Err(e) if is_refusal(&e) => {
                    return Err(schema(format!("no column '{column}': {e}")));
                }
                Err(e) => return Err(query_error(&e)),
            }
        }
        Ok(())
    }

    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        match &self.pool {
            Pool::MySql(p) => sqlx::query(sql).fetch_all(p).await.map(drop),
            Pool::Postgres(p) => sqlx::query(sql).fetch_all(p).await.map(drop),
        }
    }

    /// The rows of `table` whose key is in `keys` (at most [`KEYS_PER_QUERY`]).
    pub async fn rows(&self, table: &TableDef, keys: &[i64]) -> Result<TextRows, DbError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let flavor = self.flavor();
        let select = flavor.select(table);
        let key = flavor.quote(table.key);
        let width = 1 + table.columns.len();
        match &self.pool {
            Pool::MySql(p) => {
                let marks = vec!["?"; keys.len()].join(",");
                let sql = format!("{select} WHERE {key} IN ({marks})");
                let mut q = sqlx::query(&sql);
                for k in keys {
                    q = q.bind(*k);
                }
                let rows = q.fetch_all(p).await.map_err(|e| query_error(&e))?;
                rows.iter().map(|r| text_row(r, width)).collect()
            }
            Pool::Postgres(p) => {
                let sql = format!("{select} WHERE {key} = ANY($1)");
                let rows = sqlx::query(&sql)
                    .bind(keys)
                    .fetch_all(p)
                    .await
                    .map_err(|e| query_error(&e))?;
                rows.iter().map(|r| text_row(r, width)).collect()
            }
        }
    }

    /// Every row of `table` (full-cache tables and lists).
    pub async fn all_rows(&self, table: &TableDef) -> Result<TextRows, DbError> {
        let sql = self.flavor().select(table);
        let width = 1 + table.columns.len();
        let mut out = Vec::new();
        match &self.pool {
            Pool::MySql(p) => {
                let mut rows = sqlx::query(&sql).fetch(p);
                while let Some(r) = rows.try_next().await.map_err(|e| query_error(&e))? {
                    out.push(text_row(&r, width)?);
                }
            }
            Pool::Postgres(p) => {
                let mut rows = sqlx::query(&sql).fetch(p);
                while let Some(r) = rows.try_next().await.map_err(|e| query_error(&e))? {
                    out.push(text_row(&r, width)?);
                }
            }
        }
        Ok(out)
    }
}

/// The database refused the statement (no such table or column, no right):
/// at start a schema error, not an outage.
fn is_refusal(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(_))
}

fn text_row<R: Row>(row: &R, width: usize) -> Result<(String, Vec<Option<String>>), DbError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut values = Vec::with_capacity(width);
    for i in 0..width {
        values.push(
            row.try_get::<Option<String>, _>(i)
                .map_err(|e| query_error(&e))?,
        );
    }
    let mut values = values.into_iter();
    let key = values.next().flatten().unwrap_or_default();
    Ok((key, values.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_every_column_as_text() {
        let t = TableDef::list(
            "spec.dimensions.lists.ipsTable",
            "risk.blacklist_ips",
            "ip_address",
        );
        assert_eq!(
            Flavor::MySql.select(&t),
            "SELECT CAST(`ip_address` AS CHAR) FROM `risk`.`blacklist_ips`"
        );
        assert_eq!(
            Flavor::Postgres.select(&t),
            "SELECT \"ip_address\"::text FROM \"risk\".\"blacklist_ips\""
        );
    }

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(check_identifier("user_risk_profiles").is_ok());
        assert!(check_identifier("risk.users_2").is_ok());
        for bad in ["", "a;drop", "a`b", "a..b", "a b", "\"x\""] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }
}
