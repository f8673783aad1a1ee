//! `spec.monitoring`: monitoring windows, watermark and alert thresholds (SPEC §9).

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::{
    cel::{CelRule, add_rules},
    duration::Duration,
};

/// Monitoring windows over the whole pipeline and the watermark that closes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MonitoringSpec {
    /// Tumbling event-time window of the performance metrics and alerts.
    pub window: Duration,
    /// Tumbling event-time window of the health metrics (tps, p95/p99, error rate).
    pub health_window: Duration,
    /// The watermark trails the largest event time seen by this much.
    pub watermark_delay: Duration,
    /// A partition without records for this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// Alert levels and the condition for emitting an alert.
    pub alerts: AlertThresholds,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(60_000),
            health_window: Duration::from_millis(5 * 60_000),
            watermark_delay: Duration::from_millis(10_000),
            idle_timeout: Duration::from_millis(30_000),
            alerts: AlertThresholds::default(),
        }
    }
}

/// Alert thresholds (seed §5.2). A window is CRITICAL, HIGH or MEDIUM by the first
/// level whose rejection rate or latency it exceeds; an alert is emitted when the
/// rejection rate exceeds the medium level, the latency exceeds the medium level or
/// the high-risk ratio exceeds `highRiskRatio`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = AlertThresholds::cel)]
pub struct AlertThresholds {
    /// Rejection rate (0–1) above which a window is CRITICAL.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub critical_rejection_rate: f64,
    /// Rejection rate above which a window is HIGH.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub high_rejection_rate: f64,
    /// Rejection rate above which a window is MEDIUM (and an alert is emitted).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub medium_rejection_rate: f64,
    /// Average processing latency (ms) above which a window is CRITICAL.
    #[schemars(range(min = 0))]
    pub critical_latency_ms: i64,
    /// Average processing latency (ms) above which a window is HIGH.
    #[schemars(range(min = 0))]
    pub high_latency_ms: i64,
    /// Average processing latency (ms) above which a window is MEDIUM (and an alert
    /// is emitted).
    #[schemars(range(min = 0))]
    pub medium_latency_ms: i64,
    /// High-risk ratio (share of transactions above reviewScore) above which an alert
    /// is emitted.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub high_risk_ratio: f64,
    /// High-risk ratio above which the alert message names the ratio (the seed's
    /// 高風險交易占比過高 message).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub high_risk_ratio_message: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            critical_rejection_rate: 0.3,
            high_rejection_rate: 0.2,
            medium_rejection_rate: 0.1,
            critical_latency_ms: 5000,
            high_latency_ms: 3000,
            medium_latency_ms: 1000,
            high_risk_ratio: 0.3,
            high_risk_ratio_message: 0.5,
        }
    }
}

impl AlertThresholds {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                "self.criticalRejectionRate >= self.highRejectionRate && self.highRejectionRate >= self.mediumRejectionRate",
                "rejection rates must be ordered criticalRejectionRate >= highRejectionRate >= mediumRejectionRate",
            )
            .at(".highRejectionRate"),
            CelRule::new(
                "self.criticalLatencyMs >= self.highLatencyMs && self.highLatencyMs >= self.mediumLatencyMs",
                "latencies must be ordered criticalLatencyMs >= highLatencyMs >= mediumLatencyMs",
            )
            .at(".highLatencyMs"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}
