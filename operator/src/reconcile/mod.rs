//! One reconcile of a `RiskPipeline`: read → validate → decide (pure) → build (pure)
//! → server-side apply → act on the workers → status, with an Event for every action.

mod act;
pub mod observe;

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event as KubeEvent, EventType, Recorder},
        finalizer::{Event as Finalizer, finalizer},
    },
};
use riskpipe_crds::{RiskPipeline, RiskPipelineStatus};
use serde_json::json;

use crate::{
    apply::{Applier, ApplyError},
    build::{self, BuildError, Owner},
    checks::{self, TopicInfo},
    lifecycle::{self, Note, Observed, savepoints},
    metrics::Metrics,
    names::{FIELD_MANAGER, FINALIZER},
    status,
    worker_api::WorkerApi,
};

/// Requeue while a rollout or savepoint is under way.
pub const BUSY_REQUEUE: Duration = Duration::from_secs(5);
/// Requeue of a steady pipeline (refreshes the workers' figures in the status).
pub const STEADY_REQUEUE: Duration = Duration::from_secs(30);
/// Said of a savepoint that failed to start.
pub const BUSY_REQUEST_NOTE: &str = "retried with backoff";
/// Requeue while the input topic is missing (it is not part of the spec).
pub const TOPIC_REQUEUE: Duration = Duration::from_secs(60);

