//! The `RiskPipeline` custom resource and its top-level spec.

use k8s_openapi::api::core::v1::{ResourceRequirements, SecretKeySelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    dimensions::DimensionsSpec,
    ml::MlSpec,
    monitoring::MonitoringSpec,
    operations::{AutoscalerSpec, RestartPolicySpec},
    pod_template::PodTemplateSpec,
    rules::RulesSpec,
    sinks::SinksSpec,
    source::SourceSpec,
    status::RiskPipelineStatus,
    storage::{CheckpointSpec, SavepointSpec, StateSpec},
};

/// The worker image the operator uses when `spec.image` is absent and the operator
/// was not given another default (`--default-worker-image`). Not a CRD default: an
/// absent image stays absent in the stored object, so an operator upgrade moves the
/// workers of such pipelines to its own default image (the Flink operator's rule).
pub const DEFAULT_IMAGE: &str = "riskpipe/riskpipe-worker:0.1.0";

/// Desired state of a risk-control pipeline: read transactions from `source`, apply
/// the rule set, write decisions to `sinks`. Only `source` is required; every other
/// field defaults to the seed job's setting.
// Repeated `printcolumn(type_ = …)` arguments look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "riskpipe.io",
    version = "v1alpha1",
    kind = "RiskPipeline",
    plural = "riskpipelines",
    singular = "riskpipeline",
    shortname = "rp",
    category = "riskpipe",
    namespaced,
    status = "RiskPipelineStatus",
    derive = "PartialEq",
    doc = "A real-time financial risk-control pipeline: workers read transactions from Kafka (or a generator or file), score them against the rule set and publish one decision per transaction.",
    scale(
        spec_replicas_path = ".spec.parallelism",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.state",
        description = "Lifecycle state of the pipeline"
    ),
    printcolumn(
        name = "Parallelism",
        type_ = "integer",
        json_path = ".spec.parallelism",
        description = "spec.parallelism: the workers asked for (and by HPA/KEDA through the scale subresource)"
    ),
    printcolumn(
        name = "Autoscaled",
        type_ = "integer",
        json_path = ".status.autoscaledParallelism",
        description = "The built-in autoscaler's choice of workers, which overrides spec.parallelism while spec.autoscaler.enabled"
    ),
    printcolumn(
        name = "Workers",
        type_ = "integer",
        json_path = ".status.parallelism",
        description = "The parallelism in effect: the autoscaler's choice, else spec.parallelism"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Workers that are ready"
    ),
    printcolumn(
        name = "Condition",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Status of the Ready condition"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Reason of the Ready condition",
        priority = 1
    ),
    printcolumn(
        name = "Lag",
        type_ = "number",
        json_path = ".status.observed.lagSeconds",
        description = "Input lag in seconds of processing",
        priority = 1
    ),
    printcolumn(
        name = "Rate",
        type_ = "number",
        json_path = ".status.observed.recordsPerSecond",
        description = "Records processed per second",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = crate::schema::strip_union_defaults)]
