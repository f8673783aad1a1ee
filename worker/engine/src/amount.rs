//! Exact money: `DECIMAL(15,2)` held as a whole number of cents (SPEC.md §1).
//!
//! Every comparison the rules make is done on integers, so no float ever decides a
//! transaction. Multipliers from the manifest become [`Ratio`]s (an integer over a
//! power of ten) and are applied with `i128` arithmetic.

use std::fmt;

use rust_decimal::Decimal;

/// The largest amount SPEC.md allows: 13 integer digits and 2 decimals, in cents.
pub const MAX_CENTS: i64 = 999_999_999_999_999;

/// An amount of money in cents (`DECIMAL(15,2)`), never negative when it comes from
/// a validated transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(pub i64);

/// Why an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The text is not a decimal number.
    #[error("amount {0:?} is not a decimal number")]
    NotANumber(String),
    /// Below zero.
    #[error("amount {0} is negative; amounts must be >= 0")]
    Negative(String),
    /// More than two decimals after removing trailing zeros.
    #[error("amount {0} has more than 2 decimals")]
    TooPrecise(String),
    /// More than 13 integer digits.
    #[error("amount {0} has more than 13 integer digits")]
    TooLarge(String),
}

impl Cents {
    /// Parses a decimal written as text (`"12.5"`, `"12.50"`, `"1e3"`), exactly.
    ///
    /// Trailing zeros beyond two decimals are accepted (`12.500` is `12.50`); any
    /// other third decimal is refused rather than rounded.
    pub fn parse(text: &str) -> Result<Cents, AmountError> {
        let text = text.trim();
        if let Some(cents) = parse_plain(text) {
            return Ok(Cents(cents));
        }
        let value = if text.contains(['e', 'E']) {
            Decimal::from_scientific(text)
        } else {
            Decimal::from_str_exact(text)
        }
        .map_err(|_| AmountError::NotANumber(text.to_owned()))?;
        Cents::from_decimal(value).map_err(|e| match e {
            AmountError::NotANumber(_) => AmountError::NotANumber(text.to_owned()),
            AmountError::Negative(_) => AmountError::Negative(text.to_owned()),
            AmountError::TooPrecise(_) => AmountError::TooPrecise(text.to_owned()),
            AmountError::TooLarge(_) => AmountError::TooLarge(text.to_owned()),
        })
    }

    /// Converts an exact decimal, with the same rules as [`Cents::parse`].
    pub fn from_decimal(value: Decimal) -> Result<Cents, AmountError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(AmountError::Negative(value.to_string()));
        }
        let normalized = value.normalize();
        if normalized.scale() > 2 {
            return Err(AmountError::TooPrecise(value.to_string()));
        }
        let too_large = || AmountError::TooLarge(value.to_string());
        let cents = normalized
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or_else(too_large)?
            .normalize();
        let cents = i64::try_from(cents.mantissa()).map_err(|_| too_large())?;
        if cents > MAX_CENTS {
            return Err(AmountError::TooLarge(value.to_string()));
        }
        Ok(Cents(cents))
    }

    /// Parses a profile column (may be signed; no range check beyond `i64`). Used for
    /// dimension tables, where a value is data to compare against, not money moved.
    pub fn parse_column(text: &str) -> Option<Cents> {
        let value = Decimal::from_str_exact(text.trim()).ok()?;
        let cents = value.checked_mul(Decimal::ONE_HUNDRED)?.round().normalize();
        i64::try_from(cents.mantissa()).ok().map(Cents)
    }

    /// The amount as an exact decimal with two places.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// The amount as a float, for ML features only (never for a rule).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

