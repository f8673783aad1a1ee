use kube::api::ObjectMeta;
use riskpipe_crds::{RiskPipeline, RiskPipelineSpec, SourceSpec, StorageSpec};

use super::*;
use crate::names::{CONFIG_HASH_ANNOTATION, RESTORE_FROM_ANNOTATION};

fn pipeline() -> RiskPipeline {
    let mut rp = RiskPipeline::new(
        "payments",
        RiskPipelineSpec::with_source(SourceSpec::kafka()),
    );
    rp.metadata = ObjectMeta {
        name: Some("payments".into()),
        namespace: Some("risk".into()),
        uid: Some("uid-1".into()),
        generation: Some(3),
        ..ObjectMeta::default()
    };
    rp.spec.parallelism = 3;
    rp
}

fn plan(replicas: i32) -> WorkloadPlan {
    WorkloadPlan {
        replicas,
        restore_from: None,
    }
}

fn pod_template(d: &Desired) -> &k8s_openapi::api::core::v1::PodTemplateSpec {
    &d.statefulset.spec.template
}

#[test]
fn every_object_is_owned_by_the_pipeline_as_controller() {
    let d = desired(&pipeline(), &plan(3)).unwrap();
    let metas = [
        &d.config_map.metadata,
        &d.service_account.metadata,
        &d.service.metadata,
        &d.pdb.metadata,
        &d.statefulset.metadata,
        &d.snapshots_claim.as_ref().unwrap().metadata,
    ];
    for meta in metas {
        let refs = meta.owner_references.as_ref().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].uid, "uid-1");
        assert_eq!(refs[0].kind, "RiskPipeline");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("risk"));
    }
}

#[test]
fn pod_security_is_restricted() {
    let d = desired(&pipeline(), &plan(3)).unwrap();
    let pod = pod_template(&d).spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let sc = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
}

#[test]
fn worker_args_follow_the_contract() {
    let d = desired(&pipeline(), &plan(3)).unwrap();
    let c = &pod_template(&d).spec.as_ref().unwrap().containers[0];
    assert_eq!(
        c.args.as_ref().unwrap().join(" "),
        "run -f /etc/riskpipe/pipeline.yaml --pod-name $(POD_NAME) --replicas 3 \
         --state-dir /var/lib/riskpipe/state --http-addr $(POD_IP):8080"
    );
    let pod_name = &c.env.as_ref().unwrap()[0];
    assert_eq!(pod_name.name, "POD_NAME");
    assert_eq!(
        pod_name
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.name"
    );
}

#[test]
fn restore_path_reaches_args_and_annotations() {
    let p = WorkloadPlan {
        replicas: 2,
        restore_from: Some("/sp/upgrade-1".into()),
    };
    let d = desired(&pipeline(), &p).unwrap();
    let t = pod_template(&d);
    let args = t.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
    assert_eq!(&args[args.len() - 2..], ["--restore-from", "/sp/upgrade-1"]);
    let ann = t.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
    assert_eq!(ann[RESTORE_FROM_ANNOTATION], "/sp/upgrade-1");
    assert_eq!(d.statefulset.spec.replicas, Some(2));
}

#[test]
fn config_map_holds_the_manifest_the_worker_can_read_back() {
    let rp = pipeline();
    let d = desired(&rp, &plan(3)).unwrap();
    let yaml = &d.config_map.data.as_ref().unwrap()["pipeline.yaml"];
    let back = RiskPipeline::from_yaml(yaml).unwrap();
    assert_eq!(back.spec, rp.spec);
    assert!(
        !yaml.contains("uid-1"),
        "server metadata must not leak: {yaml}"
    );
}

#[test]
fn hash_changes_with_what_workers_read_only() {
    let rp = pipeline();
    let base = config_hash(&rp.spec).unwrap();
    let mut threshold = rp.spec.clone();
    threshold.rules.decision.review_score += 1;
    assert_ne!(config_hash(&threshold).unwrap(), base);
    let mut image = rp.spec.clone();
    image.image = Some("riskpipe-worker:2".into());
    assert_ne!(config_hash(&image).unwrap(), base);
    let mut operator_only = rp.spec.clone();
    operator_only.savepoint_trigger_nonce = Some(7);
    operator_only.parallelism = 5;
    operator_only.job.state = riskpipe_crds::JobState::Suspended;
    operator_only.autoscaler.enabled = true;
    assert_eq!(config_hash(&operator_only).unwrap(), base);
    let ann = pod_template(&desired(&rp, &plan(3)).unwrap())
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(ann[CONFIG_HASH_ANNOTATION], base);
}