/// Why a reconcile failed (retried with backoff; published as a Warning Event).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An owned object could not be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The desired objects could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// An object could not be read.
    #[error("cannot read the {what}")]
    Read {
        /// What.
        what: &'static str,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The status could not be written.
    #[error("cannot write the status of {name}")]
    Status {
        /// The pipeline.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The finalizer could not be added or removed.
    #[error("finalizer {FINALIZER}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    fn read(what: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Read { what, source }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Apply(_) => "apply",
            Self::Build(_) => "build",
            Self::Read { .. } => "read",
            Self::Status { .. } => "status",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// Looks up the input topic.
pub trait Topics: Send + Sync {
    /// What the brokers say of the spec's topic.
    fn lookup<'a>(&'a self, spec: &'a riskpipe_crds::RiskPipelineSpec) -> BoxFuture<'a, TopicInfo>;
}

/// The brokers, asked through librdkafka.
pub struct KafkaTopics;

impl Topics for KafkaTopics {
    fn lookup<'a>(&'a self, spec: &'a riskpipe_crds::RiskPipelineSpec) -> BoxFuture<'a, TopicInfo> {
        Box::pin(crate::kafka::topic_info(spec))
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Server-side apply with the operator's field manager.
    pub applier: Applier,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The workers' HTTP API.
    pub workers: Arc<dyn WorkerApi>,
    /// The input topic's metadata.
    pub topics: Arc<dyn Topics>,
    /// Reconcile metrics.
    pub metrics: Metrics,
    /// The clock (fixed in tests).
    pub now: fn() -> Timestamp,
    /// The worker image of pipelines without `spec.image`.
    pub default_worker_image: String,
}

impl Context {
    /// Publishes an Event about `rp` (failures are logged: an Event is never worth a
    /// failed reconcile).
    pub async fn publish(&self, rp: &RiskPipeline, note: &Note, action: &str) {
        let ns = rp.namespace().unwrap_or_default();
        self.metrics
            .event(&ns, &rp.name_any(), note.reason, note.warning);
        let event = KubeEvent {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.message.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &rp.object_ref(&())).await {
            tracing::warn!(error = %e, reason = note.reason, "cannot publish an Event");
        }
    }
}

/// Reconciles one pipeline (the controller's entry point).
pub async fn reconcile(rp: Arc<RiskPipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer();
    let ns = rp.namespace().unwrap_or_default();
    let api: Api<RiskPipeline> = Api::namespaced(ctx.client.clone(), &ns);
    // The rollout state machine lives in the status: decide from the stored object,
    // not from the watch cache, which may not have seen this operator's last status
    // write yet (a stale read once put a finished savepoint back in progress and
    // stopped the upgrade).
    let Some(rp) = api
        .get_opt(&rp.name_any())
        .await
        .map_err(Error::read("RiskPipeline"))?
        .map(Arc::new)
    else {
        return Ok(Action::await_change());
    };
    if rp.metadata.deletion_timestamp.is_some()
        && let Some(action) = act::final_savepoint(&rp, &ctx).await?
    {
        return Ok(action);
    }
    finalizer(&api, FINALIZER, rp, |event| async {
        match event {
            Finalizer::Apply(rp) => apply(&rp, &ctx).await,
            Finalizer::Cleanup(rp) => {
                ctx.metrics.forget_pipeline(&ns, &rp.name_any());
                let note = lifecycle::note::normal(
                    "Deleted",
                    "the pipeline is deleted; its workers, volumes and configuration go with it (owner references)",
                );
                ctx.publish(&rp, &note, "Delete").await;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Writes `status` with server-side apply on the status subresource.
pub async fn write_status(
    ctx: &Context,
    rp: &RiskPipeline,
    status: &RiskPipelineStatus,
) -> Result<(), Error> {
    let api: Api<RiskPipeline> =
        Api::namespaced(ctx.client.clone(), &rp.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": riskpipe_crds::API_VERSION,
        "kind": riskpipe_crds::KIND,
        "status": status,
    });
    api.patch_status(
        &rp.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Status {
        name: rp.name_any(),
        source,
    })?;
    Ok(())
}

async fn apply(rp: &RiskPipeline, ctx: &Context) -> Result<Action, Error> {
    let now = (ctx.now)();
    let owner = Owner::of(rp)?;
    let generation = rp.metadata.generation.unwrap_or_default();
    let previous = rp.status.clone().unwrap_or_default();

    // Validate: an invalid spec is reported once and waits for a change; the workers
    // keep their last valid configuration.
    let topic = ctx.topics.lookup(&rp.spec).await;
    let errors = checks::validate(&rp.spec, &topic);
    if !errors.is_empty() {
        let message = checks::message(&errors);
        let already = previous.observed_generation == Some(generation)
            && crate::conditions::find(&previous.conditions, "Ready")
                .is_some_and(|c| c.message == message);
        if !already {
            let note = lifecycle::note::warning("InvalidSpec", message.clone());
            ctx.publish(rp, &note, "Validate").await;
        }
        let status = status::invalid(
            &previous,
            generation,
            &message,
            owner.names.selector_string(),
            now,
        );
        write_status(ctx, rp, &status).await?;
        ctx.metrics.invalid_spec();
        let external_only = errors.iter().all(|e| e.field == "spec.source.kafka.topic");
        return Ok(if external_only {
            Action::requeue(TOPIC_REQUEUE)
        } else {
            Action::await_change()
        });
    }

    // The spec acted on: the user's with the parallelism in effect (the autoscaler's
    // choice lives in the status) and the image resolved. The stored spec is never
    // written.
    let spec = lifecycle::effective_spec(&rp.spec, &previous, &ctx.default_worker_image);

    // Observe.
    let live = observe::live(&ctx.client, &owner).await?;
    let workload = live.statefulset.as_ref().map(observe::workload);
    let workers = observe::worker_statuses(ctx.workers.as_ref(), &live.addrs).await;
    let progress = match savepoints::in_progress(&previous) {
        Some(entry) => {
            Some(observe::savepoint_progress(ctx.workers.as_ref(), entry, &live.addrs, now).await)
        }
        None => None,
    };
    let hash = build::config_hash(&spec)?;
    let name = rp.name_any();
    let obs = Observed {
        pipeline: &name,
        spec: &spec,
        desired_hash: &hash,
        status: &previous,
        workload: workload.clone(),
        savepoint: progress,
        changed: observe::changed_sections(live.config_map.as_ref(), &spec),
        metrics: status::aggregate(&workers, now),
        partitions: match topic {
            TopicInfo::Partitions(p) => Some(p),
            _ => None,
        },
        now,
    };

    // Decide, build, apply.
    let mut decision = lifecycle::decide(&obs);
    let plan = decision.plan.clone().unwrap_or(build::WorkloadPlan {
        replicas: workload.as_ref().map_or(0, |w| w.spec_replicas),
        restore_from: workload.as_ref().and_then(|w| w.restore_from.clone()),
    });
    // The restart policy's last restart time goes into the Pod template.
    let mut to_build = (*rp).clone();
    to_build.spec = spec.clone();
    to_build.status.get_or_insert_default().restarts = decision.ops.restarts.clone();
    let desired = build::desired(&to_build, &plan)?;
    act::apply_objects(ctx, &desired, decision.plan.is_some()).await?;

    // Act on the workers, then tell.
    act::trigger_savepoint(ctx, &mut decision, &live.addrs, workload.as_ref()).await;
    let cause = savepoints::retention_cause(&rp.spec);
    act::dispose_savepoints(ctx, &mut decision, &live.addrs, workload.as_ref(), &cause).await;
    for note in &decision.notes {
        ctx.publish(rp, note, note.reason).await;
    }
    let partitions = match topic {
        TopicInfo::Partitions(p) => Some(p),
        _ => None,
    };
    let next = status::compose(&status::Input {
        generation,
        spec: &spec,
        previous: &previous,
        selector: owner.names.selector_string(),
        decision: &decision,
        workload: workload.as_ref(),
        workers: &workers,
        partitions,
        now,
    });
    write_status(ctx, rp, &next).await?;
    ctx.metrics
        .pipeline_status(&rp.namespace().unwrap_or_default(), &name, &next);
    Ok(Action::requeue(
        if decision.progressing()
            || decision.ops.watching
            || decision.state != riskpipe_crds::PipelineState::Running
        {
            BUSY_REQUEUE
        } else {
            STEADY_REQUEUE
        },
    ))
}

/// What to do after a failed reconcile: publish the error with its cause chain, retry
/// with a delay.
pub fn error_policy(rp: Arc<RiskPipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.label());
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::warn!(pipeline = %rp.name_any(), error = %chain, "reconcile failed");
    let note = lifecycle::note::warning("ReconcileFailed", chain);
    let ctx2 = ctx.clone();
    tokio::spawn(async move { ctx2.publish(&rp, &note, "Reconcile").await });
    Action::requeue(Duration::from_secs(15))
}

#[cfg(test)]
mod tests;
