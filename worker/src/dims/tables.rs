//! The seed's dimension tables (SPEC §2): names, key and value columns, and
//! the conversion of a row (every column read as text) into a profile.
//!
//! Columns are selected as text on both databases so that a value reads the
//! same way as the same value in a CSV file: decisions from MariaDB,
//! PostgreSQL and CSV are byte-identical.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use riskpipe_engine::Cents;
use riskpipe_engine::dimensions::{MerchantProfile, UserProfile};
use rust_decimal::Decimal;

/// A looked-up table: its name in the database and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// What the manifest calls it (`spec.dimensions.users.table`), for errors.
    pub setting: &'static str,
    /// The table's name in the database (`schema.table` allowed).
    pub name: String,
    /// The key column.
    pub key: &'static str,
    /// The value columns, in the order rows carry them.
    pub columns: &'static [&'static str],
}

/// Value columns of `user_risk_profiles`.
pub const USER_COLUMNS: &[&str] = &[
    "risk_score",
    "risk_level",
    "credit_rating",
    "account_age_days",
    "avg_daily_amount",
    "max_single_amount",
    "suspicious_activity_count",
];

/// Value columns of `merchant_risk_profiles`.
pub const MERCHANT_COLUMNS: &[&str] = &[
    "merchant_category",
    "risk_level",
    "fraud_rate",
    "avg_transaction_amount",
    "business_hours_start",
    "business_hours_end",
];

impl TableDef {
    /// The user profile table.
    pub fn users(name: &str) -> Self {
        TableDef {
            setting: "spec.dimensions.users.table",
            name: name.to_owned(),
            key: "user_id",
            columns: USER_COLUMNS,
        }
    }

    /// The merchant profile table.
    pub fn merchants(name: &str) -> Self {
        TableDef {
            setting: "spec.dimensions.merchants.table",
            name: name.to_owned(),
            key: "merchant_id",
            columns: MERCHANT_COLUMNS,
        }
    }

    /// A list table: one key column, no values.
    pub fn list(setting: &'static str, name: &str, key: &'static str) -> Self {
        TableDef {
            setting,
            name: name.to_owned(),
            key,
            columns: &[],
        }
    }
}

/// Bad values seen in rows: each (table, key, column) is logged once; all are
/// counted.
#[derive(Debug, Default)]
pub struct BadValues {
    logged: Mutex<HashSet<(String, String, &'static str)>>,
    count: AtomicU64,
}

/// How many distinct bad cells are logged one by one; later ones are counted only.
const LOGGED_BAD_CELLS: usize = 10_000;

impl BadValues {
    /// Bad values read so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// A key that is not an integer (the row is skipped).
    pub fn report_key(&self, table: &str, key: &str, column: &'static str) {
        self.report(table, key, column, key, "an integer key");
    }

    fn report(&self, table: &str, key: &str, column: &'static str, value: &str, expected: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let Ok(mut logged) = self.logged.lock() else {
            return;
        };
        if logged.len() < LOGGED_BAD_CELLS
            && logged.insert((table.to_owned(), key.to_owned(), column))
        {
            tracing::warn!(
                table,
                key,
                column,
                value,
                expected,
                "bad value in a dimension row: read as NULL"
            );
        }
    }
}

/// One row read as text: the key's text and the value columns in
/// [`TableDef::columns`] order (`None` = NULL).
pub struct TextRow<'a> {
    /// The table, for the log.
    pub table: &'a str,
    /// The key as text, for the log.
    pub key: &'a str,
    /// The value columns.
    pub values: &'a [Option<String>],
    /// Where bad values are reported.
    pub bad: &'a BadValues,
}

