//! Local mode's and replay's monitoring output: the window and alert records a
//! production pipeline would emit, as JSON lines beside the decisions file
//! (`<stem>.windows.jsonl`, `<stem>.health.jsonl`, `<stem>.alerts.jsonl`), so an
//! analyst sees what a backtest would have alerted on.
//!
//! Latency here is the decision's `processing_latency_ms` (read → decided): a
//! backtest's event times are history, so "now − transaction time" would put every
//! window over the critical latency.

use std::path::{Path, PathBuf};

use riskpipe_crds::{AlertThresholds, MonitoringSpec};
use riskpipe_engine::{Decision, FinalDecision};

use super::alerts::alert;
use super::window::{Closed, DecisionKind, Observation, WindowConfig, Windows};
use crate::output::{JsonLines, OutputError};

/// Windows of a local run and the files they are written to.
pub struct MonitoringFiles {
    windows: Windows,
    thresholds: AlertThresholds,
    performance: JsonLines,
    health: JsonLines,
    alerts: JsonLines,
    last_event_ms: Option<i64>,
}

/// `<stem>.<what>.jsonl` beside `decisions`.
pub fn beside(decisions: &Path, what: &str) -> PathBuf {
    let stem = decisions
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "decisions".to_owned());
    decisions.with_file_name(format!("{stem}.{what}.jsonl"))
}

fn kind(d: FinalDecision) -> DecisionKind {
    match d {
        FinalDecision::Reject => DecisionKind::Reject,
        FinalDecision::ManualReview => DecisionKind::ManualReview,
        FinalDecision::DelayedApproval => DecisionKind::DelayedApproval,
        FinalDecision::Approve => DecisionKind::Approve,
    }
}

impl MonitoringFiles {
    /// The files beside `decisions`; `None` when decisions go to standard output.
    pub fn beside(decisions: &Path, spec: &MonitoringSpec) -> Result<Option<Self>, OutputError> {
        if decisions.as_os_str() == "-" {
            return Ok(None);
        }
        Ok(Some(Self {
            windows: Windows::new(WindowConfig::from_spec(spec)),
            thresholds: spec.alerts.clone(),
            performance: JsonLines::create(&beside(decisions, "windows"))?,
            health: JsonLines::create(&beside(decisions, "health"))?,
            alerts: JsonLines::create(&beside(decisions, "alerts"))?,
            last_event_ms: None,
        }))
    }

    /// Adds a decision seen at processing time `now_ms` (local mode: partition 0)
    /// and writes the windows the watermark then closes (after every record, so
    /// what is late does not depend on batch sizes).
    pub fn decision(&mut self, d: &Decision, now_ms: i64) -> Result<(), OutputError> {
        self.last_event_ms = Some(
            self.last_event_ms
                .map_or(d.event_time_ms, |t| t.max(d.event_time_ms)),
        );
        self.windows.observe(
            &Observation {
                partition: 0,
                event_time_ms: d.event_time_ms,
                decision: Some(kind(d.final_decision)),
                total_risk_score: d.total_risk_score,
                latency_ms: d.processing_latency_ms,
            },
            now_ms,
        );
        self.advance(now_ms)
    }

    /// Counts a record that could not be decided in the window of the latest event
    /// time seen (it has no event time of its own); before any decision it is not
    /// placed.
    pub fn error(&mut self, now_ms: i64) {
        if let Some(t) = self.last_event_ms {
            self.windows.observe(
                &Observation {
                    partition: 0,
                    event_time_ms: t,
                    decision: None,
                    total_risk_score: 0,
                    latency_ms: 0.0,
                },
                now_ms,
            );
        }
    }

    /// Records that came after their window closed.
    pub fn late_records(&self) -> u64 {
        self.windows.late_records()
    }

    /// Writes the windows the watermark closed by `now_ms`.
    pub fn advance(&mut self, now_ms: i64) -> Result<(), OutputError> {
        let closed = self.windows.advance(now_ms);
        self.write(closed)
    }

    /// Closes and writes every open window and flushes (the input ended).
    pub fn finish(&mut self) -> Result<(), OutputError> {
        if self.windows.late_records() > 0 {
            tracing::info!(
                late_records = self.windows.late_records(),
                "monitoring windows: records later than the watermark (counted, not in any window)"
            );
        }
        let closed = self.windows.finish();
        self.write(closed)?;
        self.performance.flush()?;
        self.health.flush()?;
        self.alerts.flush()
    }

    fn write(&mut self, closed: Closed) -> Result<(), OutputError> {
        for w in &closed.performance {
            self.performance.write_line(&to_json(w))?;
            if let Some(a) = alert(w, &self.thresholds) {
                self.alerts.write_line(&to_json(&a))?;
            }
        }
        for h in &closed.health {
            self.health.write_line(&to_json(h))?;
        }
        Ok(())
    }
}

fn to_json(v: &impl serde::Serialize) -> Vec<u8> {
    // The records are plain numbers and strings: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}
