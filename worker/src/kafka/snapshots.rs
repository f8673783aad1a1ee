//! When to take checkpoints, and taking checkpoints and savepoints of every
//! owned partition between micro-batches (when every partition's state and
//! offset are flushed together, so the cut is consistent).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use riskpipe_crds::RiskPipelineSpec;

use super::partition::PartitionWorker;
use crate::checkpoint::{CheckpointStore, mark_complete, partition_dir};
use crate::http::{CheckpointInfo, SavepointRequest, Shared};
use crate::metrics::WorkerMetrics;
use crate::state::PartitionState;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checkpoint and savepoint settings of the pipeline.
pub struct Snapshots {
    store: Option<CheckpointStore>,
    savepoint_root: PathBuf,
    interval: Duration,
    min_pause: Duration,
    retain: usize,
    last: std::cell::Cell<Option<Instant>>,
}

impl Snapshots {
    /// From `spec.checkpoints` / `spec.savepoints`. Without a checkpoint path
    /// there are no periodic checkpoints (S3 storage is not supported yet).
    pub fn from_spec(spec: &RiskPipelineSpec, state_dir: &Path) -> Self {
        let store = spec
            .checkpoints
            .storage
            .path
            .as_deref()
            .map(|p| CheckpointStore::new(Path::new(p)));
        if spec.checkpoints.storage.s3.is_some() {
            tracing::warn!(
                "S3 checkpoint storage is not supported by this build; checkpoints are off"
            );
        }
        let savepoint_root = spec
            .savepoints
            .storage
            .path
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| state_dir.join("savepoints"));
        Snapshots {
            store,
            savepoint_root,
            interval: spec.checkpoints.interval.as_std(),
            min_pause: spec.checkpoints.min_pause.as_std(),
            retain: usize::try_from(spec.checkpoints.retain).unwrap_or(1).max(1),
            last: std::cell::Cell::new(Some(Instant::now())),
        }
    }

    /// Where savepoints go by default.
    pub fn savepoint_root(&self) -> &Path {
        &self.savepoint_root
    }

    /// The newest checkpoint holding `partition`.
    pub fn latest_checkpoint(&self, partition: i32) -> Option<PathBuf> {
        self.store.as_ref().and_then(|s| s.latest_for(partition))
    }

    fn write(workers: &[PartitionWorker], dir: &Path) -> Result<u64> {
        let mut bytes = 0;
        for w in workers {
            let target = partition_dir(dir, w.id);
            w.state
                .checkpoint_to(&target)
                .with_context(|| format!("checkpointing partition {}", w.id))?;
            bytes += PartitionState::folder_bytes(&target);
        }
        let summary: Vec<String> = workers.iter().map(|w| w.id.to_string()).collect();
        mark_complete(dir, &summary.join(","))?;
        Ok(bytes)
    }

    fn checkpoint(
        &self,
        workers: &[PartitionWorker],
        ordinal: u32,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let started = Instant::now();
        let at = now_ms();
        let dir = store.create(ordinal, at)?;
        let bytes = Self::write(workers, &dir)?;
        store.retain(ordinal, self.retain)?;
        let took = started.elapsed();
        metrics.checkpoint_duration.set(took.as_secs_f64());
        metrics.checkpoint_size.set(bytes as i64);
        metrics.checkpoint_time.set(at / 1000);
        let info = CheckpointInfo {
            id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: dir.display().to_string(),
            timestamp_ms: at,
            duration_ms: took.as_millis() as u64,
            size_bytes: bytes,
        };
        tracing::info!(id = %info.id, bytes, ms = info.duration_ms, "checkpoint completed");
        if let Ok(mut st) = shared.status.lock() {
            st.last_checkpoint = Some(info);
        }
        self.last.set(Some(Instant::now()));
        Ok(())
    }

    /// Takes a checkpoint when the interval (and the minimum pause) has passed.
    pub fn maybe_checkpoint(
        &self,
        workers: &[PartitionWorker],
        ordinal: u32,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) -> Result<()> {
        let due = self
            .last
            .get()
            .is_none_or(|l| l.elapsed() >= self.interval.max(self.min_pause));
        if due && self.store.is_some() {
            self.checkpoint(workers, ordinal, metrics, shared)?;
        }
        Ok(())
    }

    /// The checkpoint taken on a clean shutdown.
    pub fn final_checkpoint(
        &self,
        workers: &[PartitionWorker],
        ordinal: u32,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) -> Result<()> {
        self.checkpoint(workers, ordinal, metrics, shared)
    }

    /// Writes a savepoint asked for over HTTP and records the outcome.
    pub fn savepoint(
        &self,
        workers: &[PartitionWorker],
        request: &SavepointRequest,
        shared: &Shared,
    ) {
        let dir = PathBuf::from(&request.path);
        let result = std::fs::create_dir_all(&dir)
            .context("creating the savepoint folder")
            .and_then(|()| Self::write(workers, &dir));
        let (state, error) = match result {
            Ok(bytes) => {
                tracing::info!(id = %request.id, path = %request.path, bytes, "savepoint completed");
                ("completed", None)
            }
            Err(e) => {
                tracing::error!(id = %request.id, error = %format!("{e:#}"), "savepoint failed");
                ("failed", Some(format!("{e:#}")))
            }
        };
        if let Ok(mut map) = shared.savepoints.lock()
            && let Some(info) = map.get_mut(&request.id)
        {
            info.state = state.to_owned();
            info.error = error;
        }
    }
}