#[test]
fn snapshot_paths_are_mounted_from_the_shared_claim_and_s3_needs_none() {
    let d = desired(&pipeline(), &plan(1)).unwrap();
    let pod = pod_template(&d).spec.clone().unwrap();
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    let sp = mounts
        .iter()
        .find(|m| m.mount_path == "/var/lib/riskpipe/savepoints")
        .unwrap();
    assert_eq!(
        (sp.name.as_str(), sp.sub_path.as_deref()),
        ("snapshots", Some("savepoints"))
    );

    let mut rp = pipeline();
    let s3 = StorageSpec {
        path: None,
        s3: Some(riskpipe_crds::S3Storage {
            bucket: "bkt".into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            credentials_secret_ref: Some(riskpipe_crds::SecretRef { name: "s3".into() }),
        }),
    };
    rp.spec.checkpoints.storage = s3.clone();
    rp.spec.savepoints.storage = s3;
    let d = desired(&rp, &plan(1)).unwrap();
    assert!(d.snapshots_claim.is_none());
}

/// The Secrets contract: each referenced Secret once, read-only, at
/// `/etc/riskpipe/secrets/<name>`, and `RISKPIPE_SECRETS_DIR` set; values never inline.
#[test]
fn every_referenced_secret_is_mounted_once_read_only_under_the_secrets_dir() {
    use k8s_openapi::api::core::v1::SecretKeySelector;
    use riskpipe_crds::{DatabaseSpec, S3Storage, SecretRef};
    let mut rp = pipeline();
    let s3 = |name: &str| StorageSpec {
        path: None,
        s3: Some(S3Storage {
            bucket: "bkt".into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            credentials_secret_ref: Some(SecretRef { name: name.into() }),
        }),
    };
    rp.spec.source.kafka.as_mut().unwrap().security_secret_ref = Some(SecretRef {
        name: "kafka-tls".into(),
    });
    rp.spec.checkpoints.storage = s3("s3-creds");
    // The same Secret twice is mounted once.
    rp.spec.savepoints.storage = s3("s3-creds");
    rp.spec.dimensions.database = Some(DatabaseSpec {
        url: "postgres://db:5432/risk".into(),
        credentials_secret_ref: Some(SecretRef {
            name: "db-login".into(),
        }),
    });
    let key = |name: &str, key: &str| SecretKeySelector {
        name: name.into(),
        key: key.into(),
        optional: None,
    };
    rp.spec.secrets.encryption_key_ref = Some(key("audit-keys", "k1"));
    rp.spec.secrets.hmac_key_ref = Some(key("audit-keys", "hmac"));

    let d = desired(&rp, &plan(1)).unwrap();
    let pod = pod_template(&d).spec.clone().unwrap();
    let container = &pod.containers[0];
    let mut mounted: Vec<(String, String)> = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        // (`state` comes from the claim template.)
        let Some(v) = pod.volumes.iter().flatten().find(|v| v.name == m.name) else {
            continue;
        };
        if let Some(secret) = &v.secret {
            assert_eq!(m.read_only, Some(true), "{}", m.mount_path);
            assert!(secret.items.is_none(), "every key is a file");
            assert_eq!(secret.default_mode, Some(0o440));
            mounted.push((secret.secret_name.clone().unwrap(), m.mount_path.clone()));
        }
    }
    mounted.sort();
    assert_eq!(
        mounted,
        [
            ("audit-keys", "/etc/riskpipe/secrets/audit-keys"),
            ("db-login", "/etc/riskpipe/secrets/db-login"),
            ("kafka-tls", "/etc/riskpipe/secrets/kafka-tls"),
            ("s3-creds", "/etc/riskpipe/secrets/s3-creds"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let env = container.env.clone().unwrap();
    let dir = env
        .iter()
        .find(|e| e.name == "RISKPIPE_SECRETS_DIR")
        .unwrap();
    assert_eq!(dir.value.as_deref(), Some("/etc/riskpipe/secrets"));
    assert!(
        env.iter().all(|e| e
            .value_from
            .as_ref()
            .is_none_or(|v| v.secret_key_ref.is_none())),
        "secrets only as files: {env:?}"
    );
    // Restricted pod security still holds with the Secret volumes.
    assert_eq!(
        container
            .security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );

    // Without references: no Secret volume, the variable still points at the folder.
    let d = desired(&pipeline(), &plan(1)).unwrap();
    let pod = pod_template(&d).spec.clone().unwrap();
    assert!(pod.volumes.iter().flatten().all(|v| v.secret.is_none()));
}

#[test]
fn a_pipeline_without_uid_is_refused() {
    let mut rp = pipeline();
    rp.metadata.uid = None;
    assert!(matches!(
        desired(&rp, &plan(1)),
        Err(BuildError::MissingMetadata("uid"))
    ));
}

/// The restart policy restarts the workers through their Pod template: the last
/// restart time is an annotation, so a new one rolls them and an old one is stable.
#[test]
fn the_last_restart_time_is_in_the_pod_template() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let d = desired(&pipeline(), &plan(3)).unwrap();
    let ann = pod_template(&d)
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert!(!ann.contains_key(crate::names::RESTARTED_AT_ANNOTATION));
    let mut rp = pipeline();
    rp.status = Some(riskpipe_crds::RiskPipelineStatus {
        restarts: Some(riskpipe_crds::RestartStatus {
            count: 1,
            window_start: None,
            last_restart_time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            )),
            last_reason: Some("error rate".into()),
        }),
        ..Default::default()
    });
    let d = desired(&rp, &plan(3)).unwrap();
    let ann = pod_template(&d)
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(
        ann[crate::names::RESTARTED_AT_ANNOTATION],
        "2023-11-14T22:13:20Z"
    );
}

