//! [`Duration`]: a span of time written the way people write it in a manifest
//! (`500ms`, `30s`, `5m`, `1h`, `7d`), parsed once when the manifest is read.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern every duration in the CRD schema must match: a whole number and one
/// unit. A single unit keeps the text easy to read and lets the CEL rules convert it
/// to milliseconds cheaply (see [`crate::cel::millis_expr`]).
pub const DURATION_PATTERN: &str = "^[0-9]{1,9}(ms|s|m|h|d)$";

/// Why a duration's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text does not end in one of the known units.
    #[error(
        "invalid duration {text:?}: expected a whole number and a unit (ms, s, m, h or d), e.g. \"30s\" or \"5m\""
    )]
    Format {
        /// The refused text.
        text: String,
    },
    /// The number is too large to be a useful duration.
    #[error("invalid duration {text:?}: at most 9 digits are allowed")]
    TooLarge {
        /// The refused text.
        text: String,
    },
}

/// A span of time such as `500ms`, `30s`, `5m`, `1h` or `7d`.
///
/// It keeps the text the user wrote (so a manifest round-trips unchanged) and the
/// parsed value (so callers never parse strings again). Deserialising fails on text
/// that does not parse, and the YAML/JSON error then names the field.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Duration {
    text: String,
    value: std::time::Duration,
}

impl Duration {
    /// Parses `text`; the same as `text.parse()`.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        text.parse()
    }

    /// A duration of `millis` milliseconds, written with the largest unit that
    /// divides it exactly (so `Duration::from_millis(60_000)` reads `1m`).
    pub fn from_millis(millis: u64) -> Self {
        const UNITS: [(&str, u64); 4] = [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ];
        let text = UNITS
            .iter()
            .find(|(_, size)| millis != 0 && millis.is_multiple_of(*size))
            .map_or_else(
                || format!("{millis}ms"),
                |(unit, size)| format!("{}{unit}", millis / size),
            );
        Self {
            text,
            value: std::time::Duration::from_millis(millis),
        }
    }

    /// The value as a standard library duration.
    pub fn as_std(&self) -> std::time::Duration {
        self.value
    }

    /// The value in whole milliseconds.
    pub fn millis(&self) -> u64 {
        // Fits: at most 9 digits of days is far below u64::MAX milliseconds.
        u64::try_from(self.value.as_millis()).unwrap_or(u64::MAX)
    }

    /// The value in whole seconds (rounded down).
    pub fn secs(&self) -> u64 {
        self.value.as_secs()
    }

    /// True for a zero-length duration such as `0s`.
    pub fn is_zero(&self) -> bool {
        self.value.is_zero()
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let format_error = || DurationError::Format {
            text: text.to_owned(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(format_error)?;
        let (digits, unit) = text.split_at(split);
        if digits.is_empty() {
            return Err(format_error());
        }
        if digits.len() > 9 {
            return Err(DurationError::TooLarge {
                text: text.to_owned(),
            });
        }
        let number: u64 = digits.parse().map_err(|_| format_error())?;
        let unit_millis = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format_error()),
        };
        Ok(Self {
            text: text.to_owned(),
            // 9 digits × a day in ms < 2^57: no overflow.
            value: std::time::Duration::from_millis(number * unit_millis),
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({})", self.text)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(value: Duration) -> Self {
        value.value
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            // Bounds the apiserver's CEL cost estimate for rules that read durations.
            "maxLength": 11,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
            ("0s", 0),
        ];
        for (text, millis) in cases {
            let d = Duration::parse(text).unwrap();
            assert_eq!(d.millis(), millis, "{text}");
            assert_eq!(d.as_str(), text);
        }
    }

    #[test]
    fn refuses_bad_text() {
        for text in [
            "",
            "5",
            "m",
            "1.5s",
            "-1s",
            "5 m",
            "1h30m",
            "5M",
            "10000000000s",
        ] {
            assert!(Duration::parse(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn from_millis_picks_the_largest_exact_unit() {
        assert_eq!(Duration::from_millis(60_000).as_str(), "1m");
        assert_eq!(Duration::from_millis(1_500).as_str(), "1500ms");
        assert_eq!(Duration::from_millis(0).as_str(), "0ms");
        assert_eq!(Duration::from_millis(86_400_000).as_str(), "1d");
    }

    #[test]
    fn serde_round_trips_the_text() {
        let d: Duration = serde_json::from_str("\"90m\"").unwrap();
        assert_eq!(d.secs(), 5_400);
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"90m\"");
        let err = serde_json::from_str::<Duration>("\"soon\"").unwrap_err();
        assert!(
            err.to_string().contains("invalid duration \"soon\""),
            "{err}"
        );
    }

    #[test]
    fn nine_digits_is_the_limit_as_in_the_pattern() {
        assert!(DURATION_PATTERN.contains("{1,9}"));
        assert_eq!(
            Duration::parse("999999999d").unwrap().secs(),
            999_999_999 * 86_400
        );
        assert!(matches!(
            Duration::parse("1000000000d"),
            Err(DurationError::TooLarge { .. })
        ));
    }
}
