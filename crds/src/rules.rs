//! `spec.rules`: every threshold of the rule set (SPEC.md §3–§6). Defaults are the
//! seed's numbers. Field names are a contract with the engine's config conversion.

use rust_decimal::Decimal;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::{
    cel::{CelRule, add_rules},
    duration::Duration,
};

/// Why an `f64` from the manifest has no exact decimal form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{value} is not a finite decimal number with at most 28 significant digits")]
pub struct DecimalError {
    /// The refused value.
    pub value: f64,
}

/// The exact decimal the user wrote for `value` (`2` → `2`, `0.1` → `0.1`, not the
/// binary fraction nearest to it): Rust prints an `f64` as the shortest text that
/// reads back to it, and that text is what the manifest said.
pub fn exact_decimal(value: f64) -> Result<Decimal, DecimalError> {
    if !value.is_finite() {
        return Err(DecimalError { value });
    }
    format!("{value}")
        .parse::<Decimal>()
        .map_err(|_| DecimalError { value })
}

/// The rule set: scoring, behaviour windows, history comparison, access, decision
/// and geography thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RulesSpec {
    /// Rule-set version stamped on every decision, so a decision can be traced to the
    /// thresholds that produced it.
    #[schemars(length(min = 1, max = 63))]
    pub version: String,
    /// Risk scoring (SPEC §3): amount and time anomaly scores.
    pub scoring: ScoringRules,
    /// Per-user behaviour windows (SPEC §4).
    pub windows: WindowRules,
    /// Comparison with the hourly history summary (SPEC §5, frequency and amount).
    pub history: HistoryRules,
    /// Access anomaly limits (SPEC §5, distinct IPs and devices).
    pub access: AccessRules,
    /// Score thresholds of the final decision (SPEC §6).
    pub decision: DecisionRules,
    /// Geographic risk (SPEC §6).
    pub geo: GeoRules,
}

impl Default for RulesSpec {
    fn default() -> Self {
        Self {
            version: "v1".into(),
            scoring: ScoringRules::default(),
            windows: WindowRules::default(),
            history: HistoryRules::default(),
            access: AccessRules::default(),
            decision: DecisionRules::default(),
            geo: GeoRules::default(),
        }
    }
}

/// Scoring thresholds (SPEC §3, seed §3.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = ScoringRules::cel)]
pub struct ScoringRules {
    /// An amount above max_single_amount × this scores `extremeAmountScore`.
    #[schemars(range(min = 0.0))]
    pub max_single_amount_multiplier: f64,
    /// An amount above avg_daily_amount × this scores `highAmountScore`.
    #[schemars(range(min = 0.0))]
    pub avg_daily_high_multiplier: f64,
    /// An amount above avg_daily_amount × this scores `mediumAmountScore`; must not
    /// exceed `avgDailyHighMultiplier`.
    #[schemars(range(min = 0.0))]
    pub avg_daily_medium_multiplier: f64,
    /// Score for an amount above max_single_amount × `maxSingleAmountMultiplier`.
    #[schemars(range(min = 0))]
    pub extreme_amount_score: i32,
    /// Score for an amount above avg_daily_amount × `avgDailyHighMultiplier`.
    #[schemars(range(min = 0))]
    pub high_amount_score: i32,
    /// Score for an amount above avg_daily_amount × `avgDailyMediumMultiplier`.
    #[schemars(range(min = 0))]
    pub medium_amount_score: i32,
    /// First hour (0–23, inclusive) of the night window, in the pipeline's time zone.
    #[schemars(range(min = 0, max = 23))]
    pub night_start_hour: i32,
    /// Last hour (0–23, inclusive) of the night window; not before `nightStartHour`.
    #[schemars(range(min = 0, max = 23))]
    pub night_end_hour: i32,
    /// Score for a transaction whose hour is in the night window.
    #[schemars(range(min = 0))]
    pub night_score: i32,
    /// Score for a transaction outside its merchant's business hours.
    #[schemars(range(min = 0))]
    pub off_hours_score: i32,
}

impl Default for ScoringRules {
    fn default() -> Self {
        Self {
            max_single_amount_multiplier: 2.0,
            avg_daily_high_multiplier: 10.0,
            avg_daily_medium_multiplier: 5.0,
            extreme_amount_score: 50,
            high_amount_score: 30,
            medium_amount_score: 20,
            night_start_hour: 2,
            night_end_hour: 5,
            night_score: 15,
            off_hours_score: 10,
        }
    }
}

