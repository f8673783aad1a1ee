//! One task per Pod on this node: lays out its volumes, runs its containers as
//! processes, probes them, restarts them per the restart policy, reports status, and
//! stops them when the Pod is deleted.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::plan::{ContainerPlan, PodPlace, plan_container};
use super::probe::{self, ProbeSpec};
use super::process::{self, ExitInfo, Sig};
use super::status::{Conditions, ContainerView, PodView, pod_status};
use super::{KILL_ANNOTATION, Shared, volumes};

/// How often restarts and probes are checked.
const TICK: Duration = Duration::from_millis(200);
/// After SIGKILL, how long to wait for the exit to be reported.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// A process that ran this long had its restart back-off reset.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

struct Ctr {
    spec: Container,
    view: ContainerView,
    launch: Option<(PathBuf, ContainerPlan)>,
    generation: u32,
    probe: Option<ProbeSpec>,
    successes: u32,
    failures: u32,
    next_probe: Option<Instant>,
    restart_at: Option<Instant>,
    backoff: Duration,
    started: Option<Instant>,
}

/// Runs the Pod that `pods` carries until it is deleted, gone from the API, or the
/// runner shuts down. `None` on `pods` means the Pod is gone.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut pods: watch::Receiver<Option<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(pod) = pods.borrow_and_update().clone() else {
        return;
    };
    let mut task = match PodTask::new(shared, pod) {
        Ok(task) => task,
        Err(err) => {
            tracing::error!(error = %err, "cannot take pod");
            return;
        }
    };
    task.main_loop(&mut pods, &mut shutdown).await;
    task.shared.ips.release(&task.uid);
}

struct PodTask {
    shared: Arc<Shared>,
    pod: Pod,
    uid: String,
    name: String,
    api: Api<Pod>,
    place: PodPlace,
    ctrs: Vec<Ctr>,
    exits_tx: mpsc::UnboundedSender<ExitInfo>,
    exits_rx: mpsc::UnboundedReceiver<ExitInfo>,
    conditions: Conditions,
    start_time: Time,
    last_published: Option<serde_json::Value>,
    kill_seen: Option<String>,
    prepared: bool,
    next_setup: Instant,
    stopping: bool,
}

