//! ML features and the risk model (SPEC.md §8).
//!
//! The model is a logistic regression over named inputs derived from the seed's
//! features. Its weights come from the manifest (`spec.ml.model`) or the built-in
//! defaults below, which were set by hand to rank the generator's fraud patterns
//! above normal traffic; they are a placeholder for a trained model, not one.

use std::collections::BTreeMap;

/// The seed's feature columns for one transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlFeatures {
    /// Mean amount over the user's last 30 days, this one included.
    pub user_avg_amount_30d: f64,
    /// Sample standard deviation of the same; `None` with one transaction.
    pub user_amount_stddev_30d: Option<f64>,
    /// Mean amount of the merchant's last 7 days, this one included.
    pub merchant_avg_amount_7d: f64,
    /// Local hour, 0..=23.
    pub hour_of_day: u8,
    /// 1 = Sunday … 7 = Saturday.
    pub day_of_week: u8,
    /// Whole epoch seconds since the user's previous transaction.
    pub time_since_last_txn: Option<i64>,
    /// This amount over the previous one; `None` with no previous or a previous of 0.
    pub amount_ratio_to_prev: Option<f64>,
}

/// Mean and sample standard deviation from a count, a sum and a sum of squares (all
/// in cents), as floats in currency units.
pub fn mean_and_stddev(count: u32, sum_cents: i128, squares_cents: i128) -> (f64, Option<f64>) {
    if count == 0 {
        return (0.0, None);
    }
    let n = f64::from(count);
    let mean = sum_cents as f64 / n / 100.0;
    if count < 2 {
        return (mean, None);
    }
    // n·Σx² − (Σx)² is computed exactly in integers when it fits, so the variance
    // of identical amounts is exactly 0.
    let numerator = i128::from(count)
        .checked_mul(squares_cents)
        .and_then(|a| sum_cents.checked_mul(sum_cents).map(|b| a - b))
        .map(|v| v.max(0) as f64)
        .unwrap_or_else(|| {
            let s = sum_cents as f64;
            (n * squares_cents as f64 - s * s).max(0.0)
        });
    let variance = numerator / (n * (n - 1.0)) / 10_000.0;
    (mean, Some(variance.sqrt()))
}

/// The inputs a model may weigh, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ModelInput {
    /// ln(1 + amount).
    LogAmount,
    /// (amount − 30-day mean) / 30-day stddev, clipped to ±10; 0 without a stddev.
    AmountZscore30d,
    /// ln((1 + amount) / (1 + merchant 7-day mean)).
    LogAmountToMerchantAvg7d,
    /// 1 in the night hours.
    Night,
    /// 1 for a user's first transaction.
    FirstTxn,
    /// ln(1 + seconds since the previous transaction); 0 for the first.
    LogTimeSinceLastTxn,
    /// ln(amount ratio to previous), clipped to ±10; 0 when null.
    LogAmountRatioToPrev,
    /// total_risk_score / 100.
    TotalRiskScore,
    /// txn_count_1h.
    TxnCount1h,
    /// distinct_ip_24h.
    DistinctIp24h,
    /// distinct_device_24h.
    DistinctDevice24h,
    /// small_amount_pattern.
    SmallAmountPattern,
}

impl ModelInput {
    const ALL: [(ModelInput, &'static str); 12] = [
        (ModelInput::LogAmount, "log_amount"),
        (ModelInput::AmountZscore30d, "amount_zscore_30d"),
        (
            ModelInput::LogAmountToMerchantAvg7d,
            "log_amount_to_merchant_avg_7d",
        ),
        (ModelInput::Night, "night"),
        (ModelInput::FirstTxn, "first_txn"),
        (ModelInput::LogTimeSinceLastTxn, "log_time_since_last_txn"),
        (ModelInput::LogAmountRatioToPrev, "log_amount_ratio_to_prev"),
        (ModelInput::TotalRiskScore, "total_risk_score"),
        (ModelInput::TxnCount1h, "txn_count_1h"),
        (ModelInput::DistinctIp24h, "distinct_ip_24h"),
        (ModelInput::DistinctDevice24h, "distinct_device_24h"),
        (ModelInput::SmallAmountPattern, "small_amount_pattern"),
    ];

    /// Looks an input up by its manifest name.
    pub fn by_name(name: &str) -> Option<ModelInput> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(i, _)| *i)
    }

    /// Every accepted name, for error messages.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(_, n)| *n).collect()
    }
}

/// What the model sees beyond [`MlFeatures`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelContext {
    /// The amount in currency units.
    pub amount: f64,
    /// Whether the hour is a night hour.
    pub night: bool,
    /// total_risk_score.
    pub total_risk_score: i64,
    /// txn_count_1h.
    pub txn_count_1h: u32,
    /// distinct_ip_24h.
    pub distinct_ip_24h: u32,
    /// distinct_device_24h.
    pub distinct_device_24h: u32,
    /// small_amount_pattern.
    pub small_amount_pattern: bool,
}

