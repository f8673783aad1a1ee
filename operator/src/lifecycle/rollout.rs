//! Rollouts as a state machine kept in `status.rollout`, so a restarted operator
//! resumes where the last one stopped:
//!
//! ```text
//!   (spec changed, mode savepoint | rescale in last-state | suspend in savepoint)
//!        Savepointing ──savepoint completed──► Stopping ──no Pod left──► Starting ──all ready──► Finalizing ──all ready──► done
//!   (mode last-state/stateless, same parallelism)                         Starting ──all ready──► done
//!   (suspend, not savepoint mode)                          Stopping ──no Pod left──► done (Suspended)
//! ```
//!
//! `Finalizing` removes `--restore-from` once the new workers have restored, so that
//! a later restart resumes from local state instead of the savepoint again.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use riskpipe_crds::{
    JobState, PipelineState, RolloutPhase, RolloutStatus, SavepointPhase, SavepointTrigger,
    UpgradeMode,
};

use super::{Observed, Workload, note::Note, savepoints};
use crate::build::WorkloadPlan;

/// One step of the rollout machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What to apply; `None` holds the workload (and its ConfigMap) as it is, so the
    /// old workers keep their configuration while a savepoint is taken.
    pub plan: Option<WorkloadPlan>,
    /// The rollout after this step (`None`: none under way).
    pub rollout: Option<RolloutStatus>,
    /// Start an upgrade savepoint now.
    pub savepoint: bool,
    /// Events.
    pub notes: Vec<Note>,
    /// Lifecycle state for the status.
    pub state: PipelineState,
    /// Why the rollout cannot go on without a change (Degraded), if so.
    pub stuck: Option<String>,
}

/// Whether moving the running workers needs a savepoint: always in savepoint mode,
/// and in last-state mode when partitions move between workers.
fn needs_savepoint(mode: UpgradeMode, rescale: bool) -> bool {
    match mode {
        UpgradeMode::Savepoint => true,
        UpgradeMode::LastState => rescale,
        UpgradeMode::Stateless => false,
    }
}

/// State once a rollout to `target` workers is done.
fn settled_state(target: i32) -> PipelineState {
    if target == 0 {
        PipelineState::Suspended
    } else {
        PipelineState::Running
    }
}

/// Workers wanted at the end: the parallelism, or none while suspended.
pub fn target_replicas(obs: &Observed<'_>) -> i32 {
    match obs.spec.job.state {
        JobState::Running => obs.spec.parallelism,
        JobState::Suspended => 0,
    }
}

fn steady(replicas: i32, state: PipelineState) -> Step {
    Step {
        plan: Some(WorkloadPlan {
            replicas,
            restore_from: None,
        }),
        rollout: None,
        savepoint: false,
        notes: Vec::new(),
        state,
        stuck: None,
    }
}

fn describe(obs: &Observed<'_>, w: &Workload) -> String {
    let mut parts = Vec::new();
    if w.spec_replicas > 0 && target_replicas(obs) == 0 {
        parts.push("spec.job.state is suspended".to_owned());
    } else if w.spec_replicas == 0 && target_replicas(obs) > 0 {
        parts.push("spec.job.state is running".to_owned());
    }
    if w.parallelism.is_some_and(|p| p != obs.spec.parallelism) {
        parts.push(format!(
            "parallelism {} → {}",
            w.parallelism.unwrap_or_default(),
            obs.spec.parallelism
        ));
    }
    if w.hash.as_deref() != Some(obs.desired_hash) {
        if obs.changed.is_empty() {
            parts.push("worker configuration changed".to_owned());
        } else {
            parts.push(format!("spec changed: {}", obs.changed.join(", ")));
        }
    }
    parts.join("; ")
}

