//! Dimension rows (SPEC.md §2) and the lookup interface the engine reads them
//! through. Every column is optional: a missing row or an empty column makes each
//! rule that needs it false, never an error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::amount::Cents;
use crate::transaction::Transaction;

/// A row of `user_risk_profiles`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserProfile {
    /// Base risk score (NULL counts as 0).
    pub risk_score: Option<i64>,
    /// LOW / MEDIUM / HIGH.
    pub risk_level: Option<String>,
    /// Credit rating label.
    pub credit_rating: Option<String>,
    /// Age of the account in days.
    pub account_age_days: Option<i64>,
    /// Average daily amount.
    pub avg_daily_amount: Option<Cents>,
    /// Largest single amount.
    pub max_single_amount: Option<Cents>,
    /// Past suspicious activities.
    pub suspicious_activity_count: Option<i64>,
}

/// A row of `merchant_risk_profiles`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MerchantProfile {
    /// Merchant category.
    pub merchant_category: Option<String>,
    /// LOW / MEDIUM / HIGH.
    pub risk_level: Option<String>,
    /// `DECIMAL(5,4)` fraud rate.
    pub fraud_rate: Option<Decimal>,
    /// Average transaction amount.
    pub avg_transaction_amount: Option<Cents>,
    /// Opening hour (the hour of `business_hours_start`).
    pub business_hours_start: Option<u8>,
    /// Closing hour (the hour of `business_hours_end`).
    pub business_hours_end: Option<u8>,
}

/// A row of `transaction_history_summary` for one (user, date, hour).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistoryRow {
    /// Total amount in that hour.
    pub total_amount: Option<Cents>,
    /// Transactions in that hour.
    pub transaction_count: Option<i64>,
    /// Average amount.
    pub avg_amount: Option<Cents>,
    /// Largest amount.
    pub max_amount: Option<Cents>,
    /// Distinct merchants.
    pub distinct_merchants: Option<i64>,
    /// Most frequent merchant.
    pub most_frequent_merchant: Option<i64>,
}

/// Read access to the dimension tables and lists for one transaction.
pub trait Dimensions {
    /// The user's profile.
    fn user(&self, user_id: i64) -> Option<&UserProfile>;
    /// The merchant's profile.
    fn merchant(&self, merchant_id: i64) -> Option<&MerchantProfile>;
    /// The user's history row for a local date (days since epoch) and hour.
    fn history(&self, user_id: i64, date_days: i32, hour: u8) -> Option<HistoryRow>;
    /// Whether the user is blacklisted.
    fn user_blacklisted(&self, user_id: i64) -> bool;
    /// Whether the merchant is blacklisted.
    fn merchant_blacklisted(&self, merchant_id: i64) -> bool;
    /// Whether the IP address is blacklisted.
    fn ip_blacklisted(&self, ip: &str) -> bool;
    /// Whether the location is in the high-risk table (in addition to the
    /// configured list, which the engine checks itself).
    fn location_high_risk(&self, location: &str) -> bool;
    /// Called once per micro-batch, before any of its transactions is decided,
    /// with every user and merchant the batch will look up: tables backed by a
    /// database load their cache misses here in one query per table, so SPEC §2
    /// lookups cost one round trip per batch, not per transaction.
    ///
    /// Returns the view the batch's lookups then read (without locks), or
    /// `None` when lookups go to `self` (tables held in memory have nothing to
    /// do). A source that cannot serve every key — the database is down and no
    /// cached copy is young enough — waits and retries; it returns
    /// [`Unavailable`] only when it gives up (the worker is stopping), and the
    /// batch is then not decided at all.
    fn prefetch<'s>(&'s self, _keys: &BatchKeys) -> Result<Option<BatchView<'s>>, Unavailable> {
        Ok(None)
    }
}

/// The lookups of one micro-batch, filled by [`Dimensions::prefetch`].
pub type BatchView<'s> = Box<dyn Dimensions + 's>;

