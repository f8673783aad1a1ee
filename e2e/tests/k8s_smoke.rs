//! The Kubernetes control plane from `e2e/env/up` with the pod runner as its node:
//! readiness, a CRD served after `kubectl apply`, and a StatefulSet whose Pods run as
//! local processes on their own loopback addresses.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::GroupVersionKind;
use riskpipe_e2e::env::TestEnv;
use riskpipe_e2e::podrunner::{Sig, request_kill};
use riskpipe_e2e::wait::wait_for;
use serde_json::json;

#[tokio::test]
async fn apiserver_is_ready() {
    let env = common::env();
    let out = common::kubectl(&env, &["get", "--raw", "/readyz"]).unwrap();
    assert_eq!(out.trim(), "ok");
}

#[tokio::test]
async fn a_crd_applied_with_kubectl_is_served() {
    let env = common::env();
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.e2e.riskpipe.io
spec:
  group: smoke.e2e.riskpipe.io
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget }
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: { type: integer, minimum: 1 }
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crd.yaml");
    std::fs::write(&file, crd).unwrap();
    common::kubectl(&env, &["apply", "-f", &file.display().to_string()]).unwrap();
    common::kubectl(
        &env,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/widgets.smoke.e2e.riskpipe.io",
        ],
    )
    .unwrap();

    let client = env.kube_client().await.unwrap();
    let ns = create_namespace(&client, "e2e-crd").await;
    let gvk = GroupVersionKind::gvk("smoke.e2e.riskpipe.io", "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::from_gvk(&gvk));
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "smoke.e2e.riskpipe.io/v1",
        "kind": "Widget",
        "metadata": { "name": "w1" },
        "spec": { "size": 3 },
    }))
    .unwrap();
    // Discovery of a new CRD can lag Established by a moment: wait for the create.
    wait_for(
        "Widget w1 created",
        common::K8S_DEADLINE,
        common::POLL,
        || {
            let (widgets, widget) = (widgets.clone(), widget.clone());
            async move { Ok(Some(widgets.create(&PostParams::default(), &widget).await?)) }
        },
    )
    .await
    .unwrap();
    let got = widgets.get("w1").await.unwrap();
    assert_eq!(got.data["spec"]["size"], 3);
    // The schema is enforced: size must be >= 1.
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "smoke.e2e.riskpipe.io/v1", "kind": "Widget",
        "metadata": { "name": "w2" }, "spec": { "size": 0 },
    }))
    .unwrap();
    assert!(widgets.create(&PostParams::default(), &bad).await.is_err());
    delete_namespace(&client, &ns).await;
}

async fn create_namespace(client: &kube::Client, prefix: &str) -> String {
    let name = common::unique(prefix);
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

async fn delete_namespace(client: &kube::Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

fn statefulset(name: &str, events_dir: &Path) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": 3,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "helper",
                        "image": "registry.example/riskpipe-e2e-helper:dev",
                        "args": ["--listen", "$(POD_IP):8080", "--events", "/events/$(POD_NAME).log"],
                        "env": [
                            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                        ],
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                        "readinessProbe": {
                            "httpGet": { "path": "/ready", "port": "http" },
                            "periodSeconds": 1,
                        },
                        "volumeMounts": [{ "name": "events", "mountPath": "/events" }],
                    }],
                    "volumes": [{ "name": "events", "hostPath": { "path": events_dir.display().to_string() } }],
                },
            },
        },
    }))
    .unwrap()
}

async fn ready_replicas(sts: &Api<StatefulSet>, name: &str) -> anyhow::Result<i32> {
    let s = sts.get(name).await?;
    Ok(s.status.and_then(|s| s.ready_replicas).unwrap_or(0))
}

/// `(pod name, IP, pid from the helper's own events file)` of each Pod of the app.
async fn pod_processes(
    pods: &Api<Pod>,
    app: &str,
    events_dir: &Path,
) -> anyhow::Result<Vec<(String, Ipv4Addr, i32)>> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    let mut out = Vec::new();
    for pod in list {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ip: Ipv4Addr = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .ok_or_else(|| anyhow::anyhow!("{name} has no IP"))?
            .parse()?;
        let pid = last_pid(&events_dir.join(format!("{name}.log")), "started")?;
        out.push((name, ip, pid));
    }
    out.sort();
    Ok(out)
}

