//! Savepoints as pure decisions: when to take one (nonce, schedule, retry after a
//! failure with backoff), how progress updates the history, and which entries the
//! retention (count and age) removes.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use riskpipe_contract::layout;
use riskpipe_crds::{
    RiskPipelineSpec, RiskPipelineStatus, SavepointPhase, SavepointStatus, SavepointTrigger,
    Storage, WorkerSavepointRequest,
};

use super::note::{Note, normal, warning};

/// Failed attempts of one savepoint before the operator gives up and reports Degraded.
pub const MAX_ATTEMPTS: usize = 5;
/// Wait after the first failure; doubles per failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A savepoint to start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavepointRequest {
    /// Common folder of the workers' parts.
    pub path: String,
    /// Why.
    pub trigger: SavepointTrigger,
    /// The nonce, for trigger `Nonce`.
    pub nonce: Option<i64>,
}

/// How the workers' parts of the savepoint in progress are doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Some part is still being written.
    InProgress,
    /// Every part completed.
    Completed,
    /// A part failed (or a worker lost the request): why.
    Failed(String),
}

/// The savepoint in progress, if any (at most one at a time).
pub fn in_progress(status: &RiskPipelineStatus) -> Option<&SavepointStatus> {
    status
        .savepoints
        .iter()
        .find(|s| s.phase == SavepointPhase::InProgress)
}

/// The newest completed savepoint.
pub fn latest_completed(status: &RiskPipelineStatus) -> Option<&SavepointStatus> {
    status
        .savepoints
        .iter()
        .filter(|s| s.phase == SavepointPhase::Completed)
        .max_by_key(|s| s.started_at.0)
}

/// Where a savepoint started at `now` is written: `<storage>/<pipeline>/savepoint-<ms>`
/// (the contract's [`layout::savepoint_leaf`] in the savepoint storage).
pub fn savepoint_path(spec: &RiskPipelineSpec, pipeline: &str, now: Timestamp) -> String {
    let leaf = layout::savepoint_leaf(pipeline, now.as_millisecond());
    match spec.savepoints.storage.kind() {
        Some(Storage::S3(s3)) => layout::join(&layout::s3_url(&s3.bucket, &s3.prefix), &leaf),
        Some(Storage::Path(p)) => layout::join(p, &leaf),
        None => leaf,
    }
}

/// Failures of `trigger` since its last success, newest last.
fn trailing_failures(
    status: &RiskPipelineStatus,
    trigger: SavepointTrigger,
) -> Vec<&SavepointStatus> {
    let mut of_trigger: Vec<&SavepointStatus> = status
        .savepoints
        .iter()
        .filter(|s| s.trigger == trigger)
        .collect();
    of_trigger.sort_by_key(|s| s.started_at.0);
    let since = of_trigger
        .iter()
        .rposition(|s| s.phase != SavepointPhase::Failed)
        .map_or(0, |i| i + 1);
    of_trigger.split_off(since)
}

/// Wait before attempt `failures + 1`.
pub fn backoff(failures: usize) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Whether a new attempt of `trigger` may start at `now`: `Ok(true)` when no failure
/// blocks it, `Ok(false)` while the backoff runs, `Err(n)` after `n` failures.
pub fn retry_allowed(
    status: &RiskPipelineStatus,
    trigger: SavepointTrigger,
    now: Timestamp,
) -> Result<bool, usize> {
    let failures = trailing_failures(status, trigger);
    let Some(last) = failures.last() else {
        return Ok(true);
    };
    if failures.len() >= MAX_ATTEMPTS {
        return Err(failures.len());
    }
    let failed_at = last.completed_at.as_ref().unwrap_or(&last.started_at).0;
    let wait = backoff(failures.len());
    Ok(now >= failed_at + wait)
}

/// A savepoint asked for by the spec (a new nonce, or the schedule is due), if one
/// may start now. Upgrades ask for their own (see the rollout).
pub fn requested(
    spec: &RiskPipelineSpec,
    status: &RiskPipelineStatus,
    pipeline: &str,
    now: Timestamp,
) -> Option<SavepointRequest> {
    if in_progress(status).is_some() {
        return None;
    }
    let new_nonce = spec
        .savepoint_trigger_nonce
        .filter(|n| status.last_savepoint_trigger_nonce != Some(*n));
    let failed_nonce = trailing_failures(status, SavepointTrigger::Nonce)
        .last()
        .and_then(|s| s.trigger_nonce)
        .filter(|n| spec.savepoint_trigger_nonce == Some(*n));
    if let Some(nonce) = new_nonce.or(failed_nonce) {
        // A new nonce starts at once; a failed one waits for its backoff.
        if new_nonce.is_some() || retry_allowed(status, SavepointTrigger::Nonce, now) == Ok(true) {
            return Some(SavepointRequest {
                path: savepoint_path(spec, pipeline, now),
                trigger: SavepointTrigger::Nonce,
                nonce: Some(nonce),
            });
        }
    }
    let every = spec.savepoints.schedule.as_ref()?.as_std();
    let last = status
        .savepoints
        .iter()
        .filter(|s| s.trigger == SavepointTrigger::Schedule && s.phase == SavepointPhase::Completed)
        .map(|s| s.started_at.0)
        .max();
    let due = last.is_none_or(|t| now >= t + every);
    (due && retry_allowed(status, SavepointTrigger::Schedule, now) == Ok(true)).then(|| {
        SavepointRequest {
            path: savepoint_path(spec, pipeline, now),
            trigger: SavepointTrigger::Schedule,
            nonce: None,
        }
    })
}

