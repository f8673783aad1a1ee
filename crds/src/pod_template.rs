//! `spec.podTemplate`: what a cluster's policies (Kyverno, Gatekeeper) and its
//! scheduling need on the worker Pods, merged under what the operator must own (the
//! Flink operator's `podTemplate`, narrowed to the fields that are safe to give).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, Toleration, TopologySpreadConstraint,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings merged into every worker Pod. The operator keeps what it must own: its
/// selector and identity labels, its annotations (`riskpipe.io/*`), the container's
/// command, ports, probes, volumes and security context.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PodTemplateSpec {
    /// Labels and annotations of the worker Pods.
    #[serde(skip_serializing_if = "PodMetadata::is_empty")]
    pub metadata: PodMetadata,
    /// Scheduling, identity and pull settings of the worker Pods.
    #[serde(skip_serializing_if = "WorkerPodSpec::is_empty")]
    pub spec: WorkerPodSpec,
}

/// Labels and annotations added to the worker Pods (keys the operator sets win).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PodMetadata {
    /// Added labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Added annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl PodMetadata {
    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// Pod settings of the workers; each given field replaces the operator's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkerPodSpec {
    /// Node labels a worker's node must have.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the workers tolerate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and Pod (anti-)affinity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Spreading of the workers over zones or nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// PriorityClass of the worker Pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub priority_class_name: Option<String>,
    /// Secrets to pull the worker image with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// ServiceAccount of the workers (default: the one the operator creates,
    /// `<name>-worker`, without an API token mounted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub service_account_name: Option<String>,
    /// Scheduler of the worker Pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub scheduler_name: Option<String>,
    /// RuntimeClass of the worker Pods (e.g. gVisor, Kata).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub runtime_class_name: Option<String>,
    /// More environment variables of the worker container (names the operator sets
    /// are refused: `POD_*`, `RISKPIPE_*`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

impl WorkerPodSpec {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl PodTemplateSpec {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
