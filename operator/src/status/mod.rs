//! The status written after a reconcile, built without a client from the decision
//! and what was observed. Conditions are merged so transition times survive.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use riskpipe_crds::{
    CheckpointStatus, ObservedMetrics, PipelineState, RiskPipelineSpec, RiskPipelineStatus,
    condition_types as ct,
};

use crate::{
    conditions::{Cond, merge},
    lifecycle::{Decision, Workload},
    worker_api::WorkerStatus,
};

/// Everything the status is made of.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// `metadata.generation` of the pipeline.
    pub generation: i64,
    /// The spec acted on (the parallelism in effect, the image resolved).
    pub spec: &'a RiskPipelineSpec,
    /// The status before this reconcile.
    pub previous: &'a RiskPipelineStatus,
    /// The label selector of the workers.
    pub selector: String,
    /// The lifecycle decision of this reconcile.
    pub decision: &'a Decision,
    /// The StatefulSet as observed.
    pub workload: Option<&'a Workload>,
    /// Workers that answered `/status`.
    pub workers: &'a [WorkerStatus],
    /// Partitions of the input topic, when known.
    pub partitions: Option<i32>,
    /// Now.
    pub now: Timestamp,
}

/// Figures over all workers: rates and lags add up, lag in time is the worst
/// worker's, busy ratio is the mean, error rate is weighted by rate.
pub fn aggregate(workers: &[WorkerStatus], now: Timestamp) -> Option<ObservedMetrics> {
    if workers.is_empty() {
        return None;
    }
    let rate: f64 = workers.iter().map(|w| w.records_per_second).sum();
    let errors: f64 = workers
        .iter()
        .map(|w| w.error_rate * w.records_per_second)
        .sum();
    let n = workers.len() as f64;
    Some(ObservedMetrics {
        records_per_second: rate,
        lag_records: workers.iter().map(|w| w.lag_records).sum(),
        lag_seconds: workers.iter().map(|w| w.lag_seconds).fold(0.0, f64::max),
        error_rate: if rate > 0.0 {
            errors / rate
        } else {
            workers.iter().map(|w| w.error_rate).fold(0.0, f64::max)
        },
        busy_ratio: workers.iter().map(|w| w.busy_ratio).sum::<f64>() / n,
        observed_at: Some(Time(now)),
    })
}

/// The checkpoint every worker has completed: the oldest of the workers' latest
/// ones (none until every worker reports one).
pub fn common_checkpoint(workers: &[WorkerStatus]) -> Option<CheckpointStatus> {
    let mut oldest: Option<&crate::worker_api::CheckpointInfo> = None;
    for w in workers {
        let c = w.last_checkpoint.as_ref()?;
        if oldest.is_none_or(|o| c.timestamp_ms < o.timestamp_ms) {
            oldest = Some(c);
        }
    }
    let c = oldest?;
    Some(CheckpointStatus {
        id: c.number().unwrap_or(c.timestamp_ms),
        path: c.path.clone(),
        completed_at: Time(Timestamp::from_millisecond(c.timestamp_ms).ok()?),
        duration_ms: i64::try_from(c.duration_ms).ok(),
        size_bytes: i64::try_from(c.size_bytes).ok(),
    })
}

/// What the workers say of partitions they stopped (their position is no longer in
/// the topic and `spec.source.kafka.onOffsetOutOfRange` is `fail`): which, and why.
fn stopped_partitions(workers: &[WorkerStatus]) -> Option<String> {
    let stopped: Vec<(i32, &str)> = workers
        .iter()
        .flat_map(|w| &w.partitions)
        .filter_map(|p| p.stopped.as_deref().map(|why| (p.partition, why)))
        .collect();
    let (_, first) = stopped.first()?;
    let ids: Vec<String> = stopped.iter().map(|(p, _)| p.to_string()).collect();
    Some(format!(
        "{} partition(s) stopped ({}): {first}",
        stopped.len(),
        ids.join(", ")
    ))
}

/// What the workers say of dimension tables they cannot read (records that
/// need an uncached row wait meanwhile): which tables, since when, the error.
fn dimensions_unavailable(workers: &[WorkerStatus], now: Timestamp) -> Option<String> {
    let mut tables: Vec<&riskpipe_contract::DimensionOutage> = workers
        .iter()
        .flat_map(|w| &w.dimensions_unavailable)
        .collect();
    tables.sort_by(|a, b| (&a.table, a.since_ms).cmp(&(&b.table, b.since_ms)));
    tables.dedup_by(|a, b| a.table == b.table);
    let first = tables.first()?;
    let names: Vec<&str> = tables.iter().map(|o| o.table.as_str()).collect();
    let for_s = (now.as_millisecond() - first.since_ms).max(0) / 1000;
    Some(format!(
        "dimension table(s) unavailable ({}); records that need an uncached row wait. {} for {for_s}s: {}",
        names.join(", "),
        first.table,
        first.error
    ))
}

