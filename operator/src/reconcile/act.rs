//! Acting: applying the owned objects and starting savepoints on the workers.

use std::{collections::BTreeMap, net::SocketAddr};

use kube::{ResourceExt, runtime::controller::Action};
use riskpipe_crds::{RiskPipeline, SavepointPhase, WorkerSavepointRequest};

use super::{BUSY_REQUEST_NOTE, Context, Error, observe, write_status};
use crate::worker_api::Disposal;
use crate::{
    build::{Desired, Owner},
    lifecycle::{
        self, Decision, Progress, Workload,
        savepoints::{self, PartDisposal},
    },
    names::SAVEPOINT_ON_DELETE_ANNOTATION,
};

/// Applies every owned object; the ConfigMap and StatefulSet only when `workload`
/// (held while old workers take a savepoint).
pub async fn apply_objects(ctx: &Context, d: &Desired, workload: bool) -> Result<(), Error> {
    ctx.applier.apply(&d.service_account).await?;
    ctx.applier.apply(&d.service).await?;
    ctx.applier.apply(&d.pdb).await?;
    if let Some(claim) = &d.snapshots_claim {
        ctx.applier.apply(claim).await?;
    }
    if workload {
        ctx.applier.apply(&d.config_map).await?;
        ctx.applier.apply(&d.statefulset).await?;
    }
    Ok(())
}

/// Starts the savepoint the decision asks for on every running worker, recording each
/// worker's request id; a worker that refuses fails the savepoint (retried later).
pub async fn trigger_savepoint(
    ctx: &Context,
    decision: &mut Decision,
    addrs: &BTreeMap<i32, SocketAddr>,
    workload: Option<&Workload>,
) {
    let Some(req) = decision.trigger.clone() else {
        return;
    };
    let expected = workload.map_or(0, |w| w.spec_replicas);
    let mut requests = Vec::new();
    let mut failure = None;
    for ordinal in 0..expected {
        let Some(addr) = addrs.get(&ordinal) else {
            failure = Some(format!("worker {ordinal} has no address (not running?)"));
            break;
        };
        match ctx.workers.trigger_savepoint(*addr, &req.path).await {
            Ok(ack) => requests.push(WorkerSavepointRequest {
                ordinal,
                id: ack.id,
            }),
            Err(e) => {
                failure = Some(format!("worker {ordinal}: {e}"));
                break;
            }
        }
    }
    if expected == 0 {
        failure = Some("no worker runs".into());
    }
    let Some(entry) = decision
        .savepoints
        .iter_mut()
        .find(|s| s.phase == SavepointPhase::InProgress && s.path == req.path)
    else {
        return;
    };
    entry.requests = requests;
    match failure {
        None => decision.notes.push(lifecycle::note::normal(
            "SavepointTriggered",
            format!(
                "{:?} savepoint to {} on {expected} worker(s)",
                req.trigger, req.path
            ),
        )),
        Some(why) => {
            entry.phase = SavepointPhase::Failed;
            entry.completed_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time((ctx
                .now)(
            )));
            entry.message = Some(why.clone());
            decision.notes.push(lifecycle::note::warning(
                "SavepointFailed",
                format!(
                    "{:?} savepoint to {} could not start: {why}; {BUSY_REQUEST_NOTE}",
                    req.trigger, req.path
                ),
            ));
        }
    }
}

/// Deletes the savepoints retention removed through the workers that wrote them
/// (`DELETE /savepoints/{id}`); an entry whose deletion must be retried (worker not
/// running, unreachable, or the part still being written) goes back into the history.
pub async fn dispose_savepoints(
    ctx: &Context,
    decision: &mut Decision,
    addrs: &BTreeMap<i32, SocketAddr>,
    workload: Option<&Workload>,
    cause: &str,
) {
    let running = workload.map_or(0, |w| w.spec_replicas);
    for entry in std::mem::take(&mut decision.disposed) {
        let mut parts = Vec::new();
        for req in &entry.requests {
            let outcome = match addrs.get(&req.ordinal) {
                Some(addr) => match ctx.workers.delete_savepoint(*addr, &req.id).await {
                    Ok(Disposal::Deleted) => PartDisposal::Deleted,
                    Ok(Disposal::Unknown) => PartDisposal::Unknown,
                    Err(e) => PartDisposal::Retry(e.to_string()),
                },
                None if running > 0 && req.ordinal >= running => PartDisposal::NoWorker,
                None => PartDisposal::Retry("not running".into()),
            };
            parts.push((req.clone(), outcome));
        }
        let (kept, note) = savepoints::disposal(&entry, &parts, cause);
        decision.notes.extend(note);
        if let Some(kept) = kept {
            decision.savepoints.push(kept);
        }
    }
    decision.savepoints.sort_by_key(|s| s.started_at.0);
}

