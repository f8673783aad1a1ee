//! The worker's Prometheus metrics, registered once and passed in (no globals).
//! Label sets are bounded: decision kinds, dead-letter kinds and owned partitions.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// A decision kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// REJECT, MANUAL_REVIEW, DELAYED_APPROVAL or APPROVE.
    pub decision: &'static str,
}

/// A dead-letter reason kind label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// malformed_json, missing_field, invalid_field, oversized.
    pub kind: &'static str,
}

/// A partition label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// The input partition.
    pub partition: i32,
}

/// Every metric the worker exports.
pub struct WorkerMetrics {
    /// Records read from the input.
    pub records_in: Counter,
    /// Records written to any output.
    pub records_out: Counter,
    /// Decisions by kind.
    pub decisions: Family<DecisionLabel, Counter>,
    /// Dead letters by kind.
    pub dead_letters: Family<KindLabel, Counter>,
    /// Aborted transactions and other recoverable errors.
    pub errors: Counter,
    /// Input record timestamp → decision committed, seconds.
    pub end_to_end_latency: Histogram,
    /// Record read → decided, seconds.
    pub in_worker_latency: Histogram,
    /// A cycle's transactions (offsets + commit, partitions in parallel), seconds.
    pub commit_duration: Histogram,
    /// Records per committed partition transaction.
    pub batch_records: Histogram,
    /// Records behind the partition's high watermark.
    pub lag: Family<PartitionLabel, Gauge>,
    /// The owned partitions' lag divided by the worker's recent rate, seconds:
    /// how long the backlog takes to drain at the current speed.
    pub lag_seconds: Gauge<f64, AtomicU64>,
    /// Share of wall time spent processing (0..1).
    pub busy_ratio: Gauge<f64, AtomicU64>,
    /// Duration of the last checkpoint, seconds.
    pub checkpoint_duration: Gauge<f64, AtomicU64>,
    /// Size of the last checkpoint, bytes.
    pub checkpoint_size: Gauge,
    /// Unix time of the last completed checkpoint, seconds.
    pub checkpoint_time: Gauge,
    /// State cache hits.
    pub cache_hits: Counter,
    /// State cache misses.
    pub cache_misses: Counter,
    /// Times a partition's resume position (or catch-up range) was no longer in
    /// the topic, by partition; the policy applied is in `/status`.
    pub offsets_out_of_range: Family<PartitionLabel, Counter>,
    /// Records whose state was replayed without output on start (catch-up).
    pub caught_up_records: Counter,
    /// Micro-batches cut short because deciding them took longer than the
    /// transaction budget (the rest went into the next transaction).
    pub transactions_cut: Counter,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them under `riskpipe_worker_`.
    pub fn register(registry: &mut Registry) -> Self {
        let latency = || Histogram::new(exponential_buckets(0.0001, 2.0, 20));
        let m = WorkerMetrics {
            records_in: Counter::default(),
            records_out: Counter::default(),
            decisions: Family::default(),
            dead_letters: Family::default(),
            errors: Counter::default(),
            end_to_end_latency: latency(),
            in_worker_latency: latency(),
            commit_duration: latency(),
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            lag: Family::default(),
            lag_seconds: Gauge::default(),
            busy_ratio: Gauge::default(),
            checkpoint_duration: Gauge::default(),
            checkpoint_size: Gauge::default(),
            checkpoint_time: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            offsets_out_of_range: Family::default(),
            caught_up_records: Counter::default(),
            transactions_cut: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("riskpipe_worker");
        r.register(
            "records_in",
            "Records read from the input",
            m.records_in.clone(),
        );
        r.register(
            "records_out",
            "Records written to the outputs",
            m.records_out.clone(),
        );
        r.register("decisions", "Decisions by kind", m.decisions.clone());
        r.register(
            "dead_letters",
            "Dead letters by reason kind",
            m.dead_letters.clone(),
        );
        r.register(
            "errors",
            "Aborted transactions and recoverable errors",
            m.errors.clone(),
        );
        r.register(
            "end_to_end_latency_seconds",
            "Input record timestamp to committed decision",
            m.end_to_end_latency.clone(),
        );
        r.register(
            "in_worker_latency_seconds",
            "Record read to decision made",
            m.in_worker_latency.clone(),
        );
        r.register(
            "transaction_commit_seconds",
            "Adding the input offsets to a cycle's partition transactions and committing them",
            m.commit_duration.clone(),
        );
        r.register(
            "transaction_records",
            "Input records per committed partition transaction",
            m.batch_records.clone(),
        );
        r.register(
            "lag_records",
            "Records behind the high watermark",
            m.lag.clone(),
        );
        r.register(
            "lag_seconds",
            "Owned partitions' lag at the worker's recent rate (time to drain the backlog)",
            m.lag_seconds.clone(),
        );
        r.register(
            "busy_ratio",
            "Share of time spent processing",
            m.busy_ratio.clone(),
        );
        r.register(
            "checkpoint_duration_seconds",
            "Duration of the last checkpoint",
            m.checkpoint_duration.clone(),
        );
        r.register(
            "checkpoint_size_bytes",
            "Size of the last checkpoint",
            m.checkpoint_size.clone(),
        );
        r.register(
            "checkpoint_timestamp_seconds",
            "Unix time of the last completed checkpoint",
            m.checkpoint_time.clone(),
        );
        r.register("state_cache_hits", "State cache hits", m.cache_hits.clone());
        r.register(
            "state_cache_misses",
            "State cache misses",
            m.cache_misses.clone(),
        );
        r.register(
            "offsets_out_of_range",
            "Resume positions or catch-up ranges no longer in the topic (retention passed)",
            m.offsets_out_of_range.clone(),
        );
        r.register(
            "caught_up_records",
            "Records replayed into the state without output on start",
            m.caught_up_records.clone(),
        );
        r.register(
            "transactions_cut",
            "Micro-batches cut short to keep a transaction within its time budget",
            m.transactions_cut.clone(),
        );
        m
    }
}