impl TextRow<'_> {
    fn cell(&self, i: usize) -> Option<&str> {
        self.values
            .get(i)?
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn parsed<T>(
        &self,
        i: usize,
        columns: &[&'static str],
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let v = self.cell(i)?;
        let parsed = parse(v);
        if parsed.is_none() {
            let column = columns.get(i).copied().unwrap_or("?");
            self.bad.report(self.table, self.key, column, v, expected);
        }
        parsed
    }

    fn string(&self, i: usize) -> Option<String> {
        self.cell(i).map(str::to_owned)
    }

    fn int(&self, i: usize, columns: &[&'static str]) -> Option<i64> {
        self.parsed(i, columns, "an integer", |v| v.parse().ok())
    }

    fn cents(&self, i: usize, columns: &[&'static str]) -> Option<Cents> {
        self.parsed(i, columns, "a decimal", Cents::parse_column)
    }

    fn amount_at_least_zero(&self, i: usize, columns: &[&'static str]) -> Option<Cents> {
        self.parsed(i, columns, "a decimal not below 0", |v| {
            Cents::parse_column(v).filter(|c| *c >= Cents::default())
        })
    }

    fn decimal(&self, i: usize, columns: &[&'static str]) -> Option<Decimal> {
        self.parsed(i, columns, "a decimal", |v| Decimal::from_str_exact(v).ok())
    }

    fn hour(&self, i: usize, columns: &[&'static str]) -> Option<u8> {
        self.parsed(i, columns, "a time HH:MM:SS", parse_hour)
    }

    /// The row as a user profile.
    pub fn user(&self) -> UserProfile {
        let c = USER_COLUMNS;
        UserProfile {
            risk_score: self.int(0, c),
            risk_level: self.string(1),
            credit_rating: self.string(2),
            account_age_days: self.int(3, c),
            avg_daily_amount: self.cents(4, c),
            max_single_amount: self.amount_at_least_zero(5, c),
            suspicious_activity_count: self.int(6, c),
        }
    }

    /// The row as a merchant profile.
    pub fn merchant(&self) -> MerchantProfile {
        let c = MERCHANT_COLUMNS;
        MerchantProfile {
            merchant_category: self.string(0),
            risk_level: self.string(1),
            fraud_rate: self.decimal(2, c),
            avg_transaction_amount: self.cents(3, c),
            business_hours_start: self.hour(4, c),
            business_hours_end: self.hour(5, c),
        }
    }
}

/// The hour of a `HH:MM[:SS]` TIME value (as the CSV reader reads it).
pub fn parse_hour(v: &str) -> Option<u8> {
    let (h, rest) = v.split_once(':')?;
    let h: u8 = h.parse().ok()?;
    let minutes = rest.split(':').next()?;
    (h < 24 && minutes.parse::<u8>().is_ok_and(|m| m < 60)).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&str>], bad: &BadValues) -> UserProfile {
        let values: Vec<Option<String>> = values.iter().map(|v| v.map(str::to_owned)).collect();
        TextRow {
            table: "user_risk_profiles",
            key: "7",
            values: &values,
            bad,
        }
        .user()
    }

    #[test]
    fn bad_values_are_null_and_counted() {
        let bad = BadValues::default();
        let p = row(
            &[
                Some("x"),
                Some("HIGH"),
                None,
                Some("12"),
                Some("1.5"),
                Some("-3.00"),
                Some(""),
            ],
            &bad,
        );
        assert_eq!(p.risk_score, None);
        assert_eq!(p.risk_level.as_deref(), Some("HIGH"));
        assert_eq!(p.account_age_days, Some(12));
        assert_eq!(p.avg_daily_amount, Cents::parse_column("1.5"));
        assert_eq!(p.max_single_amount, None);
        assert_eq!(p.suspicious_activity_count, None);
        assert_eq!(bad.count(), 2);
    }

    #[test]
    fn hours_of_times() {
        assert_eq!(parse_hour("09:00:00"), Some(9));
        assert_eq!(parse_hour("23:59"), Some(23));
        assert_eq!(parse_hour("24:00:00"), None);
        assert_eq!(parse_hour("9am"), None);
        assert_eq!(parse_hour("10:7x"), None);
    }
}
