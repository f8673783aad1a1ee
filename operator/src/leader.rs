//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager): only the
//! holder reconciles, so two operator replicas never act at once. Losing the lease
//! stops the controller; the process then exits and is restarted as a follower.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Name of the Lease.
    pub name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// Time before expiry at which the holder renews.
    pub grace: Duration,
}

/// Why leader election could not start.
#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}")]
pub struct LeaseError {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// The cause.
    #[source]
    pub source: LeaseManagerError,
}

/// A running election: `is_leader` turns `true` when this replica holds the lease.
pub struct Election {
    /// Follows whether this replica leads.
    pub is_leader: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Election {
    /// Starts campaigning for the lease.
    pub async fn start(client: Client, cfg: &LeaseConfig) -> Result<Self, LeaseError> {
        let manager = LeaseManagerBuilder::new(client, &cfg.name)
            .with_namespace(&cfg.namespace)
            .with_identity(&cfg.identity)
            .with_duration(cfg.duration.as_secs())
            .with_grace(cfg.grace.as_secs())
            // One field manager per replica: the Lease's conflict detection is
            // server-side apply's, and a shared manager would let every replica
            // overwrite the holder (two leaders; caught by the e2e test).
            .with_field_manager(format!("{}-{}", crate::names::FIELD_MANAGER, cfg.identity))
            .build()
            .await
            .map_err(|source| LeaseError {
                name: cfg.name.clone(),
                namespace: cfg.namespace.clone(),
                source,
            })?;
        let (is_leader, task) = manager.watch().await;
        Ok(Self { is_leader, task })
    }

    /// Waits until this replica leads; `false` if the election ended first.
    pub async fn acquired(&mut self) -> bool {
        self.is_leader.wait_for(|l| *l).await.is_ok()
    }

    /// Waits until this replica no longer leads.
    pub async fn lost(&mut self) {
        let _ = self.is_leader.wait_for(|l| !*l).await;
    }

    /// Releases the lease so a follower takes over at once (graceful shutdown).
    pub async fn release(self) {
        let Self { is_leader, task } = self;
        // Dropping the receiver ends the watch task, which releases the lease.
        drop(is_leader);
        match task.await {
            Ok(Ok(_)) => tracing::info!("Lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot release the Lease; it expires on its own")
            }
            Err(e) => tracing::warn!(error = %e, "leader election task failed"),
        }
    }
}
