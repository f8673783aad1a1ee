//! The engine's configuration: every threshold and window of SPEC.md §3–§9, with the
//! seed's numbers as defaults. The worker fills it from a `RiskPipeline` spec; the
//! engine never reads a manifest itself.

use crate::amount::{Cents, Ratio};
use std::sync::Arc;

use crate::features::Model;
use crate::model::OnnxModel;
use crate::rules::FinalDecision;
use crate::timefmt::Zone;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Scoring thresholds (SPEC.md §3).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringConfig {
    /// `amount > max_single_amount × this` scores [`Self::extreme_amount_score`].
    pub max_single_amount_multiplier: Ratio,
    /// `amount > avg_daily_amount × this` scores [`Self::high_amount_score`].
    pub avg_daily_high_multiplier: Ratio,
    /// `amount > avg_daily_amount × this` scores [`Self::medium_amount_score`].
    pub avg_daily_medium_multiplier: Ratio,
    /// Score of an extreme amount (seed: 50).
    pub extreme_amount_score: i64,
    /// Score of a high amount (seed: 30).
    pub high_amount_score: i64,
    /// Score of a medium amount (seed: 20).
    pub medium_amount_score: i64,
    /// First night hour, inclusive (seed: 2).
    pub night_start_hour: u8,
    /// Last night hour, inclusive (seed: 5).
    pub night_end_hour: u8,
    /// Score of a night-time transaction (seed: 15).
    pub night_score: i64,
    /// Score outside the merchant's business hours (seed: 10).
    pub off_hours_score: i64,
}

/// Behaviour windows (SPEC.md §4) and the feature windows of §8.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// Length of the count / amount window in ms (seed: 1 h).
    pub short_ms: i64,
    /// Length of the distinct IP / device window in ms (seed: 24 h).
    pub distinct_ms: i64,
    /// Amounts strictly below this are "small" (seed: 100).
    pub small_amount_limit: Cents,
    /// Consecutive small amounts, this one included, that make the pattern (seed: 3).
    pub small_amount_run: usize,
    /// The user feature window in ms (seed: 30 days).
    pub user_feature_ms: i64,
    /// The merchant feature window in ms (seed: 7 days).
    pub merchant_feature_ms: i64,
    /// How far behind a user's newest transaction a transaction may arrive and still
    /// see exact windows: state is kept for the longest window plus this.
    pub allowed_lateness_ms: i64,
    /// How far an event time may lie after its reference time (the record's
    /// timestamp, else the wall clock) before the record is a dead letter
    /// (SPEC.md §4), so one bad clock cannot push a user's windows forward
    /// (default 5 min).
    pub max_future_skew_ms: i64,
}

/// History comparison (SPEC.md §5).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    /// `txn_count_1h > transaction_count × this` is HIGH (seed: 3).
    pub high_frequency_multiplier: Ratio,
    /// `txn_count_1h > transaction_count × this` is MEDIUM (seed: 2).
    pub medium_frequency_multiplier: Ratio,
    /// `amount > max_amount × this` is EXTREME (seed: 2).
    pub extreme_amount_multiplier: Ratio,
    /// `amount > avg_amount × this` is HIGH (seed: 10).
    pub high_amount_multiplier: Ratio,
    /// `|amount − avg| / avg > this` is a deviation (seed: 5).
    pub deviation_ratio: Ratio,
    /// More distinct IPs than this in the distinct window is MULTIPLE_IP_RISK (seed: 5).
    pub max_distinct_ips: u32,
    /// More distinct devices than this is MULTIPLE_DEVICE_RISK (seed: 3).
    pub max_distinct_devices: u32,
}

/// Decision thresholds (SPEC.md §6).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionConfig {
    /// `total > this` rejects (seed: 100).
    pub reject_score: i64,
    /// `total > this` sends to review, and is the 高風險評分 reason (seed: 70).
    pub review_score: i64,
    /// `total > this` delays (seed: 50).
    pub delay_score: i64,
    /// Locations that are HIGH_GEO_RISK (seed: 高風險國家1, 高風險國家2).
    pub high_risk_locations: Vec<String>,
}