impl ScoringRules {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                "self.nightStartHour <= self.nightEndHour",
                "nightEndHour must not be before nightStartHour (the night window is start..=end within one day)",
            )
            .at(".nightEndHour"),
            CelRule::new(
                "self.avgDailyHighMultiplier >= self.avgDailyMediumMultiplier",
                "avgDailyMediumMultiplier must not exceed avgDailyHighMultiplier (the high tier is checked first)",
            )
            .at(".avgDailyMediumMultiplier"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// Behaviour windows per user (SPEC §4, seed §3.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WindowRules {
    /// Length of the window behind txn_count_1h and txn_amount_1h.
    pub short_window: Duration,
    /// Length of the window behind distinct_ip_24h and distinct_device_24h.
    pub distinct_window: Duration,
    /// An amount below this is small for small_amount_pattern.
    #[schemars(range(min = 0.0))]
    pub small_amount_limit: f64,
    /// How many consecutive small amounts (this one included) make the pattern.
    #[schemars(range(min = 1, max = 100))]
    pub small_amount_run: i32,
    /// How far a transaction_time may lie after the record's own timestamp (the
    /// Kafka record's, else the worker's clock) before the record is a dead letter
    /// (kind future_event_time): one bad producer clock cannot push a user's windows
    /// forward. Larger than zero.
    pub max_future_skew: Duration,
}

impl Default for WindowRules {
    fn default() -> Self {
        Self {
            short_window: Duration::from_millis(3_600_000),
            distinct_window: Duration::from_millis(86_400_000),
            small_amount_limit: 100.0,
            small_amount_run: 3,
            max_future_skew: Duration::from_millis(5 * 60_000),
        }
    }
}

/// History comparison thresholds (SPEC §5, seed §3.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = HistoryRules::cel)]
pub struct HistoryRules {
    /// txn_count_1h above transaction_count × this is HIGH_FREQUENCY_ANOMALY.
    #[schemars(range(min = 0.0))]
    pub high_frequency_multiplier: f64,
    /// txn_count_1h above transaction_count × this is MEDIUM_FREQUENCY_ANOMALY; must
    /// not exceed `highFrequencyMultiplier`.
    #[schemars(range(min = 0.0))]
    pub medium_frequency_multiplier: f64,
    /// An amount above max_amount × this is EXTREME_AMOUNT_ANOMALY.
    #[schemars(range(min = 0.0))]
    pub extreme_amount_multiplier: f64,
    /// An amount above avg_amount × this is HIGH_AMOUNT_ANOMALY.
    #[schemars(range(min = 0.0))]
    pub high_amount_multiplier: f64,
    /// |amount − avg_amount| / avg_amount above this is AMOUNT_DEVIATION_ANOMALY.
    #[schemars(range(min = 0.0))]
    pub deviation_ratio: f64,
}

impl Default for HistoryRules {
    fn default() -> Self {
        Self {
            high_frequency_multiplier: 3.0,
            medium_frequency_multiplier: 2.0,
            extreme_amount_multiplier: 2.0,
            high_amount_multiplier: 10.0,
            deviation_ratio: 5.0,
        }
    }
}

impl HistoryRules {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                "self.highFrequencyMultiplier >= self.mediumFrequencyMultiplier",
                "mediumFrequencyMultiplier must not exceed highFrequencyMultiplier (the high tier is checked first)",
            )
            .at(".mediumFrequencyMultiplier"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// Access anomaly limits (SPEC §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AccessRules {
    /// More distinct IP addresses than this in the distinct window is MULTIPLE_IP_RISK.
    #[schemars(range(min = 0))]
    pub max_distinct_ips: i32,
    /// More distinct devices than this in the distinct window is MULTIPLE_DEVICE_RISK.
    #[schemars(range(min = 0))]
    pub max_distinct_devices: i32,
}

impl Default for AccessRules {
    fn default() -> Self {
        Self {
            max_distinct_ips: 5,
            max_distinct_devices: 3,
        }
    }
}

/// Total-score thresholds of the final decision (SPEC §6): a score above each is
/// enough on its own for that decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = DecisionRules::cel)]
pub struct DecisionRules {
    /// A total score above this rejects; must be greater than `reviewScore`.
    pub reject_score: i32,
    /// A total score above this sends to manual review (and counts as high risk);
    /// must be greater than `delayScore`.
    pub review_score: i32,
    /// A total score above this delays approval.
    pub delay_score: i32,
}

impl Default for DecisionRules {
    fn default() -> Self {
        Self {
            reject_score: 100,
            review_score: 70,
            delay_score: 50,
        }
    }
}

impl DecisionRules {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                "self.rejectScore > self.reviewScore",
                "rejectScore must be greater than reviewScore",
            )
            .at(".rejectScore"),
            CelRule::new(
                "self.reviewScore > self.delayScore",
                "reviewScore must be greater than delayScore",
            )
            .at(".reviewScore"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// Geographic risk (SPEC §6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GeoRules {
    /// Locations that are HIGH_GEO_RISK, compared exactly with the transaction's location.
    #[schemars(length(max = 10000))]
    pub high_risk_locations: Vec<String>,
}

impl Default for GeoRules {
    fn default() -> Self {
        Self {
            high_risk_locations: vec!["高風險國家1".into(), "高風險國家2".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimal_keeps_what_was_written() {
        assert_eq!(exact_decimal(2.0).unwrap().to_string(), "2");
        assert_eq!(exact_decimal(0.1).unwrap().to_string(), "0.1");
        assert_eq!(exact_decimal(99.99).unwrap().to_string(), "99.99");
        assert!(exact_decimal(f64::NAN).is_err());
        assert!(exact_decimal(f64::INFINITY).is_err());
    }
}