impl PodTask {
    fn new(shared: Arc<Shared>, pod: Pod) -> anyhow::Result<Self> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let preferred: Option<Ipv4Addr> = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let pod_ip = shared.ips.allocate(&uid, preferred)?;
        let short_uid: String = uid.chars().take(8).collect();
        let place = PodPlace {
            pod_ip,
            host_ip: shared.ips.node_ip(),
            node_name: shared.cfg.node_name.clone(),
            pod_dir: shared.cfg.pods_dir.join(format!("{ns}_{name}_{short_uid}")),
        };
        tracing::info!(pod = %format!("{ns}/{name}"), ip = %pod_ip, dir = %place.pod_dir.display(), "taking pod");
        let ctrs = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| Ctr {
                spec: c.clone(),
                view: ContainerView {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    ..Default::default()
                },
                launch: None,
                generation: 0,
                probe: None,
                successes: 0,
                failures: 0,
                next_probe: None,
                restart_at: None,
                backoff: shared.cfg.restart_backoff,
                started: None,
            })
            .collect();
        if pod
            .spec
            .as_ref()
            .is_some_and(|s| s.init_containers.as_ref().is_some_and(|i| !i.is_empty()))
        {
            tracing::warn!(pod = %name, "init containers are not run by the pod runner; skipping them");
        }
        let kill_seen = annotation(&pod, KILL_ANNOTATION);
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        Ok(Self {
            api: Api::namespaced(shared.client.clone(), &ns),
            shared,
            pod,
            uid,
            name,
            place,
            ctrs,
            exits_tx,
            exits_rx,
            conditions: Conditions::default(),
            start_time: Time(Timestamp::now()),
            last_published: None,
            kill_seen,
            prepared: false,
            next_setup: Instant::now(),
            stopping: false,
        })
    }

    async fn main_loop(
        &mut self,
        pods: &mut watch::Receiver<Option<Pod>>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if self.pod.metadata.deletion_timestamp.is_some() {
                let grace = deletion_grace(&self.pod);
                self.terminate(grace).await;
                self.finish_deleted().await;
                return;
            }
            self.publish().await;
            tokio::select! {
                changed = pods.changed() => {
                    let next = if changed.is_ok() { pods.borrow_and_update().clone() } else { None };
                    match next {
                        Some(pod) => {
                            self.pod = pod;
                            self.check_kill_request();
                        }
                        None => {
                            tracing::info!(pod = %self.name, "pod is gone from the API; stopping its processes");
                            self.terminate(self.shared.cfg.shutdown_grace).await;
                            return;
                        }
                    }
                }
                _ = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                    self.terminate(self.shared.cfg.shutdown_grace).await;
                    return;
                }
                Some(exit) = self.exits_rx.recv() => self.on_exit(exit),
                _ = tick.tick() => self.on_tick().await,
            }
        }
    }

    /// Fetches what the Pod refers to, lays out volumes and plans each container.
    async fn prepare(&mut self) -> Result<(), (String, String)> {
        let refs = volumes::fetch_refs(&self.shared.client, &self.pod)
            .await
            .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
        let dirs = volumes::lay_out(
            &self.pod,
            &self.place,
            &refs,
            &self.shared.cfg.pods_dir.join("claims"),
        )
        .map_err(|e| ("CreateContainerConfigError".to_owned(), format!("{e:#}")))?;
        for ctr in &mut self.ctrs {
            let image = ctr.view.image.clone();
            let program = self.shared.cfg.images.resolve(&image).ok_or_else(|| {
                (
                    "ErrImageNeverPull".to_owned(),
                    format!("no local binary for image {image} (build it, or map it with --image)"),
                )
            })?;
            let plan = plan_container(
                &self.pod,
                &ctr.spec,
                &self.place,
                &dirs,
                &refs,
                &self.shared.cfg.base_env,
            )
            .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
            ctr.probe = ProbeSpec::readiness(&ctr.spec, IpAddr::V4(self.place.pod_ip))
                .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
            ctr.launch = Some((program, plan));
        }
        Ok(())
    }

    fn start(&mut self, i: usize) {
        let log_dir = self.place.pod_dir.clone();
        let exits = self.exits_tx.clone();
        let ctr = &mut self.ctrs[i];
        let Some((program, plan)) = &ctr.launch else {
            return;
        };
        ctr.generation += 1;
        let log = log_dir.join(format!("{}.log", ctr.view.name));
        match process::spawn(program, plan, &log, i, ctr.generation, exits) {
            Ok(pid) => {
                tracing::info!(pod = %self.name, container = %ctr.view.name, pid, program = %program.display(), "started");
                ctr.view.pid = Some(pid);
                ctr.view.started_at = Some(Time(Timestamp::now()));
                ctr.view.waiting = None;
                ctr.view.ready = ctr.probe.is_none();
                ctr.started = Some(Instant::now());
                ctr.successes = 0;
                ctr.failures = 0;
                ctr.next_probe = ctr.probe.as_ref().map(|p| Instant::now() + p.initial_delay);
                ctr.restart_at = None;
            }
            Err(err) => {
                tracing::warn!(pod = %self.name, container = %ctr.view.name, error = %format!("{err:#}"), "start failed");
                ctr.view.waiting = Some(("RunContainerError".into(), format!("{err:#}")));
                ctr.restart_at = Some(Instant::now() + ctr.backoff);
            }
        }
    }

    fn on_exit(&mut self, exit: ExitInfo) {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let (initial, max) = (
            self.shared.cfg.restart_backoff,
            self.shared.cfg.max_restart_backoff,
        );
        let Some(ctr) = self.ctrs.get_mut(exit.container) else {
            return;
        };
        if exit.generation != ctr.generation {
            return;
        }
        tracing::info!(pod = %self.name, container = %ctr.view.name, code = ?exit.code, signal = ?exit.signal, "exited");
        ctr.view.pid = None;
        ctr.view.ready = false;
        let restart = !self.stopping
            && match policy.as_str() {
                "Never" => false,
                "OnFailure" => exit.code != Some(0),
                _ => true,
            };
        if restart {
            if ctr
                .started
                .is_some_and(|t| t.elapsed() >= BACKOFF_RESET_AFTER)
            {
                ctr.backoff = initial;
            }
            ctr.restart_at = Some(Instant::now() + ctr.backoff);
            ctr.view.waiting = Some((
                "CrashLoopBackOff".into(),
                format!("back-off {:?} restarting exited container", ctr.backoff),
            ));
            ctr.backoff = (ctr.backoff * 2).min(max);
            ctr.view.last_exit = Some(exit);
        } else {
            ctr.view.final_exit = Some(exit);
        }
    }

    async fn on_tick(&mut self) {
        if !self.prepared {
            if Instant::now() < self.next_setup {
                return;
            }
            match self.prepare().await {
                Ok(()) => {
                    self.prepared = true;
                    for i in 0..self.ctrs.len() {
                        self.start(i);
                    }
                }
                Err((reason, message)) => {
                    tracing::warn!(pod = %self.name, %reason, %message, "pod not startable yet");
                    for ctr in &mut self.ctrs {
                        ctr.view.waiting = Some((reason.clone(), message.clone()));
                    }
                    self.next_setup = Instant::now() + Duration::from_secs(2);
                }
            }
            return;
        }
        let now = Instant::now();
        for i in 0..self.ctrs.len() {
            if self.ctrs[i].restart_at.is_some_and(|at| at <= now) {
                self.ctrs[i].view.restart_count += 1;
                self.start(i);
            }
        }
        for ctr in &mut self.ctrs {
            let (Some(spec), Some(_), Some(due)) = (&ctr.probe, ctr.view.pid, ctr.next_probe)
            else {
                continue;
            };
            if due > now {
                continue;
            }
            let ok = probe::run_once(&spec.action, spec.timeout).await;
            if ok {
                ctr.successes += 1;
                ctr.failures = 0;
                if ctr.successes >= spec.success_threshold {
                    ctr.view.ready = true;
                }
            } else {
                ctr.failures += 1;
                ctr.successes = 0;
                if ctr.failures >= spec.failure_threshold {
                    ctr.view.ready = false;
                }
            }
            ctr.next_probe = Some(Instant::now() + spec.period);
        }
    }

    /// Acts on a new value of the kill annotation: signals every running container.
    fn check_kill_request(&mut self) {
        let current = annotation(&self.pod, KILL_ANNOTATION);
        if current == self.kill_seen {
            return;
        }
        self.kill_seen = current.clone();
        let Some(request) = current else { return };
        let sig = request
            .split_whitespace()
            .next()
            .and_then(Sig::parse)
            .unwrap_or(Sig::Kill);
        for ctr in &self.ctrs {
            if let Some(pid) = ctr.view.pid {
                tracing::info!(pod = %self.name, container = %ctr.view.name, pid, ?sig, "chaos: signalling on request");
                if let Err(err) = process::signal_group(pid, sig) {
                    tracing::warn!(pod = %self.name, error = %err, "chaos signal failed");
                }
            }
        }
    }

    fn any_running(&self) -> bool {
        self.ctrs.iter().any(|c| c.view.pid.is_some())
    }

    fn signal_all(&self, sig: Sig) {
        for ctr in &self.ctrs {
            if let Some(pid) = ctr.view.pid {
                tracing::info!(pod = %self.name, container = %ctr.view.name, pid, ?sig, "stopping");
                if let Err(err) = process::signal_group(pid, sig) {
                    tracing::warn!(pod = %self.name, error = %err, "signal failed");
                }
            }
        }
    }

    /// SIGTERM to every process, SIGKILL to those still running after `grace`.
    async fn terminate(&mut self, grace: Duration) {
        self.stopping = true;
        for ctr in &mut self.ctrs {
            ctr.restart_at = None;
        }
        if !self.any_running() {
            return;
        }
        self.signal_all(Sig::Term);
        self.await_exits(Instant::now() + grace).await;
        if self.any_running() {
            self.signal_all(Sig::Kill);
            self.await_exits(Instant::now() + KILL_WAIT).await;
        }
    }

    async fn await_exits(&mut self, deadline: Instant) {
        while self.any_running() {
            match tokio::time::timeout_at(deadline, self.exits_rx.recv()).await {
                Ok(Some(exit)) => self.on_exit(exit),
                _ => return,
            }
        }
    }

    /// After a graceful delete: reports the final status, then removes the Pod object
    /// (the kubelet's part of a graceful deletion), guarded by the Pod's uid.
    async fn finish_deleted(&mut self) {
        for ctr in &mut self.ctrs {
            if ctr.view.final_exit.is_none() {
                ctr.view.final_exit = ctr.view.last_exit.clone();
            }
        }
        self.publish().await;
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api.delete(&self.name, &params).await {
            Ok(_) => tracing::info!(pod = %self.name, "pod removed after its processes stopped"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(err) => tracing::warn!(pod = %self.name, error = %err, "final pod delete failed"),
        }
    }

    /// Writes the status if it changed since the last write.
    async fn publish(&mut self) {
        let view = PodView {
            pod_ip: Some(self.place.pod_ip.to_string()),
            host_ip: self.place.host_ip.to_string(),
            start_time: self.start_time.clone(),
            containers: self.ctrs.iter().map(|c| c.view.clone()).collect(),
        };
        let status = pod_status(&view, &mut self.conditions);
        let Ok(json) = serde_json::to_value(&status) else {
            return;
        };
        if self.last_published.as_ref() == Some(&json) {
            return;
        }
        let patch = serde_json::json!({ "status": json });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.last_published = Some(json),
            Err(kube::Error::Api(e)) if e.code == 404 => self.last_published = Some(json),
            Err(err) => {
                tracing::warn!(pod = %self.name, error = %err, "status update failed; will retry")
            }
        }
    }
}

fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
}

/// The grace period of a deletion: what the delete asked for, else the Pod's own.
fn deletion_grace(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_grace_prefers_the_delete_request() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p" },
            "spec": { "terminationGracePeriodSeconds": 7, "containers": [] },
        }))
        .unwrap();
        assert_eq!(deletion_grace(&pod), Duration::from_secs(7));
        pod.metadata.deletion_grace_period_seconds = Some(2);
        assert_eq!(deletion_grace(&pod), Duration::from_secs(2));
        pod.spec = None;
        pod.metadata.deletion_grace_period_seconds = None;
        assert_eq!(deletion_grace(&pod), Duration::from_secs(30));
    }
}
