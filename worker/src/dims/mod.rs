//! Dimension tables read from where a bank keeps them: a MySQL/MariaDB or
//! PostgreSQL database (SPEC §2), looked up per micro-batch through per-table
//! caches. The CSV folder reader stays in [`crate::dims_csv`].
//!
//! - [`tables`]: the seed's tables and columns, and how a row's text becomes
//!   a profile (a bad value is logged once, counted, and read as NULL).
//! - [`db`]: the one async client for both databases (sqlx).
//! - [`cache`]: per-table caches (LRU with TTL, misses cached; or the whole table).
//! - [`source`]: the [`Dimensions`](riskpipe_engine::Dimensions) source that
//!   fills each batch's view in `prefetch` and waits while the database is down.
//! - [`health`]: what `/status` and the metrics say about the tables.

pub mod cache;
pub mod db;
pub mod health;
pub mod source;
pub mod tables;

pub use health::DimensionsHealth;
pub use source::{DbDimensions, DbSettings};
