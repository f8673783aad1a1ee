//! A pod runner in place of a kubelet (and of a scheduler, for its own Pods).
//!
//! It registers one Node and keeps it Ready; binds every unscheduled Pod whose
//! containers are riskpipe images (see [`ImageMap`]) to that Node; and runs each
//! container of its Pods as a local process on the Pod's own loopback address
//! (`127.0.1.N`), with the Pod's args and env (downward API filled in), its volumes
//! mapped to folders, and its readiness probe. It reports IP, phase, conditions and
//! restarts in the Pod's status, restarts exited containers per the restart policy,
//! sends SIGTERM on delete and SIGKILL after the grace period, and signals a Pod's
//! processes on request ([`request_kill`]) for chaos tests.

mod images;
mod ips;
mod node;
mod plan;
mod pod_task;
mod probe;
mod process;
mod runner;
mod status;
mod volumes;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};

pub use images::{ImageMap, image_base_name};
pub use ips::IpPool;
pub use node::FIELD_MANAGER;
pub use plan::{ContainerPlan, PlanError, PodPlace, PodRefs, expand, plan_container, remap_path};
pub use probe::{ProbeAction, ProbeSpec};
pub use process::Sig;
pub use runner::{PodRunner, RunnerError};

/// Annotation that asks the runner to signal a Pod's processes: its value is a
/// signal name (`SIGKILL`, `SIGTERM`, `SIGINT`) optionally followed by anything that
/// makes it new (a counter, a time); each new value is acted on once.
pub const KILL_ANNOTATION: &str = "e2e.riskpipe.io/kill";

/// How the runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Name of the Node it registers.
    pub node_name: String,
    /// First three octets of the Pod addresses; the node is `.1`, Pods `.2`–`.254`.
    pub ip_prefix: [u8; 3],
    /// Which binary runs which image.
    pub images: ImageMap,
    /// Folder for each Pod's logs (`<ns>_<name>_<uid8>/<container>.log`), its volumes,
    /// and (under `claims/`) PersistentVolumeClaim folders.
    pub pods_dir: PathBuf,
    /// Env given to every process before the container's own (e.g. `KUBECONFIG`).
    pub base_env: Vec<(String, String)>,
    /// First delay before restarting an exited container; doubles per crash.
    pub restart_backoff: Duration,
    /// Longest restart delay.
    pub max_restart_backoff: Duration,
    /// Grace period for processes when the runner itself stops or a Pod vanishes.
    pub shutdown_grace: Duration,
}

impl RunnerConfig {
    /// Defaults for a node called `node_name` keeping Pods in `pods_dir`.
    pub fn new(
        node_name: impl Into<String>,
        images: ImageMap,
        pods_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            node_name: node_name.into(),
            ip_prefix: [127, 0, 1],
            images,
            pods_dir: pods_dir.into(),
            base_env: Vec::new(),
            restart_backoff: Duration::from_secs(1),
            max_restart_backoff: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What every Pod task shares.
struct Shared {
    client: kube::Client,
    cfg: RunnerConfig,
    ips: IpPool,
}

/// Asks the pod runner to send `sig` to every process of Pod `namespace/name`, by
/// setting [`KILL_ANNOTATION`] to a new value. The runner restarts the processes per
/// the Pod's restart policy, which shows as a higher `restartCount`.
pub async fn request_kill(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    sig: Sig,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let signal = match sig {
        Sig::Kill => "SIGKILL",
        Sig::Term => "SIGTERM",
        Sig::Int => "SIGINT",
    };
    let nonce = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
    let patch = serde_json::json!({
        "metadata": { "annotations": { KILL_ANNOTATION: format!("{signal} {nonce}") } }
    });
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
