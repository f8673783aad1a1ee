//! The input record (SPEC.md §1): parsing and validating one JSON transaction.
//!
//! Every field is first taken as raw JSON text so that a refusal can name the field
//! and the rule it broke, and so that amounts are read exactly from their digits.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::amount::{AmountError, Cents};
use crate::timefmt::{Zone, parse_time};

/// A valid transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Unique per transaction.
    pub transaction_id: i64,
    /// The user; the input topic's partitioning key.
    pub user_id: i64,
    /// The amount, exactly.
    pub amount: Cents,
    /// The merchant.
    pub merchant_id: i64,
    /// Free-form type (optional).
    pub transaction_type: Option<String>,
    /// Event time, ms since the epoch (UTC instant).
    pub event_time_ms: i64,
    /// IPv4 or IPv6 text (optional).
    pub ip_address: Option<String>,
    /// Device identifier (optional).
    pub device_id: Option<String>,
    /// Location label (optional).
    pub location: Option<String>,
}

/// Why a record was refused; it goes to the dead-letter output with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// A required field is absent or null.
    #[error("missing required field '{0}'")]
    Missing(&'static str),
    /// A field has the wrong JSON type or value.
    #[error("field '{field}': {reason}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The event time lies further in the future than the pipeline tolerates (see
    /// [`crate::Engine::check_event_time`]).
    #[error("{}", crate::event_time::future_message(*event_time_ms, *reference, *max_future_skew_ms))]
    FutureEventTime {
        /// The transaction's event time, ms since the epoch.
        event_time_ms: i64,
        /// What it was compared with.
        reference: crate::event_time::TimeReference,
        /// The tolerance, ms.
        max_future_skew_ms: i64,
    },
}

impl InvalidRecord {
    /// A short, fixed label for metrics (bounded cardinality).
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidRecord::Json(_) => "malformed_json",
            InvalidRecord::Missing(_) => "missing_field",
            InvalidRecord::Field { .. } => "invalid_field",
            InvalidRecord::FutureEventTime { .. } => "future_event_time",
        }
    }
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow)]
    transaction_id: Option<&'a RawValue>,
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
    #[serde(borrow)]
    merchant_id: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_type: Option<&'a RawValue>,
    #[serde(borrow)]
    transaction_time: Option<&'a RawValue>,
    #[serde(borrow)]
    ip_address: Option<&'a RawValue>,
    #[serde(borrow)]
    device_id: Option<&'a RawValue>,
    #[serde(borrow)]
    location: Option<&'a RawValue>,
}

/// Parses and validates one transaction from JSON bytes.
pub fn parse_transaction(bytes: &[u8], zone: Zone) -> Result<Transaction, InvalidRecord> {
    let raw: RawRecord<'_> = serde_json::from_slice(bytes).map_err(|e| {
        let mut msg = e.to_string();
        msg.truncate(200);
        InvalidRecord::Json(msg)
    })?;
    let transaction_id = required_i64(raw.transaction_id, "transaction_id")?;
    let user_id = required_i64(raw.user_id, "user_id")?;
    let merchant_id = required_i64(raw.merchant_id, "merchant_id")?;
    let amount = amount(raw.amount)?;
    let event_time_ms = event_time(raw.transaction_time, zone)?;
    Ok(Transaction {
        transaction_id,
        user_id,
        amount,
        merchant_id,
        transaction_type: optional_string(raw.transaction_type, "transaction_type")?,
        event_time_ms,
        ip_address: optional_string(raw.ip_address, "ip_address")?,
        device_id: optional_string(raw.device_id, "device_id")?,
        location: optional_string(raw.location, "location")?,
    })
}

fn present(raw: Option<&RawValue>) -> Option<&str> {
    raw.map(RawValue::get).filter(|text| *text != "null")
}

fn required_i64(raw: Option<&RawValue>, field: &'static str) -> Result<i64, InvalidRecord> {
    let text = present(raw).ok_or(InvalidRecord::Missing(field))?;
    text.parse::<i64>().map_err(|_| InvalidRecord::Field {
        field,
        reason: format!("expected a 64-bit integer, got {}", clip(text)),
    })
}

fn amount(raw: Option<&RawValue>) -> Result<Cents, InvalidRecord> {
    let text = present(raw).ok_or(InvalidRecord::Missing("amount"))?;
    let digits: Cow<'_, str> = if text.starts_with('"') {
        serde_json::from_str::<Cow<'_, str>>(text).map_err(|_| InvalidRecord::Field {
            field: "amount",
            reason: "expected a decimal number or string".to_owned(),
        })?
    } else if text.starts_with(['{', '[', 't', 'f']) {
        return Err(InvalidRecord::Field {
            field: "amount",
            reason: format!("expected a decimal number or string, got {}", clip(text)),
        });
    } else {
        Cow::Borrowed(text)
    };
    Cents::parse(&digits).map_err(|e: AmountError| InvalidRecord::Field {
        field: "amount",
        reason: e.to_string(),
    })
}

