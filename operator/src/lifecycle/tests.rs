//! The lifecycle walked step by step, as the reconcile would, with the StatefulSet's
//! reaction simulated in between. Every step starts from the status alone, which is
//! what a restarted operator has.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use riskpipe_crds::{
    Duration, JobState, PipelineState, RiskPipelineSpec, RiskPipelineStatus, RolloutPhase,
    SavepointPhase, SavepointTrigger, SourceSpec, UpgradeMode,
};

use super::*;

const OLD: &str = "hash-old";
const NEW: &str = "hash-new";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn spec(parallelism: i32, mode: UpgradeMode) -> RiskPipelineSpec {
    let mut s = RiskPipelineSpec::with_source(SourceSpec::kafka());
    s.parallelism = parallelism;
    s.job.upgrade_mode = mode;
    s
}

fn running(hash: &str, parallelism: i32) -> Workload {
    Workload {
        hash: Some(hash.into()),
        parallelism: Some(parallelism),
        restore_from: None,
        spec_replicas: parallelism,
        replicas: parallelism,
        ready_replicas: parallelism,
        rolled_out: true,
    }
}

/// What the StatefulSet controller and the workers make of `plan` once they settle.
fn settle(hash: &str, parallelism: i32, plan: &WorkloadPlan) -> Workload {
    Workload {
        hash: Some(hash.into()),
        parallelism: Some(parallelism),
        restore_from: plan.restore_from.clone(),
        spec_replicas: plan.replicas,
        replicas: plan.replicas,
        ready_replicas: plan.replicas,
        rolled_out: true,
    }
}

struct Sim {
    spec: RiskPipelineSpec,
    hash: &'static str,
    status: RiskPipelineStatus,
    workload: Option<Workload>,
    progress: Option<Progress>,
    now: i64,
}

impl Sim {
    fn new(spec: RiskPipelineSpec, workload: Workload) -> Self {
        Self {
            spec,
            hash: OLD,
            status: RiskPipelineStatus::default(),
            workload: Some(workload),
            progress: None,
            now: 0,
        }
    }

    /// One reconcile: decide, write the status, let the workload settle on the plan.
    fn reconcile(&mut self) -> Decision {
        self.now += 5;
        let obs = Observed {
            pipeline: "payments",
            spec: &self.spec,
            desired_hash: self.hash,
            status: &self.status,
            workload: self.workload.clone(),
            savepoint: self.progress.take(),
            changed: vec!["rules".into()],
            metrics: None,
            partitions: None,
            now: at(self.now),
        };
        let d = decide(&obs);
        self.status.rollout = d.rollout.clone();
        self.status.savepoints = d.savepoints.clone();
        self.status.last_savepoint_trigger_nonce = d.last_nonce;
        if let Some(plan) = &d.plan {
            self.workload = Some(settle(self.hash, self.spec.parallelism, plan));
        }
        d
    }

    fn phase(&self) -> Option<RolloutPhase> {
        self.status.rollout.as_ref().map(|r| r.phase)
    }

    fn reasons(d: &Decision) -> Vec<&'static str> {
        d.notes.iter().map(|n| n.reason).collect()
    }
}

#[test]
fn steady_pipeline_applies_its_spec_and_stays_running() {
    let mut sim = Sim::new(spec(2, UpgradeMode::Savepoint), running(OLD, 2));
    let d = sim.reconcile();
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 2,
            restore_from: None
        })
    );
    assert_eq!(d.state, PipelineState::Running);
    assert!(d.notes.is_empty() && d.trigger.is_none() && !d.progressing());
}

