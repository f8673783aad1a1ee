//! A mergeable latency summary: an HdrHistogram of microseconds with two significant
//! digits, so any quantile it reports is within 1 % (relative) of the recorded value
//! of that rank. Summaries of partitions or workers merge by adding their counts,
//! which is what a window over the whole pipeline needs.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Significant decimal digits kept: 2 → relative error at most 1 %.
const SIGNIFICANT_DIGITS: u8 = 2;

/// The largest relative error of a reported quantile.
pub const RELATIVE_ERROR: f64 = 0.01;

/// Latencies of one window (and partition), in milliseconds.
#[derive(Clone, Debug)]
pub struct LatencySketch {
    histogram: Option<Histogram<u64>>,
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self::new()
    }
}

fn micros(ms: f64) -> u64 {
    // Non-finite or negative latencies (a clock step) count as 0; at least 1 µs,
    // as HdrHistogram's smallest trackable value.
    if ms.is_finite() && ms > 0.0 {
        ((ms * 1000.0).round() as u64).max(1)
    } else {
        1
    }
}

impl LatencySketch {
    /// An empty summary (allocated on first use).
    pub fn new() -> Self {
        Self { histogram: None }
    }

    fn histogram(&mut self) -> Option<&mut Histogram<u64>> {
        if self.histogram.is_none() {
            self.histogram = Histogram::new(SIGNIFICANT_DIGITS).ok();
        }
        self.histogram.as_mut()
    }

    /// Records one latency in milliseconds.
    pub fn record(&mut self, ms: f64) {
        if let Some(h) = self.histogram() {
            // Auto-resizing: the only error is a value beyond u64, impossible here.
            let _ = h.record(micros(ms));
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LatencySketch) {
        let Some(theirs) = &other.histogram else {
            return;
        };
        if let Some(h) = self.histogram() {
            let _ = h.add(theirs);
        }
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.histogram.as_ref().map_or(0, Histogram::len)
    }

    /// The latency at quantile `q` (0–1) in milliseconds, by rank (the value of
    /// the ⌈q·n⌉-th smallest, within [`RELATIVE_ERROR`]); 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        match &self.histogram {
            Some(h) if !h.is_empty() => {
                // HdrHistogram reports the top of the value's bucket: its middle is
                // nearer the recorded value (both are within the bucket's width).
                let v = h.value_at_quantile(q);
                h.median_equivalent(v) as f64 / 1000.0
            }
            _ => 0.0,
        }
    }
}

impl LatencySketch {
    /// The recorded buckets as (highest value of the bucket in µs, count).
    fn buckets(&self) -> Vec<(u64, u64)> {
        match &self.histogram {
            Some(h) => h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// Equal when every bucket holds the same count.
impl PartialEq for LatencySketch {
    fn eq(&self, other: &Self) -> bool {
        self.buckets() == other.buckets()
    }
}

/// On the wire (Kafka mode's partials and merger state): the recorded buckets as
/// `[value_us, count]` pairs, each value the highest of its bucket, so reading
/// them back puts every count in the bucket it came from (merging stays exact).
impl Serialize for LatencySketch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.buckets().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LatencySketch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let buckets = Vec::<(u64, u64)>::deserialize(deserializer)?;
        let mut sketch = LatencySketch::new();
        if !buckets.is_empty()
            && let Some(h) = sketch.histogram()
        {
            for (value, count) in buckets {
                h.record_n(value.max(1), count).map_err(|e| {
                    serde::de::Error::custom(format!("latency bucket {value}: {e:?}"))
                })?;
            }
        }
        Ok(sketch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence in (0, 1).
    fn uniform(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn quantiles_are_within_the_stated_relative_error_of_the_exact_ones() {
        let mut seed = 7;
        // Heavy-tailed latencies from 0.2 ms to minutes, as a slow minute has.
        let values: Vec<f64> = (0..50_000)
            .map(|_| 0.2 * (1.0 / uniform(&mut seed)).powf(1.8))
            .collect();
        let mut sketch = LatencySketch::new();
        for v in &values {
            sketch.record(*v);
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let (got, want) = (sketch.quantile_ms(q), exact(&sorted, q));
            let err = (got - want).abs() / want;
            // Rounding to whole microseconds adds at most 0.5 µs.
            assert!(
                err <= RELATIVE_ERROR || (got - want).abs() <= 0.0005,
                "q={q}: sketch {got} ms, exact {want} ms, error {err}"
            );
        }
        assert_eq!(sketch.count(), 50_000);
    }

    #[test]
    fn merged_partition_sketches_equal_one_sketch_of_everything() {
        let mut seed = 3;
        let mut whole = LatencySketch::new();
        let mut parts = vec![LatencySketch::new(); 4];
        for i in 0..20_000 {
            let v = 1.0 + 5_000.0 * uniform(&mut seed);
            whole.record(v);
            parts[i % 4].record(v);
        }
        let mut merged = LatencySketch::new();
        for p in &parts {
            merged.merge(p);
        }
        for q in [0.5, 0.95, 0.99] {
            assert_eq!(merged.quantile_ms(q), whole.quantile_ms(q));
        }
        assert_eq!(LatencySketch::new().quantile_ms(0.99), 0.0);
    }

    #[test]
    fn a_sketch_read_back_from_json_merges_as_the_original() {
        let mut seed = 5;
        let (mut original, mut other) = (LatencySketch::new(), LatencySketch::new());
        for i in 0..10_000 {
            let v = 0.05 + 20_000.0 * uniform(&mut seed).powi(3);
            if i % 3 == 0 {
                other.record(v);
            } else {
                original.record(v);
            }
        }
        let json = serde_json::to_string(&original).unwrap();
        let back: LatencySketch = serde_json::from_str(&json).unwrap();
        assert_eq!(back.count(), original.count());
        let (mut a, mut b) = (original.clone(), back);
        a.merge(&other);
        b.merge(&other);
        for q in [0.01, 0.5, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(a.quantile_ms(q), b.quantile_ms(q), "q={q}");
        }
        let empty: LatencySketch = serde_json::from_str("[]").unwrap();
        assert_eq!(empty.count(), 0);
        assert!(serde_json::from_str::<LatencySketch>("[[1,2,3]]").is_err());
    }
}
