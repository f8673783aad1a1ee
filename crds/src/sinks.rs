//! `spec.sinks`: where decisions, dead letters, alerts and the audit log go.

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::{
    cel::{CelRule, add_rules, exactly_one_expr},
    schema::allow_empty_object,
};

/// The outputs. `decisions` is always written; an optional output that is absent is
/// not written. Without a `sinks` section all five go to their default Kafka topics;
/// a `sinks` section lists exactly the outputs wanted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinksSpec {
    /// One decision per transaction (SPEC §7); the Kafka topic `risk-decisions` when
    /// absent.
    #[serde(default = "SinksSpec::default_decisions")]
    pub decisions: SinkSpec,
    /// Records that could not be processed, with the reason (SPEC §1). When absent
    /// they are only counted and logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<SinkSpec>,
    /// Monitoring alerts (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<SinkSpec>,
    /// Monitoring window records (SPEC §9): the 1-minute performance and 5-minute
    /// health windows (`risk-metrics` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SinkSpec>,
    /// Audit records with protected personal data (SPEC §10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<SinkSpec>,
}

impl SinksSpec {
    fn default_decisions() -> SinkSpec {
        SinkSpec::kafka("risk-decisions")
    }
}

impl Default for SinksSpec {
    fn default() -> Self {
        Self {
            decisions: Self::default_decisions(),
            dead_letters: Some(SinkSpec::kafka("risk-dead-letters")),
            alerts: Some(SinkSpec::kafka("risk-alerts")),
            metrics: Some(SinkSpec::kafka("risk-metrics")),
            audit: Some(SinkSpec::kafka("risk-audit")),
        }
    }
}

/// One output: exactly one of `kafka`, `file` or `stdout`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = SinkSpec::cel)]
pub struct SinkSpec {
    /// A Kafka topic, written transactionally (exactly once); same brokers as the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSink>,
    /// A JSONL file, one record per line (local mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSink>,
    /// Standard output, one JSON record per line (local mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StdoutSink>,
}

/// The sink kind that is set, borrowed from a [`SinkSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink<'a> {
    /// `kafka`.
    Kafka(&'a KafkaSink),
    /// `file`.
    File(&'a FileSink),
    /// `stdout`.
    Stdout,
}

impl SinkSpec {
    /// A Kafka sink writing to `topic`.
    pub fn kafka(topic: &str) -> Self {
        Self {
            kafka: Some(KafkaSink {
                topic: topic.into(),
            }),
            file: None,
            stdout: None,
        }
    }

    /// A JSONL file sink.
    pub fn file(path: &str) -> Self {
        Self {
            kafka: None,
            file: Some(FileSink { path: path.into() }),
            stdout: None,
        }
    }

    /// A standard output sink.
    pub fn stdout() -> Self {
        Self {
            kafka: None,
            file: None,
            stdout: Some(StdoutSink {}),
        }
    }

    /// The sink kind that is set, or `None` unless exactly one is set
    /// ([`validate`](crate::RiskPipelineSpec::validate) reports that case).
    pub fn kind(&self) -> Option<Sink<'_>> {
        match (&self.kafka, &self.file, &self.stdout) {
            (Some(k), None, None) => Some(Sink::Kafka(k)),
            (None, Some(f), None) => Some(Sink::File(f)),
            (None, None, Some(_)) => Some(Sink::Stdout),
            _ => None,
        }
    }

    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![CelRule::new(
            exactly_one_expr(&["kafka", "file", "stdout"]),
            "set exactly one of kafka, file or stdout",
        )]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// A Kafka output topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSink {
    /// Topic name.
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
}

/// A JSONL output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSink {
    /// Path of the file; created or appended to.
    #[schemars(length(min = 1))]
    pub path: String,
}

/// Standard output; no settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = allow_empty_object)]
pub struct StdoutSink {}
