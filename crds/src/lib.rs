//! The `RiskPipeline` custom resource (`riskpipe.io/v1alpha1`): spec, status, the
//! seed's defaults, CEL rules for the apiserver and the same checks without one.
//!
//! The CRD YAML in `crds/riskpipe.io_riskpipelines.yaml` is generated from these
//! types (see [`crdgen::REGENERATE`] for the command); a test fails when it drifts.
//!
//! Reading a manifest: [`RiskPipeline::from_yaml`] / [`RiskPipeline::from_yaml_validated`];
//! checking a spec without an apiserver: [`RiskPipelineSpec::validate`].

pub mod cel;
pub mod crdgen;
pub mod dimensions;
pub mod duration;
pub mod manifest;
pub mod ml;
pub mod monitoring;
pub mod operations;
pub mod pod_template;
pub mod refs;
pub mod rules;
mod schema;
pub mod sinks;
pub mod source;
pub mod spec;
pub mod status;
pub mod storage;
pub mod validate;

pub use dimensions::{
    CacheMode, DatabaseSpec, DimensionsSpec, HistoryCache, HistoryTable, ListsSpec, MerchantsCache,
    MerchantsTable, TableSettings, UsersCache, UsersTable,
};
pub use duration::{Duration, DurationError};
pub use manifest::{ManifestError, from_yaml};
pub use ml::{ML_FEATURES, MlSpec, ModelSpec};
pub use monitoring::{AlertThresholds, MonitoringSpec};
pub use operations::{AutoscalerSpec, RestartPolicySpec};
pub use pod_template::{PodMetadata, PodTemplateSpec, WorkerPodSpec};
pub use refs::SecretRef;
pub use rules::{
    AccessRules, DecimalError, DecisionRules, GeoRules, HistoryRules, RulesSpec, ScoringRules,
    WindowRules, exact_decimal,
};
pub use sinks::{FileSink, KafkaSink, Sink, SinkSpec, SinksSpec, StdoutSink};
pub use source::{
    FileSource, GeneratorSource, KafkaSource, OffsetOutOfRangePolicy, Source, SourceSpec,
    StartupMode,
};
pub use spec::{
    DEFAULT_IMAGE, JobSpec, JobState, RiskPipeline, RiskPipelineSpec, SecretsSpec, UpgradeMode,
};
pub use status::{
    CheckpointStatus, ObservedMetrics, PipelineState, RestartStatus, RiskPipelineStatus,
    RolloutPhase, RolloutStatus, SavepointPhase, SavepointStatus, SavepointTrigger,
    WorkerSavepointRequest, condition_types,
};
pub use storage::{CheckpointSpec, S3Storage, SavepointSpec, StateSpec, Storage, StorageSpec};
pub use validate::ValidationError;

/// API group of the resource.
pub const GROUP: &str = "riskpipe.io";
/// API version of the resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the resource.
pub const API_VERSION: &str = "riskpipe.io/v1alpha1";
/// Kind of the resource.
pub const KIND: &str = "RiskPipeline";