/// Starts a rollout from the deployed workload `w` towards the spec, or keeps steady.
fn begin(obs: &Observed<'_>, w: &Workload) -> Step {
    let target = target_replicas(obs);
    let template_same =
        w.hash.as_deref() == Some(obs.desired_hash) && w.parallelism == Some(obs.spec.parallelism);
    let run_same = (w.spec_replicas > 0) == (target > 0);
    if template_same && run_same && w.restore_from.is_none() {
        let state = if target == 0 {
            PipelineState::Suspended
        } else if w.ready_replicas == target && w.rolled_out {
            PipelineState::Running
        } else {
            PipelineState::Deploying
        };
        return steady(target, state);
    }
    let mode = obs.spec.job.upgrade_mode;
    let rescale = w.parallelism.is_some_and(|p| p != obs.spec.parallelism);
    let cause = describe(obs, w);
    let rollout = |phase, restore_from: Option<String>| RolloutStatus {
        target_hash: obs.desired_hash.to_owned(),
        target_replicas: target,
        phase,
        restore_from,
        cause: cause.clone(),
        started_at: Time(obs.now),
    };
    let running = w.spec_replicas > 0;
    let (phase, restore_from) = if !running {
        // Resume, or a change while suspended: start from what the stop left.
        let saved = savepoints::latest_completed(obs.status).map(|s| s.path.clone());
        let restore = match mode {
            UpgradeMode::Stateless => None,
            UpgradeMode::Savepoint => saved,
            UpgradeMode::LastState => saved.filter(|_| rescale),
        };
        if target == 0 {
            // Suspended and staying so: take the new template, start nothing.
            return steady(0, PipelineState::Suspended);
        }
        (RolloutPhase::Starting, restore)
    } else {
        if needs_savepoint(mode, rescale) {
            (RolloutPhase::Savepointing, None)
        } else if rescale || target == 0 {
            (RolloutPhase::Stopping, None)
        } else {
            // Same partitions per worker: a rolling update keeps local state.
            (RolloutPhase::Starting, None)
        }
    };
    let started = rollout(phase, restore_from);
    let mut step = advance(obs, w, &started);
    step.notes.insert(
        0,
        Note::normal(
            "RolloutStarted",
            format!("{cause} (upgrade mode {mode:?}, first step {phase:?})"),
        ),
    );
    step
}

