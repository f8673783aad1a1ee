//! The small owned objects: ConfigMap, ServiceAccount, headless Service, PDB and the
//! shared snapshots claim.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{
            ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, ServiceAccount,
            ServicePort, ServiceSpec, VolumeResourceRequirements,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::{ResourceExt, api::ObjectMeta};
use riskpipe_crds::{API_VERSION, KIND, RiskPipeline, RiskPipelineSpec};
use serde::Serialize;

use super::{BuildError, Owner, snapshot_paths};
use crate::names::{CONFIG_KEY, HTTP_PORT, HTTP_PORT_NAME};

/// The manifest the workers read: the whole RiskPipeline as applied, without status
/// or server-set metadata.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rendered<'a> {
    api_version: &'a str,
    kind: &'a str,
    metadata: ObjectMeta,
    spec: &'a RiskPipelineSpec,
}

/// ConfigMap with the rendered manifest at `pipeline.yaml`.
pub fn config_map(
    owner: &Owner,
    rp: &RiskPipeline,
    spec: &RiskPipelineSpec,
) -> Result<ConfigMap, BuildError> {
    let rendered = Rendered {
        api_version: API_VERSION,
        kind: KIND,
        metadata: ObjectMeta {
            name: Some(rp.name_any()),
            namespace: rp.namespace(),
            ..ObjectMeta::default()
        },
        spec,
    };
    let yaml = yaml_serde::to_string(&rendered).map_err(BuildError::Render)?;
    Ok(ConfigMap {
        metadata: owner.meta(owner.names.config_map()),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), yaml)])),
        ..ConfigMap::default()
    })
}

/// The workers' ServiceAccount: no token mounted, no Role bound — workers never call
/// the Kubernetes API.
pub fn service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.meta(owner.names.service_account()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// Headless Service: gives each worker a stable DNS name and lets the operator find
/// the Pods; not-ready Pods are published so a lagging worker is still reachable.
pub fn service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(owner.names.service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.names.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some(HTTP_PORT_NAME.into()),
                port: HTTP_PORT,
                target_port: Some(IntOrString::String(HTTP_PORT_NAME.into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// At most one worker down by a voluntary disruption (drain, eviction).
pub fn pdb(owner: &Owner) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owner.meta(owner.names.pdb()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(owner.names.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// A claim of `spec.state.volumeSize` in `spec.state.storageClassName` with one
/// access mode (the per-worker state volumes and the shared snapshot volume).
pub fn claim_spec(spec: &RiskPipelineSpec, access_mode: &str) -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec![access_mode.to_owned()]),
        storage_class_name: spec.state.storage_class_name.clone(),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_owned(),
                spec.state.volume_size.clone(),
            )])),
            ..VolumeResourceRequirements::default()
        }),
        ..PersistentVolumeClaimSpec::default()
    }
}

/// A claim every worker mounts (ReadWriteMany) when checkpoints or savepoints go to a
/// path: a savepoint is one folder per worker under a common folder, and a restore
/// at another replica count reads partitions written by other workers.
pub fn snapshots_claim(owner: &Owner, spec: &RiskPipelineSpec) -> Option<PersistentVolumeClaim> {
    if snapshot_paths(spec).is_empty() {
        return None;
    }
    Some(PersistentVolumeClaim {
        metadata: owner.meta(owner.names.snapshots_claim()),
        spec: Some(claim_spec(spec, "ReadWriteMany")),
        ..PersistentVolumeClaim::default()
    })
}
