//! Upgrading the chart with a pipeline running, on the real control plane of
//! `e2e/env/up`: the previous chart version (0.1.0, kept in `tests/fixtures`
//! without its `crds/`, which Helm skips when the CRD exists) is installed, a
//! pipeline runs real worker Pods, then the documented upgrade — `kubectl apply
//! --server-side` of the new CRD, `helm upgrade` to this chart — leaves the workers
//! running untouched, and a field only the new CRD has (`spec.podTemplate`) is
//! accepted and reaches the worker Pods.
//!
//! The cluster's CRD is shared by every test, so this test never installs an older
//! CRD (that would strip newer fields from other tests' objects): the "old" CRD step
//! is the one `install` of every test already made.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};
use riskpipe_crds::{PipelineState, RiskPipeline};
use riskpipe_e2e::{env::keys, wait::wait_for};

const SLOW: Duration = Duration::from_secs(150);

async fn worker_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("riskpipe.io/pipeline=payments"))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn helm_upgrade_from_the_previous_chart_keeps_a_running_pipeline_and_carries_the_new_crd() {
    let env = env();
    worker_binary(&env);
    let ns = unique("op-upgrade");
    apply_crd(&env);
    let previous = root().join("operator/tests/fixtures/riskpipe-chart-0.1.0");
    let release_args = |chart: &str, verb: &str| -> Vec<String> {
        [
            verb,
            "riskpipe",
            chart,
            "--namespace",
            &ns,
            "--create-namespace",
            "--set",
            "replicaCount=0",
            "--set",
            &format!("watchNamespaces={{{ns}}}"),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    };
    let args = release_args(previous.to_str().unwrap(), "install");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tool(&env, keys::HELM, &args, None).unwrap_or_else(|e| panic!("helm install 0.1.0: {e}"));

    let op = Operator::start_as_chart(&env, &ns, "op-up");
    let topic = unique("tx-up");
    create_topic(&env, &topic, 4).await;
    tool(
        &env,
        keys::KUBECTL,
        &["apply", "-n", &ns, "-f", "-"],
        Some(&manifest(&env, "payments", &topic, 2, "")),
    )
    .unwrap();
    let c = client(&env).await;
    let api: Api<RiskPipeline> = Api::namespaced(c.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let running = |rp: &RiskPipeline| {
        rp.status.as_ref().is_some_and(|s| {
            s.state == Some(PipelineState::Running) && s.ready_replicas == 2 && s.rollout.is_none()
        })
    };
    let rp = wait_pipeline(&api, "payments", "2 workers running", &op, running).await;
    let generation = rp.metadata.generation;
    let uids: Vec<String> = worker_pods(&pods)
        .await
        .iter()
        .map(|p| p.uid().unwrap())
        .collect();
    assert_eq!(uids.len(), 2);

    // The upgrade, as the README's install section says: the CRD, then the chart.
    apply_crd(&env);
    let args = release_args("charts/riskpipe", "upgrade");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tool(&env, keys::HELM, &args, None).unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    let history = tool(
        &env,
        keys::HELM,
        &["history", "riskpipe", "-n", &ns, "-o", "json"],
        None,
    )
    .unwrap();
    assert!(
        history.contains("riskpipe-0.1.0") && history.contains("riskpipe-0.2.0"),
        "{history}"
    );
    // Nothing in the upgrade touches the pipeline or its workers.
    let rp = api.get("payments").await.unwrap();
    assert!(running(&rp), "{:?}", rp.status);
    assert_eq!(rp.metadata.generation, generation);
    let now: Vec<String> = worker_pods(&pods)
        .await
        .iter()
        .map(|p| p.uid().unwrap())
        .collect();
    assert_eq!(now, uids, "the upgrade restarted the workers");

    // spec.podTemplate (new in this CRD) reaches the worker Pods.
    let node = env.get("RISKPIPE_NODE_NAME").unwrap().to_owned();
    let patch = serde_json::json!({"spec": {"podTemplate": {
        "metadata": {"labels": {"team": "risk"}, "annotations": {"policy.example/owner": "risk"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "risk", "effect": "NoSchedule"}],
            "imagePullSecrets": [{"name": "registry"}]
        }
    }}});
    tool(
        &env,
        keys::KUBECTL,
        &[
            "patch",
            "riskpipeline",
            "payments",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    )
    .unwrap_or_else(|e| panic!("the new CRD refused spec.podTemplate: {e}"));
    wait_for(
        "worker Pods with the pod template, ready",
        SLOW,
        POLL,
        || async {
            let list = worker_pods(&pods).await;
            let ok = list.len() == 2
                && list.iter().all(|p| {
                    let spec = p.spec.clone().unwrap_or_default();
                    p.labels().get("team").map(String::as_str) == Some("risk")
                        && p.annotations()
                            .get("policy.example/owner")
                            .map(String::as_str)
                            == Some("risk")
                        && spec
                            .tolerations
                            .unwrap_or_default()
                            .iter()
                            .any(|t| t.key.as_deref() == Some("dedicated"))
                        && spec
                            .node_selector
                            .unwrap_or_default()
                            .get("kubernetes.io/hostname")
                            == Some(&node)
                        && spec.image_pull_secrets.unwrap_or_default().len() == 1
                        && p.status.as_ref().is_some_and(|s| {
                            s.conditions.as_ref().is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                        })
                });
            Ok(ok.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.log_tail()));
    wait_pipeline(&api, "payments", "running again", &op, running).await;

    let _ = tool(
        &env,
        keys::KUBECTL,
        &["delete", "namespace", &ns, "--wait=false"],
        None,
    );
}
