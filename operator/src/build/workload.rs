//! The workers' StatefulSet: one Pod per ordinal, a state volume each, pod security
//! `restricted`, and the worker contract's command line.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{
            StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
            StatefulSetUpdateStrategy,
        },
        core::v1::{
            Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
            EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
            PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            SeccompProfile, SecurityContext, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::api::ObjectMeta;
use riskpipe_contract::{
    WorkerArgs, mounts,
    mounts::{POD_IP_ENV, POD_NAME_ENV},
};
use riskpipe_crds::RiskPipelineSpec;

use super::{Owner, WorkloadPlan, snapshot_paths};
use crate::names::{
    CONFIG_DIR, CONFIG_HASH_ANNOTATION, CONTAINER, HTTP_PORT, HTTP_PORT_NAME,
    PARALLELISM_ANNOTATION, RESTARTED_AT_ANNOTATION, RESTORE_FROM_ANNOTATION,
};

/// Non-root user and group of the worker (the distroless `nonroot` id).
const WORKER_UID: i64 = 65532;
/// Time a worker gets to finish its micro-batch and commit before SIGKILL.
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// What the Pod template is made from besides the spec.
#[derive(Clone, Copy, Debug)]
pub struct Template<'a> {
    /// Replicas and restore path.
    pub plan: &'a WorkloadPlan,
    /// Config hash (a change rolls the workers).
    pub hash: &'a str,
    /// The workers' `--state-dir` (a folder per configuration in stateless mode).
    pub state_dir: &'a str,
    /// The restart policy's last restart (a change restarts the workers).
    pub restarted_at: Option<&'a str>,
}

/// The worker's command line (the worker contract's [`WorkerArgs`]).
pub fn worker_args(
    spec: &RiskPipelineSpec,
    restore_from: Option<&str>,
    state_dir: &str,
) -> Vec<String> {
    WorkerArgs {
        manifest: mounts::config_path(),
        pod_name: format!("$({POD_NAME_ENV})"),
        // Validation keeps the parallelism at 1 or more.
        replicas: u32::try_from(spec.parallelism).unwrap_or(0),
        state_dir: state_dir.to_owned(),
        // The Pod's own address rather than 0.0.0.0: the same on a kubelet, and Pods
        // that share a host network namespace (the e2e pod runner) do not collide.
        http_addr: format!("$({POD_IP_ENV}):{HTTP_PORT}"),
        restore_from: restore_from.map(str::to_owned),
        // The environment names the folder (see `secrets::dir_env`).
        secrets_dir: None,
    }
    .to_args()
}

/// The workers' StatefulSet for `t.plan`; the hash goes into the Pod template so that
/// a configuration change rolls the workers, and so does a new restart time.
pub fn statefulset(owner: &Owner, spec: &RiskPipelineSpec, t: &Template<'_>) -> StatefulSet {
    let names = &owner.names;
    let (plan, hash, restarted_at) = (t.plan, t.hash, t.restarted_at);
    let mut annotations = BTreeMap::from([
        (CONFIG_HASH_ANNOTATION.to_owned(), hash.to_owned()),
        (
            PARALLELISM_ANNOTATION.to_owned(),
            spec.parallelism.to_string(),
        ),
    ]);
    if let Some(path) = &plan.restore_from {
        annotations.insert(RESTORE_FROM_ANNOTATION.to_owned(), path.clone());
    }
    if let Some(at) = restarted_at {
        annotations.insert(RESTARTED_AT_ANNOTATION.to_owned(), at.to_owned());
    }
    StatefulSet {
        metadata: owner.meta(names.statefulset()),
        spec: StatefulSetSpec {
            replicas: Some(plan.replicas),
            service_name: Some(names.service()),
            // Workers are independent: start and stop them all at once.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    // Kept on scale-down: a later scale-up finds its state again.
                    when_scaled: Some("Retain".into()),
                },
            ),
            volume_claim_templates: Some(vec![state_claim(spec)]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(under(&spec.pod_template.metadata.labels, names.labels())),
                    annotations: Some(under(&spec.pod_template.metadata.annotations, annotations)),
                    ..ObjectMeta::default()
                }),
                spec: Some(super::pod_template::merge(
                    pod_spec(owner, spec, t),
                    &spec.pod_template.spec,
                )),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// The user's `extra` entries with the operator's `own` over them (its keys win).
fn under(
    extra: &BTreeMap<String, String>,
    own: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = extra.clone();
    out.extend(own);
    out
}

fn state_claim(spec: &RiskPipelineSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("state".into()),
            ..ObjectMeta::default()
        },
        spec: Some(super::support::claim_spec(spec, "ReadWriteOnce")),
        ..PersistentVolumeClaim::default()
    }
}

fn pod_spec(owner: &Owner, spec: &RiskPipelineSpec, t: &Template<'_>) -> PodSpec {
    let names = &owner.names;
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        mount("config", CONFIG_DIR, None, true),
        mount("tmp", "/tmp", None, false),
        mount("state", &spec.state.path, None, false),
    ];
    let snapshots = snapshot_paths(spec);
    if !snapshots.is_empty() {
        volumes.push(Volume {
            name: "snapshots".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names.snapshots_claim(),
                read_only: Some(false),
            }),
            ..Volume::default()
        });
        for (sub, path) in snapshots {
            mounts.push(mount("snapshots", &path, Some(sub), false));
        }
    }
    let (secret_volumes, secret_mounts) = super::secrets::volumes(spec);
    volumes.extend(secret_volumes);
    mounts.extend(secret_mounts);
    PodSpec {
        service_account_name: Some(names.service_account()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            fs_group: Some(WORKER_UID),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(
                spec.image
                    .clone()
                    .unwrap_or_else(|| riskpipe_crds::DEFAULT_IMAGE.into()),
            ),
            args: Some(worker_args(
                spec,
                t.plan.restore_from.as_deref(),
                t.state_dir,
            )),
            env: Some(env()),
            ports: Some(vec![ContainerPort {
                name: Some(HTTP_PORT_NAME.into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(probe("/readyz", 5, 3)),
            liveness_probe: Some(Probe {
                initial_delay_seconds: Some(30),
                ..probe("/healthz", 10, 6)
            }),
            resources: spec.resources.clone(),
            security_context: Some(SecurityContext {
                run_as_non_root: Some(true),
                allow_privilege_escalation: Some(false),
                privileged: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                seccomp_profile: Some(runtime_default()),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(mounts),
            ..Container::default()
        }],
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn mount(name: &str, path: &str, sub_path: Option<&str>, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        sub_path: sub_path.map(Into::into),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Pod identity from the downward API, and where the mounted Secrets are.
fn env() -> Vec<EnvVar> {
    vec![
        field_env(POD_NAME_ENV, "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env(POD_IP_ENV, "status.podIP"),
        super::secrets::dir_env(),
    ]
}