/// The pid on the last line of `file` that starts with `what`.
fn last_pid(file: &Path, what: &str) -> anyhow::Result<i32> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    text.lines()
        .rev()
        .find(|l| l.starts_with(what))
        .and_then(|l| l.rsplit("pid=").next())
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {what} line in {}", file.display()))
}

fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn statefulset_pods_run_as_processes_and_scale_down_with_sigterm() {
    let env: TestEnv = common::env();
    let client = env.kube_client().await.unwrap();
    let ns = create_namespace(&client, "e2e-sts").await;
    let events = tempfile::tempdir().unwrap();
    let name = "helper";
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // The namespace's default ServiceAccount comes from the controller manager; the
    // StatefulSet controller retries until it exists.
    sts.create(&PostParams::default(), &statefulset(name, events.path()))
        .await
        .unwrap();

    wait_for(
        "3 ready replicas",
        common::K8S_DEADLINE,
        common::POLL,
        || {
            let sts = sts.clone();
            async move { Ok((ready_replicas(&sts, name).await? == 3).then_some(())) }
        },
    )
    .await
    .unwrap();

    let procs = pod_processes(&pods, name, events.path()).await.unwrap();
    assert_eq!(procs.len(), 3, "{procs:?}");
    let ips: BTreeSet<Ipv4Addr> = procs.iter().map(|p| p.1).collect();
    assert_eq!(ips.len(), 3, "distinct addresses: {procs:?}");
    let prefix = env
        .get(riskpipe_e2e::env::keys::POD_IP_PREFIX)
        .unwrap_or("127.0.1");
    for (pod, ip, pid) in &procs {
        assert!(
            ip.to_string().starts_with(&format!("{prefix}.")),
            "{pod} is on {prefix}.N: {ip}"
        );
        assert!(alive(*pid), "{pod}'s process {pid} runs");
        // The process serves on its own address, as its args said ($(POD_IP) expanded).
        tokio::net::TcpStream::connect((*ip, 8080))
            .await
            .unwrap_or_else(|e| panic!("{pod} does not listen on {ip}:8080: {e}"));
    }

    // Chaos: kill pod-0's process; the runner restarts it and counts the restart.
    let first = format!("{name}-0");
    request_kill(&client, &ns, &first, Sig::Kill).await.unwrap();
    wait_for(
        "helper-0 restarted and ready",
        common::K8S_DEADLINE,
        common::POLL,
        || {
            let (pods, first) = (pods.clone(), first.clone());
            async move {
                let pod = pods.get(&first).await?;
                Ok((restarts(&pod) >= 1 && is_ready(&pod)).then_some(()))
            }
        },
    )
    .await
    .unwrap();
    let restarted_pid = last_pid(&events.path().join(format!("{first}.log")), "started").unwrap();
    assert_ne!(restarted_pid, procs[0].2, "a new process after the kill");
    assert!(!alive(procs[0].2), "the killed process is gone");

    // Scale to 1: helper-2 and helper-1 get SIGTERM, exit, and their Pods go away.
    sts.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": 1 } })),
    )
    .await
    .unwrap();
    wait_for(
        "scaled down to 1 pod",
        common::K8S_DEADLINE,
        common::POLL,
        || {
            let (pods, sts) = (pods.clone(), sts.clone());
            async move {
                let left = pods
                    .list(&ListParams::default().labels(&format!("app={name}")))
                    .await?;
                Ok((left.items.len() == 1 && ready_replicas(&sts, name).await? == 1).then_some(()))
            }
        },
    )
    .await
    .unwrap();
    for (pod, _, pid) in &procs[1..] {
        let log = std::fs::read_to_string(events.path().join(format!("{pod}.log"))).unwrap();
        assert!(
            log.contains(&format!("sigterm pid={pid}")),
            "{pod} got SIGTERM: {log}"
        );
        assert!(
            log.contains(&format!("exit pid={pid}")),
            "{pod} exited cleanly: {log}"
        );
        assert!(!alive(*pid), "{pod}'s process {pid} is gone");
    }
    let remaining = pods.get(&first).await.unwrap();
    assert!(is_ready(&remaining));

    // Deleting the namespace stops the last process too (graceful delete, SIGTERM).
    sts.delete(name, &DeleteParams::default()).await.unwrap();
    delete_namespace(&client, &ns).await;
    wait_for(
        "last process stopped",
        Duration::from_secs(60),
        common::POLL,
        || async move { Ok((!alive(restarted_pid)).then_some(())) },
    )
    .await
    .unwrap();
}