/// A batch's dimensions could not be fetched; no record of it is decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dimension table {table} unavailable: {reason}")]
pub struct Unavailable {
    /// The table that could not be read.
    pub table: String,
    /// Why (never with credentials).
    pub reason: String,
}

/// The dimension keys of one micro-batch, each distinct and in ascending order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    /// Users.
    pub users: Vec<i64>,
    /// Merchants.
    pub merchants: Vec<i64>,
}

impl BatchKeys {
    /// The keys `transactions` look up.
    pub fn of<'a>(transactions: impl IntoIterator<Item = &'a Transaction>) -> Self {
        let (mut users, mut merchants): (Vec<i64>, Vec<i64>) = transactions
            .into_iter()
            .map(|t| (t.user_id, t.merchant_id))
            .unzip();
        for keys in [&mut users, &mut merchants] {
            keys.sort_unstable();
            keys.dedup();
        }
        BatchKeys { users, merchants }
    }
}

/// Dimension tables held in memory (local mode, replay, tests, and the worker's
/// cache snapshot).
#[derive(Debug, Clone, Default)]
pub struct StaticDimensions {
    /// Profiles by user.
    pub users: HashMap<i64, UserProfile>,
    /// Profiles by merchant.
    pub merchants: HashMap<i64, MerchantProfile>,
    /// History rows by (user, date days, hour).
    pub history: HashMap<(i64, i32, u8), HistoryRow>,
    /// Blacklisted users.
    pub blacklist_users: HashSet<i64>,
    /// Blacklisted merchants.
    pub blacklist_merchants: HashSet<i64>,
    /// Blacklisted IP addresses (exact text).
    pub blacklist_ips: HashSet<String>,
    /// Blacklisted IP ranges (CIDR entries of the list).
    pub blacklist_ip_ranges: Vec<IpRange>,
    /// High-risk locations from the table.
    pub high_risk_locations: HashSet<String>,
}

impl Dimensions for StaticDimensions {
    fn user(&self, user_id: i64) -> Option<&UserProfile> {
        self.users.get(&user_id)
    }
    fn merchant(&self, merchant_id: i64) -> Option<&MerchantProfile> {
        self.merchants.get(&merchant_id)
    }
    fn history(&self, user_id: i64, date_days: i32, hour: u8) -> Option<HistoryRow> {
        self.history.get(&(user_id, date_days, hour)).copied()
    }
    fn user_blacklisted(&self, user_id: i64) -> bool {
        self.blacklist_users.contains(&user_id)
    }
    fn merchant_blacklisted(&self, merchant_id: i64) -> bool {
        self.blacklist_merchants.contains(&merchant_id)
    }
    fn ip_blacklisted(&self, ip: &str) -> bool {
        self.blacklist_ips.contains(ip) || IpRange::any_contains(&self.blacklist_ip_ranges, ip)
    }
    fn location_high_risk(&self, location: &str) -> bool {
        self.high_risk_locations.contains(location)
    }
}

impl StaticDimensions {
    /// Adds an IP list entry: a CIDR range (`10.0.0.0/8`, `2001:db8::/32`) or
    /// an address compared as text.
    pub fn add_blacklisted_ip(&mut self, entry: &str) {
        match IpRange::parse(entry) {
            Some(range) => self.blacklist_ip_ranges.push(range),
            None => {
                self.blacklist_ips.insert(entry.to_owned());
            }
        }
    }
}

/// A CIDR range of an IP list (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `address/prefix`; `None` when the entry is not a CIDR range.
    pub fn parse(entry: &str) -> Option<Self> {
        let (addr, prefix) = entry.trim().split_once('/')?;
        let network: std::net::IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(IpRange { network, prefix })
    }

    /// Whether `ip` lies in the range (an address of the other family never does).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether any of `ranges` holds the address text `ip` (not an address: no).
    pub fn any_contains(ranges: &[IpRange], ip: &str) -> bool {
        if ranges.is_empty() {
            return false;
        }
        match ip.trim().parse::<std::net::IpAddr>() {
            Ok(ip) => ranges.iter().any(|r| r.contains(ip)),
            Err(_) => false,
        }
    }
}