#[test]
fn savepoint_upgrade_holds_old_workers_until_the_savepoint_completes() {
    let mut sim = Sim::new(spec(2, UpgradeMode::Savepoint), running(OLD, 2));
    sim.hash = NEW;

    let d = sim.reconcile();
    assert_eq!(Sim::reasons(&d), ["RolloutStarted"]);
    assert_eq!(
        d.plan, None,
        "the old workers must keep running their config"
    );
    let req = d.trigger.clone().expect("an upgrade savepoint");
    assert_eq!(req.trigger, SavepointTrigger::Upgrade);
    assert!(
        req.path
            .starts_with("/var/lib/riskpipe/savepoints/payments/savepoint-")
    );
    assert_eq!(sim.phase(), Some(RolloutPhase::Savepointing));
    assert_eq!(d.state, PipelineState::Upgrading);

    sim.progress = Some(Progress::InProgress);
    let d = sim.reconcile();
    assert_eq!((d.plan.clone(), d.trigger.clone()), (None, None));
    assert_eq!(sim.workload.as_ref().unwrap().hash.as_deref(), Some(OLD));

    // Completed: stop every old worker before a new one starts, so no partition is
    // processed twice.
    sim.progress = Some(Progress::Completed);
    let d = sim.reconcile();
    assert_eq!(
        Sim::reasons(&d),
        ["SavepointCompleted", "UpgradeSavepointCompleted"]
    );
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 0,
            restore_from: Some(req.path.clone())
        })
    );
    assert_eq!(sim.phase(), Some(RolloutPhase::Stopping));

    let d = sim.reconcile();
    assert_eq!(sim.phase(), Some(RolloutPhase::Starting));
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 2,
            restore_from: Some(req.path.clone())
        })
    );

    let d = sim.reconcile();
    assert_eq!(sim.phase(), Some(RolloutPhase::Finalizing));
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 2,
            restore_from: None
        })
    );

    let d = sim.reconcile();
    assert_eq!(Sim::reasons(&d), ["RolloutCompleted"]);
    assert_eq!(sim.phase(), None);
    assert_eq!(d.state, PipelineState::Running);
    let sp = &sim.status.savepoints[0];
    assert_eq!(
        (sp.phase, sp.trigger),
        (SavepointPhase::Completed, SavepointTrigger::Upgrade)
    );
}

#[test]
fn last_state_without_rescale_rolls_in_place() {
    let mut sim = Sim::new(spec(2, UpgradeMode::LastState), running(OLD, 2));
    sim.hash = NEW;
    let d = sim.reconcile();
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 2,
            restore_from: None
        })
    );
    assert!(d.trigger.is_none());
    assert_eq!(sim.phase(), Some(RolloutPhase::Starting));
    let d = sim.reconcile();
    assert_eq!(Sim::reasons(&d), ["RolloutCompleted"]);
}

#[test]
fn last_state_rescale_moves_partitions_through_a_savepoint() {
    let mut sim = Sim::new(spec(3, UpgradeMode::LastState), running(OLD, 2));
    let d = sim.reconcile();
    assert_eq!(sim.phase(), Some(RolloutPhase::Savepointing));
    assert!(
        d.notes[0].message.contains("parallelism 2 → 3"),
        "{:?}",
        d.notes
    );
}

#[test]
fn stateless_rescale_stops_then_starts_without_restore() {
    let mut sim = Sim::new(spec(3, UpgradeMode::Stateless), running(OLD, 2));
    let d = sim.reconcile();
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 0,
            restore_from: None
        })
    );
    let d = sim.reconcile();
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 3,
            restore_from: None
        })
    );
    let d = sim.reconcile();
    assert_eq!(Sim::reasons(&d), ["RolloutCompleted"]);
}

#[test]
fn suspend_takes_a_savepoint_and_resume_restores_it() {
    let mut s = spec(2, UpgradeMode::Savepoint);
    s.job.state = JobState::Suspended;
    let mut sim = Sim::new(s, running(OLD, 2));
    let d = sim.reconcile();
    let path = d.trigger.clone().unwrap().path;
    sim.progress = Some(Progress::Completed);
    sim.reconcile(); // stopping
    let d = sim.reconcile();
    assert!(Sim::reasons(&d).contains(&"Suspended"), "{:?}", d.notes);
    assert_eq!(d.state, PipelineState::Suspended);
    assert_eq!(sim.workload.as_ref().unwrap().replicas, 0);
    let d = sim.reconcile();
    assert_eq!(
        (d.state, d.notes.len()),
        (PipelineState::Suspended, 0),
        "suspended is steady"
    );

    sim.spec.job.state = JobState::Running;
    let d = sim.reconcile();
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 2,
            restore_from: Some(path)
        })
    );
    sim.reconcile(); // finalizing
    let d = sim.reconcile();
    assert_eq!(Sim::reasons(&d), ["RolloutCompleted"]);
}

