//! `spec.source`: where transactions come from. Exactly one kind is set.

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::{
    cel::{CelRule, add_rules, exactly_one_expr},
    duration::Duration,
    refs::SecretRef,
};

/// The input: exactly one of `kafka`, `generator` or `file`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = SourceSpec::cel)]
pub struct SourceSpec {
    /// Read transactions from a Kafka topic keyed by user_id (the production source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSource>,
    /// Generate synthetic transactions (benchmarks, demos, local mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSource>,
    /// Read transactions from a JSONL file, one per line (local mode, replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
}

/// The source kind that is set, borrowed from a [`SourceSpec`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source<'a> {
    /// `source.kafka`.
    Kafka(&'a KafkaSource),
    /// `source.generator`.
    Generator(&'a GeneratorSource),
    /// `source.file`.
    File(&'a FileSource),
}

impl SourceSpec {
    /// A Kafka source with the seed's settings.
    pub fn kafka() -> Self {
        Self {
            kafka: Some(KafkaSource::default()),
            generator: None,
            file: None,
        }
    }

    /// The source kind that is set, or `None` unless exactly one is set
    /// ([`validate`](crate::RiskPipelineSpec::validate) reports that case).
    pub fn kind(&self) -> Option<Source<'_>> {
        match (&self.kafka, &self.generator, &self.file) {
            (Some(k), None, None) => Some(Source::Kafka(k)),
            (None, Some(g), None) => Some(Source::Generator(g)),
            (None, None, Some(f)) => Some(Source::File(f)),
            _ => None,
        }
    }

    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![CelRule::new(
            exactly_one_expr(&["kafka", "generator", "file"]),
            "set exactly one of source.kafka, source.generator or source.file",
        )]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// Where a Kafka source starts when its consumer group has no committed offset (or
/// always, for `timestamp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StartupMode {
    /// The end of each partition (the seed's `latest-offset`).
    #[default]
    Latest,
    /// The beginning of each partition.
    Earliest,
    /// The group's committed offsets, falling back to the latest.
    GroupOffsets,
    /// The first offset at or after `startupTimestamp`.
    Timestamp,
}

/// What a Kafka source does when the offset it must resume from no longer exists in
/// a partition (retention or compaction deleted it while the pipeline was stopped or
/// behind, or a savepoint older than the topic's retention was restored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetOutOfRangePolicy {
    /// Stop reading that partition and report an error that names the partition and
    /// the offsets that are gone, and says what to do: restore a newer savepoint, or
    /// choose `earliest` or `latest` to accept the loss. Nothing is skipped silently.
    #[default]
    Fail,
    /// Resume at the oldest offset still in the partition: the records that were
    /// deleted are lost, every later one is decided. Logged, counted in the metrics
    /// and reported in the worker's status.
    Earliest,
    /// Resume at the end of the partition: every record not yet read is skipped, the
    /// deleted ones and those still retained. Logged, counted and reported like
    /// `earliest`.
    Latest,
}

/// A Kafka topic of JSON transactions (SPEC §1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = KafkaSource::cel)]
pub struct KafkaSource {
    /// Comma-separated `host:port` list of brokers.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    /// Topic of transactions, keyed by user_id.
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    /// Consumer group offsets are committed to (for lag tools); the pipeline's name
    /// when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Where reading starts: latest, earliest, group-offsets or timestamp.
    pub startup_mode: StartupMode,
    /// Epoch milliseconds to start from; required with startupMode `timestamp`,
    /// refused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub startup_timestamp: Option<i64>,
    /// Most records in one micro-batch (one Kafka transaction on the outputs).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_batch_size: i32,
    /// Longest wait to fill a micro-batch before it is processed anyway.
    pub max_batch_delay: Duration,
    /// Secret with the client's TLS/SASL settings (librdkafka property names as keys,
    /// e.g. `security.protocol`, `sasl.username`, `ssl.ca.pem`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_secret_ref: Option<SecretRef>,
    /// When the offset to resume from was deleted from a partition: `fail` (stop
    /// that partition with an error naming it, the lost offset range and the fix),
    /// `earliest` (resume at the oldest retained offset, losing the deleted records)
    /// or `latest` (resume at the end, skipping everything unread). `earliest` and
    /// `latest` are logged, counted and reported in the worker's status.
    pub on_offset_out_of_range: OffsetOutOfRangePolicy,
}

impl Default for KafkaSource {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            topic: "financial-transactions".into(),
            group_id: None,
            startup_mode: StartupMode::Latest,
            startup_timestamp: None,
            max_batch_size: 1000,
            max_batch_delay: Duration::from_millis(20),
            security_secret_ref: None,
            on_offset_out_of_range: OffsetOutOfRangePolicy::Fail,
        }
    }
}

impl KafkaSource {
    /// The consumer group: `groupId`, or the pipeline's name when absent.
    pub fn group_id_or<'a>(&'a self, pipeline_name: &'a str) -> &'a str {
        self.group_id.as_deref().unwrap_or(pipeline_name)
    }

    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                "(self.startupMode == 'timestamp') == has(self.startupTimestamp)",
                "set startupTimestamp (epoch ms) exactly when startupMode is timestamp",
            )
            .at(".startupTimestamp"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// Synthetic transactions, reproducible from a seed (seed §13).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GeneratorSource {
    /// Number of distinct users.
    #[schemars(range(min = 1))]
    pub users: i64,
    /// Number of distinct merchants.
    #[schemars(range(min = 1))]
    pub merchants: i64,
    /// Transactions per second; 0 generates as fast as possible.
    #[schemars(range(min = 0))]
    pub rate_per_second: i64,
    /// Transactions to generate in total; 0 is unbounded.
    #[schemars(range(min = 0))]
    pub count: i64,
    /// Random seed: the same seed gives the same stream.
    pub seed: i64,
    /// Share of transactions shaped like fraud (large amounts, night hours, many IPs), in [0, 1].
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fraud_ratio: f64,
}

impl Default for GeneratorSource {
    fn default() -> Self {
        Self {
            users: 1_000_000,
            merchants: 10_000,
            rate_per_second: 0,
            count: 100_000,
            seed: 42,
            fraud_ratio: 0.02,
        }
    }
}

/// A JSONL file of transactions, one JSON object per line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSource {
    /// Path of the file, relative to the working directory in local mode.
    #[schemars(length(min = 1))]
    pub path: String,
}
