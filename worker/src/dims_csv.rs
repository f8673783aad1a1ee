//! Dimension tables from a folder of CSV files (local mode and `replay`).
//!
//! Each file is optional and has a header row with the seed's column names;
//! columns may come in any order, unknown columns are ignored and an empty cell is
//! NULL. A malformed cell is an error naming the file, line and column: a
//! profile table that silently loses rows would change decisions.

use std::path::{Path, PathBuf};

use riskpipe_engine::Cents;
use riskpipe_engine::dimensions::{HistoryRow, MerchantProfile, StaticDimensions, UserProfile};
use riskpipe_engine::timefmt::days_from_civil;
use rust_decimal::Decimal;

/// A dimension file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DimensionError {
    /// The file could not be opened or parsed as CSV.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV error.
        source: csv::Error,
    },
    /// A cell holds a value of the wrong type.
    #[error("{path}:{line}: column '{column}': {reason}")]
    Cell {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The column name.
        column: String,
        /// What was expected.
        reason: String,
    },
    /// A key column is missing from the header.
    #[error("{path}: the header has no '{column}' column")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column that must be there.
        column: &'static str,
    },
}

/// Counts of rows loaded per table, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadedCounts {
    /// user_risk_profiles rows.
    pub users: usize,
    /// merchant_risk_profiles rows.
    pub merchants: usize,
    /// transaction_history_summary rows.
    pub history: usize,
    /// Entries of all blacklists and the high-risk location list.
    pub list_entries: usize,
}

struct Table {
    path: PathBuf,
    headers: csv::StringRecord,
    reader: csv::Reader<std::fs::File>,
}

struct Row<'a> {
    table: &'a Table,
    record: &'a csv::StringRecord,
}

impl Row<'_> {
    fn line(&self) -> u64 {
        self.record.position().map_or(0, |p| p.line())
    }

    fn cell(&self, column: &str) -> Option<&str> {
        let i = self.table.headers.iter().position(|h| h.trim() == column)?;
        self.record
            .get(i)
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "NULL")
    }

    fn bad(&self, column: &str, reason: String) -> DimensionError {
        DimensionError::Cell {
            path: self.table.path.clone(),
            line: self.line(),
            column: column.to_owned(),
            reason,
        }
    }

    fn string(&self, column: &str) -> Option<String> {
        self.cell(column).map(str::to_owned)
    }

    fn int(&self, column: &str) -> Result<Option<i64>, DimensionError> {
        self.cell(column)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| self.bad(column, format!("expected an integer, got {v:?}")))
            })
            .transpose()
    }

    fn key(&self, column: &'static str) -> Result<i64, DimensionError> {
        self.int(column)?
            .ok_or_else(|| self.bad(column, "the key column is empty".to_owned()))
    }

    fn cents(&self, column: &str) -> Result<Option<Cents>, DimensionError> {
        self.cell(column)
            .map(|v| {
                Cents::parse_column(v)
                    .ok_or_else(|| self.bad(column, format!("expected a decimal, got {v:?}")))
            })
            .transpose()
    }

    fn decimal(&self, column: &str) -> Result<Option<Decimal>, DimensionError> {
        self.cell(column)
            .map(|v| {
                Decimal::from_str_exact(v)
                    .map_err(|_| self.bad(column, format!("expected a decimal, got {v:?}")))
            })
            .transpose()
    }

    /// The hour of a `HH:MM[:SS]` TIME column.
    fn hour(&self, column: &str) -> Result<Option<u8>, DimensionError> {
        self.cell(column)
            .map(|v| {
                let hour = v.split(':').next().and_then(|h| h.parse::<u8>().ok());
                match hour {
                    Some(h) if h < 24 && v.contains(':') => Ok(h),
                    _ => Err(self.bad(column, format!("expected a time HH:MM:SS, got {v:?}"))),
                }
            })
            .transpose()
    }

    /// Days since the epoch of a `YYYY-MM-DD` column.
    fn date(&self, column: &str) -> Result<Option<i32>, DimensionError> {
        self.cell(column)
            .map(|v| {
                let parts: Vec<_> = v.split('-').collect();
                match parts.as_slice() {
                    [y, m, d] => match (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) {
                        (Ok(y), Ok(m), Ok(d)) if (1..=12).contains(&m) && (1..=31).contains(&d) => {
                            Ok(days_from_civil(y, m, d) as i32)
                        }
                        _ => {
                            Err(self.bad(column, format!("expected a date YYYY-MM-DD, got {v:?}")))
                        }
                    },
                    _ => Err(self.bad(column, format!("expected a date YYYY-MM-DD, got {v:?}"))),
                }
            })
            .transpose()
    }
}