/// Lookups through a pointer (`Arc`, `Box`) go to the pointee.
macro_rules! forward_dimensions {
    ($ptr:ident) => {
        impl<T: Dimensions + ?Sized> Dimensions for $ptr<T> {
            fn prefetch<'s>(
                &'s self,
                keys: &BatchKeys,
            ) -> Result<Option<BatchView<'s>>, Unavailable> {
                (**self).prefetch(keys)
            }
            fn user(&self, user_id: i64) -> Option<&UserProfile> {
                (**self).user(user_id)
            }
            fn merchant(&self, merchant_id: i64) -> Option<&MerchantProfile> {
                (**self).merchant(merchant_id)
            }
            fn history(&self, user_id: i64, date_days: i32, hour: u8) -> Option<HistoryRow> {
                (**self).history(user_id, date_days, hour)
            }
            fn user_blacklisted(&self, user_id: i64) -> bool {
                (**self).user_blacklisted(user_id)
            }
            fn merchant_blacklisted(&self, merchant_id: i64) -> bool {
                (**self).merchant_blacklisted(merchant_id)
            }
            fn ip_blacklisted(&self, ip: &str) -> bool {
                (**self).ip_blacklisted(ip)
            }
            fn location_high_risk(&self, location: &str) -> bool {
                (**self).location_high_risk(location)
            }
        }
    };
}

forward_dimensions!(Arc);
forward_dimensions!(Box);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::Zone;
    use crate::transaction::parse_transaction;

    fn tx(id: i64, user: i64, merchant: i64) -> Transaction {
        let json = format!(
            r#"{{"transaction_id":{id},"user_id":{user},"amount":"1.00","merchant_id":{merchant},"transaction_time":"2024-01-01 10:00:00"}}"#
        );
        parse_transaction(json.as_bytes(), Zone::Utc).expect("valid transaction")
    }

    #[test]
    fn batch_keys_are_distinct_and_sorted() {
        let batch = [tx(1, 7, 30), tx(2, 3, 30), tx(3, 7, 10), tx(4, 5, 20)];
        assert_eq!(
            BatchKeys::of(&batch),
            BatchKeys {
                users: vec![3, 5, 7],
                merchants: vec![10, 20, 30],
            }
        );
        assert_eq!(BatchKeys::of(&[]), BatchKeys::default());
    }

    #[test]
    fn ip_ranges_match_their_addresses_only() {
        let mut dims = StaticDimensions::default();
        dims.add_blacklisted_ip("10.1.0.0/16");
        dims.add_blacklisted_ip("2001:db8::/32");
        dims.add_blacklisted_ip("192.168.0.7");
        dims.add_blacklisted_ip("0.0.0.0/0x");
        assert!(dims.ip_blacklisted("10.1.255.3"));
        assert!(!dims.ip_blacklisted("10.2.0.1"));
        assert!(dims.ip_blacklisted("2001:db8:ffff::1"));
        assert!(!dims.ip_blacklisted("2001:db9::1"));
        assert!(dims.ip_blacklisted("192.168.0.7"));
        assert!(!dims.ip_blacklisted("192.168.0.8"));
        assert!(!dims.ip_blacklisted("not an ip"));
        assert!(dims.blacklist_ips.contains("0.0.0.0/0x"));
        let all = IpRange::parse("0.0.0.0/0").expect("a range");
        assert!(all.contains("8.8.8.8".parse().expect("an address")));
        assert!(!all.contains("::1".parse().expect("an address")));
        assert_eq!(IpRange::parse("10.0.0.0/33"), None);
    }
}