fn state_dir_arg(d: &Desired) -> String {
    let args = pod_template(d).spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let i = args.iter().position(|a| a == "--state-dir").unwrap();
    args[i + 1].clone()
}

fn rendered_checkpoints(d: &Desired) -> String {
    let yaml = &d.config_map.data.as_ref().unwrap()[crate::names::CONFIG_KEY];
    let rp: RiskPipeline = yaml_serde::from_str(yaml).unwrap();
    rp.spec.checkpoints.storage.path.unwrap()
}

/// Stateless mode wipes state: each configuration (hash and parallelism) has its
/// own state and checkpoint folders, so new workers find neither; the volume mount
/// stays where it was. Other modes keep the one folder.
#[test]
fn stateless_mode_gives_each_configuration_fresh_state_and_checkpoint_folders() {
    let kept = desired(&pipeline(), &plan(3)).unwrap();
    assert_eq!(state_dir_arg(&kept), "/var/lib/riskpipe/state");
    assert_eq!(rendered_checkpoints(&kept), "/var/lib/riskpipe/checkpoints");

    let mut rp = pipeline();
    rp.spec.job.upgrade_mode = riskpipe_crds::UpgradeMode::Stateless;
    let a = desired(&rp, &plan(3)).unwrap();
    let dir_a = state_dir_arg(&a);
    assert!(
        dir_a.starts_with("/var/lib/riskpipe/state/stateless-"),
        "{dir_a}"
    );
    let epoch = dir_a.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        rendered_checkpoints(&a),
        format!("/var/lib/riskpipe/checkpoints/{epoch}")
    );
    let mounts = pod_template(&a).spec.as_ref().unwrap().containers[0]
        .volume_mounts
        .clone()
        .unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "state" && m.mount_path == "/var/lib/riskpipe/state")
    );
    assert_eq!(
        state_dir_arg(&desired(&rp, &plan(3)).unwrap()),
        dir_a,
        "stable"
    );

    rp.spec.rules.decision.review_score = 61;
    let b = state_dir_arg(&desired(&rp, &plan(3)).unwrap());
    rp.spec.parallelism = 2;
    let c = state_dir_arg(&desired(&rp, &plan(2)).unwrap());
    assert!(dir_a != b && b != c && dir_a != c, "{dir_a} {b} {c}");
}

/// `spec.podTemplate` reaches the worker Pods, under what the operator owns.
#[test]
fn the_pod_template_is_merged_under_what_the_operator_owns() {
    let mut rp = pipeline();
    let t: riskpipe_crds::PodTemplateSpec = serde_json::from_value(serde_json::json!({
        "metadata": {
            "labels": {"team": "risk", "riskpipe.io/pipeline": "hijacked"},
            "annotations": {"policy.example/owner": "risk", "riskpipe.io/config-hash": "x"}
        },
        "spec": {
            "nodeSelector": {"pool": "risk"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "risk", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchLabels": {"riskpipe.io/pipeline": "payments"}}}}]}},
            "priorityClassName": "risk-critical",
            "imagePullSecrets": [{"name": "registry"}],
            "serviceAccountName": "payments-irsa",
            "env": [{"name": "TZDIR", "value": "/usr/share/zoneinfo"}]
        }
    }))
    .unwrap();
    rp.spec.pod_template = t;
    let d = desired(&rp, &plan(3)).unwrap();
    let tpl = pod_template(&d);
    let meta = tpl.metadata.as_ref().unwrap();
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "risk");
    assert_eq!(
        labels["riskpipe.io/pipeline"], "payments",
        "selector label kept"
    );
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["policy.example/owner"], "risk");
    assert_ne!(
        annotations[CONFIG_HASH_ANNOTATION], "x",
        "the hash is the operator's"
    );
    let pod = tpl.spec.as_ref().unwrap();
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "risk");
    assert_eq!(
        pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert!(pod.affinity.as_ref().unwrap().pod_anti_affinity.is_some());
    assert_eq!(pod.priority_class_name.as_deref(), Some("risk-critical"));
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
    assert_eq!(pod.service_account_name.as_deref(), Some("payments-irsa"));
    let c = &pod.containers[0];
    let env = c.env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "TZDIR"));
    assert!(
        env.iter().any(|e| e.name == "POD_NAME"),
        "the operator's env kept"
    );
    // What the operator owns is untouched.
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    assert!(c.readiness_probe.is_some());
    // Changing it rolls the workers (through the rollout, with a savepoint first in
    // savepoint mode), like any change of what the workers run with.
    assert_ne!(
        config_hash(&rp.spec).unwrap(),
        config_hash(&pipeline().spec).unwrap()
    );
    // The operator's names are refused in env.
    rp.spec.pod_template.spec.env[0].name = "RISKPIPE_SECRETS_DIR".into();
    let errors = rp.spec.validate().unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.podTemplate.spec.env[0].name"),
        "{errors:?}"
    );
}