/// A logistic model: `p = 1 / (1 + e^-(intercept + Σ wᵢ·xᵢ))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    intercept: f64,
    weights: Vec<(ModelInput, f64)>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            intercept: -4.5,
            weights: vec![
                (ModelInput::TotalRiskScore, 3.0),
                (ModelInput::LogAmountToMerchantAvg7d, 0.5),
                (ModelInput::AmountZscore30d, 0.25),
                (ModelInput::Night, 0.8),
                (ModelInput::TxnCount1h, 0.12),
                (ModelInput::DistinctIp24h, 0.35),
                (ModelInput::DistinctDevice24h, 0.35),
                (ModelInput::SmallAmountPattern, 1.2),
            ],
        }
    }
}

impl Model {
    /// A model from manifest weights; an unknown input name is an error that lists
    /// the accepted ones.
    pub fn from_weights(intercept: f64, weights: &BTreeMap<String, f64>) -> Result<Model, String> {
        let mut resolved = Vec::with_capacity(weights.len());
        for (name, w) in weights {
            let input = ModelInput::by_name(name).ok_or_else(|| {
                format!(
                    "unknown model input '{name}'; expected one of: {}",
                    ModelInput::names().join(", ")
                )
            })?;
            if !w.is_finite() {
                return Err(format!("weight of '{name}' is not a finite number"));
            }
            resolved.push((input, *w));
        }
        if !intercept.is_finite() {
            return Err("model intercept is not a finite number".to_owned());
        }
        Ok(Model {
            intercept,
            weights: resolved,
        })
    }

    /// The probability for one transaction.
    pub fn predict(&self, f: &MlFeatures, c: &ModelContext) -> f64 {
        let z = self.weights.iter().fold(self.intercept, |acc, (input, w)| {
            acc + w * input_value(*input, f, c)
        });
        1.0 / (1.0 + (-z).exp())
    }
}

fn input_value(input: ModelInput, f: &MlFeatures, c: &ModelContext) -> f64 {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    match input {
        ModelInput::LogAmount => c.amount.ln_1p(),
        ModelInput::AmountZscore30d => match f.user_amount_stddev_30d {
            Some(sd) if sd > 0.0 => ((c.amount - f.user_avg_amount_30d) / sd).clamp(-10.0, 10.0),
            _ => 0.0,
        },
        ModelInput::LogAmountToMerchantAvg7d => {
            (c.amount.ln_1p() - f.merchant_avg_amount_7d.max(0.0).ln_1p()).clamp(-10.0, 10.0)
        }
        ModelInput::Night => flag(c.night),
        ModelInput::FirstTxn => flag(f.time_since_last_txn.is_none()),
        ModelInput::LogTimeSinceLastTxn => f
            .time_since_last_txn
            .map_or(0.0, |s| (s.max(0) as f64).ln_1p()),
        ModelInput::LogAmountRatioToPrev => f
            .amount_ratio_to_prev
            .filter(|r| *r > 0.0)
            .map_or(0.0, |r| r.ln().clamp(-10.0, 10.0)),
        ModelInput::TotalRiskScore => c.total_risk_score as f64 / 100.0,
        ModelInput::TxnCount1h => f64::from(c.txn_count_1h),
        ModelInput::DistinctIp24h => f64::from(c.distinct_ip_24h),
        ModelInput::DistinctDevice24h => f64::from(c.distinct_device_24h),
        ModelInput::SmallAmountPattern => flag(c.small_amount_pattern),
    }
}

/// `ml_risk_category` (§8).
pub fn risk_category(p: f64, high: f64, medium: f64, low: f64) -> &'static str {
    if p > high {
        "HIGH_RISK"
    } else if p > medium {
        "MEDIUM_RISK"
    } else if p > low {
        "LOW_RISK"
    } else {
        "VERY_LOW_RISK"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stddev_is_sample_and_null_for_one() {
        assert_eq!(mean_and_stddev(1, 1000, 1_000_000), (10.0, None));
        // amounts 10.00 and 20.00: mean 15, sample stddev sqrt(50) ≈ 7.0711
        let (mean, sd) = mean_and_stddev(2, 3000, 1000 * 1000 + 2000 * 2000);
        assert_eq!(mean, 15.0);
        assert!((sd.unwrap() - 50f64.sqrt()).abs() < 1e-9);
        assert_eq!(mean_and_stddev(3, 300, 30_000).1, Some(0.0));
    }

    #[test]
    fn categories_follow_thresholds() {
        assert_eq!(risk_category(0.81, 0.8, 0.6, 0.3), "HIGH_RISK");
        assert_eq!(risk_category(0.8, 0.8, 0.6, 0.3), "MEDIUM_RISK");
        assert_eq!(risk_category(0.6, 0.8, 0.6, 0.3), "LOW_RISK");
        assert_eq!(risk_category(0.3, 0.8, 0.6, 0.3), "VERY_LOW_RISK");
    }

    #[test]
    fn unknown_model_input_is_refused() {
        let mut w = BTreeMap::new();
        w.insert("shoe_size".to_owned(), 1.0);
        let err = Model::from_weights(0.0, &w).unwrap_err();
        assert!(err.contains("shoe_size") && err.contains("log_amount"));
    }
}
