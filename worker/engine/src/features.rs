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

/// The features a trained model (`spec.ml.model.file`) may read, by name: the
/// §3 scores, the §4 window features, the §8 features and the extras the README
/// defines. A null is NaN.
pub const MODEL_FEATURES: [&str; 30] = [
    "amount",
    "base_risk_score",
    "amount_anomaly_score",
    "time_anomaly_score",
    "total_risk_score",
    "txn_count_1h",
    "txn_amount_1h",
    "distinct_ip_24h",
    "distinct_device_24h",
    "small_amount_pattern",
    "user_avg_amount_30d",
    "user_amount_stddev_30d",
    "merchant_avg_amount_7d",
    "hour_of_day",
    "day_of_week",
    "time_since_last_txn",
    "amount_ratio_to_prev",
    "night",
    "prior_txn_count_30d",
    "amount_to_prior_avg_30d",
    "amount_zscore_30d",
    "amount_to_merchant_avg_7d",
    "new_device_24h",
    "new_ip_24h",
    "location_change",
    "high_geo_risk",
    "blacklisted",
    "user_risk_level_high",
    "merchant_risk_level_high",
    "merchant_fraud_rate",
];

/// One transaction's [`MODEL_FEATURES`], as the f32 a model reads.
#[derive(Debug, Clone, Copy)]
pub struct ModelFeatures {
    /// Values in [`MODEL_FEATURES`] order; NaN for null.
    pub values: [f32; MODEL_FEATURES.len()],
}

impl PartialEq for ModelFeatures {
    /// Bit for bit, so that two nulls (NaN) are equal.
    fn eq(&self, other: &Self) -> bool {
        self.values
            .iter()
            .zip(&other.values)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

/// What [`ModelFeatures::compute`] reads beyond [`MlFeatures`] and [`ModelContext`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtraInputs {
    /// base_risk_score.
    pub base_risk_score: i64,
    /// amount_anomaly_score.
    pub amount_anomaly_score: i64,
    /// time_anomaly_score.
    pub time_anomaly_score: i64,
    /// The amount in cents.
    pub amount_cents: i64,
    /// txn_amount_1h in cents.
    pub txn_amount_1h_cents: i128,
    /// Transactions in the user's 30-day window, this one included.
    pub feature_count: u32,
    /// Sum of the same, cents.
    pub feature_cents: i128,
    /// Transactions in the 24 h window with this device (this one included); `None` for no device.
    pub device_count_24h: Option<u32>,
    /// Likewise for the IP address.
    pub ip_count_24h: Option<u32>,
    /// geo_risk is LOCATION_CHANGE_RISK.
    pub location_change: bool,
    /// geo_risk is HIGH_GEO_RISK.
    pub high_geo_risk: bool,
    /// blacklist_status is not NOT_BLACKLISTED.
    pub blacklisted: bool,
    /// user_risk_level is HIGH.
    pub user_risk_level_high: bool,
    /// merchant_risk_level is HIGH.
    pub merchant_risk_level_high: bool,
    /// merchant_fraud_rate.
    pub merchant_fraud_rate: Option<f64>,
}

impl ModelFeatures {
    /// The features of one transaction (definitions in the README, "Model features").
    pub fn compute(f: &MlFeatures, c: &ModelContext, x: &ExtraInputs) -> ModelFeatures {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let prior_count = x.feature_count.saturating_sub(1);
        let prior_avg = (prior_count > 0).then(|| {
            (x.feature_cents - i128::from(x.amount_cents)) as f64 / f64::from(prior_count) / 100.0
        });
        let ratio = |den: Option<f64>| match den {
            Some(d) if d > 0.0 => c.amount / d,
            _ => f64::NAN,
        };
        let zscore = match f.user_amount_stddev_30d {
            Some(sd) if sd > 0.0 => (c.amount - f.user_avg_amount_30d) / sd,
            _ => f64::NAN,
        };
        let new = |n: Option<u32>| n.map_or(f64::NAN, |n| flag(n <= 1));
        let values: [f64; MODEL_FEATURES.len()] = [
            c.amount,
            x.base_risk_score as f64,
            x.amount_anomaly_score as f64,
            x.time_anomaly_score as f64,
            c.total_risk_score as f64,
            f64::from(c.txn_count_1h),
            x.txn_amount_1h_cents as f64 / 100.0,
            f64::from(c.distinct_ip_24h),
            f64::from(c.distinct_device_24h),
            flag(c.small_amount_pattern),
            f.user_avg_amount_30d,
            opt(f.user_amount_stddev_30d),
            f.merchant_avg_amount_7d,
            f64::from(f.hour_of_day),
            f64::from(f.day_of_week),
            opt(f.time_since_last_txn.map(|s| s as f64)),
            opt(f.amount_ratio_to_prev),
            flag(c.night),
            f64::from(prior_count),
            ratio(prior_avg),
            zscore,
            ratio(Some(f.merchant_avg_amount_7d)),
            new(x.device_count_24h),
            new(x.ip_count_24h),
            flag(x.location_change),
            flag(x.high_geo_risk),
            flag(x.blacklisted),
            flag(x.user_risk_level_high),
            flag(x.merchant_risk_level_high),
            opt(x.merchant_fraud_rate),
        ];
        ModelFeatures {
            values: values.map(|v| v as f32),
        }
    }

    /// The value of a feature by name.
    pub fn get(&self, name: &str) -> Option<f32> {
        MODEL_FEATURES
            .iter()
            .position(|f| *f == name)
            .map(|i| self.values[i])
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
