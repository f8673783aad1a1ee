//! The pipeline's lifecycle as pure decisions fed by what the reconcile observed:
//! rollouts (upgrade, suspend, resume) as a state machine kept in `status.rollout`,
//! and savepoints (nonce, schedule, retries, retention). No client, no clock: the
//! caller passes `now`, so every transition is a unit test.

pub mod autoscale;
pub mod note;
pub mod restart;
pub mod rollout;
pub mod savepoints;

use k8s_openapi::jiff::Timestamp;
use riskpipe_crds::{ObservedMetrics, RestartStatus, RiskPipelineSpec, RiskPipelineStatus};

/// What the operator saw of the workers' StatefulSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Config hash in the Pod template.
    pub hash: Option<String>,
    /// Parallelism the template's workers were started with.
    pub parallelism: Option<i32>,
    /// Restore path in the Pod template.
    pub restore_from: Option<String>,
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// Pods that exist.
    pub replicas: i32,
    /// Pods that are ready.
    pub ready_replicas: i32,
    /// Whether the StatefulSet controller has acted on the latest template and every
    /// Pod runs it (observedGeneration current, current revision = update revision).
    pub rolled_out: bool,
}

impl Workload {
    /// Whether the StatefulSet runs exactly `plan`'s template with every Pod ready.
    pub fn settled_at(
        &self,
        hash: &str,
        parallelism: i32,
        replicas: i32,
        restore_from: Option<&str>,
    ) -> bool {
        self.hash.as_deref() == Some(hash)
            && self.parallelism == Some(parallelism)
            && self.restore_from.as_deref() == restore_from
            && self.spec_replicas == replicas
            && self.rolled_out
            && self.replicas == replicas
            && self.ready_replicas == replicas
    }
}

/// The parallelism in effect: the built-in autoscaler's choice while it is on (kept
/// within its bounds), else `spec.parallelism`. The operator never writes
/// `spec.parallelism`, so a GitOps tool comparing the spec sees no drift.
pub fn effective_parallelism(spec: &RiskPipelineSpec, status: &RiskPipelineStatus) -> i32 {
    let a = &spec.autoscaler;
    match status.autoscaled_parallelism {
        Some(p) if a.enabled => p.clamp(a.min_replicas.min(a.max_replicas), a.max_replicas),
        _ => spec.parallelism,
    }
}

/// The spec the operator acts on: the user's, with the parallelism in effect
/// ([`effective_parallelism`]) and the image resolved (`spec.image`, else
/// `default_image`, the operator's default). Never written back.
pub fn effective_spec(
    spec: &RiskPipelineSpec,
    status: &RiskPipelineStatus,
    default_image: &str,
) -> RiskPipelineSpec {
    let mut out = spec.clone();
    out.parallelism = effective_parallelism(spec, status);
    if out.image.is_none() {
        out.image = Some(default_image.to_owned());
    }
    out
}

/// Everything a lifecycle decision reads.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The spec as it is now.
    pub spec: &'a RiskPipelineSpec,
    /// Config hash of that spec.
    pub desired_hash: &'a str,
    /// The status as last written.
    pub status: &'a RiskPipelineStatus,
    /// The StatefulSet, when it exists.
    pub workload: Option<Workload>,
    /// Progress of the savepoint in progress (polled from the workers).
    pub savepoint: Option<savepoints::Progress>,
    /// Names of the spec sections that differ from the deployed manifest.
    pub changed: Vec<String>,
    /// The workers' figures now, when they answered.
    pub metrics: Option<ObservedMetrics>,
    /// Partitions of the input topic, when known.
    pub partitions: Option<i32>,
    /// The time of this decision.
    pub now: Timestamp,
}

use riskpipe_crds::{
    PipelineState, RolloutStatus, SavepointPhase, SavepointStatus, SavepointTrigger,
};

use crate::build::WorkloadPlan;
pub use note::Note;
pub use savepoints::{Progress, SavepointRequest};

/// The whole lifecycle decision of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// What to apply; `None` holds the workload as it is.
    pub plan: Option<WorkloadPlan>,
    /// `status.rollout` after this reconcile.
    pub rollout: Option<RolloutStatus>,
    /// `status.savepoints` after progress, a new request and retention.
    pub savepoints: Vec<SavepointStatus>,
    /// Entries retention removed: their files are deleted through the workers, and
    /// an entry whose deletion must be retried goes back into the history.
    pub disposed: Vec<SavepointStatus>,
    /// A savepoint to start now (its entry is already in `savepoints`).
    pub trigger: Option<SavepointRequest>,
    /// `status.lastSavepointTriggerNonce` after this reconcile.
    pub last_nonce: Option<i64>,
    /// Events to publish.
    pub notes: Vec<Note>,
    /// Lifecycle state.
    pub state: PipelineState,
    /// Why the pipeline cannot go on without a change (Degraded), if so.
    pub stuck: Option<String>,
    /// Restart policy and autoscaler.
    pub ops: Operations,
}