fn open(dir: &Path, name: &str) -> Result<Option<Table>, DimensionError> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let csv_err = |source| DimensionError::Csv {
        path: path.clone(),
        source,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(&path)
        .map_err(csv_err)?;
    let headers = reader.headers().map_err(csv_err)?.clone();
    Ok(Some(Table {
        path,
        headers,
        reader,
    }))
}

fn each_row(
    dir: &Path,
    name: &str,
    key: &'static str,
    mut f: impl FnMut(&Row<'_>) -> Result<(), DimensionError>,
) -> Result<usize, DimensionError> {
    let Some(mut table) = open(dir, name)? else {
        return Ok(0);
    };
    if !table.headers.iter().any(|h| h.trim() == key) {
        return Err(DimensionError::MissingColumn {
            path: table.path.clone(),
            column: key,
        });
    }
    let mut record = csv::StringRecord::new();
    let mut n = 0;
    loop {
        let more = table
            .reader
            .read_record(&mut record)
            .map_err(|source| DimensionError::Csv {
                path: table.path.clone(),
                source,
            })?;
        if !more {
            break;
        }
        f(&Row {
            table: &table,
            record: &record,
        })?;
        n += 1;
    }
    Ok(n)
}

/// Loads every table present in `dir`.
pub fn load_dimensions(dir: &Path) -> Result<(StaticDimensions, LoadedCounts), DimensionError> {
    let mut dims = StaticDimensions::default();
    let users = each_row(dir, "user_risk_profiles.csv", "user_id", |r| {
        dims.users.insert(
            r.key("user_id")?,
            UserProfile {
                risk_score: r.int("risk_score")?,
                risk_level: r.string("risk_level"),
                credit_rating: r.string("credit_rating"),
                account_age_days: r.int("account_age_days")?,
                avg_daily_amount: r.cents("avg_daily_amount")?,
                max_single_amount: r.cents("max_single_amount")?,
                suspicious_activity_count: r.int("suspicious_activity_count")?,
            },
        );
        Ok(())
    })?;
    let mut counts = LoadedCounts {
        users,
        ..LoadedCounts::default()
    };
    counts.merchants = each_row(dir, "merchant_risk_profiles.csv", "merchant_id", |r| {
        dims.merchants.insert(
            r.key("merchant_id")?,
            MerchantProfile {
                merchant_category: r.string("merchant_category"),
                risk_level: r.string("risk_level"),
                fraud_rate: r.decimal("fraud_rate")?,
                avg_transaction_amount: r.cents("avg_transaction_amount")?,
                business_hours_start: r.hour("business_hours_start")?,
                business_hours_end: r.hour("business_hours_end")?,
            },
        );
        Ok(())
    })?;
    counts.history = each_row(dir, "transaction_history_summary.csv", "user_id", |r| {
        let user = r.key("user_id")?;
        let date = r
            .date("date_key")?
            .ok_or_else(|| r.bad("date_key", "the key column is empty".to_owned()))?;
        let hour = r
            .int("hour_key")?
            .filter(|h| (0..24).contains(h))
            .ok_or_else(|| r.bad("hour_key", "expected an hour 0..=23".to_owned()))?;
        dims.history.insert(
            (user, date, hour as u8),
            HistoryRow {
                total_amount: r.cents("total_amount")?,
                transaction_count: r.int("transaction_count")?,
                avg_amount: r.cents("avg_amount")?,
                max_amount: r.cents("max_amount")?,
                distinct_merchants: r.int("distinct_merchants")?,
                most_frequent_merchant: r.int("most_frequent_merchant")?,
            },
        );
        Ok(())
    })?;
    counts.list_entries += each_row(dir, "blacklist_users.csv", "user_id", |r| {
        dims.blacklist_users.insert(r.key("user_id")?);
        Ok(())
    })?;
    counts.list_entries += each_row(dir, "blacklist_merchants.csv", "merchant_id", |r| {
        dims.blacklist_merchants.insert(r.key("merchant_id")?);
        Ok(())
    })?;
    counts.list_entries += each_row(dir, "blacklist_ips.csv", "ip_address", |r| {
        if let Some(ip) = r.cell("ip_address") {
            dims.add_blacklisted_ip(ip);
        }
        Ok(())
    })?;
    counts.list_entries += each_row(dir, "high_risk_locations.csv", "location", |r| {
        if let Some(loc) = r.string("location") {
            dims.high_risk_locations.insert(loc);
        }
        Ok(())
    })?;
    Ok((dims, counts))
}