/// The history entry of a savepoint that has just been requested.
pub fn started(req: &SavepointRequest, now: Timestamp) -> SavepointStatus {
    SavepointStatus {
        path: req.path.clone(),
        trigger: req.trigger,
        trigger_nonce: req.nonce,
        phase: SavepointPhase::InProgress,
        started_at: Time(now),
        completed_at: None,
        message: None,
        requests: Vec::new(),
    }
}

/// Applies `progress` to the entry in progress; returns the entry when it just finished.
pub fn record_progress(
    history: &mut [SavepointStatus],
    progress: &Progress,
    now: Timestamp,
) -> Option<SavepointStatus> {
    let entry = history
        .iter_mut()
        .find(|s| s.phase == SavepointPhase::InProgress)?;
    match progress {
        Progress::InProgress => return None,
        Progress::Completed => entry.phase = SavepointPhase::Completed,
        Progress::Failed(why) => {
            entry.phase = SavepointPhase::Failed;
            entry.message = Some(why.clone());
        }
    }
    entry.completed_at = Some(Time(now));
    Some(entry.clone())
}

/// Splits the history into kept and disposed entries: entries older than `max_age`
/// go, then the oldest until at most `max_count` remain. The savepoint in progress
/// and the newest completed one are always kept (the latter is what a resume or an
/// upgrade restores from).
pub fn retain(
    history: &[SavepointStatus],
    max_count: usize,
    max_age: Duration,
    now: Timestamp,
) -> (Vec<SavepointStatus>, Vec<SavepointStatus>) {
    let mut sorted = history.to_vec();
    sorted.sort_by_key(|s| s.started_at.0);
    let newest_completed = sorted
        .iter()
        .rposition(|s| s.phase == SavepointPhase::Completed);
    let pinned = |i: usize, s: &SavepointStatus| {
        s.phase == SavepointPhase::InProgress || Some(i) == newest_completed
    };
    let mut keep = vec![true; sorted.len()];
    for (i, s) in sorted.iter().enumerate() {
        if !pinned(i, s) && s.started_at.0 + max_age < now {
            keep[i] = false;
        }
    }
    let mut count = keep.iter().filter(|k| **k).count();
    for (i, s) in sorted.iter().enumerate() {
        if count <= max_count {
            break;
        }
        if keep[i] && !pinned(i, s) {
            keep[i] = false;
            count -= 1;
        }
    }
    let (kept, gone): (Vec<_>, Vec<_>) = sorted.into_iter().zip(keep).partition(|(_, k)| *k);
    (
        kept.into_iter().map(|(s, _)| s).collect(),
        gone.into_iter().map(|(s, _)| s).collect(),
    )
}

/// Why entries leave the history, for Events.
pub fn retention_cause(spec: &RiskPipelineSpec) -> String {
    format!(
        "retention: at most {} savepoints, none older than {}",
        spec.savepoints.max_count.max(1),
        spec.savepoints.max_age.as_str()
    )
}

/// What became of one worker's part of a savepoint being disposed of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartDisposal {
    /// `DELETE /savepoints/{id}` removed it from storage.
    Deleted,
    /// The worker did not know the id (it restarted since): its files may remain.
    Unknown,
    /// No worker of that ordinal exists any more (the pipeline was scaled down).
    NoWorker,
    /// Not done now (worker not running or unreachable, part still being written):
    /// the entry stays in the history and the deletion is retried later.
    Retry(String),
}

/// The outcome of disposing of `entry` with `parts` (one per request): the entry to
/// keep in the history with the parts still to delete (`None` when nothing is left
/// to retry), and the Event to publish, if any (a retry already reported with the
/// same message is not reported again).
pub fn disposal(
    entry: &SavepointStatus,
    parts: &[(WorkerSavepointRequest, PartDisposal)],
    cause: &str,
) -> (Option<SavepointStatus>, Option<Note>) {
    let retry: Vec<String> = parts
        .iter()
        .filter_map(|(r, p)| match p {
            PartDisposal::Retry(why) => Some(format!("worker {}: {why}", r.ordinal)),
            _ => None,
        })
        .collect();
    let left: Vec<String> = parts
        .iter()
        .filter_map(|(r, p)| match p {
            PartDisposal::Unknown => Some(format!(
                "worker {} no longer knows {} (restarted since)",
                r.ordinal, r.id
            )),
            PartDisposal::NoWorker => Some(format!("worker {} no longer exists", r.ordinal)),
            _ => None,
        })
        .collect();
    if !retry.is_empty() {
        let mut kept = entry.clone();
        kept.requests = parts
            .iter()
            .filter(|(_, p)| matches!(p, PartDisposal::Retry(_)))
            .map(|(r, _)| r.clone())
            .collect();
        let message = format!("disposal pending ({cause}): {}", retry.join("; "));
        let note = (entry.message.as_deref() != Some(message.as_str())).then(|| {
            warning(
                "SavepointDisposalPending",
                format!(
                    "savepoint {} could not be deleted yet, retried later: {}",
                    entry.path,
                    retry.join("; ")
                ),
            )
        });
        kept.message = Some(message);
        return (Some(kept), note);
    }
    let note = if left.is_empty() {
        normal(
            "SavepointDisposed",
            format!("savepoint {} deleted from storage ({cause})", entry.path),
        )
    } else {
        warning(
            "SavepointDisposed",
            format!(
                "savepoint {} left the history ({cause}), but parts may remain in storage \
                 and need removing by hand: {}",
                entry.path,
                left.join("; ")
            ),
        )
    };
    (None, Some(note))
}
