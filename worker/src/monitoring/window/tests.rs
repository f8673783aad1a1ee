use super::*;
use std::collections::BTreeMap;

const CONFIG: WindowConfig = WindowConfig {
    window_ms: 60_000,
    health_window_ms: 300_000,
    watermark_delay_ms: 10_000,
    idle_timeout_ms: 30_000,
};

fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// A stream over `partitions` partitions: event times move forward 50 ms a record
/// with up to 5 s of disorder (less than the watermark delay: nothing is late).
fn stream(n: usize, partitions: i32, seed: u64) -> Vec<Observation> {
    let mut seed = seed;
    (0..n)
        .map(|i| {
            let r = next(&mut seed);
            let decision = match r % 10 {
                0 | 1 => Some(DecisionKind::Reject),
                2 => Some(DecisionKind::ManualReview),
                3 => Some(DecisionKind::DelayedApproval),
                4 if r % 100 == 4 => None,
                _ => Some(DecisionKind::Approve),
            };
            Observation {
                partition: (r % partitions as u64) as i32,
                event_time_ms: 1_800_000_000_000 + i as i64 * 50 - (next(&mut seed) % 5_000) as i64,
                decision,
                total_risk_score: (next(&mut seed) % 100) as i64,
                latency_ms: 1.0 + (next(&mut seed) % 4_000) as f64 / 3.0,
            }
        })
        .collect()
}

/// Feeds the stream at one record per 50 ms of processing time, advancing every
/// 100 records, then finishes.
fn run(obs: &[Observation]) -> (Vec<PerformanceRecord>, Vec<HealthRecord>, Windows) {
    let mut w = Windows::new(CONFIG);
    let (mut perf, mut health) = (Vec::new(), Vec::new());
    for (i, o) in obs.iter().enumerate() {
        let now = i as i64 * 50;
        assert!(w.observe(o, now), "record {i} late");
        if i % 100 == 0 {
            let c = w.advance(now);
            perf.extend(c.performance);
            health.extend(c.health);
        }
    }
    let c = w.finish();
    perf.extend(c.performance);
    health.extend(c.health);
    (perf, health, w)
}

#[test]
fn every_window_record_equals_a_recomputation_from_that_minutes_decisions() {
    let obs = stream(30_000, 4, 42);
    let (perf, health, w) = run(&obs);
    assert_eq!(w.late_records(), 0);
    // Recompute by grouping the records by minute of event time.
    let mut by_minute: BTreeMap<i64, Vec<&Observation>> = BTreeMap::new();
    for o in &obs {
        by_minute
            .entry(o.event_time_ms.div_euclid(60_000) * 60_000)
            .or_default()
            .push(o);
    }
    assert_eq!(perf.len(), by_minute.len());
    for (rec, (start, rows)) in perf.iter().zip(&by_minute) {
        let count = |k: DecisionKind| rows.iter().filter(|o| o.decision == Some(k)).count() as u64;
        let n = rows.len() as f64;
        assert_eq!(rec.window_start, *start);
        assert_eq!(rec.window_end, start + 60_000);
        assert_eq!(rec.total_transactions, rows.len() as u64);
        assert_eq!(rec.rejected_count, count(DecisionKind::Reject));
        assert_eq!(rec.review_count, count(DecisionKind::ManualReview));
        assert_eq!(rec.approved_count, count(DecisionKind::Approve));
        assert!((rec.rejection_rate - count(DecisionKind::Reject) as f64 / n).abs() < 1e-12);
        let avg = rows.iter().map(|o| o.latency_ms).sum::<f64>() / n;
        assert!((rec.avg_processing_latency_ms - avg).abs() < 1e-6 * avg);
        let high = rows.iter().filter(|o| o.total_risk_score > 70).count() as f64 / n;
        assert!((rec.high_risk_ratio - high).abs() < 1e-12);
    }
    // Windows come out in order, each once.
    assert!(
        perf.windows(2)
            .all(|p| p[0].window_start < p[1].window_start)
    );
    // Health windows: counts exact, percentiles within the sketch's error.
    let mut by_five: BTreeMap<i64, Vec<&Observation>> = BTreeMap::new();
    for o in &obs {
        by_five
            .entry(o.event_time_ms.div_euclid(300_000) * 300_000)
            .or_default()
            .push(o);
    }
    assert_eq!(health.len(), by_five.len());
    for (rec, (start, rows)) in health.iter().zip(&by_five) {
        assert_eq!(rec.window_start, *start);
        assert_eq!(rec.total_transactions, rows.len() as u64);
        assert!((rec.tps - rows.len() as f64 / 300.0).abs() < 1e-9);
        let errors = rows.iter().filter(|o| o.decision.is_none()).count() as u64;
        assert_eq!(rec.error_count, errors);
        assert!((rec.error_rate - errors as f64 / rows.len() as f64).abs() < 1e-12);
        let mut lat: Vec<f64> = rows.iter().map(|o| o.latency_ms).collect();
        lat.sort_by(f64::total_cmp);
        for (q, got) in [(0.95, rec.p95_latency), (0.99, rec.p99_latency)] {
            let rank = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
            let want = lat[rank - 1];
            assert!(
                (got - want).abs() <= crate::monitoring::sketch::RELATIVE_ERROR * want + 0.0005,
                "window {start} q {q}: {got} vs exact {want}"
            );
        }
    }
}

