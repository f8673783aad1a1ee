//! Reading what is: the StatefulSet, the deployed manifest, the workers' Pods and
//! their `/status`, and the progress of the savepoint under way.

use std::{collections::BTreeMap, net::SocketAddr};

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, Pod},
    },
    jiff::Timestamp,
};
use kube::{Api, api::ListParams};
use riskpipe_crds::{RiskPipeline, RiskPipelineSpec, SavepointStatus};

use super::Error;
use crate::{
    build::Owner,
    lifecycle::{Progress, Workload, rollout},
    names::{CONFIG_HASH_ANNOTATION, CONFIG_KEY, PARALLELISM_ANNOTATION, RESTORE_FROM_ANNOTATION},
    worker_api::{SavepointState, WorkerApi, WorkerStatus, pod_addr},
};

/// A savepoint that has not completed within this time is failed.
pub const SAVEPOINT_TIMEOUT_SECS: i64 = 600;

/// The StatefulSet seen as a [`Workload`].
pub fn workload(sts: &StatefulSet) -> Workload {
    let annotations = sts
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let status = sts.status.clone().unwrap_or_default();
    let spec_replicas = sts.spec.replicas.unwrap_or(1);
    let generation_seen = status.observed_generation >= sts.metadata.generation;
    let revisions_equal =
        status.current_revision.is_some() && status.current_revision == status.update_revision;
    Workload {
        hash: annotations.get(CONFIG_HASH_ANNOTATION).cloned(),
        parallelism: annotations
            .get(PARALLELISM_ANNOTATION)
            .and_then(|p| p.parse().ok()),
        restore_from: annotations.get(RESTORE_FROM_ANNOTATION).cloned(),
        spec_replicas,
        replicas: status.replicas,
        ready_replicas: status.ready_replicas.unwrap_or(0),
        rolled_out: generation_seen
            && (revisions_equal || spec_replicas == 0)
            && status.updated_replicas.unwrap_or(0) >= spec_replicas,
    }
}

/// Top-level spec sections that differ between the deployed manifest (in the live
/// ConfigMap) and `spec`, for the rollout's cause.
pub fn changed_sections(deployed: Option<&ConfigMap>, spec: &RiskPipelineSpec) -> Vec<String> {
    let Some(text) = deployed
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get(CONFIG_KEY))
    else {
        return Vec::new();
    };
    let Ok(old) = RiskPipeline::from_yaml(text) else {
        return Vec::new();
    };
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(&old.spec), serde_json::to_value(spec))
    else {
        return Vec::new();
    };
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| a.get(k) != b.get(k) && k != "savepointTriggerNonce" && k != "job");
    keys
}

/// The live objects the reconcile reads.
pub struct Live {
    /// The workers' StatefulSet.
    pub statefulset: Option<StatefulSet>,
    /// The rendered manifest the workers run.
    pub config_map: Option<ConfigMap>,
    /// Worker addresses by ordinal.
    pub addrs: BTreeMap<i32, SocketAddr>,
}

/// Reads the StatefulSet, the ConfigMap and the workers' Pods.
pub async fn live(client: &kube::Client, owner: &Owner) -> Result<Live, Error> {
    let ns = &owner.namespace;
    let names = &owner.names;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let statefulset = sts
        .get_opt(&names.statefulset())
        .await
        .map_err(Error::read("StatefulSet"))?;
    let config_map = cms
        .get_opt(&names.config_map())
        .await
        .map_err(Error::read("ConfigMap"))?;
    let pod_list = pods
        .list(&ListParams::default().labels(&names.selector_string()))
        .await
        .map_err(Error::read("Pods"))?;
    let addrs = pod_list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            pod_addr(
                &p.metadata,
                p.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
            )
        })
        .collect();
    Ok(Live {
        statefulset,
        config_map,
        addrs,
    })
}

/// `/status` of every worker that answers; the others are logged and left out.
pub async fn worker_statuses(
    api: &dyn WorkerApi,
    addrs: &BTreeMap<i32, SocketAddr>,
) -> Vec<WorkerStatus> {
    let calls = addrs.values().map(|a| api.status(*a));
    futures::future::join_all(calls)
        .await
        .into_iter()
        .filter_map(|r| {
            r.map_err(|e| tracing::debug!(error = %e, "worker status"))
                .ok()
        })
        .collect()
}

/// Progress of the savepoint in progress, asked of each worker that acknowledged it.
pub async fn savepoint_progress(
    api: &dyn WorkerApi,
    entry: &SavepointStatus,
    addrs: &BTreeMap<i32, SocketAddr>,
    now: Timestamp,
) -> Progress {
    if entry.requests.is_empty() {
        return Progress::Failed("no worker acknowledged the request".into());
    }
    if rollout::elapsed(&entry.started_at, SAVEPOINT_TIMEOUT_SECS, now) {
        return Progress::Failed(format!("not completed within {SAVEPOINT_TIMEOUT_SECS}s"));
    }
    let mut all_done = true;
    for req in &entry.requests {
        let Some(addr) = addrs.get(&req.ordinal) else {
            return Progress::Failed(format!(
                "worker {} went away during the savepoint",
                req.ordinal
            ));
        };
        match api.savepoint(*addr, &req.id).await {
            Ok(info) if info.state == SavepointState::Completed => {}
            Ok(info) if info.state == SavepointState::Failed => {
                return Progress::Failed(format!(
                    "worker {}: {}",
                    req.ordinal,
                    info.error.unwrap_or_else(|| "failed".into())
                ));
            }
            Ok(_) => all_done = false,
            // A restarted worker no longer knows the request.
            Err(crate::worker_api::WorkerError::Status { status: 404, .. }) => {
                return Progress::Failed(format!(
                    "worker {} lost the request (restarted?)",
                    req.ordinal
                ));
            }
            Err(e) => {
                tracing::debug!(error = %e, "savepoint poll");
                all_done = false;
            }
        }
    }
    if all_done {
        Progress::Completed
    } else {
        Progress::InProgress
    }
}
