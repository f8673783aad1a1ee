//! Tumbling event-time windows over the whole pipeline (SPEC §9): 1-minute
//! performance windows (`system_performance_monitoring`) and 5-minute health
//! windows (`system_health_metrics`), closed by the watermark.
//!
//! The watermark: each partition's largest event time, the smallest of those over
//! the partitions that are not idle, minus `watermarkDelay` (a partition without a
//! record for `idleTimeout` of processing time stops holding it back; when every
//! partition is idle the largest event time counts). It never goes back. A window
//! closes when its end is at or below the watermark; a record whose window is
//! already closed is late: counted in [`Windows::late_records`], not added (a closed
//! window's record is final, never emitted twice).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::sketch::LatencySketch;

/// Window sizes and the watermark's settings, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    /// Performance window (seed: 1 minute).
    pub window_ms: i64,
    /// Health window (seed: 5 minutes).
    pub health_window_ms: i64,
    /// The watermark trails the event times by this much.
    pub watermark_delay_ms: i64,
    /// A partition idle this long (processing time) stops holding the watermark.
    pub idle_timeout_ms: i64,
}

impl WindowConfig {
    /// From `spec.monitoring`.
    pub fn from_spec(m: &riskpipe_crds::MonitoringSpec) -> Self {
        let ms = |d: &riskpipe_crds::Duration| i64::try_from(d.millis()).unwrap_or(i64::MAX);
        Self {
            window_ms: ms(&m.window).max(1),
            health_window_ms: ms(&m.health_window).max(1),
            watermark_delay_ms: ms(&m.watermark_delay),
            idle_timeout_ms: ms(&m.idle_timeout),
        }
    }
}

/// The decision kinds the windows count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionKind {
    /// REJECT.
    Reject,
    /// MANUAL_REVIEW.
    ManualReview,
    /// DELAYED_APPROVAL (in the total only, as in the seed).
    DelayedApproval,
    /// APPROVE.
    Approve,
}

/// One decided record (or one that failed with a known event time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// Input partition.
    pub partition: i32,
    /// Event time, Unix milliseconds.
    pub event_time_ms: i64,
    /// The decision; `None` for a processing error.
    pub decision: Option<DecisionKind>,
    /// Total risk score (high risk: above 70).
    pub total_risk_score: i64,
    /// The record's latency, milliseconds.
    pub latency_ms: f64,
}

/// Score above which a transaction is high risk (SPEC §9).
const HIGH_RISK_SCORE: i64 = 70;

/// Counts of one window; partial aggregates (of partitions, workers) merge exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// Records (decisions and errors).
    pub total: u64,
    /// REJECT.
    pub rejected: u64,
    /// MANUAL_REVIEW.
    pub review: u64,
    /// APPROVE.
    pub approved: u64,
    /// Processing errors.
    pub errors: u64,
    /// Score above 70.
    pub high_risk: u64,
    /// Sum of latencies, milliseconds.
    pub latency_sum_ms: f64,
    /// Latencies (health windows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latencies: Option<LatencySketch>,
}

impl Aggregate {
    /// Adds one record (its latency into the sketch when there is one).
    pub fn add(&mut self, o: &Observation) {
        self.total += 1;
        match o.decision {
            Some(DecisionKind::Reject) => self.rejected += 1,
            Some(DecisionKind::ManualReview) => self.review += 1,
            Some(DecisionKind::Approve) => self.approved += 1,
            Some(DecisionKind::DelayedApproval) => {}
            None => self.errors += 1,
        }
        if o.total_risk_score > HIGH_RISK_SCORE {
            self.high_risk += 1;
        }
        self.latency_sum_ms += o.latency_ms;
        if let Some(s) = &mut self.latencies {
            s.record(o.latency_ms);
        }
    }

    /// Adds another partial aggregate of the same window.
    pub fn merge(&mut self, other: &Aggregate) {
        self.merge_counts(other);
        if let Some(theirs) = &other.latencies {
            self.latencies
                .get_or_insert_with(LatencySketch::new)
                .merge(theirs);
        }
    }

