//! A Pod's status as the kubelet would report it, from what the runner knows.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::process::ExitInfo;

/// One container as the runner sees it.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// Process id while it runs.
    pub pid: Option<i32>,
    /// When the current process started.
    pub started_at: Option<Time>,
    /// Whether its readiness holds.
    pub ready: bool,
    /// Restarts so far.
    pub restart_count: i32,
    /// The previous process's end.
    pub last_exit: Option<ExitInfo>,
    /// Set when the container ended for good (no restart coming).
    pub final_exit: Option<ExitInfo>,
    /// Why it is not running yet: (reason, message).
    pub waiting: Option<(String, String)>,
}

/// Pod-wide facts for its status.
#[derive(Debug, Clone)]
pub struct PodView {
    /// The Pod's address, once it has one.
    pub pod_ip: Option<String>,
    /// The node's address.
    pub host_ip: String,
    /// When the runner took the Pod.
    pub start_time: Time,
    /// Containers in spec order.
    pub containers: Vec<ContainerView>,
}

/// Keeps condition transition times across status updates.
#[derive(Debug, Default)]
pub struct Conditions {
    since: BTreeMap<String, (bool, Time)>,
}

impl Conditions {
    fn condition(&mut self, kind: &str, ok: bool, reason: Option<&str>) -> PodCondition {
        let entry = self
            .since
            .entry(kind.to_owned())
            .or_insert_with(|| (ok, Time(Timestamp::now())));
        if entry.0 != ok {
            *entry = (ok, Time(Timestamp::now()));
        }
        PodCondition {
            type_: kind.to_owned(),
            status: if ok { "True" } else { "False" }.to_owned(),
            last_transition_time: Some(entry.1.clone()),
            reason: reason.map(str::to_owned),
            ..Default::default()
        }
    }
}

/// The phase, from the containers' states.
pub fn phase(view: &PodView) -> &'static str {
    let all_final =
        !view.containers.is_empty() && view.containers.iter().all(|c| c.final_exit.is_some());
    if all_final {
        let ok = view
            .containers
            .iter()
            .all(|c| c.final_exit.as_ref().is_some_and(|e| e.code == Some(0)));
        return if ok { "Succeeded" } else { "Failed" };
    }
    let ever_started = view
        .containers
        .iter()
        .any(|c| c.pid.is_some() || c.last_exit.is_some() || c.final_exit.is_some());
    if ever_started && view.pod_ip.is_some() {
        "Running"
    } else {
        "Pending"
    }
}

/// The Pod status to write.
pub fn pod_status(view: &PodView, conditions: &mut Conditions) -> PodStatus {
    let all_ready = !view.containers.is_empty() && view.containers.iter().all(|c| c.ready);
    let not_ready_reason = (!all_ready).then_some("ContainersNotReady");
    PodStatus {
        phase: Some(phase(view).to_owned()),
        host_ip: Some(view.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: view.host_ip.clone(),
        }]),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(view.start_time.clone()),
        conditions: Some(vec![
            conditions.condition("PodReadyToStartContainers", view.pod_ip.is_some(), None),
            conditions.condition("Initialized", true, None),
            conditions.condition("Ready", all_ready, not_ready_reason),
            conditions.condition("ContainersReady", all_ready, not_ready_reason),
            conditions.condition("PodScheduled", true, None),
        ]),
        container_statuses: Some(view.containers.iter().map(container_status).collect()),
        ..Default::default()
    }
}

fn terminated(exit: &ExitInfo, started_at: Option<Time>) -> ContainerStateTerminated {
    let code = exit.k8s_exit_code();
    ContainerStateTerminated {
        exit_code: code,
        signal: exit.signal,
        reason: Some(if code == 0 { "Completed" } else { "Error" }.to_owned()),
        started_at,
        finished_at: Some(exit.finished_at.clone()),
        ..Default::default()
    }
}

fn container_status(c: &ContainerView) -> ContainerStatus {
    let state = if let Some(exit) = &c.final_exit {
        ContainerState {
            terminated: Some(terminated(exit, c.started_at.clone())),
            ..Default::default()
        }
    } else if c.pid.is_some() {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: c.started_at.clone(),
            }),
            ..Default::default()
        }
    } else {
        let (reason, message) = c
            .waiting
            .clone()
            .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason),
                message: (!message.is_empty()).then_some(message),
            }),
            ..Default::default()
        }
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id: c.pid.map(|pid| format!("riskpipe://{pid}")),
        ready: c.ready,
        started: Some(c.pid.is_some()),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: c.last_exit.as_ref().map(|exit| ContainerState {
            terminated: Some(terminated(exit, None)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(containers: Vec<ContainerView>) -> PodView {
        PodView {
            pod_ip: Some("127.0.1.2".into()),
            host_ip: "127.0.1.1".into(),
            start_time: Time(Timestamp::now()),
            containers,
        }
    }

    fn exit(code: i32) -> ExitInfo {
        ExitInfo {
            container: 0,
            generation: 1,
            code: Some(code),
            signal: None,
            finished_at: Time(Timestamp::now()),
        }
    }

    #[test]
    fn running_and_ready() {
        let mut conditions = Conditions::default();
        let c = ContainerView {
            name: "c".into(),
            pid: Some(42),
            ready: true,
            ..Default::default()
        };
        let status = pod_status(&view(vec![c]), &mut conditions);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        let cs = &status.container_statuses.unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("riskpipe://42"));
    }

    #[test]
    fn final_exits_decide_the_phase() {
        let ok = ContainerView {
            final_exit: Some(exit(0)),
            ..Default::default()
        };
        let bad = ContainerView {
            final_exit: Some(exit(2)),
            ..Default::default()
        };
        assert_eq!(phase(&view(vec![ok.clone()])), "Succeeded");
        assert_eq!(phase(&view(vec![ok, bad])), "Failed");
        assert_eq!(phase(&view(vec![ContainerView::default()])), "Pending");
    }

    #[test]
    fn transition_time_survives_unchanged_updates() {
        let mut conditions = Conditions::default();
        let first = conditions.condition("Ready", false, None);
        let again = conditions.condition("Ready", false, None);
        assert_eq!(first.last_transition_time, again.last_transition_time);
    }
}