/// ML categories (SPEC.md §8).
#[derive(Debug, Clone, PartialEq)]
pub struct MlConfig {
    /// Whether the model runs; without it the probability and category are null.
    pub enabled: bool,
    /// `p > this` is HIGH_RISK (seed: 0.8).
    pub high: f64,
    /// `p > this` is MEDIUM_RISK (seed: 0.6).
    pub medium: f64,
    /// `p > this` is LOW_RISK (seed: 0.3).
    pub low: f64,
    /// The model mapping features to a probability.
    pub model: Model,
    /// A trained model that replaces [`Self::model`] when set.
    pub onnx: Option<Arc<OnnxModel>>,
    /// A second trained model scored beside the live one, never used by a rule.
    pub shadow: Option<Arc<OnnxModel>>,
    /// Decision rules on `ml_risk_category`, first match wins (none by default).
    pub category_rules: Vec<CategoryRule>,
}

/// A decision rule on the model's category (`spec.ml.decisions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryRule {
    /// The `ml_risk_category` it matches.
    pub category: &'static str,
    /// The decision it asks for.
    pub decision: FinalDecision,
    /// When false, the decision only escalates: the rules' decision stands if it
    /// is as severe. When true, it also replaces a softer-than-REJECT decision of
    /// the rules (MANUAL_REVIEW, DELAYED_APPROVAL) — a REJECT of the rules stands.
    pub override_rules: bool,
}

/// Everything the engine needs to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The pipeline's name, stamped on decisions.
    pub pipeline: String,
    /// The rule-set version, stamped on decisions.
    pub rule_set_version: String,
    /// The zone of naive timestamps and calendar fields.
    pub zone: Zone,
    /// §3.
    pub scoring: ScoringConfig,
    /// §4 and §8 windows.
    pub windows: WindowConfig,
    /// §5.
    pub history: HistoryConfig,
    /// §6.
    pub decision: DecisionConfig,
    /// §8.
    pub ml: MlConfig,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            max_single_amount_multiplier: Ratio::whole(2),
            avg_daily_high_multiplier: Ratio::whole(10),
            avg_daily_medium_multiplier: Ratio::whole(5),
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

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            short_ms: HOUR_MS,
            distinct_ms: DAY_MS,
            small_amount_limit: Cents(10_000),
            small_amount_run: 3,
            user_feature_ms: 30 * DAY_MS,
            merchant_feature_ms: 7 * DAY_MS,
            allowed_lateness_ms: DAY_MS,
            max_future_skew_ms: 5 * 60_000,
        }
    }
}

impl WindowConfig {
    /// How long a user's transactions stay in state after the user's newest one.
    pub fn user_retention_ms(&self) -> i64 {
        self.short_ms
            .max(self.distinct_ms)
            .max(self.user_feature_ms)
            .saturating_add(self.allowed_lateness_ms)
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            high_frequency_multiplier: Ratio::whole(3),
            medium_frequency_multiplier: Ratio::whole(2),
            extreme_amount_multiplier: Ratio::whole(2),
            high_amount_multiplier: Ratio::whole(10),
            deviation_ratio: Ratio::whole(5),
            max_distinct_ips: 5,
            max_distinct_devices: 3,
        }
    }
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            reject_score: 100,
            review_score: 70,
            delay_score: 50,
            high_risk_locations: vec!["高風險國家1".to_owned(), "高風險國家2".to_owned()],
        }
    }
}

impl Default for MlConfig {
    fn default() -> Self {
        MlConfig {
            enabled: true,
            high: 0.8,
            medium: 0.6,
            low: 0.3,
            model: Model::default(),
            onnx: None,
            shadow: None,
            category_rules: Vec::new(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pipeline: "local".to_owned(),
            rule_set_version: "v1".to_owned(),
            zone: Zone::Utc,
            scoring: ScoringConfig::default(),
            windows: WindowConfig::default(),
            history: HistoryConfig::default(),
            decision: DecisionConfig::default(),
            ml: MlConfig::default(),
        }
    }
}
