//! Kafka mode's windows as pure code: the partial aggregates one partition's
//! micro-batch adds to its transaction ([`Partial`]), and the one merger's state
//! that turns the committed partials of every partition into the pipeline's window
//! records ([`MergerState`]).
//!
//! A partial holds exactly the batch's records, so the committed partials of a
//! partition are exactly its committed decisions, whoever owned it when and
//! however its batches were cut. The merger decides from the partials' sequence
//! on one topic partition and their produce times only (its "processing time" is
//! the newest partial's timestamp; its own clock counts only while it has read
//! everything), so a merger restarted from its last committed state writes the
//! same windows an uninterrupted one would.

use std::collections::BTreeMap;

use riskpipe_engine::{Decision, FinalDecision};
use serde::{Deserialize, Serialize};

use super::window::{
    Aggregate, Closed, DecisionKind, HealthRecord, Observation, PerformanceRecord, WindowConfig,
    window_start,
};

/// The observation of a decision of input partition `partition`; its latency is
/// the decision's `processing_latency_ms`.
pub fn decided(d: &Decision, partition: i32) -> Observation {
    Observation {
        partition,
        event_time_ms: d.event_time_ms,
        decision: Some(match d.final_decision {
            FinalDecision::Reject => DecisionKind::Reject,
            FinalDecision::ManualReview => DecisionKind::ManualReview,
            FinalDecision::DelayedApproval => DecisionKind::DelayedApproval,
            FinalDecision::Approve => DecisionKind::Approve,
        }),
        total_risk_score: d.total_risk_score,
        latency_ms: d.processing_latency_ms,
    }
}

/// The records of one (performance window, health window) pair of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Start of the performance window.
    pub window_start: i64,
    /// Start of the health window.
    pub health_start: i64,
    /// The records' counts, latency sum and sketch.
    pub aggregate: Aggregate,
}

/// The windows of one partition's micro-batch, produced inside the batch's
/// transaction (so exactly once with its decisions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partial {
    /// Input partition.
    pub partition: i32,
    /// Input offset of the batch's first record.
    pub first_offset: i64,
    /// Largest event time of the batch's decisions (the partition's progress).
    pub max_event_ms: Option<i64>,
    /// Records by window, in window order.
    pub cells: Vec<Cell>,
}

impl Partial {
    /// An empty partial of a batch of `partition` starting at `first_offset`.
    pub fn new(partition: i32, first_offset: i64) -> Self {
        Self {
            partition,
            first_offset,
            max_event_ms: None,
            cells: Vec::new(),
        }
    }

    /// Adds one record. A processing error (no decision) counts in its window
    /// but does not move the partition's progress.
    pub fn observe(&mut self, o: &Observation, config: &WindowConfig) {
        if o.decision.is_some() {
            self.max_event_ms = Some(
                self.max_event_ms
                    .map_or(o.event_time_ms, |t| t.max(o.event_time_ms)),
            );
        }
        let start = window_start(o.event_time_ms, config.window_ms);
        let health = window_start(o.event_time_ms, config.health_window_ms);
        // A batch spans few windows: a linear search beats a map here.
        let cell = match self
            .cells
            .iter()
            .position(|c| c.window_start == start && c.health_start == health)
        {
            Some(i) => &mut self.cells[i],
            None => {
                self.cells.push(Cell {
                    window_start: start,
                    health_start: health,
                    aggregate: Aggregate {
                        latencies: Some(super::LatencySketch::new()),
                        ..Aggregate::default()
                    },
                });
                let last = self.cells.len() - 1;
                &mut self.cells[last]
            }
        };
        cell.aggregate.add(o);
    }

    /// Records in the partial.
    pub fn records(&self) -> u64 {
        self.cells.iter().map(|c| c.aggregate.total).sum()
    }
}

/// What the merger knows of one input partition.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Largest event time of its committed decisions (`None`: none seen yet).
    pub max_event_ms: Option<i64>,
    /// Processing time of its newest partial (or when the merger began waiting).
    pub last_seen_ms: i64,
}

/// The merger's whole state, committed with every transaction it writes: the
/// next partial to read, every partition's progress, the open windows and the
/// watermark (windows at or below it are written and final).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergerState {
    /// Offset of the next partial to read.
    pub next_offset: i64,
    /// Progress by input partition.
    pub partitions: BTreeMap<i32, Progress>,
    /// The watermark (`None` before it first moves).
    pub watermark: Option<i64>,
    /// The newest partial's processing time.
    pub stream_time_ms: Option<i64>,
    /// Open performance windows by start.
    pub performance: BTreeMap<i64, Aggregate>,
    /// Open health windows by start.
    pub health: BTreeMap<i64, Aggregate>,
    /// Records that came after their window was written.
    pub late_records: u64,
}

