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
    image.image = "riskpipe-worker:2".into();
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
    let env = pod_template(&d).spec.clone().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let key = env.iter().find(|e| e.name == "AWS_ACCESS_KEY_ID").unwrap();
    let sel = key.value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("s3", "accessKeyId"));
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
