//! `spec.ml`: ML features and the risk probability (SPEC §8, seed §6).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::{
    cel::{CelRule, add_rules},
    duration::Duration,
};

/// The feature names a [`ModelSpec`] may weigh (SPEC §8).
pub const ML_FEATURES: [&str; 7] = [
    "user_avg_amount_30d",
    "user_amount_stddev_30d",
    "merchant_avg_amount_7d",
    "hour_of_day",
    "day_of_week",
    "time_since_last_txn",
    "amount_ratio_to_prev",
];

/// ML features and the probability thresholds of `ml_risk_category`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = MlSpec::cel)]
pub struct MlSpec {
    /// Compute the ML features and probability; when false the decision carries none.
    pub enabled: bool,
    /// Window of user_avg_amount_30d and user_amount_stddev_30d.
    pub user_window: Duration,
    /// Window of merchant_avg_amount_7d.
    pub merchant_window: Duration,
    /// A probability above this is HIGH_RISK; in [0, 1] and above `mediumRiskProbability`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub high_risk_probability: f64,
    /// A probability above this is MEDIUM_RISK; above `lowRiskProbability`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub medium_risk_probability: f64,
    /// A probability above this is LOW_RISK; anything else VERY_LOW_RISK.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub low_risk_probability: f64,
    /// The live model: a trained ONNX model (`file`) or logistic weights; the
    /// engine's built-in weights when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// A second trained model scored on every record beside the live one; its
    /// output is in the decision (`shadow_ml_*`) and never used by a rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_model: Option<ModelSpec>,
    /// Decision rules on `ml_risk_category`, first match wins; none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 4))]
    pub decisions: Vec<CategoryDecision>,
}

/// The `ml_risk_category` values.
pub const ML_CATEGORIES: [&str; 4] = ["HIGH_RISK", "MEDIUM_RISK", "LOW_RISK", "VERY_LOW_RISK"];

/// The `final_decision` values.
pub const FINAL_DECISIONS: [&str; 4] = ["REJECT", "MANUAL_REVIEW", "DELAYED_APPROVAL", "APPROVE"];

/// A decision rule on the model's category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CategoryDecision {
    /// The category it matches: HIGH_RISK, MEDIUM_RISK, LOW_RISK or VERY_LOW_RISK.
    #[schemars(extend("enum" = ML_CATEGORIES))]
    pub category: String,
    /// The decision: REJECT, MANUAL_REVIEW, DELAYED_APPROVAL or APPROVE. It
    /// escalates the rules' decision (a more severe one of the rules stands).
    #[schemars(extend("enum" = FINAL_DECISIONS))]
    pub decision: String,
    /// Also replace a MANUAL_REVIEW or DELAYED_APPROVAL of the rules by a milder
    /// decision (a REJECT of the rules always stands).
    #[serde(default)]
    pub override_rules: bool,
}

impl Default for MlSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            user_window: Duration::from_millis(30 * 86_400_000),
            merchant_window: Duration::from_millis(7 * 86_400_000),
            high_risk_probability: 0.8,
            medium_risk_probability: 0.6,
            low_risk_probability: 0.3,
            model: None,
            shadow_model: None,
            decisions: Vec::new(),
        }
    }
}

impl MlSpec {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                "self.highRiskProbability > self.mediumRiskProbability",
                "highRiskProbability must be greater than mediumRiskProbability",
            )
            .at(".highRiskProbability"),
            CelRule::new(
                "self.mediumRiskProbability > self.lowRiskProbability",
                "mediumRiskProbability must be greater than lowRiskProbability",
            )
            .at(".mediumRiskProbability"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// A model: a trained ONNX model (`file`), or a logistic model, probability =
/// 1 / (1 + e^−(intercept + Σ weight × feature)) where a null feature contributes
/// nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = ModelSpec::cel)]
pub struct ModelSpec {
    /// Path of an `.onnx` file the worker reads at start (relative paths: from the
    /// manifest's folder in local mode). Its inputs name riskpipe features (README,
    /// "Model features"); excludes `intercept` and `weights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub file: Option<String>,
    /// The name decisions carry (`ml_model`); default: the file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// The intercept (bias) term.
    #[serde(default)]
    pub intercept: f64,
    /// Weight per feature name (one of the SPEC §8 names, e.g. `hour_of_day`);
    /// a feature not listed has weight 0.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 16))]
    pub weights: BTreeMap<String, f64>,
}

impl ModelSpec {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        let names: Vec<String> = ML_FEATURES.iter().map(|f| format!("'{f}'")).collect();
        vec![
            CelRule::new(
                format!(
                    "!has(self.weights) || self.weights.all(k, k in [{}])",
                    names.join(", ")
                ),
                format!(
                    "weights may only name the features {}",
                    ML_FEATURES.join(", ")
                ),
            )
            .at(".weights"),
            CelRule::new(
                "!has(self.file) || (!has(self.weights) && !has(self.intercept))",
                "a model is either an ONNX file or logistic weights, not both",
            )
            .at(".file"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}