pub struct RiskPipelineSpec {
    /// Where transactions come from: exactly one of kafka, generator or file.
    pub source: SourceSpec,
    /// Number of worker replicas; the input topic's partitions are spread over them.
    /// Written only by its owner: the user, GitOps, or HPA/KEDA through the scale
    /// subresource. The built-in autoscaler never writes it: while
    /// `spec.autoscaler.enabled`, its choice (`status.autoscaledParallelism`)
    /// overrides this value, which is then the starting point.
    #[serde(default = "RiskPipelineSpec::default_parallelism")]
    #[schemars(range(min = 1, max = 1024))]
    pub parallelism: i32,
    /// IANA time zone (e.g. `UTC`, `Asia/Taipei`) of timestamps without an offset and
    /// of the hour-based rules.
    #[serde(default = "RiskPipelineSpec::default_time_zone")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: String,
    /// Worker container image. When absent, the operator's default worker image
    /// (its `--default-worker-image`, set by the chart to the worker image of the
    /// same release), so an operator upgrade moves such pipelines to the new image;
    /// set it to pin an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Whether the job runs, and how it moves its state across an upgrade.
    #[serde(default)]
    pub job: JobSpec,
    /// Change this number (to any other value) to take a savepoint now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger_nonce: Option<i64>,
    /// Savepoint to start from when the pipeline is first deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_savepoint_path: Option<String>,
    /// Looked-up tables (profiles, history, lists) and their caches.
    #[serde(default)]
    pub dimensions: DimensionsSpec,
    /// Thresholds of the rule set.
    #[serde(default)]
    pub rules: RulesSpec,
    /// ML features and risk probability.
    #[serde(default)]
    pub ml: MlSpec,
    /// Monitoring windows, watermark and alert thresholds.
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    /// Outputs: decisions, dead letters, alerts, window metrics, audit log. When absent,
    /// all five go to the Kafka topics risk-decisions, risk-dead-letters, risk-alerts,
    /// risk-metrics and risk-audit.
    #[serde(default)]
    pub sinks: SinksSpec,
    /// Local state of each worker and its volume.
    #[serde(default)]
    pub state: StateSpec,
    /// Periodic checkpoints.
    #[serde(default)]
    pub checkpoints: CheckpointSpec,
    /// Savepoints and their retention.
    #[serde(default)]
    pub savepoints: SavepointSpec,
    /// Autoscaling of `parallelism`.
    #[serde(default)]
    pub autoscaler: AutoscalerSpec,
    /// Bounded restarts on a high error rate.
    #[serde(default)]
    pub restart_policy: RestartPolicySpec,
    /// CPU and memory of each worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Labels, annotations, scheduling, pull secrets and ServiceAccount of the
    /// worker Pods, merged under what the operator owns.
    #[serde(default, skip_serializing_if = "PodTemplateSpec::is_empty")]
    pub pod_template: PodTemplateSpec,
    /// Keys for protecting personal data, by reference to Secrets (never inline).
    #[serde(default)]
    pub secrets: SecretsSpec,
}

impl RiskPipelineSpec {
    /// A spec with `source` and every other field at its default.
    pub fn with_source(source: SourceSpec) -> Self {
        Self {
            source,
            parallelism: Self::default_parallelism(),
            time_zone: Self::default_time_zone(),
            image: None,
            job: JobSpec::default(),
            savepoint_trigger_nonce: None,
            initial_savepoint_path: None,
            dimensions: DimensionsSpec::default(),
            rules: RulesSpec::default(),
            ml: MlSpec::default(),
            monitoring: MonitoringSpec::default(),
            sinks: SinksSpec::default(),
            state: StateSpec::default(),
            checkpoints: CheckpointSpec::default(),
            savepoints: SavepointSpec::default(),
            autoscaler: AutoscalerSpec::default(),
            restart_policy: RestartPolicySpec::default(),
            resources: None,
            pod_template: PodTemplateSpec::default(),
            secrets: SecretsSpec::default(),
        }
    }

    fn default_parallelism() -> i32 {
        1
    }

    fn default_time_zone() -> String {
        "UTC".into()
    }
}

/// Whether the job runs, and how it is upgraded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JobSpec {
    /// `running`, or `suspended` to stop every worker while keeping the state.
    pub state: JobState,
    /// How state carries over when the spec changes: `stateless`, `last-state` or `savepoint`.
    pub upgrade_mode: UpgradeMode,
}

/// Desired run state of the job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Workers run.
    #[default]
    Running,
    /// No workers run; state and offsets are kept (a savepoint is taken first with
    /// upgrade mode `savepoint`).
    Suspended,
}

/// How state carries over an upgrade (the Flink operator's upgrade modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Start with empty state from the source's startup mode.
    Stateless,
    /// Resume from the latest checkpoint.
    LastState,
    /// Take a savepoint, then resume from it.
    #[default]
    Savepoint,
}

/// Keys that protect personal data (SPEC §10), by reference: they are never written
/// in the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecretsSpec {
    /// 32-byte key for the audit log's authenticated encryption of user_id; the key's
    /// name in the Secret serves as the key id, so keys can rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_ref: Option<SecretKeySelector>,
    /// Key for the HMAC-SHA256 of device_id and the user pseudonym.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_key_ref: Option<SecretKeySelector>,
}