#[test]
fn a_failed_upgrade_savepoint_is_retried_with_backoff_then_reported() {
    let mut sim = Sim::new(spec(2, UpgradeMode::Savepoint), running(OLD, 2));
    sim.hash = NEW;
    sim.reconcile();
    sim.progress = Some(Progress::Failed("worker 1 unreachable".into()));
    let d = sim.reconcile();
    assert_eq!(d.notes[0].reason, "SavepointFailed");
    assert!(d.notes[0].warning && d.notes[0].message.contains("worker 1 unreachable"));
    assert!(
        d.trigger.is_none(),
        "the first retry waits {:?}",
        savepoints::FIRST_BACKOFF
    );
    sim.now += 10;
    let d = sim.reconcile();
    assert!(d.trigger.is_some(), "retried after the backoff");
    for _ in 1..savepoints::MAX_ATTEMPTS {
        sim.progress = Some(Progress::Failed("disk full".into()));
        sim.reconcile();
        sim.now += 600;
        sim.reconcile();
    }
    let d = sim.reconcile();
    assert_eq!(d.state, PipelineState::Degraded);
    assert!(
        d.stuck.as_deref().unwrap().contains("upgradeMode"),
        "{:?}",
        d.stuck
    );
    assert_eq!(d.plan, None, "the old workers keep running");
    assert_eq!(sim.workload.as_ref().unwrap().hash.as_deref(), Some(OLD));
}

#[test]
fn a_restarted_operator_resumes_the_rollout_from_the_status() {
    let mut sim = Sim::new(spec(2, UpgradeMode::Savepoint), running(OLD, 2));
    sim.hash = NEW;
    sim.reconcile();
    sim.progress = Some(Progress::Completed);
    sim.reconcile();
    // A new operator: only the status and the StatefulSet survive.
    let mut fresh = Sim::new(sim.spec.clone(), sim.workload.clone().unwrap());
    fresh.hash = NEW;
    fresh.status = sim.status.clone();
    fresh.now = sim.now;
    fresh.reconcile();
    fresh.reconcile();
    let d = fresh.reconcile();
    assert_eq!(Sim::reasons(&d), ["RolloutCompleted"]);
    assert_eq!(fresh.workload.unwrap().hash.as_deref(), Some(NEW));
}

#[test]
fn an_edit_during_a_rollout_joins_it() {
    let mut sim = Sim::new(spec(2, UpgradeMode::Savepoint), running(OLD, 2));
    sim.hash = NEW;
    sim.reconcile();
    sim.hash = "hash-newer";
    sim.progress = Some(Progress::Completed);
    sim.reconcile();
    assert_eq!(
        sim.status.rollout.as_ref().unwrap().target_hash,
        "hash-newer"
    );
    assert_eq!(
        sim.workload.as_ref().unwrap().hash.as_deref(),
        Some("hash-newer")
    );
}

#[test]
fn nonce_triggers_one_savepoint_and_is_acknowledged() {
    let mut sim = Sim::new(spec(2, UpgradeMode::Savepoint), running(OLD, 2));
    sim.spec.savepoint_trigger_nonce = Some(7);
    let d = sim.reconcile();
    let req = d.trigger.unwrap();
    assert_eq!((req.trigger, req.nonce), (SavepointTrigger::Nonce, Some(7)));
    assert_eq!(d.last_nonce, Some(7));
    sim.progress = Some(Progress::Completed);
    let d = sim.reconcile();
    assert!(d.trigger.is_none(), "the same nonce must not trigger again");
    assert_eq!(
        d.plan,
        Some(WorkloadPlan {
            replicas: 2,
            restore_from: None
        }),
        "a nonce never rolls workers"
    );
}

#[test]
fn schedule_triggers_when_due() {
    let mut sim = Sim::new(spec(1, UpgradeMode::Savepoint), running(OLD, 1));
    sim.spec.savepoints.schedule = Some(Duration::from_millis(60_000));
    assert!(sim.reconcile().trigger.is_some(), "none yet: due at once");
    sim.progress = Some(Progress::Completed);
    assert!(sim.reconcile().trigger.is_none());
    sim.now += 60;
    assert_eq!(
        sim.reconcile().trigger.unwrap().trigger,
        SavepointTrigger::Schedule
    );
}