    /// Adds another partial aggregate's counts and latency sum, not its sketch
    /// (a performance window needs none).
    pub fn merge_counts(&mut self, other: &Aggregate) {
        self.total += other.total;
        self.rejected += other.rejected;
        self.review += other.review;
        self.approved += other.approved;
        self.errors += other.errors;
        self.high_risk += other.high_risk;
        self.latency_sum_ms += other.latency_sum_ms;
    }

    fn ratio(&self, n: u64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            n as f64 / self.total as f64
        }
    }
}

/// A closed 1-minute window (seed `system_performance_monitoring`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerformanceRecord {
    /// Window start, Unix milliseconds.
    pub window_start: i64,
    /// Window end (exclusive).
    pub window_end: i64,
    /// Transactions.
    pub total_transactions: u64,
    /// REJECT.
    pub rejected_count: u64,
    /// MANUAL_REVIEW.
    pub review_count: u64,
    /// APPROVE.
    pub approved_count: u64,
    /// REJECT / total.
    pub rejection_rate: f64,
    /// Average latency, milliseconds.
    pub avg_processing_latency_ms: f64,
    /// Score above 70 / total.
    pub high_risk_ratio: f64,
}

impl PerformanceRecord {
    /// The record of the window starting at `start`, `size` ms long.
    pub fn of(start: i64, size: i64, a: &Aggregate) -> Self {
        Self {
            window_start: start,
            window_end: start + size,
            total_transactions: a.total,
            rejected_count: a.rejected,
            review_count: a.review,
            approved_count: a.approved,
            rejection_rate: a.ratio(a.rejected),
            avg_processing_latency_ms: if a.total == 0 {
                0.0
            } else {
                a.latency_sum_ms / a.total as f64
            },
            high_risk_ratio: a.ratio(a.high_risk),
        }
    }
}

/// A closed 5-minute window (seed `system_health_metrics`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthRecord {
    /// Window start, Unix milliseconds.
    pub window_start: i64,
    /// Window end (exclusive).
    pub window_end: i64,
    /// Transactions.
    pub total_transactions: u64,
    /// Transactions per second of the window.
    pub tps: f64,
    /// Average latency, milliseconds.
    pub avg_latency: f64,
    /// 95th percentile latency, milliseconds (within the sketch's relative error).
    pub p95_latency: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_latency: f64,
    /// REJECT.
    pub rejected_count: u64,
    /// MANUAL_REVIEW.
    pub review_count: u64,
    /// Processing errors.
    pub error_count: u64,
    /// Errors / total.
    pub error_rate: f64,
}

impl HealthRecord {
    /// The record of the health window starting at `start`, `size` ms long.
    pub fn of(start: i64, size: i64, a: &Aggregate) -> Self {
        let sketch = a.latencies.clone().unwrap_or_default();
        Self {
            window_start: start,
            window_end: start + size,
            total_transactions: a.total,
            tps: a.total as f64 / (size as f64 / 1000.0),
            avg_latency: if a.total == 0 {
                0.0
            } else {
                a.latency_sum_ms / a.total as f64
            },
            p95_latency: sketch.quantile_ms(0.95),
            p99_latency: sketch.quantile_ms(0.99),
            rejected_count: a.rejected,
            review_count: a.review,
            error_count: a.errors,
            error_rate: a.ratio(a.errors),
        }
    }
}

/// What closed since the last call.
#[derive(Debug, Default, PartialEq)]
pub struct Closed {
    /// Performance windows, by start.
    pub performance: Vec<PerformanceRecord>,
    /// Health windows, by start.
    pub health: Vec<HealthRecord>,
}

impl Closed {
    /// Nothing closed.
    pub fn is_empty(&self) -> bool {
        self.performance.is_empty() && self.health.is_empty()
    }
}