fn conditions(
    input: &Input<'_>,
    metrics: Option<&ObservedMetrics>,
    last_checkpoint: Option<&CheckpointStatus>,
) -> Vec<Cond> {
    let d = input.decision;
    let target = if input.spec.job.state == riskpipe_crds::JobState::Running {
        input.spec.parallelism
    } else {
        0
    };
    let ready = input.workload.map_or(0, |w| w.ready_replicas);
    let mut out = Vec::new();
    out.push(match d.state {
        PipelineState::Running if ready >= target => Cond::yes(
            ct::READY,
            "Running",
            format!("{ready}/{target} workers ready"),
        ),
        PipelineState::Suspended => Cond::no(
            ct::READY,
            "Suspended",
            "spec.job.state is suspended; no worker runs",
        ),
        PipelineState::Upgrading => Cond::no(
            ct::READY,
            "Upgrading",
            format!(
                "rolling out: {}",
                d.rollout.as_ref().map_or("", |r| r.cause.as_str())
            ),
        ),
        PipelineState::Degraded => {
            Cond::no(ct::READY, "Degraded", d.stuck.clone().unwrap_or_default())
        }
        _ => Cond::no(
            ct::READY,
            "Deploying",
            format!("{ready}/{target} workers ready"),
        ),
    });
    out.push(match (&d.rollout, d.progressing()) {
        (Some(r), _) => Cond::yes(
            ct::PROGRESSING,
            "RolloutInProgress",
            format!("{:?}: {}", r.phase, r.cause),
        ),
        (None, true) => Cond::yes(
            ct::PROGRESSING,
            "SavepointInProgress",
            "a savepoint is being taken",
        ),
        (None, false) if d.state == PipelineState::Deploying => Cond::yes(
            ct::PROGRESSING,
            "Deploying",
            format!("{ready}/{target} workers ready"),
        ),
        _ => Cond::no(
            ct::PROGRESSING,
            "Stable",
            "no rollout or savepoint under way",
        ),
    });
    let threshold = input.spec.restart_policy.error_rate_threshold;
    out.push(if let Some(why) = &d.stuck {
        Cond::yes(ct::DEGRADED, "RolloutBlocked", why.clone())
    } else if let Some(why) = &d.ops.restart_stuck {
        Cond::yes(ct::DEGRADED, "RestartLimitReached", why.clone())
    } else if let Some(why) = stopped_partitions(input.workers) {
        Cond::yes(ct::DEGRADED, "PartitionsStopped", why)
    } else if let Some(why) = dimensions_unavailable(input.workers, input.now) {
        Cond::yes(ct::DEGRADED, "DimensionsUnavailable", why)
    } else if let Some(m) = metrics.filter(|m| m.error_rate > threshold) {
        Cond::yes(
            ct::DEGRADED,
            "HighErrorRate",
            format!("error rate {:.4} is above spec.restartPolicy.errorRateThreshold {threshold}; see the workers' dead letters", m.error_rate),
        )
    } else {
        Cond::no(ct::DEGRADED, "Healthy", "within objectives")
    });
    out.extend(d.ops.scaling.clone());
    if let Some(c) = last_checkpoint {
        let late_after = input.spec.checkpoints.interval.as_std().saturating_mul(3);
        let age = input.now.duration_since(c.completed_at.0);
        let age = std::time::Duration::try_from(age).unwrap_or_default();
        out.push(if age <= late_after {
            Cond::yes(ct::CHECKPOINT_HEALTHY, "OnSchedule", format!("checkpoint {} completed {}s ago", c.id, age.as_secs()))
        } else {
            Cond::no(ct::CHECKPOINT_HEALTHY, "CheckpointsLate", format!("the last checkpoint every worker completed ({}) is {}s old, more than 3 intervals", c.id, age.as_secs()))
        });
    }
    out
}

/// The status after a reconcile that acted on a valid spec.
pub fn compose(input: &Input<'_>) -> RiskPipelineStatus {
    let metrics = aggregate(input.workers, input.now).or_else(|| input.previous.observed.clone());
    let last_checkpoint =
        common_checkpoint(input.workers).or_else(|| input.previous.last_checkpoint.clone());
    let conds = conditions(input, metrics.as_ref(), last_checkpoint.as_ref());
    let d = input.decision;
    RiskPipelineStatus {
        observed_generation: Some(input.generation),
        state: Some(d.state),
        conditions: merge(
            &input.previous.conditions,
            &conds,
            input.generation,
            &Time(input.now),
        ),
        replicas: input.workload.map_or(0, |w| w.replicas),
        ready_replicas: input.workload.map_or(0, |w| w.ready_replicas),
        selector: Some(input.selector.clone()),
        partitions: input.partitions.or(input.previous.partitions),
        last_checkpoint,
        savepoints: d.savepoints.clone(),
        last_savepoint_trigger_nonce: d.last_nonce,
        restarts: d.ops.restarts.clone(),
        last_scale_time: if d.ops.scale_to.is_some() {
            Some(Time(input.now))
        } else {
            input.previous.last_scale_time.clone()
        },
        autoscaled_parallelism: input
            .spec
            .autoscaler
            .enabled
            .then(|| d.ops.scale_to.or(input.previous.autoscaled_parallelism))
            .flatten(),
        parallelism: Some(d.ops.scale_to.unwrap_or(input.spec.parallelism)),
        observed: metrics,
        rollout: d.rollout.clone(),
    }
}

/// The status for a spec that failed validation: Ready=False with what to fix; the
/// rest (workers, savepoints, rollout) is left as it was.
pub fn invalid(
    previous: &RiskPipelineStatus,
    generation: i64,
    message: &str,
    selector: String,
    now: Timestamp,
) -> RiskPipelineStatus {
    let conds = [
        Cond::no(ct::READY, "InvalidSpec", message),
        Cond::no(ct::PROGRESSING, "InvalidSpec", "waiting for a valid spec"),
    ];
    RiskPipelineStatus {
        observed_generation: Some(generation),
        state: Some(PipelineState::Failed),
        conditions: merge(&previous.conditions, &conds, generation, &Time(now)),
        selector: Some(selector),
        ..previous.clone()
    }
}

#[cfg(test)]
mod tests;