/// Before a pipeline annotated `riskpipe.io/savepoint-on-delete: "true"` goes, takes a
/// final savepoint; `Some(action)` while it runs, `None` when deletion may go on
/// (done, failed for good, or not asked for).
pub async fn final_savepoint(rp: &RiskPipeline, ctx: &Context) -> Result<Option<Action>, Error> {
    let wanted = rp
        .annotations()
        .get(SAVEPOINT_ON_DELETE_ANNOTATION)
        .is_some_and(|v| v == "true");
    if !wanted || !rp.finalizers().iter().any(|f| f == crate::names::FINALIZER) {
        return Ok(None);
    }
    let now = (ctx.now)();
    let owner = Owner::of(rp)?;
    let mut status = rp.status.clone().unwrap_or_default();
    let is_final = |s: &riskpipe_crds::SavepointStatus| {
        rp.metadata
            .deletion_timestamp
            .as_ref()
            .is_some_and(|t| s.started_at.0 >= t.0)
    };
    let live = observe::live(&ctx.client, &owner).await?;
    if let Some(entry) = status.savepoints.iter().find(|s| is_final(s)).cloned() {
        let progress = match entry.phase {
            SavepointPhase::InProgress => {
                observe::savepoint_progress(ctx.workers.as_ref(), &entry, &live.addrs, now).await
            }
            SavepointPhase::Completed => Progress::Completed,
            SavepointPhase::Failed => Progress::Failed(entry.message.clone().unwrap_or_default()),
        };
        if progress == Progress::InProgress {
            return Ok(Some(Action::requeue(super::BUSY_REQUEUE)));
        }
        if entry.phase == SavepointPhase::InProgress {
            let done = savepoints::record_progress(&mut status.savepoints, &progress, now);
            let note = match &progress {
                Progress::Completed => lifecycle::note::normal(
                    "SavepointCompleted",
                    format!("final savepoint at {}; deleting", entry.path),
                ),
                _ => lifecycle::note::warning(
                    "SavepointFailed",
                    format!(
                        "final savepoint failed ({:?}); deleting anyway",
                        done.and_then(|d| d.message)
                    ),
                ),
            };
            ctx.publish(rp, &note, "Delete").await;
            write_status(ctx, rp, &status).await?;
        }
        return Ok(None);
    }
    let workload = live.statefulset.as_ref().map(observe::workload);
    if workload.as_ref().is_none_or(|w| w.ready_replicas == 0) {
        return Ok(None);
    }
    let req = savepoints::SavepointRequest {
        path: savepoints::savepoint_path(&rp.spec, &rp.name_any(), now),
        trigger: riskpipe_crds::SavepointTrigger::Upgrade,
        nonce: None,
    };
    let mut history = status.savepoints.clone();
    history.push(savepoints::started(&req, now));
    let mut decision = Decision {
        plan: None,
        rollout: status.rollout.clone(),
        savepoints: history,
        disposed: Vec::new(),
        trigger: Some(req),
        last_nonce: status.last_savepoint_trigger_nonce,
        notes: Vec::new(),
        state: riskpipe_crds::PipelineState::Running,
        stuck: None,
        ops: Default::default(),
    };
    trigger_savepoint(ctx, &mut decision, &live.addrs, workload.as_ref()).await;
    for note in &decision.notes {
        ctx.publish(rp, note, "Delete").await;
    }
    status.savepoints = decision.savepoints;
    write_status(ctx, rp, &status).await?;
    Ok(Some(Action::requeue(super::BUSY_REQUEUE)))
}