/// One step of the rollout `r` under way.
fn advance(obs: &Observed<'_>, w: &Workload, r: &RolloutStatus) -> Step {
    let target = target_replicas(obs);
    if matches!(r.phase, RolloutPhase::Starting | RolloutPhase::Finalizing)
        && r.target_replicas != target
    {
        // Partitions would move while new workers start: begin again from what runs.
        return begin(obs, w);
    }
    // Other edits join the rollout under way: always roll towards the current spec.
    let mut r = r.clone();
    r.target_hash = obs.desired_hash.to_owned();
    r.target_replicas = target;
    let hold = |r: RolloutStatus, state, notes, savepoint, stuck| Step {
        plan: None,
        rollout: Some(r),
        savepoint,
        notes,
        state,
        stuck,
    };
    let apply = |r: RolloutStatus, replicas, notes, state| Step {
        plan: Some(WorkloadPlan {
            replicas,
            restore_from: r.restore_from.clone(),
        }),
        rollout: Some(r),
        savepoint: false,
        notes,
        state,
        stuck: None,
    };
    let busy = if target == 0 {
        PipelineState::Suspended
    } else {
        PipelineState::Upgrading
    };
    match r.phase {
        RolloutPhase::Savepointing => {
            let rescale = w.parallelism.is_some_and(|p| p != obs.spec.parallelism);
            if !needs_savepoint(obs.spec.job.upgrade_mode, rescale) {
                // The mode changed away from savepoint: stop without one.
                r.phase = RolloutPhase::Stopping;
                r.restore_from = None;
                return advance(obs, w, &r);
            }
            // The newest upgrade savepoint of this rollout.
            let mine = obs
                .status
                .savepoints
                .iter()
                .filter(|s| {
                    s.trigger == SavepointTrigger::Upgrade && s.started_at.0 >= r.started_at.0
                })
                .max_by_key(|s| s.started_at.0);
            let wait = |r| hold(r, PipelineState::Upgrading, Vec::new(), false, None);
            match mine.map(|s| s.phase) {
                Some(SavepointPhase::Completed) => {
                    let path = mine.map(|s| s.path.clone()).unwrap_or_default();
                    r.phase = RolloutPhase::Stopping;
                    r.restore_from = Some(path.clone());
                    let mut step = advance(obs, w, &r);
                    step.notes.insert(
                        0,
                        Note::normal(
                            "UpgradeSavepointCompleted",
                            format!("savepoint {path} completed; stopping the workers"),
                        ),
                    );
                    step
                }
                Some(SavepointPhase::InProgress) => wait(r),
                // Another savepoint (nonce, schedule) runs: let it finish first.
                _ if savepoints::in_progress(obs.status).is_some() => wait(r),
                _ => {
                    match savepoints::retry_allowed(obs.status, SavepointTrigger::Upgrade, obs.now)
                    {
                        Ok(true) => hold(r, PipelineState::Upgrading, Vec::new(), true, None),
                        Ok(false) => wait(r),
                        Err(n) => hold(
                            r,
                            PipelineState::Degraded,
                            Vec::new(),
                            false,
                            Some(format!(
                                "the upgrade savepoint failed {n} times; the old workers keep running. \
                             Fix the cause (see status.savepoints), or set spec.job.upgradeMode to \
                             last-state or stateless to upgrade without a savepoint"
                            )),
                        ),
                    }
                }
            }
        }
        RolloutPhase::Stopping => {
            if w.replicas == 0 && w.spec_replicas == 0 {
                if target == 0 {
                    let mut step = steady(0, PipelineState::Suspended);
                    step.notes.push(Note::normal(
                        "Suspended",
                        format!(
                            "every worker stopped; state kept{}",
                            r.restore_from
                                .as_deref()
                                .map(|p| format!(" in savepoint {p}"))
                                .unwrap_or_default()
                        ),
                    ));
                    return step;
                }
                r.phase = RolloutPhase::Starting;
                let mut step = advance(obs, w, &r);
                step.notes.insert(
                    0,
                    Note::normal(
                        "WorkersStopped",
                        "every old worker stopped; starting the new ones",
                    ),
                );
                return step;
            }
            apply(r, 0, Vec::new(), busy)
        }
        RolloutPhase::Starting => {
            if w.settled_at(
                &r.target_hash,
                obs.spec.parallelism,
                target,
                r.restore_from.as_deref(),
            ) {
                if r.restore_from.is_some() {
                    r.phase = RolloutPhase::Finalizing;
                    let restore = r.restore_from.take();
                    let note = Note::normal(
                        "Restored",
                        format!(
                            "{target} worker(s) restored from {}; removing the restore argument",
                            restore.unwrap_or_default()
                        ),
                    );
                    return apply(r, target, vec![note], PipelineState::Upgrading);
                }
                let mut step = steady(target, settled_state(target));
                step.notes.push(Note::normal(
                    "RolloutCompleted",
                    format!("{target} worker(s) run the new configuration ({})", r.cause),
                ));
                return step;
            }
            apply(r, target, Vec::new(), PipelineState::Upgrading)
        }
        RolloutPhase::Finalizing => {
            if w.settled_at(&r.target_hash, obs.spec.parallelism, target, None) {
                let mut step = steady(target, settled_state(target));
                step.notes.push(Note::normal(
                    "RolloutCompleted",
                    format!("{target} worker(s) run the new configuration ({})", r.cause),
                ));
                return step;
            }
            apply(r, target, Vec::new(), PipelineState::Upgrading)
        }
    }
}

/// The rollout step for what `obs` saw.
pub fn step(obs: &Observed<'_>) -> Step {
    let target = target_replicas(obs);
    let Some(w) = &obs.workload else {
        // First deployment: start from the initial savepoint when given.
        let restore = obs
            .spec
            .initial_savepoint_path
            .clone()
            .filter(|_| target > 0);
        let mut step = steady(
            target,
            if target == 0 {
                PipelineState::Suspended
            } else {
                PipelineState::Deploying
            },
        );
        let mut note = format!("created {target} worker(s)");
        if let Some(path) = &restore {
            note.push_str(&format!(", restoring from {path}"));
            step.rollout = Some(RolloutStatus {
                target_hash: obs.desired_hash.to_owned(),
                target_replicas: target,
                phase: RolloutPhase::Starting,
                restore_from: Some(path.clone()),
                cause: "initial deployment from spec.initialSavepointPath".into(),
                started_at: Time(obs.now),
            });
            step.plan = Some(WorkloadPlan {
                replicas: target,
                restore_from: restore.clone(),
            });
        }
        step.notes.push(Note::normal("Created", note));
        return step;
    };
    match &obs.status.rollout {
        Some(r) => advance(obs, w, r),
        None => begin(obs, w),
    }
}

/// Whether `now` is past `at` plus `secs` seconds.
pub fn elapsed(at: &Time, secs: i64, now: Timestamp) -> bool {
    now.as_second() - at.0.as_second() >= secs
}
