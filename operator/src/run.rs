//! The operator process: options, leader election, the controller, the metrics
//! endpoint and graceful shutdown on SIGTERM/SIGINT.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client,
    runtime::{
        Controller,
        controller::Config as ControllerConfig,
        events::{Recorder, Reporter},
        watcher,
    },
};
use riskpipe_crds::RiskPipeline;
use tokio_util::sync::CancellationToken;

use crate::{
    apply::Applier,
    leader::{Election, LeaseConfig},
    metrics::{self, Metrics},
    names::FIELD_MANAGER,
    reconcile::{self, Context, KafkaTopics},
    worker_api::HttpWorkers,
};

/// The command line: run the operator, or `check` a running one.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "riskpipe-operator",
    version,
    about = "Reconciles RiskPipeline resources"
)]
pub struct Cli {
    /// A command other than running the operator.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the operator.
    #[command(flatten)]
    pub options: Options,
}

/// Commands besides the default (run).
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Exit 0 once an operator replica leads and the RiskPipeline API is served (`helm test`).
    Check(crate::check::CheckOptions),
}

/// Runs what the command line asks for.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Check(opts)) => crate::check::check(opts).await,
        None => run(cli.options).await,
    }
}

/// Options of the operator (each also from the environment).
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Namespaces to watch (comma-separated); every namespace when empty.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader through a Lease (turn off only with a single replica).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "riskpipe-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME", default_value = "riskpipe-operator")]
    pub identity: String,
    /// Seconds a Lease is valid without renewal.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Pipelines reconciled at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Worker image of pipelines without `spec.image` (the chart sets the worker
    /// image of its own release, so an operator upgrade moves those workers too).
    #[arg(long, env = "DEFAULT_WORKER_IMAGE", default_value = riskpipe_crds::DEFAULT_IMAGE)]
    pub default_worker_image: String,
}

/// Runs the operator until SIGTERM/SIGINT or until it loses the lease.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (no in-cluster config or kubeconfig)")?;
    let metrics = Metrics::default();
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let server = tokio::spawn(metrics::serve(
        opts.metrics_addr,
        metrics.clone(),
        shutdown.clone(),
    ));

    let election = if opts.leader_election {
        let cfg = LeaseConfig {
            name: opts.lease_name.clone(),
            namespace: opts.lease_namespace.clone(),
            identity: opts.identity.clone(),
            duration: Duration::from_secs(opts.lease_duration_seconds),
            grace: Duration::from_secs((opts.lease_duration_seconds / 3).max(1)),
        };
        let mut e = Election::start(client.clone(), &cfg).await?;
        tracing::info!(lease = %cfg.name, identity = %cfg.identity, "waiting to lead");
        tokio::select! {
            acquired = e.acquired() => if !acquired { anyhow::bail!("leader election ended before this replica led") },
            () = shutdown.cancelled() => { e.release().await; return Ok(()); }
        }
        tracing::info!("leading");
        Some(e)
    } else {
        None
    };
    metrics.set_leader(true);

    let stop = shutdown.child_token();
    let lost_lease = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let monitor = election.as_ref().map(|e| {
        let mut rx = e.is_leader.clone();
        let (stop, lost_lease) = (stop.clone(), lost_lease.clone());
        // Ends with the controllers, dropping its receiver: the election task stops
        // (and releases the Lease) only once every receiver is gone.
        tokio::spawn(async move {
            tokio::select! {
                _ = rx.wait_for(|l| !*l) => {
                    tracing::error!("lost the leader Lease; stopping");
                    lost_lease.store(true, std::sync::atomic::Ordering::SeqCst);
                    stop.cancel();
                }
                () = stop.cancelled() => {}
            }
        })
    });
    let ctx = Arc::new(Context {
        client: client.clone(),
        applier: Applier::new(client.clone()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(opts.identity.clone()),
            },
        ),
        workers: Arc::new(HttpWorkers::default()),
        topics: Arc::new(KafkaTopics),
        metrics: metrics.clone(),
        default_worker_image: opts.default_worker_image.clone(),
        now: k8s_openapi::jiff::Timestamp::now,
    });
    let scopes: Vec<Option<String>> = if opts.namespaces.is_empty() {
        vec![None]
    } else {
        opts.namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = scopes
        .into_iter()
        .map(|ns| controller(client.clone(), ns, &opts, ctx.clone(), stop.clone()));
    futures::future::join_all(controllers).await;
    // The controllers end on shutdown or on a lost lease; either way stop the rest.
    stop.cancel();
    metrics.set_leader(false);
    if let Some(monitor) = monitor {
        monitor.await.context("lease monitor task")?;
    }
    if let Some(e) = election {
        e.release().await;
    }
    shutdown.cancel();
    server
        .await
        .context("metrics server task")?
        .context("metrics server")?;
    if lost_lease.load(std::sync::atomic::Ordering::SeqCst) {
        // A non-zero exit: Kubernetes restarts the replica as a follower.
        anyhow::bail!("lost the leader Lease");
    }
    tracing::info!("stopped");
    Ok(())
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn controller(
    client: Client,
    ns: Option<String>,
    opts: &Options,
    ctx: Arc<Context>,
    stop: CancellationToken,
) {
    let owned = || {
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"))
    };
    Controller::new(
        api::<RiskPipeline>(&client, &ns),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, &ns), owned())
    .owns(api::<ConfigMap>(&client, &ns), owned())
    .owns(api::<Service>(&client, &ns), owned())
    .owns(api::<ServiceAccount>(&client, &ns), owned())
    .owns(api::<PodDisruptionBudget>(&client, &ns), owned())
    .owns(api::<PersistentVolumeClaim>(&client, &ns), owned())
    .with_config(ControllerConfig::default().concurrency(opts.concurrency))
    .graceful_shutdown_on(stop.cancelled_owned())
    .run(reconcile::reconcile, reconcile::error_policy, ctx)
    .for_each(|res| async move {
        match res {
            Ok((obj, _)) => tracing::debug!(pipeline = %obj.name, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile"),
        }
    })
    .await;
}

async fn cancel_on_signal(token: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing reconciles in flight");
    token.cancel();
}