#[derive(Clone, Copy, Debug)]
struct PartitionClock {
    max_event_ms: i64,
    last_seen_ms: i64,
}

/// Open windows and the watermark of one pipeline (or of the partitions fed in).
#[derive(Debug)]
pub struct Windows {
    config: WindowConfig,
    partitions: HashMap<i32, PartitionClock>,
    watermark: i64,
    performance: BTreeMap<i64, Aggregate>,
    health: BTreeMap<i64, Aggregate>,
    late: u64,
}

/// Start of the tumbling window of `size` ms holding time `t`.
pub(crate) fn window_start(t: i64, size: i64) -> i64 {
    t.div_euclid(size) * size
}

impl Windows {
    /// No windows open, no watermark yet.
    pub fn new(config: WindowConfig) -> Self {
        Self {
            config,
            partitions: HashMap::new(),
            watermark: i64::MIN,
            performance: BTreeMap::new(),
            health: BTreeMap::new(),
            late: 0,
        }
    }

    /// The current watermark (`i64::MIN` before any record).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Records that arrived after their window closed.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Adds a record seen at processing time `now_ms`; false when it is late (its
    /// performance window closed already; counted, not added).
    pub fn observe(&mut self, o: &Observation, now_ms: i64) -> bool {
        let c = self
            .partitions
            .entry(o.partition)
            .or_insert(PartitionClock {
                max_event_ms: o.event_time_ms,
                last_seen_ms: now_ms,
            });
        c.max_event_ms = c.max_event_ms.max(o.event_time_ms);
        c.last_seen_ms = c.last_seen_ms.max(now_ms);
        let size = self.config.window_ms;
        let start = window_start(o.event_time_ms, size);
        if start.saturating_add(size) <= self.watermark {
            self.late += 1;
            return false;
        }
        self.performance.entry(start).or_default().add(o);
        let hsize = self.config.health_window_ms;
        let hstart = window_start(o.event_time_ms, hsize);
        // A health window can be closed while the record's minute is not (sizes
        // that do not nest): the record then counts in the minute only.
        if hstart.saturating_add(hsize) > self.watermark {
            self.health
                .entry(hstart)
                .or_insert_with(|| Aggregate {
                    latencies: Some(LatencySketch::new()),
                    ..Aggregate::default()
                })
                .add(o);
        }
        true
    }

    /// Moves the watermark by processing time `now_ms` and returns the windows it
    /// closed.
    pub fn advance(&mut self, now_ms: i64) -> Closed {
        let idle = self.config.idle_timeout_ms;
        let active = self
            .partitions
            .values()
            .filter(|c| now_ms.saturating_sub(c.last_seen_ms) < idle)
            .map(|c| c.max_event_ms)
            .min();
        let basis = active.or_else(|| self.partitions.values().map(|c| c.max_event_ms).max());
        if let Some(t) = basis {
            self.watermark = self
                .watermark
                .max(t.saturating_sub(self.config.watermark_delay_ms));
        }
        self.close_up_to(self.watermark)
    }

    /// Closes every open window (the end of a bounded input: local mode, replay).
    pub fn finish(&mut self) -> Closed {
        self.watermark = i64::MAX;
        self.close_up_to(i64::MAX)
    }

    fn close_up_to(&mut self, watermark: i64) -> Closed {
        let (size, hsize) = (self.config.window_ms, self.config.health_window_ms);
        let mut closed = Closed::default();
        while let Some(entry) = self.performance.first_entry() {
            if entry.key().saturating_add(size) > watermark {
                break;
            }
            let (start, a) = entry.remove_entry();
            closed
                .performance
                .push(PerformanceRecord::of(start, size, &a));
        }
        while let Some(entry) = self.health.first_entry() {
            if entry.key().saturating_add(hsize) > watermark {
                break;
            }
            let (start, a) = entry.remove_entry();
            closed.health.push(HealthRecord::of(start, hsize, &a));
        }
        closed
    }
}

#[cfg(test)]
mod tests;
