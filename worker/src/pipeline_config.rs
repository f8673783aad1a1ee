//! From a `RiskPipeline` manifest to the engine's configuration.
//!
//! The manifest speaks in the user's units (durations as text, multipliers as
//! decimals written as numbers); the engine wants milliseconds, cents and exact
//! ratios. Every conversion error names the manifest field.

use riskpipe_crds::{RiskPipeline, exact_decimal};
use riskpipe_engine::Ratio;
use riskpipe_engine::amount::Cents;
use riskpipe_engine::config::{
    DecisionConfig, EngineConfig, HistoryConfig, ScoringConfig, WindowConfig,
};
use riskpipe_engine::timefmt::Zone;

/// A manifest value the engine cannot use.
#[derive(Debug, thiserror::Error)]
#[error("spec.{field}: {reason}")]
pub struct ConfigError {
    /// The manifest field, relative to `spec`.
    pub field: &'static str,
    /// What is wrong and what would fix it.
    pub reason: String,
}

fn ratio(field: &'static str, value: f64) -> Result<Ratio, ConfigError> {
    if value < 0.0 {
        return Err(ConfigError {
            field,
            reason: format!("{value} is negative; use a number >= 0"),
        });
    }
    exact_decimal(value)
        .map(Ratio::from_decimal)
        .map_err(|e| ConfigError {
            field,
            reason: e.to_string(),
        })
}

fn hour(field: &'static str, value: i32) -> Result<u8, ConfigError> {
    u8::try_from(value)
        .ok()
        .filter(|h| *h < 24)
        .ok_or_else(|| ConfigError {
            field,
            reason: format!("{value} is not an hour 0..=23"),
        })
}

fn non_negative(field: &'static str, value: i32) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| ConfigError {
        field,
        reason: format!("{value} is negative"),
    })
}

fn millis(d: &riskpipe_crds::Duration) -> i64 {
    i64::try_from(d.millis()).unwrap_or(i64::MAX)
}