impl MergerState {
    /// Makes partitions `0..count` known: one that has sent nothing yet holds the
    /// watermark back until it has been silent for `idleTimeout` from `now_ms`
    /// (so a worker that starts late does not find its first windows written).
    pub fn expect_partitions(&mut self, count: i32, now_ms: i64) {
        let now = self.stream_time_ms.unwrap_or(now_ms);
        for p in 0..count {
            self.partitions.entry(p).or_insert(Progress {
                max_event_ms: None,
                last_seen_ms: now,
            });
        }
    }

    /// Adds a committed partial produced at processing time `produced_ms`;
    /// returns its records that came after their window was written (counted
    /// in [`Self::late_records`], never added).
    pub fn apply(&mut self, p: &Partial, produced_ms: i64, config: &WindowConfig) -> u64 {
        let now = self
            .stream_time_ms
            .map_or(produced_ms, |t| t.max(produced_ms));
        self.stream_time_ms = Some(now);
        let progress = self.partitions.entry(p.partition).or_insert(Progress {
            max_event_ms: None,
            last_seen_ms: now,
        });
        progress.last_seen_ms = progress.last_seen_ms.max(now);
        if let Some(t) = p.max_event_ms {
            progress.max_event_ms = Some(progress.max_event_ms.map_or(t, |m| m.max(t)));
        }
        let watermark = self.watermark.unwrap_or(i64::MIN);
        let mut late = 0;
        for c in &p.cells {
            if c.window_start.saturating_add(config.window_ms) <= watermark {
                late += c.aggregate.total;
                continue;
            }
            self.performance
                .entry(c.window_start)
                .or_default()
                .merge_counts(&c.aggregate);
            // Sizes that do not nest: a health window can be written while the
            // minute is not; the records then count in the minute only.
            if c.health_start.saturating_add(config.health_window_ms) > watermark {
                self.health
                    .entry(c.health_start)
                    .or_default()
                    .merge(&c.aggregate);
            }
        }
        self.late_records += late;
        late
    }

    /// The processing time the merger decides idleness by: the newest partial's,
    /// or `wall_ms` once everything committed has been read (`caught_up`).
    pub fn now(&self, wall_ms: i64, caught_up: bool) -> i64 {
        match (self.stream_time_ms, caught_up) {
            (Some(t), true) => t.max(wall_ms),
            (Some(t), false) => t,
            (None, _) => wall_ms,
        }
    }