#[test]
fn first_deployment_restores_the_initial_savepoint_then_finalizes() {
    let mut sim = Sim::new(spec(2, UpgradeMode::Savepoint), running(OLD, 2));
    sim.workload = None;
    sim.spec.initial_savepoint_path = Some("/sp/seed".into());
    let d = sim.reconcile();
    assert_eq!(Sim::reasons(&d), ["Created"]);
    assert_eq!(d.plan.unwrap().restore_from.as_deref(), Some("/sp/seed"));
    let d = sim.reconcile();
    assert_eq!(d.plan.unwrap().restore_from, None);
    assert_eq!(Sim::reasons(&sim.reconcile()), ["RolloutCompleted"]);
}

fn entry(secs: i64, phase: SavepointPhase) -> riskpipe_crds::SavepointStatus {
    riskpipe_crds::SavepointStatus {
        path: format!("/sp/{secs}"),
        trigger: SavepointTrigger::Schedule,
        trigger_nonce: None,
        phase,
        started_at: Time(at(secs)),
        completed_at: None,
        message: None,
        requests: Vec::new(),
    }
}

#[test]
fn retention_bounds_count_and_age_but_keeps_the_newest_completed() {
    use SavepointPhase::*;
    let history = vec![
        entry(0, Completed),
        entry(10, Completed),
        entry(20, Failed),
        entry(30, Completed),
        entry(40, InProgress),
    ];
    let (kept, gone) =
        savepoints::retain(&history, 3, std::time::Duration::from_secs(1000), at(100));
    let paths: Vec<_> = kept.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/sp/20", "/sp/30", "/sp/40"]);
    assert_eq!(gone.len(), 2);
    // Everything is too old, but the newest completed and the one in progress stay.
    let (kept, _) = savepoints::retain(&history, 10, std::time::Duration::from_secs(1), at(100));
    let paths: Vec<_> = kept.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/sp/30", "/sp/40"]);
}

#[test]
fn backoff_doubles_and_is_capped() {
    assert_eq!(savepoints::backoff(1), savepoints::FIRST_BACKOFF);
    assert_eq!(savepoints::backoff(2), savepoints::FIRST_BACKOFF * 2);
    assert_eq!(savepoints::backoff(30), savepoints::MAX_BACKOFF);
}

#[test]
fn a_rescale_while_new_workers_start_begins_again_safely() {
    let mut sim = Sim::new(spec(2, UpgradeMode::LastState), running(OLD, 2));
    sim.hash = NEW;
    sim.reconcile();
    assert_eq!(sim.phase(), Some(RolloutPhase::Starting));
    // The workers are not ready yet when the parallelism changes.
    sim.workload.as_mut().unwrap().ready_replicas = 0;
    sim.spec.parallelism = 3;
    let d = sim.reconcile();
    assert_eq!(
        sim.phase(),
        Some(RolloutPhase::Savepointing),
        "partitions move: through a savepoint"
    );
    assert_eq!(
        d.plan, None,
        "no worker starts with the new assignment beside the old ones"
    );
}

#[test]
fn disposal_keeps_only_the_parts_to_retry_and_reports_a_pending_retry_once() {
    use riskpipe_crds::WorkerSavepointRequest;
    use savepoints::{PartDisposal, disposal};
    let req = |ordinal| WorkerSavepointRequest {
        ordinal,
        id: "sp-1".into(),
    };
    let mut e = entry(0, SavepointPhase::Completed);
    e.requests = vec![req(0), req(1), req(2)];
    let cause = "retention: at most 2 savepoints, none older than 7d";

    // Every part gone: the entry leaves, a Normal Event with the cause.
    let all = [
        (req(0), PartDisposal::Deleted),
        (req(1), PartDisposal::Deleted),
    ];
    let (kept, note) = disposal(&e, &all, cause);
    let note = note.unwrap();
    assert!(kept.is_none());
    assert!(!note.warning && note.message.contains(cause), "{note:?}");

    // One part unreachable: kept with that part only; the same failure again is
    // not reported twice.
    let some = [
        (req(0), PartDisposal::Deleted),
        (req(1), PartDisposal::Retry("unreachable".into())),
        (req(2), PartDisposal::Unknown),
    ];
    let (kept, note) = disposal(&e, &some, cause);
    let kept = kept.unwrap();
    assert_eq!(kept.requests, vec![req(1)]);
    assert_eq!(note.unwrap().reason, "SavepointDisposalPending");
    let again = [(req(1), PartDisposal::Retry("unreachable".into()))];
    let (kept2, note2) = disposal(&kept, &again, cause);
    assert_eq!(kept2.unwrap().requests, vec![req(1)]);
    assert!(note2.is_none(), "already reported");

    // A worker that forgot the id, or no longer exists: gone from the history with
    // a Warning that names what may remain.
    let lost = [
        (req(1), PartDisposal::Unknown),
        (req(2), PartDisposal::NoWorker),
    ];
    let (kept, note) = disposal(&e, &lost, cause);
    let note = note.unwrap();
    assert!(kept.is_none());
    assert!(
        note.warning && note.message.contains("restarted") && note.message.contains("worker 2"),
        "{note:?}"
    );
}

