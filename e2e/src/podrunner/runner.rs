//! The runner's main loop: the Node, binding, and one task per Pod.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{IpPool, RunnerConfig, Shared, node, pod_task};
use crate::wait::{WaitTimeout, wait_for};

/// How long registration keeps trying while the apiserver settles.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The Node could not be registered.
    #[error("cannot register node")]
    Register(#[source] WaitTimeout),
}

/// The pod runner: see the [module docs](super).
pub struct PodRunner {
    shared: Arc<Shared>,
}

struct Tracked {
    pods: watch::Sender<Option<Pod>>,
    handle: JoinHandle<()>,
}

impl PodRunner {
    /// A runner that talks to the cluster through `client`.
    pub fn new(client: kube::Client, cfg: RunnerConfig) -> Self {
        let ips = IpPool::new(cfg.ip_prefix);
        Self {
            shared: Arc::new(Shared { client, cfg, ips }),
        }
    }

    /// Registers the Node, then runs Pods until `shutdown` completes; on shutdown each
    /// process gets SIGTERM (SIGKILL after the shutdown grace period). Pods stay bound:
    /// a runner started again on the same node name runs them again.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunnerError> {
        let shared = self.shared;
        let name = shared.cfg.node_name.clone();
        let ip = shared.ips.node_ip();
        let since = Time(Timestamp::now());
        wait_for(
            &format!("node {name} registered"),
            REGISTER_TIMEOUT,
            Duration::from_secs(1),
            || {
                let client = shared.client.clone();
                let (name, since) = (name.clone(), since.clone());
                async move {
                    node::register(&client, &name, ip, &since)
                        .await
                        .map(Some)
                        .map_err(Into::into)
                }
            },
        )
        .await
        .map_err(RunnerError::Register)?;
        tracing::info!(node = %name, %ip, "node registered");
        let heartbeat = tokio::spawn(node::heartbeat(
            shared.client.clone(),
            name.clone(),
            ip,
            since,
        ));

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tracked: HashMap<String, Tracked> = HashMap::new();
        let mut bind_tried: HashSet<String> = HashSet::new();
        let mut listed: Option<HashSet<String>> = None;
        let pods: Api<Pod> = Api::all(shared.client.clone());
        let mut events = watcher::watcher(pods, watcher::Config::default())
            .default_backoff()
            .boxed();
        tokio::pin!(shutdown);
        loop {
            let event = tokio::select! {
                _ = &mut shutdown => break,
                event = events.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "pod watch error; retrying");
                    continue;
                }
                None => break,
            };
            tracked.retain(|_, t| !t.handle.is_finished());
            match event {
                Event::Init => listed = Some(HashSet::new()),
                Event::InitApply(pod) => {
                    if let (Some(seen), Some(uid)) = (listed.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    on_pod(&shared, pod, &mut tracked, &mut bind_tried, &stop_rx).await;
                }
                Event::InitDone => {
                    if let Some(seen) = listed.take() {
                        for (_, gone) in tracked.extract_if(|uid, _| !seen.contains(uid)) {
                            gone.pods.send_replace(None);
                        }
                    }
                }
                Event::Apply(pod) => {
                    on_pod(&shared, pod, &mut tracked, &mut bind_tried, &stop_rx).await
                }
                Event::Delete(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    bind_tried.remove(&uid);
                    if let Some(gone) = tracked.remove(&uid) {
                        gone.pods.send_replace(None);
                    }
                }
            }
        }
        tracing::info!("shutting down: stopping every pod process");
        stop_tx.send_replace(true);
        let deadline = shared.cfg.shutdown_grace + Duration::from_secs(10);
        for (_, t) in tracked {
            if tokio::time::timeout(deadline, t.handle).await.is_err() {
                tracing::warn!("a pod task did not stop in time");
            }
        }
        heartbeat.abort();
        Ok(())
    }
}

async fn on_pod(
    shared: &Arc<Shared>,
    pod: Pod,
    tracked: &mut HashMap<String, Tracked>,
    bind_tried: &mut HashSet<String>,
    stop: &watch::Receiver<bool>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    match node_name {
        None => {
            if should_bind(&shared.cfg, &pod) && bind_tried.insert(uid) {
                bind(shared, &pod).await;
            }
        }
        Some(node) if node == shared.cfg.node_name => {
            if let Some(t) = tracked.get(&uid) {
                t.pods.send_replace(Some(pod));
            } else if is_finished(&pod) && pod.metadata.deletion_timestamp.is_none() {
                // A Pod that ended before this runner started: like a kubelet, leave it.
            } else {
                let (tx, rx) = watch::channel(Some(pod));
                let handle = tokio::spawn(pod_task::run(shared.clone(), rx, stop.clone()));
                tracked.insert(uid, Tracked { pods: tx, handle });
            }
        }
        Some(_) => {}
    }
}

/// Succeeded or Failed: its containers are not run again.
fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Unscheduled, not being deleted, meant for the default scheduler, and every
/// container a riskpipe image.
fn should_bind(cfg: &RunnerConfig, pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    pod.metadata.deletion_timestamp.is_none()
        && spec
            .scheduler_name
            .as_deref()
            .is_none_or(|s| s == "default-scheduler")
        && !spec.containers.is_empty()
        && spec
            .containers
            .iter()
            .all(|c| c.image.as_deref().is_some_and(|i| cfg.images.handles(i)))
}

/// Binds `pod` to this node, as a scheduler does (the Binding subresource).
async fn bind(shared: &Shared, pod: &Pod) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "namespace": ns, "uid": pod.metadata.uid },
        "target": { "apiVersion": "v1", "kind": "Node", "name": shared.cfg.node_name },
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), node = %shared.cfg.node_name, "bound")
        }
        Err(err) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "bind failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podrunner::ImageMap;

    fn pod(images: &[&str], scheduler: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p" },
            "spec": {
                "schedulerName": scheduler,
                "containers": images.iter().enumerate()
                    .map(|(i, image)| json!({ "name": format!("c{i}"), "image": image }))
                    .collect::<Vec<_>>(),
            },
        }))
        .unwrap()
    }

    #[test]
    fn binds_only_pods_made_of_riskpipe_images_for_the_default_scheduler() {
        let cfg = RunnerConfig::new("n", ImageMap::new(vec![]), "/tmp/pods");
        assert!(should_bind(&cfg, &pod(&["riskpipe-worker:dev"], None)));
        assert!(should_bind(
            &cfg,
            &pod(
                &["r/riskpipe-worker:1", "riskpipe-operator"],
                Some("default-scheduler")
            )
        ));
        assert!(!should_bind(
            &cfg,
            &pod(&["riskpipe-worker:dev", "nginx"], None)
        ));
        assert!(!should_bind(
            &cfg,
            &pod(&["riskpipe-worker:dev"], Some("other"))
        ));
        assert!(!should_bind(&cfg, &pod(&[], None)));
    }
}
