//! What a local run tells its user: a live progress line on a terminal and a
//! summary at the end, with detection quality against the generator's labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use riskpipe_engine::FinalDecision;

use crate::local::generator::FraudPattern;

/// A latency histogram in microseconds with ~3% relative buckets.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
}

const SUB_BUCKETS: u32 = 32;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; (64 * SUB_BUCKETS) as usize],
            count: 0,
        }
    }
}

impl LatencyHistogram {
    fn index(micros: u64) -> usize {
        if micros < u64::from(SUB_BUCKETS) {
            return micros as usize;
        }
        let exp = 63 - micros.leading_zeros(); // ≥ 5
        let shift = exp - SUB_BUCKETS.trailing_zeros();
        let sub = (micros >> shift) as u32 - SUB_BUCKETS;
        ((exp - SUB_BUCKETS.trailing_zeros() + 1) * SUB_BUCKETS + sub) as usize
    }

    fn lower_bound(index: usize) -> u64 {
        let index = index as u32;
        if index < SUB_BUCKETS {
            return u64::from(index);
        }
        let group = index / SUB_BUCKETS - 1;
        let sub = index % SUB_BUCKETS;
        u64::from(SUB_BUCKETS + sub) << group
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let i = Self::index(micros).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
    }

    /// The latency at quantile `q` (0..=1), from the bucket's lower bound.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(Self::lower_bound(i));
            }
        }
        Duration::ZERO
    }
}

/// Detection counts against ground truth ("flagged" = any decision but APPROVE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Fraud flagged.
    pub true_positives: u64,
    /// Normal traffic flagged.
    pub false_positives: u64,
    /// Normal traffic approved.
    pub true_negatives: u64,
    /// Fraud approved.
    pub false_negatives: u64,
}

impl Confusion {
    /// TP / (TP + FP).
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }
    /// TP / (TP + FN).
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
    /// FP / (FP + TN).
    pub fn false_positive_rate(&self) -> f64 {
        ratio(
            self.false_positives,
            self.false_positives + self.true_negatives,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Everything counted during a run.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Records read.
    pub records: u64,
    /// Decisions by kind, in [`FinalDecision::ALL`] order.
    pub decisions: [u64; 4],
    /// Dead letters by reason kind.
    pub dead_letters: BTreeMap<String, u64>,
    /// In-worker latency (read → decided).
    pub latency: LatencyHistogram,
    /// Whether ground truth was available.
    pub labelled: bool,
    /// Detection quality overall.
    pub confusion: Confusion,
    /// Recall per fraud pattern: (flagged, total).
    pub by_pattern: BTreeMap<&'static str, (u64, u64)>,
}

impl RunStats {
    /// Counts a decision and, when labelled, its correctness.
    pub fn count_decision(
        &mut self,
        decision: FinalDecision,
        label: Option<FraudPattern>,
        labelled: bool,
    ) {
        let i = FinalDecision::ALL
            .iter()
            .position(|d| *d == decision)
            .unwrap_or(3);
        self.decisions[i] += 1;
        if !labelled {
            return;
        }
        self.labelled = true;
        let flagged = decision != FinalDecision::Approve;
        match (label, flagged) {
            (Some(p), f) => {
                let entry = self.by_pattern.entry(p.name()).or_default();
                entry.1 += 1;
                if f {
                    entry.0 += 1;
                    self.confusion.true_positives += 1;
                } else {
                    self.confusion.false_negatives += 1;
                }
            }
            (None, true) => self.confusion.false_positives += 1,
            (None, false) => self.confusion.true_negatives += 1,
        }
    }

    /// Counts a dead letter.
    pub fn count_dead_letter(&mut self, kind: &str) {
        *self.dead_letters.entry(kind.to_owned()).or_default() += 1;
    }

    /// Total dead letters.
    pub fn dead_letter_total(&self) -> u64 {
        self.dead_letters.values().sum()
    }

    /// Total decisions.
    pub fn decision_total(&self) -> u64 {
        self.decisions.iter().sum()
    }

    /// The one-line progress shown on a terminal.
    pub fn progress_line(&self, elapsed: Duration) -> String {
        let rate = self.records as f64 / elapsed.as_secs_f64().max(1e-9);
        format!(
            "{:>6.1}s  {:>10} tx  {:>9.0} tx/s  REJECT {}  REVIEW {}  DELAY {}  APPROVE {}  dead {}  p99 {:.2} ms",
            elapsed.as_secs_f64(),
            self.records,
            rate,
            self.decisions[0],
            self.decisions[1],
            self.decisions[2],
            self.decisions[3],
            self.dead_letter_total(),
            self.latency.quantile(0.99).as_secs_f64() * 1000.0
        )
    }

    /// The summary printed at the end of a run.
    pub fn summary(&self, elapsed: Duration, state_bytes: u64) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let total = self.decision_total().max(1) as f64;
        let mut s = String::new();
        let _ = writeln!(s, "riskpipe summary");
        let _ = writeln!(
            s,
            "  records      {} in {:.2} s ({:.0} records/s)",
            self.records,
            secs,
            self.records as f64 / secs
        );
        for (d, n) in FinalDecision::ALL.iter().zip(self.decisions) {
            let _ = writeln!(
                s,
                "  {:<17}{:>10}  ({:.2}%)",
                d.as_str(),
                n,
                n as f64 * 100.0 / total
            );
        }
        let _ = writeln!(s, "  dead letters {:>10}", self.dead_letter_total());
        for (kind, n) in &self.dead_letters {
            let _ = writeln!(s, "    {kind:<15}{n:>10}");
        }
        let _ = writeln!(
            s,
            "  latency      p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms (read → decided)",
            self.latency.quantile(0.5).as_secs_f64() * 1000.0,
            self.latency.quantile(0.99).as_secs_f64() * 1000.0,
            self.latency.quantile(0.999).as_secs_f64() * 1000.0
        );
        let _ = writeln!(
            s,
            "  state        {:.1} MiB in RocksDB",
            state_bytes as f64 / (1 << 20) as f64
        );
        if self.labelled {
            let c = &self.confusion;
            let _ = writeln!(
                s,
                "  detection    precision {:.3}  recall {:.3}  false-positive rate {:.4}  (flagged = not APPROVE; TP {} FP {} TN {} FN {})",
                c.precision(),
                c.recall(),
                c.false_positive_rate(),
                c.true_positives,
                c.false_positives,
                c.true_negatives,
                c.false_negatives
            );
            for (pattern, (flagged, n)) in &self.by_pattern {
                let _ = writeln!(
                    s,
                    "    {pattern:<20} recall {:.3} ({flagged}/{n})",
                    ratio(*flagged, *n)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = LatencyHistogram::default();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.05, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.05, "p99 {p99}");
        assert_eq!(LatencyHistogram::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn confusion_rates() {
        let mut s = RunStats::default();
        s.count_decision(FinalDecision::Reject, Some(FraudPattern::CardTesting), true);
        s.count_decision(
            FinalDecision::Approve,
            Some(FraudPattern::CardTesting),
            true,
        );
        s.count_decision(FinalDecision::ManualReview, None, true);
        s.count_decision(FinalDecision::Approve, None, true);
        s.count_decision(FinalDecision::Approve, None, true);
        let c = s.confusion;
        assert_eq!(
            (
                c.true_positives,
                c.false_negatives,
                c.false_positives,
                c.true_negatives
            ),
            (1, 1, 1, 2)
        );
        assert_eq!(c.precision(), 0.5);
        assert_eq!(c.recall(), 0.5);
        assert!((c.false_positive_rate() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.by_pattern["card_testing"], (1, 2));
    }
}