fn event_time(raw: Option<&RawValue>, zone: Zone) -> Result<i64, InvalidRecord> {
    let text = present(raw).ok_or(InvalidRecord::Missing("transaction_time"))?;
    let field = "transaction_time";
    if text.starts_with('"') {
        let value: Cow<'_, str> = serde_json::from_str(text).map_err(|_| InvalidRecord::Field {
            field,
            reason: "expected a string or epoch milliseconds".to_owned(),
        })?;
        parse_time(&value, zone).map_err(|e| InvalidRecord::Field {
            field,
            reason: e.to_string(),
        })
    } else {
        text.parse::<i64>().map_err(|_| InvalidRecord::Field {
            field,
            reason: format!(
                "expected a timestamp string or integer epoch milliseconds, got {}",
                clip(text)
            ),
        })
    }
}

fn optional_string(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<String>, InvalidRecord> {
    let Some(text) = present(raw) else {
        return Ok(None);
    };
    if !text.starts_with('"') {
        return Err(InvalidRecord::Field {
            field,
            reason: format!("expected a string, got {}", clip(text)),
        });
    }
    let value: String = serde_json::from_str(text).map_err(|e| InvalidRecord::Field {
        field,
        reason: e.to_string(),
    })?;
    Ok(Some(value))
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}…", &text[..end])
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"transaction_id":1,"user_id":7,"amount":12.5,"merchant_id":3,
        "transaction_type":"card","transaction_time":"2024-03-01 02:30:00",
        "ip_address":"10.1.2.3","device_id":"d1","location":"Taipei"}"#;

    #[test]
    fn parses_a_full_record() {
        let t = parse_transaction(GOOD.as_bytes(), Zone::Utc).unwrap();
        assert_eq!(t.transaction_id, 1);
        assert_eq!(t.amount, Cents(1250));
        assert_eq!(t.event_time_ms, 1_709_260_200_000);
        assert_eq!(t.location.as_deref(), Some("Taipei"));
    }

    #[test]
    fn optional_fields_may_be_null_or_absent() {
        let json = r#"{"transaction_id":1,"user_id":7,"amount":"0.99","merchant_id":3,
            "transaction_time":1709260200000,"ip_address":null}"#;
        let t = parse_transaction(json.as_bytes(), Zone::Utc).unwrap();
        assert_eq!(t.amount, Cents(99));
        assert_eq!(t.ip_address, None);
        assert_eq!(t.device_id, None);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("{", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            (
                r#"{"user_id":7,"amount":1,"merchant_id":3,"transaction_time":1}"#,
                "transaction_id",
            ),
            (
                r#"{"transaction_id":"x","user_id":7,"amount":1,"merchant_id":3,"transaction_time":1}"#,
                "transaction_id",
            ),
            (
                r#"{"transaction_id":1.5,"user_id":7,"amount":1,"merchant_id":3,"transaction_time":1}"#,
                "transaction_id",
            ),
            (
                r#"{"transaction_id":1,"user_id":7,"amount":-1,"merchant_id":3,"transaction_time":1}"#,
                "negative",
            ),
            (
                r#"{"transaction_id":1,"user_id":7,"amount":1.001,"merchant_id":3,"transaction_time":1}"#,
                "more than 2 decimals",
            ),
            (
                r#"{"transaction_id":1,"user_id":7,"amount":true,"merchant_id":3,"transaction_time":1}"#,
                "amount",
            ),
            (
                r#"{"transaction_id":1,"user_id":7,"amount":1,"merchant_id":3,"transaction_time":"soon"}"#,
                "transaction_time",
            ),
            (
                r#"{"transaction_id":1,"user_id":7,"amount":1,"merchant_id":3}"#,
                "transaction_time",
            ),
            (
                r#"{"transaction_id":1,"user_id":7,"amount":1,"merchant_id":3,"transaction_time":1,"ip_address":5}"#,
                "ip_address",
            ),
        ];
        for (json, needle) in cases {
            let err = parse_transaction(json.as_bytes(), Zone::Utc).unwrap_err();
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn binary_garbage_is_refused() {
        let bytes = [0xff, 0x00, 0x13, 0x37];
        assert!(matches!(
            parse_transaction(&bytes, Zone::Utc),
            Err(InvalidRecord::Json(_))
        ));
    }
}