#[test]
fn partial_aggregates_of_partitions_merge_into_the_whole_pipelines_window() {
    let obs = stream(6_000, 3, 9);
    let (whole, _, _) = run(&obs);
    let mut merged: BTreeMap<i64, Aggregate> = BTreeMap::new();
    for p in 0..3 {
        let mut w = Windows::new(CONFIG);
        for o in obs.iter().filter(|o| o.partition == p) {
            w.observe(o, 0);
        }
        for (start, a) in std::mem::take(&mut w.performance) {
            merged.entry(start).or_default().merge(&a);
        }
    }
    let merged: Vec<_> = merged
        .iter()
        .map(|(s, a)| PerformanceRecord::of(*s, 60_000, a))
        .collect();
    assert_eq!(merged.len(), whole.len());
    for (m, w) in merged.iter().zip(&whole) {
        assert_eq!(m.total_transactions, w.total_transactions);
        assert_eq!(m.rejected_count, w.rejected_count);
        assert!((m.avg_processing_latency_ms - w.avg_processing_latency_ms).abs() < 1e-6);
    }
}

fn at(partition: i32, event_time_ms: i64) -> Observation {
    Observation {
        partition,
        event_time_ms,
        decision: Some(DecisionKind::Approve),
        total_risk_score: 10,
        latency_ms: 5.0,
    }
}

#[test]
fn the_watermark_waits_for_a_slow_partition_until_it_is_idle() {
    let mut w = Windows::new(CONFIG);
    // Both partitions in minute 0; then only partition 0 goes on to minute 2.
    w.observe(&at(0, 1_000), 0);
    w.observe(&at(1, 2_000), 0);
    w.observe(&at(0, 130_000), 1_000);
    // Partition 1 holds the watermark at 2 s − 10 s: minute 0 stays open.
    assert!(w.advance(1_000).performance.is_empty());
    assert!(w.advance(29_999).performance.is_empty());
    // 30 s without a record from partition 1: it no longer holds the watermark
    // (130 s − 10 s = 120 s closes minutes 0 and 1; minute 1 was empty).
    w.observe(&at(0, 130_500), 31_000);
    let closed = w.advance(31_000);
    assert_eq!(w.watermark(), 120_500);
    let starts: Vec<i64> = closed.performance.iter().map(|p| p.window_start).collect();
    assert_eq!(starts, [0]);
    assert_eq!(closed.performance[0].total_transactions, 2);
    // Partition 1 comes back with an old record: late, counted, not added.
    assert!(!w.observe(&at(1, 3_000), 32_000));
    assert_eq!(w.late_records(), 1);
    // The watermark never goes back although partition 1 is active again.
    w.advance(32_000);
    assert_eq!(w.watermark(), 120_500);
    let rest = w.finish();
    assert_eq!(rest.performance.len(), 1);
    assert_eq!(rest.performance[0].window_start, 120_000);
    assert_eq!(rest.performance[0].total_transactions, 2);
}

#[test]
fn a_record_within_the_delay_is_not_late() {
    let mut w = Windows::new(CONFIG);
    w.observe(&at(0, 65_000), 0);
    w.advance(0); // watermark 55 s: minute 0 still open
    assert!(w.observe(&at(0, 59_999), 0));
    w.observe(&at(0, 70_000), 0);
    let closed = w.advance(0); // 60 s: minute 0 closes
    assert_eq!(closed.performance.len(), 1);
    assert_eq!(closed.performance[0].total_transactions, 1);
    assert!(!w.observe(&at(0, 59_000), 0));
    assert_eq!(w.late_records(), 1);
}