    /// Moves the watermark by processing time `now_ms` — the smallest progress
    /// of the partitions heard from within `idleTimeout`, minus `watermarkDelay`
    /// (when every partition is idle, the largest) — and returns the windows it
    /// closed. A partition not heard from yet but not idle holds it where it is.
    pub fn advance(&mut self, config: &WindowConfig, now_ms: i64) -> Closed {
        let active: Vec<&Progress> = self
            .partitions
            .values()
            .filter(|p| now_ms.saturating_sub(p.last_seen_ms) < config.idle_timeout_ms)
            .collect();
        let basis = if active.iter().any(|p| p.max_event_ms.is_none()) {
            None
        } else if active.is_empty() {
            self.partitions
                .values()
                .filter_map(|p| p.max_event_ms)
                .max()
        } else {
            active.iter().filter_map(|p| p.max_event_ms).min()
        };
        if let Some(t) = basis {
            let w = t.saturating_sub(config.watermark_delay_ms);
            self.watermark = Some(self.watermark.map_or(w, |old| old.max(w)));
        }
        let watermark = self.watermark.unwrap_or(i64::MIN);
        let mut closed = Closed::default();
        while let Some(entry) = self.performance.first_entry() {
            if entry.key().saturating_add(config.window_ms) > watermark {
                break;
            }
            let (start, a) = entry.remove_entry();
            closed
                .performance
                .push(PerformanceRecord::of(start, config.window_ms, &a));
        }
        while let Some(entry) = self.health.first_entry() {
            if entry.key().saturating_add(config.health_window_ms) > watermark {
                break;
            }
            let (start, a) = entry.remove_entry();
            closed
                .health
                .push(HealthRecord::of(start, config.health_window_ms, &a));
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::Windows;

    const CONFIG: WindowConfig = WindowConfig {
        window_ms: 60_000,
        health_window_ms: 300_000,
        watermark_delay_ms: 10_000,
        idle_timeout_ms: 30_000,
    };

    fn obs(partition: i32, event_time_ms: i64, i: u64) -> Observation {
        Observation {
            partition,
            event_time_ms,
            decision: Some(match i % 4 {
                0 => DecisionKind::Reject,
                1 => DecisionKind::ManualReview,
                2 => DecisionKind::DelayedApproval,
                _ => DecisionKind::Approve,
            }),
            total_risk_score: (i % 120) as i64,
            latency_ms: 1.0 + (i % 97) as f64 * 3.5,
        }
    }

    /// Every window the merger writes from batches of four partitions, cut at
    /// random sizes and sent through JSON, equals the windows of one
    /// [`Windows`] over all the records (nothing late: partitions progress
    /// together).
    #[test]
    fn merged_partials_equal_the_windows_of_all_records() {
        let mut whole = Windows::new(CONFIG);
        let mut merger = MergerState::default();
        merger.expect_partitions(4, 0);
        let mut written = Closed::default();
        let mut seed = 17u64;
        let mut next = [0u64; 4];
        let mut clock = 0;
        for round in 0..400 {
            for p in 0..4 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let n = 1 + (seed >> 33) % 40;
                let mut partial = Partial::new(p, next[p as usize] as i64);
                for _ in 0..n {
                    let i = next[p as usize];
                    next[p as usize] += 1;
                    // ~ 2 s of event time per round, a little out of order.
                    let t = round * 2_000 + ((i * 37) % 1_900) as i64;
                    let o = obs(p, t, i * 4 + p as u64);
                    whole.observe(&o, 0);
                    partial.observe(&o, &CONFIG);
                }
                let json = serde_json::to_vec(&partial).unwrap();
                let back: Partial = serde_json::from_slice(&json).unwrap();
                clock += 5;
                assert_eq!(merger.apply(&back, clock, &CONFIG), 0);
            }
            let mut closed = merger.advance(&CONFIG, merger.now(clock, false));
            written.performance.append(&mut closed.performance);
            written.health.append(&mut closed.health);
        }
        let rest = whole.finish();
        assert!(
            written.performance.len() >= 10,
            "{}",
            written.performance.len()
        );
        assert!(!written.health.is_empty());
        for w in &written.performance {
            let want = rest
                .performance
                .iter()
                .find(|r| r.window_start == w.window_start)
                .unwrap();
            assert_eq!(w.total_transactions, want.total_transactions);
            assert_eq!(w.rejected_count, want.rejected_count);
            assert_eq!(w.review_count, want.review_count);
            assert_eq!(w.approved_count, want.approved_count);
            assert!((w.rejection_rate - want.rejection_rate).abs() < 1e-12);
            assert!((w.high_risk_ratio - want.high_risk_ratio).abs() < 1e-12);
            assert!((w.avg_processing_latency_ms - want.avg_processing_latency_ms).abs() < 1e-9);
        }
        for h in &written.health {
            let want = rest
                .health
                .iter()
                .find(|r| r.window_start == h.window_start)
                .unwrap();
            assert_eq!(h.total_transactions, want.total_transactions);
            // The sketches merge exactly: the same percentiles.
            assert_eq!(h.p95_latency, want.p95_latency);
            assert_eq!(h.p99_latency, want.p99_latency);
            assert_eq!(h.error_count, want.error_count);
        }
        assert_eq!(merger.late_records, 0);
    }

    #[test]
    fn a_silent_partition_holds_windows_until_idle_and_its_late_records_are_counted() {
        let mut m = MergerState::default();
        m.expect_partitions(2, 0);
        let mut p0 = Partial::new(0, 0);
        for i in 0..10 {
            p0.observe(&obs(0, 135_000 + i, i as u64), &CONFIG);
        }
        m.apply(&p0, 1_000, &CONFIG);
        // Partition 1 never reported but is not idle yet: nothing closes.
        assert!(m.advance(&CONFIG, 20_000).is_empty());
        assert_eq!(m.watermark, None);
        let mut early = Partial::new(0, 10);
        early.observe(&obs(0, 61_000, 3), &CONFIG);
        m.apply(&early, 20_000, &CONFIG);
        // 30 s after the merger began waiting, partition 1 no longer holds it.
        let closed = m.advance(&CONFIG, 30_000);
        assert_eq!(m.watermark, Some(135_009 - 10_000));
        assert_eq!(closed.performance.len(), 1);
        assert_eq!(closed.performance[0].window_start, 60_000);
        assert_eq!(closed.performance[0].total_transactions, 1);
        // Partition 1 wakes up with a record of the written minute: late, counted.
        let mut late = Partial::new(1, 0);
        late.observe(&obs(1, 70_000, 1), &CONFIG);
        late.observe(&obs(1, 121_000, 2), &CONFIG);
        assert_eq!(m.apply(&late, 31_000, &CONFIG), 1);
        assert_eq!(m.late_records, 1);
        // Now it is active again and the smallest: the watermark stays.
        assert!(m.advance(&CONFIG, 31_000).is_empty());
        assert_eq!(m.performance[&120_000].total, 11);
        // The state survives JSON (it is what the merger commits).
        let back: MergerState = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn processing_time_is_the_partials_until_caught_up() {
        let mut m = MergerState::default();
        assert_eq!(m.now(5, false), 5);
        m.apply(&Partial::new(0, 0), 100, &CONFIG);
        m.apply(&Partial::new(0, 1), 90, &CONFIG);
        assert_eq!(m.stream_time_ms, Some(100));
        assert_eq!(m.now(1_000, false), 100);
        assert_eq!(m.now(1_000, true), 1_000);
        assert_eq!(m.now(50, true), 100);
    }
}
