//! The Node this runner stands for: registered once, kept Ready by a heartbeat.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Field manager of everything the pod runner writes.
pub const FIELD_MANAGER: &str = "riskpipe-podrunner";

/// Heartbeat period: well inside kube-controller-manager's 40 s node grace period.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Creates or updates the Node and marks it Ready since `since`.
pub async fn register(
    client: &kube::Client,
    name: &str,
    ip: Ipv4Addr,
    since: &Time,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "e2e.riskpipe.io/podrunner": "true",
            },
        },
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    nodes.patch(name, &pp, &Patch::Apply(&node)).await?;
    patch_status(&nodes, name, ip, since).await?;
    renew_lease(client, name).await
}

/// Renews the node Lease and the Ready condition every [`HEARTBEAT`], until dropped.
pub async fn heartbeat(client: kube::Client, name: String, ip: Ipv4Addr, since: Time) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        if let Err(err) = renew_lease(&client, &name).await {
            tracing::warn!(node = %name, error = %err, "node lease renewal failed");
        }
        if let Err(err) = patch_status(&nodes, &name, ip, &since).await {
            tracing::warn!(node = %name, error = %err, "node status update failed");
        }
    }
}

async fn patch_status(
    nodes: &Api<Node>,
    name: &str,
    ip: Ipv4Addr,
    since: &Time,
) -> Result<(), kube::Error> {
    let now = Time(Timestamp::now());
    let status = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name },
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "riskpipe pod runner is running",
                "lastHeartbeatTime": now,
                "lastTransitionTime": since,
            }],
            "addresses": [
                { "type": "InternalIP", "address": ip.to_string() },
                { "type": "Hostname", "address": name },
            ],
            "capacity": { "cpu": "2", "memory": "24Gi", "pods": "250" },
            "allocatable": { "cpu": "2", "memory": "24Gi", "pods": "250" },
            "nodeInfo": {
                "architecture": std::env::consts::ARCH,
                "bootID": "",
                "containerRuntimeVersion": "riskpipe-podrunner://local-processes",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "kubeletVersion": concat!("riskpipe-podrunner/", env!("CARGO_PKG_VERSION")),
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "local processes",
                "systemUUID": "",
            },
        },
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    nodes
        .patch_status(name, &pp, &Patch::Apply(&status))
        .await?;
    Ok(())
}

async fn renew_lease(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "namespace": "kube-node-lease" },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": MicroTime(Timestamp::now()),
        },
    });
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    leases.patch(name, &pp, &Patch::Apply(&lease)).await?;
    Ok(())
}
