//! `RiskPipeline.status`: what the operator observed. Status structs accept unknown
//! fields (unlike spec structs) so an older operator can read a newer status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types the operator sets (Kubernetes API conventions).
pub mod condition_types {
    /// Every desired worker runs and is ready.
    pub const READY: &str = "Ready";
    /// A rollout, rescale or savepoint is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// The pipeline runs below its objectives (error rate, restarts exhausted).
    pub const DEGRADED: &str = "Degraded";
    /// The autoscaler is changing the parallelism.
    pub const SCALING: &str = "Scaling";
    /// Checkpoints complete on schedule.
    pub const CHECKPOINT_HEALTHY: &str = "CheckpointHealthy";
}

/// Observed state of a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RiskPipelineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Lifecycle state, for humans and printer columns; conditions carry the detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<PipelineState>,
    /// Conditions (Ready, Progressing, Degraded, Scaling, CheckpointHealthy), one per type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Workers that exist (scale subresource `statusReplicasPath`).
    pub replicas: i32,
    /// Workers that are ready.
    pub ready_replicas: i32,
    /// Label selector of the workers' Pods, as a string (scale subresource `labelSelectorPath`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Partitions of the input topic (the most workers that can do useful work).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The latest completed checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointStatus>,
    /// Savepoints taken and still retained, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub savepoints: Vec<SavepointStatus>,
    /// The `spec.savepointTriggerNonce` last acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_savepoint_trigger_nonce: Option<i64>,
    /// Restarts made under the restart policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<RestartStatus>,
    /// When the autoscaler last changed the parallelism.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// The built-in autoscaler's choice of workers. While `spec.autoscaler.enabled`
    /// it overrides `spec.parallelism` (which the operator never writes, so GitOps
    /// tools see no drift); cleared when the autoscaler is turned off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaled_parallelism: Option<i32>,
    /// The parallelism in effect: `autoscaledParallelism` when set, else
    /// `spec.parallelism`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// Figures observed from the workers and Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedMetrics>,
    /// The rollout under way (upgrade, suspend or resume), kept here so that a
    /// restarted operator finishes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// A rollout under way: the workers move to `targetHash` with `targetReplicas`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Hash of the worker configuration being rolled out.
    pub target_hash: String,
    /// Workers wanted at the end (0 for a suspend).
    pub target_replicas: i32,
    /// Current step.
    pub phase: RolloutPhase,
    /// Savepoint or checkpoint the new workers restore from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Why the rollout started (e.g. `spec changed: image, rules`).
    pub cause: String,
    /// When it started.
    pub started_at: Time,
}

/// Steps of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// A savepoint is being taken while the old workers run.
    Savepointing,
    /// The old workers are stopping.
    Stopping,
    /// The new workers are starting (restoring state where given).
    Starting,
    /// The new workers run; the restore argument is being removed so that a restart
    /// resumes from local state.
    Finalizing,
}

/// Lifecycle state of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PipelineState {
    /// Accepted; workers not yet created.
    Pending,
    /// Workers are being created or are starting.
    Deploying,
    /// All workers run.
    Running,
    /// The parallelism is changing.
    Scaling,
    /// A new spec is being rolled out (with a savepoint or checkpoint first).
    Upgrading,
    /// `spec.job.state` is suspended and no worker runs.
    Suspended,
    /// Running, but below objectives (see the Degraded condition).
    Degraded,
    /// Stopped on an error that needs a spec change (see the conditions).
    Failed,
}

/// A completed checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// Checkpoint number, increasing.
    pub id: i64,
    /// Where it is stored.
    pub path: String,
    /// When it completed.
    pub completed_at: Time,
    /// How long it took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Total size, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
}

/// What caused a savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SavepointTrigger {
    /// A new `spec.savepointTriggerNonce`.
    Nonce,
    /// `spec.savepoints.schedule`.
    Schedule,
    /// An upgrade with upgrade mode `savepoint`, or a suspend.
    Upgrade,
}

/// Progress of a savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SavepointPhase {
    /// Being written.
    InProgress,
    /// Complete and usable.
    Completed,
    /// Abandoned; see `message`.
    Failed,
}

/// One savepoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    /// Where it is (or was being) stored.
    pub path: String,
    /// What caused it.
    pub trigger: SavepointTrigger,
    /// The nonce that caused it, for trigger `Nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_nonce: Option<i64>,
    /// Progress.
    pub phase: SavepointPhase,
    /// When it started.
    pub started_at: Time,
    /// When it completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The request each worker acknowledged, by ordinal (polled until done).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<WorkerSavepointRequest>,
}

/// One worker's part of a savepoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSavepointRequest {
    /// The worker's ordinal.
    pub ordinal: i32,
    /// The id the worker returned.
    pub id: String,
}

/// Restarts made under `spec.restartPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RestartStatus {
    /// Restarts within the current window.
    pub count: i32,
    /// Start of the current window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Time>,
    /// When the last restart happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_restart_time: Option<Time>,
    /// Why the last restart happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
}

/// Figures observed over the pipeline (all workers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ObservedMetrics {
    /// Records processed per second.
    pub records_per_second: f64,
    /// Records behind the end of the input topic.
    pub lag_records: i64,
    /// Lag in time: lag records ÷ processing rate.
    pub lag_seconds: f64,
    /// Errors ÷ records over the restart policy's window (0–1).
    pub error_rate: f64,
    /// Share of time the workers were busy (0–1).
    pub busy_ratio: f64,
    /// When these figures were taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
}