fn condition_since(
    type_: &str,
    reason: &str,
    secs: i64,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message: String::new(),
        last_transition_time: Time(at(secs)),
        observed_generation: None,
    }
}

fn steady_observed<'a>(
    spec: &'a RiskPipelineSpec,
    status: &'a RiskPipelineStatus,
    metrics: riskpipe_crds::ObservedMetrics,
    now: i64,
) -> Observed<'a> {
    Observed {
        pipeline: "payments",
        spec,
        desired_hash: OLD,
        status,
        workload: Some(running(OLD, spec.parallelism)),
        savepoint: None,
        changed: Vec::new(),
        metrics: Some(metrics),
        partitions: Some(8),
        now: at(now),
    }
}

fn figures(rate: f64, busy: f64, lag: i64, error_rate: f64) -> riskpipe_crds::ObservedMetrics {
    riskpipe_crds::ObservedMetrics {
        records_per_second: rate,
        busy_ratio: busy,
        lag_records: lag,
        lag_seconds: 0.0,
        error_rate,
        observed_at: None,
    }
}

/// The decision wires the restart policy in: HighErrorRate since longer than the
/// window restarts the workers of a steady pipeline, with a Warning Event.
#[test]
fn a_steady_pipeline_with_a_lasting_high_error_rate_restarts() {
    let spec = spec(2, UpgradeMode::Savepoint);
    let status = RiskPipelineStatus {
        conditions: vec![condition_since("Degraded", "HighErrorRate", 0)],
        ..RiskPipelineStatus::default()
    };
    let d = decide(&steady_observed(
        &spec,
        &status,
        figures(100.0, 0.5, 0, 0.5),
        3600,
    ));
    assert!(d.ops.restart);
    assert_eq!(d.ops.restarts.as_ref().unwrap().count, 1);
    assert!(d.notes.iter().any(|n| n.reason == "Restarted" && n.warning));
    assert!(d.plan.is_some(), "the restart is applied with the workload");
    // Below the threshold: nothing.
    let d = decide(&steady_observed(
        &spec,
        &status,
        figures(100.0, 0.5, 0, 0.0),
        3600,
    ));
    assert!(!d.ops.restart);
}

/// The decision wires the autoscaler in: a scale-up wanted for the whole window
/// sets the parallelism, with a Scaled Event and a Scaling condition.
#[test]
fn a_saturated_pipeline_scales_up_once_the_wish_held() {
    let mut spec = spec(2, UpgradeMode::Savepoint);
    spec.autoscaler.enabled = true;
    spec.autoscaler.max_replicas = 8;
    let status = RiskPipelineStatus {
        conditions: vec![condition_since("Scaling", "ScaleUpPending", 0)],
        ..RiskPipelineStatus::default()
    };
    let d = decide(&steady_observed(
        &spec,
        &status,
        figures(1000.0, 1.0, 500_000, 0.0),
        3600,
    ));
    let to = d.ops.scale_to.expect("scaled");
    assert!(to > 2 && to <= 8, "{to}");
    assert!(d.notes.iter().any(|n| n.reason == "Scaled"));
    assert_eq!(d.ops.scaling.as_ref().unwrap().reason, "Scaling");
    // Disabled: a Scaling=False condition saying so.
    spec.autoscaler.enabled = false;
    let d = decide(&steady_observed(
        &spec,
        &status,
        figures(1000.0, 1.0, 500_000, 0.0),
        3600,
    ));
    assert_eq!(d.ops.scale_to, None);
    let c = d.ops.scaling.unwrap();
    assert_eq!((c.status, c.reason.as_str()), (false, "Disabled"));
}