/// What the restart policy and the autoscaler decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Operations {
    /// `status.restarts` after this reconcile; its `lastRestartTime` goes into the
    /// workers' Pod template, so a new one restarts them.
    pub restarts: Option<RestartStatus>,
    /// The workers restart now (error rate).
    pub restart: bool,
    /// The restart limit is reached (Degraded), if so.
    pub restart_stuck: Option<String>,
    /// The autoscaler's new choice of workers (`status.autoscaledParallelism`).
    pub scale_to: Option<i32>,
    /// The Scaling condition, when decided.
    pub scaling: Option<crate::conditions::Cond>,
    /// A restart or a scaling may be due soon: look again sooner.
    pub watching: bool,
}

impl Decision {
    /// Whether a rollout or a savepoint is under way.
    pub fn progressing(&self) -> bool {
        self.rollout.is_some()
            || self
                .savepoints
                .iter()
                .any(|s| s.phase == SavepointPhase::InProgress)
    }
}

/// Decides the next step: records savepoint progress, advances the rollout, starts
/// the savepoint the spec or the rollout asks for, and applies retention.
pub fn decide(obs: &Observed<'_>) -> Decision {
    let mut history = obs.status.savepoints.clone();
    let mut notes = Vec::new();
    if let Some(progress) = &obs.savepoint
        && let Some(done) = savepoints::record_progress(&mut history, progress, obs.now)
    {
        notes.push(match done.phase {
            SavepointPhase::Failed => note::warning(
                "SavepointFailed",
                format!(
                    "{:?} savepoint {} failed: {}; retried with backoff",
                    done.trigger,
                    done.path,
                    done.message.as_deref().unwrap_or("unknown cause")
                ),
            ),
            _ => note::normal(
                "SavepointCompleted",
                format!("{:?} savepoint completed at {}", done.trigger, done.path),
            ),
        });
    }
    // The rollout sees the history with this progress recorded.
    let mut status = obs.status.clone();
    status.savepoints = history.clone();
    let seen = Observed {
        status: &status,
        ..obs.clone()
    };
    let step = rollout::step(&seen);
    notes.extend(step.notes.iter().cloned());

    let mut last_nonce = obs.status.last_savepoint_trigger_nonce;
    let trigger = if step.savepoint {
        Some(SavepointRequest {
            path: savepoints::savepoint_path(obs.spec, obs.pipeline, obs.now),
            trigger: SavepointTrigger::Upgrade,
            nonce: None,
        })
    } else if step.rollout.is_none() && step.state == PipelineState::Running {
        savepoints::requested(obs.spec, &status, obs.pipeline, obs.now)
    } else {
        None
    };
    if let Some(req) = &trigger {
        if req.nonce.is_some() {
            last_nonce = req.nonce;
        }
        history.push(savepoints::started(req, obs.now));
    }
    let max_age = obs.spec.savepoints.max_age.as_std();
    let max_count = usize::try_from(obs.spec.savepoints.max_count)
        .unwrap_or(1)
        .max(1);
    let (kept, disposed) = savepoints::retain(&history, max_count, max_age, obs.now);
    let idle = step.rollout.is_none()
        && step.state == PipelineState::Running
        && step.plan.is_some()
        && trigger.is_none();
    let ops = operations(obs, idle, &mut notes);
    Decision {
        plan: step.plan,
        rollout: step.rollout,
        savepoints: kept,
        disposed,
        trigger,
        last_nonce,
        notes,
        state: step.state,
        stuck: step.stuck,
        ops,
    }
}

/// Restart policy and autoscaler, when nothing else is under way (`idle`).
fn operations(obs: &Observed<'_>, idle: bool, notes: &mut Vec<Note>) -> Operations {
    let condition = |type_: &str| {
        obs.status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let high_since = condition(riskpipe_crds::condition_types::DEGRADED)
        .filter(|c| c.reason == "HighErrorRate")
        .map(|c| c.last_transition_time.0);
    let restart = restart::decide(&restart::RestartInput {
        policy: &obs.spec.restart_policy,
        previous: obs.status.restarts.as_ref(),
        error_rate: obs.metrics.as_ref().map(|m| m.error_rate),
        high_since,
        idle,
        now: obs.now,
    });
    notes.extend(restart.note.clone());
    // Whatever its status: `Evaluating` (False) is the step before a pending wish.
    let scaling = obs
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == riskpipe_crds::condition_types::SCALING)
        .map(|c| (c.reason.as_str(), c.last_transition_time.0));
    let scale = autoscale::decide(&autoscale::ScaleInput {
        spec: &obs.spec.autoscaler,
        parallelism: obs.spec.parallelism,
        partitions: obs.partitions,
        metrics: obs.metrics.as_ref(),
        previous: scaling,
        last_scale_time: obs.status.last_scale_time.as_ref().map(|t| t.0),
        // A restart and a rescale never at once.
        idle: idle && !restart.restart,
        now: obs.now,
    });
    notes.extend(scale.note.clone());
    let high = obs
        .metrics
        .as_ref()
        .is_some_and(|m| m.error_rate > obs.spec.restart_policy.error_rate_threshold);
    let pending = scale.condition.status || scale.condition.reason == "Evaluating";
    Operations {
        watching: high || pending,
        restarts: restart.status,
        restart: restart.restart,
        restart_stuck: restart.stuck,
        scale_to: scale.scale_to,
        scaling: Some(scale.condition),
    }
}

#[cfg(test)]
mod tests;