/// The engine configuration of a pipeline.
pub fn engine_config(pipeline: &RiskPipeline) -> Result<EngineConfig, ConfigError> {
    let spec = &pipeline.spec;
    let rules = &spec.rules;
    let s = &rules.scoring;
    let zone = Zone::parse(&spec.time_zone).map_err(|e| ConfigError {
        field: "timeZone",
        reason: e.to_string(),
    })?;
    let small_limit = exact_decimal(rules.windows.small_amount_limit)
        .ok()
        .and_then(|d| Cents::from_decimal(d).ok())
        .ok_or_else(|| ConfigError {
            field: "rules.windows.smallAmountLimit",
            reason: format!(
                "{} is not an amount >= 0 with at most 2 decimals",
                rules.windows.small_amount_limit
            ),
        })?;
    Ok(EngineConfig {
        pipeline: pipeline.metadata.name.clone().unwrap_or_default(),
        rule_set_version: rules.version.clone(),
        zone,
        scoring: ScoringConfig {
            max_single_amount_multiplier: ratio(
                "rules.scoring.maxSingleAmountMultiplier",
                s.max_single_amount_multiplier,
            )?,
            avg_daily_high_multiplier: ratio(
                "rules.scoring.avgDailyHighMultiplier",
                s.avg_daily_high_multiplier,
            )?,
            avg_daily_medium_multiplier: ratio(
                "rules.scoring.avgDailyMediumMultiplier",
                s.avg_daily_medium_multiplier,
            )?,
            extreme_amount_score: i64::from(s.extreme_amount_score),
            high_amount_score: i64::from(s.high_amount_score),
            medium_amount_score: i64::from(s.medium_amount_score),
            night_start_hour: hour("rules.scoring.nightStartHour", s.night_start_hour)?,
            night_end_hour: hour("rules.scoring.nightEndHour", s.night_end_hour)?,
            night_score: i64::from(s.night_score),
            off_hours_score: i64::from(s.off_hours_score),
        },
        windows: WindowConfig {
            short_ms: millis(&rules.windows.short_window),
            distinct_ms: millis(&rules.windows.distinct_window),
            small_amount_limit: small_limit,
            small_amount_run: non_negative(
                "rules.windows.smallAmountRun",
                rules.windows.small_amount_run,
            )? as usize,
            user_feature_ms: millis(&spec.ml.user_window),
            merchant_feature_ms: millis(&spec.ml.merchant_window),
            max_future_skew_ms: millis(&rules.windows.max_future_skew),
            ..WindowConfig::default()
        },
        history: HistoryConfig {
            high_frequency_multiplier: ratio(
                "rules.history.highFrequencyMultiplier",
                rules.history.high_frequency_multiplier,
            )?,
            medium_frequency_multiplier: ratio(
                "rules.history.mediumFrequencyMultiplier",
                rules.history.medium_frequency_multiplier,
            )?,
            extreme_amount_multiplier: ratio(
                "rules.history.extremeAmountMultiplier",
                rules.history.extreme_amount_multiplier,
            )?,
            high_amount_multiplier: ratio(
                "rules.history.highAmountMultiplier",
                rules.history.high_amount_multiplier,
            )?,
            deviation_ratio: ratio(
                "rules.history.deviationRatio",
                rules.history.deviation_ratio,
            )?,
            max_distinct_ips: non_negative(
                "rules.access.maxDistinctIps",
                rules.access.max_distinct_ips,
            )?,
            max_distinct_devices: non_negative(
                "rules.access.maxDistinctDevices",
                rules.access.max_distinct_devices,
            )?,
        },
        decision: DecisionConfig {
            reject_score: i64::from(rules.decision.reject_score),
            review_score: i64::from(rules.decision.review_score),
            delay_score: i64::from(rules.decision.delay_score),
            high_risk_locations: rules.geo.high_risk_locations.clone(),
        },
        ml: crate::model_config::ml_config(&spec.ml)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(spec: &str) -> RiskPipeline {
        let text = format!(
            "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: t\nspec:\n{spec}"
        );
        RiskPipeline::from_yaml(&text).expect("manifest parses")
    }

    #[test]
    fn defaults_are_the_seed_numbers() {
        let cfg = engine_config(&manifest("  source:\n    file:\n      path: x.jsonl\n")).unwrap();
        let default = EngineConfig {
            pipeline: "t".to_owned(),
            ..EngineConfig::default()
        };
        assert_eq!(cfg, default);
    }

    #[test]
    fn thresholds_come_from_the_manifest() {
        let cfg = engine_config(&manifest(
            "  source:\n    file:\n      path: x.jsonl\n  timeZone: Asia/Taipei\n  rules:\n    scoring:\n      maxSingleAmountMultiplier: 2.5\n    windows:\n      shortWindow: 30m\n    decision:\n      rejectScore: 120\n",
        ))
        .unwrap();
        assert_eq!(
            cfg.scoring.max_single_amount_multiplier,
            Ratio::from_f64(2.5).unwrap()
        );
        assert_eq!(cfg.windows.short_ms, 30 * 60_000);
        assert_eq!(cfg.decision.reject_score, 120);
        assert_ne!(cfg.zone, Zone::Utc);
    }

    #[test]
    fn max_future_skew_comes_from_the_manifest() {
        let default =
            engine_config(&manifest("  source:\n    file:\n      path: x.jsonl\n")).unwrap();
        assert_eq!(default.windows.max_future_skew_ms, 5 * 60_000);
        let cfg = engine_config(&manifest(
            "  source:\n    file:\n      path: x.jsonl\n  rules:\n    windows:\n      maxFutureSkew: 2h\n",
        ))
        .unwrap();
        assert_eq!(cfg.windows.max_future_skew_ms, 2 * 3_600_000);
    }
}
