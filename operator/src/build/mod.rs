//! Desired objects of a pipeline, built without a client: the same inputs always give
//! the same objects, so the reconcile can apply them blindly and tests can read them.

mod pod_template;
pub mod secrets;
pub mod stateless;
mod support;
mod workload;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
};
use kube::{Resource, ResourceExt, api::ObjectMeta};
use riskpipe_crds::{RiskPipeline, RiskPipelineSpec, Storage};

use crate::names::Names;

pub use support::{config_map, pdb, service, service_account, snapshots_claim};
pub use workload::{Template, statefulset, worker_args};

/// Why the desired objects could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The resource lacks a name, namespace or uid (not read from the apiserver).
    #[error("the RiskPipeline has no {0}; it must come from the apiserver")]
    MissingMetadata(&'static str),
    /// The manifest could not be rendered as YAML.
    #[error("cannot render the pipeline configuration")]
    Render(#[source] yaml_serde::Error),
    /// The spec could not be hashed.
    #[error("cannot hash the pipeline configuration")]
    Hash(#[source] serde_json::Error),
}

/// What the workers should look like now: chosen by the lifecycle, not by the spec alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadPlan {
    /// StatefulSet replicas (0 while stopping or suspended).
    pub replicas: i32,
    /// Savepoint or checkpoint the workers restore from (`--restore-from`).
    pub restore_from: Option<String>,
}

/// Every object a pipeline owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Rendered manifest.
    pub config_map: ConfigMap,
    /// The workers' identity, without API rights.
    pub service_account: ServiceAccount,
    /// Headless Service: stable DNS names for the workers.
    pub service: Service,
    /// At most one worker down by a voluntary disruption.
    pub pdb: PodDisruptionBudget,
    /// Shared volume for checkpoints and savepoints on a path, if any.
    pub snapshots_claim: Option<PersistentVolumeClaim>,
    /// The workers.
    pub statefulset: StatefulSet,
}

/// Builds every owned object of `rp` for `plan`.
pub fn desired(rp: &RiskPipeline, plan: &WorkloadPlan) -> Result<Desired, BuildError> {
    let owner = Owner::of(rp)?;
    let hash = config_hash(&rp.spec)?;
    let epoch = stateless::epoch(&rp.spec, &hash);
    let worker_spec = stateless::worker_spec(&rp.spec, epoch.as_deref());
    let state_dir = stateless::state_dir(&rp.spec, epoch.as_deref());
    Ok(Desired {
        config_map: config_map(&owner, rp, &worker_spec)?,
        service_account: service_account(&owner),
        service: service(&owner),
        pdb: pdb(&owner),
        snapshots_claim: snapshots_claim(&owner, &rp.spec),
        statefulset: statefulset(
            &owner,
            &rp.spec,
            &Template {
                plan,
                hash: &hash,
                state_dir: &state_dir,
                restarted_at: restarted_at(rp).as_deref(),
            },
        ),
    })
}

/// The restart policy's last restart (`status.restarts.lastRestartTime`), RFC 3339.
fn restarted_at(rp: &RiskPipeline) -> Option<String> {
    rp.status
        .as_ref()?
        .restarts
        .as_ref()?
        .last_restart_time
        .as_ref()
        .map(|t| t.0.to_string())
}

/// Name, namespace and owner reference shared by every owned object.
#[derive(Clone, Debug)]
pub struct Owner {
    /// Object names.
    pub names: Names,
    /// Namespace of the pipeline and of everything it owns.
    pub namespace: String,
    owner_ref: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
}

impl Owner {
    /// The owner data of `rp`; fails when it was not read from an apiserver.
    pub fn of(rp: &RiskPipeline) -> Result<Self, BuildError> {
        let namespace = rp
            .namespace()
            .ok_or(BuildError::MissingMetadata("namespace"))?;
        let owner_ref = rp
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingMetadata("uid"))?;
        Ok(Self {
            names: Names::new(&rp.name_any()),
            namespace,
            owner_ref,
        })
    }

    /// Metadata of an owned object called `name`.
    pub fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.names.labels()),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// Hash of what the workers read: a change rolls them. Fields only the operator reads
/// (the nonce, run state, upgrade mode, parallelism — passed as an argument —,
/// autoscaler, restart policy, savepoint schedule and retention) are left out, so
/// changing them does not restart a worker.
pub fn config_hash(spec: &RiskPipelineSpec) -> Result<String, BuildError> {
    let mut worker_view = spec.clone();
    worker_view.savepoint_trigger_nonce = None;
    worker_view.initial_savepoint_path = None;
    worker_view.job = Default::default();
    worker_view.parallelism = 0;
    worker_view.autoscaler = Default::default();
    worker_view.restart_policy = Default::default();
    worker_view.savepoints.schedule = None;
    worker_view.savepoints.max_count = 0;
    worker_view.savepoints.max_age = riskpipe_crds::Duration::from_millis(0);
    let bytes = serde_json::to_vec(&worker_view).map_err(BuildError::Hash)?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
}

/// Folders of checkpoint and savepoint storage that are paths (mounted from the
/// shared claim), without duplicates.
pub fn snapshot_paths(spec: &RiskPipelineSpec) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (sub, storage) in [
        ("checkpoints", &spec.checkpoints.storage),
        ("savepoints", &spec.savepoints.storage),
    ] {
        if let Some(Storage::Path(p)) = storage.kind()
            && !out.iter().any(|(_, q)| q == p)
        {
            out.push((sub, p.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests;