/// Fast path for the usual `123` / `123.4` / `123.45` forms: no allocation, no
/// `Decimal`. Returns `None` for anything else, which then takes the general path.
fn parse_plain(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (int_part, frac_part) = match bytes.iter().position(|&b| b == b'.') {
        Some(dot) => (&bytes[..dot], &bytes[dot + 1..]),
        None => (bytes, &[][..]),
    };
    if int_part.is_empty() || int_part.len() > 13 || frac_part.len() > 2 {
        return None;
    }
    if bytes.contains(&b'.') && frac_part.is_empty() {
        return None;
    }
    let mut cents: i64 = 0;
    for &b in int_part {
        if !b.is_ascii_digit() {
            return None;
        }
        cents = cents * 10 + i64::from(b - b'0');
    }
    for i in 0..2 {
        cents *= 10;
        if let Some(&b) = frac_part.get(i) {
            if !b.is_ascii_digit() {
                return None;
            }
            cents += i64::from(b - b'0');
        }
    }
    Some(cents)
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// An exact non-negative multiplier `mantissa / 10^scale` (e.g. 2.5 = 25 / 10^1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    mantissa: i128,
    scale: u32,
}

impl Ratio {
    /// A whole-number ratio.
    pub const fn whole(n: i64) -> Ratio {
        Ratio {
            mantissa: n as i128,
            scale: 0,
        }
    }

    /// The ratio of an exact decimal.
    pub fn from_decimal(value: Decimal) -> Ratio {
        let value = value.normalize();
        Ratio {
            mantissa: value.mantissa(),
            scale: value.scale(),
        }
    }

    /// The ratio written by a float from a manifest, read through its shortest
    /// decimal form so that `0.1` is exactly one tenth. `None` for NaN or infinity.
    pub fn from_f64(value: f64) -> Option<Ratio> {
        if !value.is_finite() {
            return None;
        }
        let text = format!("{value}");
        Decimal::from_str_exact(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .ok()
            .map(Ratio::from_decimal)
    }

    /// `lhs > rhs × self`, exactly, for integers in any unit.
    pub fn exceeded_by(self, lhs: i64, rhs: i64) -> bool {
        let scale = 10i128.pow(self.scale);
        i128::from(lhs) * scale > i128::from(rhs) * self.mantissa
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_general_forms() {
        assert_eq!(Cents::parse("0"), Ok(Cents(0)));
        assert_eq!(Cents::parse("12"), Ok(Cents(1200)));
        assert_eq!(Cents::parse("12.3"), Ok(Cents(1230)));
        assert_eq!(Cents::parse("12.34"), Ok(Cents(1234)));
        assert_eq!(Cents::parse("12.340"), Ok(Cents(1234)));
        assert_eq!(Cents::parse("1e3"), Ok(Cents(100_000)));
        assert_eq!(Cents::parse("1.5E1"), Ok(Cents(1500)));
        assert_eq!(Cents::parse("9999999999999.99"), Ok(Cents(MAX_CENTS)));
    }

    #[test]
    fn refuses_bad_amounts() {
        assert!(matches!(Cents::parse("-1"), Err(AmountError::Negative(_))));
        assert!(matches!(
            Cents::parse("12.345"),
            Err(AmountError::TooPrecise(_))
        ));
        assert!(matches!(
            Cents::parse("10000000000000"),
            Err(AmountError::TooLarge(_))
        ));
        assert!(matches!(
            Cents::parse("abc"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            Cents::parse("12.x"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(
            Cents::parse("0x10"),
            Err(AmountError::NotANumber(_))
        ));
        assert!(matches!(Cents::parse(""), Err(AmountError::NotANumber(_))));
        assert!(Cents::parse("1e400").is_err());
    }

    #[test]
    fn negative_zero_is_zero() {
        assert_eq!(Cents::parse("-0.00"), Ok(Cents(0)));
    }

    #[test]
    fn displays_two_places() {
        assert_eq!(Cents(1234).to_string(), "12.34");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(-5).to_string(), "-0.05");
    }

    #[test]
    fn ratio_compares_exactly() {
        let r = Ratio::from_f64(2.5).unwrap();
        assert!(!r.exceeded_by(250, 100));
        assert!(r.exceeded_by(251, 100));
        let tenth = Ratio::from_f64(0.1).unwrap();
        assert!(!tenth.exceeded_by(1, 10));
        assert!(tenth.exceeded_by(2, 10));
        assert!(Ratio::whole(3).exceeded_by(4, 1));
        assert!(!Ratio::whole(3).exceeded_by(3, 1));
    }
}
