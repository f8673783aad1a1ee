//! Alert levels and messages of a closed performance window (seed §5.2
//! `alert_triggers`, thresholds from `spec.monitoring.alerts`).

use riskpipe_crds::AlertThresholds;
use serde::Serialize;

use super::window::PerformanceRecord;

/// The seed's alert levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertLevel {
    /// Rejection rate or latency above the critical level.
    Critical,
    /// Above the high level.
    High,
    /// Above the medium level.
    Medium,
    /// None of them (an alert can still be emitted for the high-risk ratio).
    Normal,
}

/// One alert record (seed `alert_triggers`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRecord {
    /// Window start, Unix milliseconds.
    pub window_start: i64,
    /// Transactions in the window.
    pub total_transactions: u64,
    /// REJECT / total.
    pub rejection_rate: f64,
    /// Average latency of the window, milliseconds.
    pub avg_processing_latency_ms: f64,
    /// Share of transactions with a total risk score above 70.
    pub high_risk_ratio: f64,
    /// The level.
    pub alert_level: AlertLevel,
    /// The seed's message text.
    pub alert_message: String,
}

/// The level of a window by its rejection rate and average latency.
pub fn level(rejection_rate: f64, latency_ms: f64, t: &AlertThresholds) -> AlertLevel {
    let above = |rate: f64, ms: i64| rejection_rate > rate || latency_ms > ms as f64;
    if above(t.critical_rejection_rate, t.critical_latency_ms) {
        AlertLevel::Critical
    } else if above(t.high_rejection_rate, t.high_latency_ms) {
        AlertLevel::High
    } else if above(t.medium_rejection_rate, t.medium_latency_ms) {
        AlertLevel::Medium
    } else {
        AlertLevel::Normal
    }
}

/// A number as the seed's `CAST(DOUBLE AS STRING)` prints it (Java's
/// `Double.toString` for ordinary magnitudes: `35.0`, `12.5`).
fn java_double(v: f64) -> String {
    format!("{v:?}")
}

/// The seed's message: the first of rejection rate, latency, high-risk ratio above
/// its critical mark, else `Normal`.
pub fn message(w: &PerformanceRecord, t: &AlertThresholds) -> String {
    if w.rejection_rate > t.critical_rejection_rate {
        format!("拒絕率過高: {}%", java_double(w.rejection_rate * 100.0))
    } else if w.avg_processing_latency_ms > t.critical_latency_ms as f64 {
        format!(
            "處理延遲過高: {}ms",
            java_double(w.avg_processing_latency_ms)
        )
    } else if w.high_risk_ratio > t.high_risk_ratio_message {
        format!(
            "高風險交易占比過高: {}%",
            java_double(w.high_risk_ratio * 100.0)
        )
    } else {
        "Normal".to_owned()
    }
}

/// The alert of a closed window, when the seed's condition holds.
pub fn alert(w: &PerformanceRecord, t: &AlertThresholds) -> Option<AlertRecord> {
    let fires = w.rejection_rate > t.medium_rejection_rate
        || w.avg_processing_latency_ms > t.medium_latency_ms as f64
        || w.high_risk_ratio > t.high_risk_ratio;
    fires.then(|| AlertRecord {
        window_start: w.window_start,
        total_transactions: w.total_transactions,
        rejection_rate: w.rejection_rate,
        avg_processing_latency_ms: w.avg_processing_latency_ms,
        high_risk_ratio: w.high_risk_ratio,
        alert_level: level(w.rejection_rate, w.avg_processing_latency_ms, t),
        alert_message: message(w, t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(rejection_rate: f64, latency: f64, high_risk_ratio: f64) -> PerformanceRecord {
        PerformanceRecord {
            window_start: 60_000,
            window_end: 120_000,
            total_transactions: 100,
            rejected_count: 0,
            review_count: 0,
            approved_count: 0,
            rejection_rate,
            avg_processing_latency_ms: latency,
            high_risk_ratio,
        }
    }

    #[test]
    fn levels_messages_and_the_emit_condition_follow_the_seed() {
        let t = AlertThresholds::default();
        let cases = [
            // rate, latency, high-risk → level, message (None: no alert)
            (
                0.35,
                10.0,
                0.0,
                Some((AlertLevel::Critical, "拒絕率過高: 35.0%")),
            ),
            (
                0.05,
                6000.0,
                0.0,
                Some((AlertLevel::Critical, "處理延遲過高: 6000.0ms")),
            ),
            (0.25, 10.0, 0.0, Some((AlertLevel::High, "Normal"))),
            (0.05, 3500.0, 0.0, Some((AlertLevel::High, "Normal"))),
            (0.15, 10.0, 0.0, Some((AlertLevel::Medium, "Normal"))),
            (
                0.05,
                1500.0,
                0.6,
                Some((AlertLevel::Medium, "高風險交易占比過高: 60.0%")),
            ),
            // Only the high-risk ratio: an alert at level NORMAL, as the seed emits.
            (0.05, 10.0, 0.4, Some((AlertLevel::Normal, "Normal"))),
            (0.1, 1000.0, 0.3, None),
        ];
        for (rate, latency, risk, want) in cases {
            let got =
                alert(&window(rate, latency, risk), &t).map(|a| (a.alert_level, a.alert_message));
            assert_eq!(
                got,
                want.map(|(l, m)| (l, m.to_owned())),
                "rate {rate}, latency {latency}, high-risk {risk}"
            );
        }
    }
}
