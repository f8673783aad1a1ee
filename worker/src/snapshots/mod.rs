//! When to take checkpoints, taking checkpoints and savepoints of every owned
//! partition between micro-batches (when every partition's state and offset are
//! flushed together, so the cut is consistent), restoring partitions from them, and
//! removing them (checkpoint retention, savepoint deletion).
//!
//! Taking one has two steps. The processing loop makes a RocksDB checkpoint of each
//! owned partition into a staging folder beside the state (same filesystem: the
//! table files are hard links, so this costs a memtable flush and a few small files,
//! milliseconds per partition); a background thread then copies the staged files to
//! the storage (folder or bucket, see [`crate::snapshots::store`]), writes the
//! partition markers and `_complete` last, applies retention and removes the
//! staging. The loop learns the outcome at its next [`Snapshots::maybe_checkpoint`].
//! At most one checkpoint is copied at a time; a checkpoint that falls due while
//! the previous one is still being copied waits for it. Files that the previous
//! checkpoint of this worker already holds unchanged (RocksDB table files are
//! immutable) are copied inside the storage rather than sent again.

pub mod layout;
pub mod store;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use riskpipe_crds::{RiskPipelineSpec, Storage};

use crate::http::{CheckpointInfo, SavepointAction, SavepointInfo, SavepointRequest, Shared};
use crate::metrics::WorkerMetrics;
use crate::snapshots::layout::{
    CHECKPOINTS, COMPLETE, checkpoint_name, checkpoints_from_keys, latest_for, partition_dir,
    partition_marker, partition_name, retention_victims,
};
use crate::snapshots::store::{FileList, Location, Place, SnapshotStore, s3_url};
use crate::state::PartitionState;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a background copy is for.
enum JobKind {
    Checkpoint {
        place: Place,
        at_ms: i64,
        started: Instant,
        blocked: Duration,
    },
    Savepoint {
        id: String,
    },
}

struct Job {
    kind: JobKind,
    thread: JoinHandle<Result<Copied>>,
}

/// Checkpoint and savepoint settings of the pipeline, and the copies under way.
pub struct Snapshots {
    store: SnapshotStore,
    /// This pipeline's checkpoint folder, when checkpoints are configured.
    checkpoints: Option<Place>,
    /// Older folders of this pipeline's checkpoints (read only, for migration).
    legacy_checkpoints: Vec<Place>,
    savepoint_root: PathBuf,
    staging: PathBuf,
    interval: Duration,
    min_pause: Duration,
    retain: usize,
    last_start: Cell<Instant>,
    last_end: Cell<Option<Instant>>,
    jobs: RefCell<Vec<Job>>,
    /// `STATE/savepoints.json`: the savepoints this worker took, so that
    /// `GET`/`DELETE /savepoints/{id}` still know them after a restart.
    registry_file: PathBuf,
    /// The registry as last written; `None` until it was read at start.
    registry: RefCell<Option<BTreeMap<String, SavepointInfo>>>,
    /// The files of the last checkpoint, for the next one to reuse.
    last_files: LastFiles,
}

/// What copying a snapshot did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Copied {
    /// Bytes of the snapshot.
    bytes: u64,
    /// Bytes sent (the rest was copied inside the store from the previous checkpoint).
    sent: u64,
}

/// The files of each partition in the last checkpoint this worker completed, which
/// the next one copies inside the store instead of sending again.
type LastFiles = Arc<Mutex<BTreeMap<i32, (Place, FileList)>>>;

/// Copies a staged snapshot into `place`: each partition's files, then its marker
/// (holding the partition's file list), then `_complete` listing the partitions.
/// With `last`, unchanged files of the previous checkpoint are reused, and `last`
/// becomes this one.
fn upload(
    store: &SnapshotStore,
    staged: &Path,
    place: &Place,
    partitions: &[(i32, Option<i64>)],
    last: Option<&LastFiles>,
) -> Result<Copied> {
    let previous = last
        .and_then(|l| l.lock().ok().map(|m| m.clone()))
        .unwrap_or_default();
    let mut copied = Copied::default();
    let mut lists = BTreeMap::new();
    for (p, next_offset) in partitions {
        let target = place.join(&partition_name(*p));
        let reuse = previous.get(p).map(|(at, files)| (at, files));
        let done = store.upload_dir_reusing(&partition_dir(staged, *p), &target, reuse)?;
        copied.bytes += done.sent + done.reused;
        copied.sent += done.sent;
        let marker = PartitionMarker {
            files: done.files,
            next_offset: *next_offset,
        };
        let bytes = serde_json::to_vec(&marker).context("encoding a partition marker")?;
        store.put(place, &partition_marker(*p), bytes)?;
        lists.insert(*p, (target, marker.files));
    }
    let summary: Vec<String> = partitions.iter().map(|(p, _)| p.to_string()).collect();
    store.put(place, COMPLETE, summary.join(",").into_bytes())?;
    if let Some(last) = last
        && let Ok(mut m) = last.lock()
    {
        *m = lists;
    }
    Ok(copied)
}

/// A partition's completion marker: its files (names, sizes, hashes) and the
/// next input offset its state holds, so a restore can compare snapshots with
/// the local state without downloading them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PartitionMarker {
    files: FileList,
    next_offset: Option<i64>,
}

/// A marker as written by this version, or by one before offsets were in it.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum AnyMarker {
    Current(PartitionMarker),
    FilesOnly(serde::de::IgnoredAny),
}

/// A snapshot that holds a partition, found in checkpoint or savepoint storage.
#[derive(Debug, Clone)]
pub struct RemoteSnapshot {
    /// The snapshot (its partition folders and markers are inside).
    place: Place,
    /// The partition.
    partition: i32,
    /// The next input offset its state holds; `None` for snapshots written
    /// before markers recorded it.
    pub next_offset: Option<i64>,
}

impl RemoteSnapshot {
    /// Where the partition's files are.
    pub fn url(&self) -> String {
        self.place
            .join(&partition_name(self.partition))
            .url()
            .to_owned()
    }

    /// Whether this snapshot holds more of the stream than a local state whose
    /// next offset is `local` (`None`: the local state never recorded one).
    /// A snapshot that does not say its offset loses to a local state, as
    /// before offsets were recorded.
    pub fn is_newer_than(&self, local: Option<i64>) -> bool {
        match (self.next_offset, local) {
            (Some(remote), Some(local)) => remote > local,
            (_, None) => true,
            (None, Some(_)) => false,
        }
    }
}

/// One owned partition's state, as the snapshots see it.
pub struct Owned<'a> {
    /// The input partition.
    pub id: i32,
    /// Its state (flushed: snapshots are taken between micro-batches).
    pub state: &'a PartitionState,
}

/// A staged partition and the next input offset its state holds.
type StagedPartition = (i32, Option<i64>);

/// Sets a savepoint's state in `/savepoints/{id}` from the outcome of its copy.
fn record_savepoint(shared: &Shared, id: &str, result: Result<Copied>) {
    let (state, error) = match result {
        Ok(copied) => {
            tracing::info!(%id, bytes = copied.bytes, "savepoint completed");
            (crate::http::SavepointState::Completed, None)
        }
        Err(e) => {
            tracing::error!(%id, error = %format!("{e:#}"), "savepoint failed");
            (crate::http::SavepointState::Failed, Some(format!("{e:#}")))
        }
    };
    if let Ok(mut map) = shared.savepoints.lock()
        && let Some(info) = map.get_mut(id)
    {
        info.state = state;
        info.error = error;
    }
}

/// Removes the checkpoints that retention no longer keeps; returns how many.
fn apply_retention(
    store: &SnapshotStore,
    checkpoints: &Place,
    ordinal: u32,
    retain: usize,
) -> Result<usize> {
    let keys = store.list(checkpoints)?;
    let entries = checkpoints_from_keys(keys.iter().map(String::as_str));
    let victims = retention_victims(&entries, ordinal, retain);
    for name in &victims {
        store.delete(&checkpoints.join(name))?;
    }
    Ok(victims.len())
}

impl Snapshots {
    /// From `spec.checkpoints` / `spec.savepoints`; S3 credentials Secrets are
    /// read under `secrets_dir` (`--secrets-dir`), and a missing one is an
    /// error here, at start.
    pub fn with_secrets_dir(
        spec: &RiskPipelineSpec,
        state_dir: &Path,
        secrets_dir: &Path,
    ) -> Result<Self> {
        let checkpoints_kind = spec.checkpoints.storage.kind();
        let savepoints_kind = spec.savepoints.storage.kind();
        let mut buckets = Vec::new();
        if let Some(Storage::S3(s3)) = checkpoints_kind {
            buckets.push((s3, "spec.checkpoints.storage.s3"));
        }
        if let Some(Storage::S3(s3)) = savepoints_kind {
            buckets.push((s3, "spec.savepoints.storage.s3"));
        }
        let store = SnapshotStore::new(&buckets, secrets_dir)?;
        let checkpoints = match checkpoints_kind {
            Some(Storage::Path(p)) => {
                Some(store.place(&format!("{}/{CHECKPOINTS}", p.trim_end_matches('/')))?)
            }
            Some(Storage::S3(s3)) => Some(store.place(&format!("{}/{CHECKPOINTS}", s3_url(s3)))?),
            None => None,
        };
        let savepoint_root = match savepoints_kind {
            Some(Storage::Path(p)) => PathBuf::from(p),
            Some(Storage::S3(s3)) => PathBuf::from(s3_url(s3)),
            None => state_dir.join("savepoints"),
        };
        // Staging left by a crash is of no use: checkpoints are taken anew.
        let staging = state_dir.join(".snapshots");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .with_context(|| format!("removing the old staging {}", staging.display()))?;
        }
        Ok(Snapshots {
            store,
            checkpoints,
            legacy_checkpoints: Vec::new(),
            savepoint_root,
            staging,
            interval: spec.checkpoints.interval.as_std(),
            min_pause: spec.checkpoints.min_pause.as_std(),
            retain: usize::try_from(spec.checkpoints.retain).unwrap_or(1).max(1),
            last_start: Cell::new(Instant::now()),
            last_end: Cell::new(None),
            jobs: RefCell::new(Vec::new()),
            registry_file: state_dir.join("savepoints.json"),
            registry: RefCell::new(None),
            last_files: LastFiles::default(),
        })
    }

    /// Where savepoints go by default: a folder, or `s3://bucket/prefix`.
    pub fn savepoint_root(&self) -> &Path {
        &self.savepoint_root
    }

    /// Restores `partition` into the database folder `to` (replacing it) from
    /// what [`Snapshots::find`] finds; returns where it came from, or `None`
    /// when there is nothing to restore.
    #[cfg(test)]
    pub fn restore(
        &self,
        restore_from: Option<&Path>,
        partition: i32,
        to: &Path,
    ) -> Result<Option<String>> {
        match self.find(restore_from, partition)? {
            Some(remote) => self.fetch(&remote, to).map(Some),
            None => Ok(None),
        }
    }

    /// The snapshot to restore `partition` from: the savepoint or checkpoint at
    /// `restore_from` (a folder or `s3://bucket/key`) or the newest complete
    /// checkpoint holding it, whichever recorded the later offset (the given
    /// one when they do not say). A savepoint that lacks the partition falls
    /// back to the newest checkpoint that holds it. `None` when nothing holds it.
    pub fn find(
        &self,
        restore_from: Option<&Path>,
        partition: i32,
    ) -> Result<Option<RemoteSnapshot>> {
        let given = match restore_from {
            Some(location) => {
                let text = location.to_str().with_context(|| {
                    format!("--restore-from {} is not UTF-8", location.display())
                })?;
                if let Location::Folder(dir) = Location::parse(text)?
                    && !dir.is_dir()
                {
                    bail!("--restore-from {text}: no such folder");
                }
                let place = self.store.place(text)?;
                if let Some(found) = self.holding(&place, partition)? {
                    Some(found)
                } else if !self.store.exists(&place, COMPLETE)? {
                    bail!(
                        "--restore-from {text}: no savepoint or checkpoint there \
                         (no {COMPLETE} marker was ever written)"
                    );
                } else {
                    tracing::warn!(
                        partition,
                        from = place.url(),
                        "the savepoint does not hold this partition; looking for a checkpoint that does"
                    );
                    None
                }
            }
            None => None,
        };
        let checkpoint = match self.latest_checkpoint_place(partition)? {
            Some(place) => self.holding(&place, partition)?,
            None => None,
        };
        Ok(match (given, checkpoint) {
            (Some(g), Some(c))
                if c.next_offset
                    .is_some_and(|co| g.next_offset.is_some_and(|go| co > go)) =>
            {
                tracing::info!(
                    partition, savepoint = %g.url(), checkpoint = %c.url(),
                    "a checkpoint newer than the savepoint holds the partition; restoring the checkpoint"
                );
                Some(c)
            }
            (Some(g), _) => Some(g),
            (None, c) => c,
        })
    }

    /// The partition of the snapshot at `place`, when its marker is there.
    fn holding(&self, place: &Place, partition: i32) -> Result<Option<RemoteSnapshot>> {
        let Some(bytes) = self.store.get(place, &partition_marker(partition))? else {
            return Ok(None);
        };
        let next_offset = match serde_json::from_slice::<AnyMarker>(&bytes) {
            Ok(AnyMarker::Current(m)) => m.next_offset,
            Ok(AnyMarker::FilesOnly(_)) | Err(_) => None,
        };
        Ok(Some(RemoteSnapshot {
            place: place.clone(),
            partition,
            next_offset,
        }))
    }

    /// Downloads a snapshot's partition into the database folder `to`
    /// (replacing it); returns where it came from.
    pub fn fetch(&self, remote: &RemoteSnapshot, to: &Path) -> Result<String> {
        let partition = remote.partition;
        let from = remote.place.join(&partition_name(partition));
        let tmp = to.with_extension("restoring");
        for dir in [&tmp, to] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        let started = Instant::now();
        let bytes = self
            .store
            .download_dir(&from, &tmp)
            .with_context(|| format!("restoring partition {partition} from {}", from.url()))?;
        std::fs::rename(&tmp, to)
            .with_context(|| format!("moving {} to {}", tmp.display(), to.display()))?;
        tracing::info!(
            partition,
            from = from.url(),
            bytes,
            next_offset = ?remote.next_offset,
            ms = started.elapsed().as_millis() as u64,
            "state restored"
        );
        Ok(from.url().to_owned())
    }

    /// The newest complete checkpoint holding `partition`: in this pipeline's
    /// folder, else in the first of its legacy folders that has one.
    fn latest_checkpoint_place(&self, partition: i32) -> Result<Option<Place>> {
        for root in self.checkpoints.iter().chain(&self.legacy_checkpoints) {
            let keys = self.store.list(root)?;
            let entries = checkpoints_from_keys(keys.iter().map(String::as_str));
            if let Some(e) = latest_for(&entries, partition) {
                return Ok(Some(root.join(&e.name)));
            }
        }
        Ok(None)
    }

    /// Puts this pipeline's checkpoints in their own `folder` inside
    /// `STORAGE/checkpoints` (see [`crate::kafka::identity::Identity::checkpoint_folder`]);
    /// checkpoints in the `legacy` folders (`""`: `STORAGE/checkpoints` itself),
    /// written by older versions, are still restored from when the folder has none.
    pub fn in_folder(mut self, folder: &str, legacy: &[String]) -> Self {
        if let Some(root) = self.checkpoints.take() {
            self.checkpoints = Some(root.join(folder));
            self.legacy_checkpoints = legacy
                .iter()
                .map(|f| {
                    if f.is_empty() {
                        root.clone()
                    } else {
                        root.join(f)
                    }
                })
                .collect();
        }
        self
    }

    /// Stages a RocksDB checkpoint of every owned partition under `staging/name`.
    fn stage(&self, workers: &[Owned<'_>], name: &str) -> Result<(PathBuf, Vec<StagedPartition>)> {
        let dir = self.staging.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for w in workers {
            w.state
                .checkpoint_to(&partition_dir(&dir, w.id))
                .with_context(|| format!("checkpointing partition {}", w.id))?;
        }
        let mut partitions = Vec::with_capacity(workers.len());
        for w in workers {
            partitions.push((w.id, w.state.next_offset()?));
        }
        Ok((dir, partitions))
    }

    fn checkpoint_pending(&self) -> bool {
        self.jobs
            .borrow()
            .iter()
            .any(|j| matches!(j.kind, JobKind::Checkpoint { .. }))
    }

    /// Stages a checkpoint and starts copying it; with `wait`, copies it on this thread.
    fn checkpoint(
        &self,
        workers: &[Owned<'_>],
        ordinal: u32,
        metrics: &WorkerMetrics,
        shared: &Shared,
        wait: bool,
    ) -> Result<()> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(());
        };
        let started = Instant::now();
        self.last_start.set(started);
        let at_ms = now_ms();
        let name = checkpoint_name(ordinal, at_ms);
        let (staged, partitions) = self.stage(workers, &name)?;
        let blocked = started.elapsed();
        let place = checkpoints.join(&name);
        let (store, target, root, retain, last) = (
            self.store.clone(),
            place.clone(),
            checkpoints.clone(),
            self.retain,
            Arc::clone(&self.last_files),
        );
        let copy = move || {
            let result = upload(&store, &staged, &target, &partitions, Some(&last));
            let _ignored = std::fs::remove_dir_all(&staged);
            let copied = result?;
            match apply_retention(&store, &root, ordinal, retain) {
                Ok(n) if n > 0 => tracing::debug!(removed = n, "checkpoint retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "checkpoint retention failed"),
            }
            Ok(copied)
        };
        let kind = JobKind::Checkpoint {
            place,
            at_ms,
            started,
            blocked,
        };
        if wait {
            let result = copy();
            self.finish(kind, result, metrics, shared)
        } else {
            let thread = std::thread::Builder::new()
                .name("checkpoint-copy".to_owned())
                .spawn(copy)
                .context("starting the checkpoint copy thread")?;
            self.jobs.borrow_mut().push(Job { kind, thread });
            Ok(())
        }
    }

    /// Records the outcome of a copy. A failed checkpoint copy is an error only when
    /// `wait`ing (the final checkpoint); otherwise the next checkpoint tries again.
    fn finish(
        &self,
        kind: JobKind,
        result: Result<Copied>,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) -> Result<()> {
        match kind {
            JobKind::Checkpoint {
                place,
                at_ms,
                started,
                blocked,
            } => {
                self.last_end.set(Some(Instant::now()));
                let copied = result.with_context(|| format!("checkpoint {}", place.url()))?;
                let bytes = copied.bytes;
                let took = started.elapsed();
                metrics.checkpoint_duration.set(took.as_secs_f64());
                metrics.checkpoint_size.set(bytes as i64);
                metrics.checkpoint_time.set(at_ms / 1000);
                let info = CheckpointInfo {
                    id: place
                        .url()
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    path: place.url().to_owned(),
                    timestamp_ms: at_ms,
                    duration_ms: took.as_millis() as u64,
                    size_bytes: bytes,
                };
                tracing::info!(
                    id = %info.id, bytes, sent = copied.sent, ms = info.duration_ms,
                    blocked_ms = blocked.as_millis() as u64, "checkpoint completed"
                );
                if let Ok(mut st) = shared.status.lock() {
                    st.last_checkpoint = Some(info);
                }
                Ok(())
            }
            JobKind::Savepoint { id } => {
                record_savepoint(shared, &id, result);
                Ok(())
            }
        }
    }

    /// Records the copies that have ended; with `all`, waits for every one.
    fn reap(&self, all: bool, metrics: &WorkerMetrics, shared: &Shared) {
        let done: Vec<Job> = {
            let mut jobs = self.jobs.borrow_mut();
            let (done, running): (Vec<Job>, Vec<Job>) =
                jobs.drain(..).partition(|j| all || j.thread.is_finished());
            *jobs = running;
            done
        };
        for job in done {
            let result = job
                .thread
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the copy thread panicked")));
            if let Err(e) = self.finish(job.kind, result, metrics, shared) {
                metrics.errors.inc();
                tracing::error!(error = %format!("{e:#}"), "checkpoint failed; the next one tries again");
            }
        }
    }

    /// Keeps `savepoints.json` equal to `/savepoints`: on the first call, adds the
    /// savepoints of earlier runs (one still being written then has failed); after
    /// that, writes the file when the savepoints changed.
    fn sync_registry(&self, shared: &Shared) {
        let mut last = self.registry.borrow_mut();
        let Ok(mut map) = shared.savepoints.lock() else {
            return;
        };
        if last.is_none() {
            let saved: BTreeMap<String, SavepointInfo> = std::fs::read(&self.registry_file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            for (id, mut info) in saved {
                if info.state == crate::http::SavepointState::InProgress {
                    info.state = crate::http::SavepointState::Failed;
                    info.error = Some("the worker stopped while writing it".to_owned());
                }
                map.entry(id).or_insert(info);
            }
        }
        if last.as_ref() == Some(&*map) {
            return;
        }
        let tmp = self.registry_file.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&*map)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.registry_file));
        if let Err(e) = written {
            tracing::warn!(
                file = %self.registry_file.display(), error = %e,
                "cannot record the savepoints; they are forgotten on restart"
            );
        }
        // Tried once per change, not on every loop.
        *last = Some(map.clone());
    }

    /// Records finished copies, and starts a checkpoint when the interval has passed
    /// since the last start, the minimum pause since the last end, and the previous
    /// copy is done. Blocks only for staging (see the module doc).
    pub fn maybe_checkpoint(
        &self,
        workers: &[Owned<'_>],
        ordinal: u32,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) -> Result<()> {
        self.reap(false, metrics, shared);
        self.sync_registry(shared);
        let due = self.last_start.get().elapsed() >= self.interval
            && self
                .last_end
                .get()
                .is_none_or(|e| e.elapsed() >= self.min_pause);
        if due && self.checkpoints.is_some() && !self.checkpoint_pending() {
            self.checkpoint(workers, ordinal, metrics, shared, false)?;
        }
        Ok(())
    }

    /// The checkpoint taken on a clean shutdown: waits for the copies under way,
    /// then takes one and copies it before returning.
    pub fn final_checkpoint(
        &self,
        workers: &[Owned<'_>],
        ordinal: u32,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) -> Result<()> {
        self.reap(true, metrics, shared);
        self.sync_registry(shared);
        self.checkpoint(workers, ordinal, metrics, shared, true)
    }

    /// Carries out a savepoint request from HTTP: takes one (staged here, copied in
    /// the background, its state updated when the copy ends) or deletes one (in the
    /// background; the answer goes back on the request's channel).
    pub fn savepoint(&self, workers: &[Owned<'_>], request: &SavepointRequest, shared: &Shared) {
        match &request.action {
            SavepointAction::Take => self.take_savepoint(workers, request, shared),
            SavepointAction::Delete(reply) => {
                let (store, path, answer) =
                    (self.store.clone(), request.path.clone(), reply.clone());
                let id = request.id.clone();
                let spawned = std::thread::Builder::new()
                    .name("savepoint-delete".to_owned())
                    .spawn(move || {
                        let result = store.place(&path).and_then(|place| store.delete(&place));
                        match &result {
                            Ok(n) => tracing::info!(%id, %path, objects = n, "savepoint deleted"),
                            Err(e) => {
                                tracing::error!(%id, error = %format!("{e:#}"), "savepoint deletion failed");
                            }
                        }
                        let _gone = answer.send(result.map(drop).map_err(|e| format!("{e:#}")));
                    });
                if let Err(e) = spawned {
                    let _gone = reply.send(Err(format!("starting the delete thread: {e}")));
                }
            }
        }
    }

    fn take_savepoint(&self, workers: &[Owned<'_>], request: &SavepointRequest, shared: &Shared) {
        let started = self.store.place(&request.path).and_then(|place| {
            let (staged, partitions) = self.stage(workers, &format!("savepoint-{}", request.id))?;
            let store = self.store.clone();
            let thread = std::thread::Builder::new()
                .name("savepoint-copy".to_owned())
                .spawn(move || {
                    let result = upload(&store, &staged, &place, &partitions, None);
                    let _ignored = std::fs::remove_dir_all(&staged);
                    result
                })
                .context("starting the savepoint copy thread")?;
            Ok(thread)
        });
        match started {
            Ok(thread) => self.jobs.borrow_mut().push(Job {
                kind: JobKind::Savepoint {
                    id: request.id.clone(),
                },
                thread,
            }),
            Err(e) => record_savepoint(shared, &request.id, Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskpipe_crds::{SourceSpec, StorageSpec};

    fn stage(root: &Path, tag: &str, partitions: &[i32]) -> PathBuf {
        let staged = root.join(format!("staged-{tag}"));
        for p in partitions {
            let dir = partition_dir(&staged, *p);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("CURRENT"), format!("{tag}/{p}")).unwrap();
            std::fs::write(dir.join("000009.sst"), vec![7u8; 1000]).unwrap();
        }
        staged
    }

    #[test]
    fn folder_checkpoints_listing_retention_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        let mut spec = RiskPipelineSpec::with_source(SourceSpec::kafka());
        spec.checkpoints.storage = StorageSpec::path(storage.to_str().unwrap());
        spec.checkpoints.retain = 2;
        let state = dir.path().join("state");
        let snaps = Snapshots::with_secrets_dir(&spec, &state, dir.path()).unwrap();
        let root = snaps.checkpoints.clone().unwrap();
        assert_eq!(root.url(), storage.join("checkpoints").to_str().unwrap());
        let last = LastFiles::default();
        for millis in [1_000, 2_000, 3_000] {
            let staged = stage(dir.path(), &millis.to_string(), &[0, 1]);
            let place = root.join(&checkpoint_name(0, millis));
            let copied = upload(
                &snaps.store,
                &staged,
                &place,
                &[(0, Some(1)), (1, Some(1))],
                Some(&last),
            )
            .unwrap();
            // Only the first sends the (unchanged) table files.
            let sent = if millis == 1_000 { 2 * 1006 } else { 2 * 6 };
            assert_eq!((copied.bytes, copied.sent), (2 * 1006, sent));
        }
        // A copy that died before its markers, newer than every complete one.
        let staged = stage(dir.path(), "4000", &[0]);
        let partial = root.join(&format!("{}/partition-0000", checkpoint_name(0, 4_000)));
        snaps
            .store
            .upload_dir(&partition_dir(&staged, 0), &partial)
            .unwrap();

        assert_eq!(apply_retention(&snaps.store, &root, 0, 2).unwrap(), 1);
        let keys = snaps.store.list(&root).unwrap();
        let names: Vec<String> = checkpoints_from_keys(keys.iter().map(String::as_str))
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            names,
            [
                "chk-0000000002000-w0",
                "chk-0000000003000-w0",
                "chk-0000000004000-w0"
            ]
        );
        assert!(!storage.join("checkpoints/chk-0000000001000-w0").exists());

        // The newest complete checkpoint, never the interrupted one.
        let to = state.join("partition-0000");
        let from = snaps.restore(None, 0, &to).unwrap().unwrap();
        assert!(
            from.ends_with("chk-0000000003000-w0/partition-0000"),
            "{from}"
        );
        assert_eq!(
            std::fs::read_to_string(to.join("CURRENT")).unwrap(),
            "3000/0"
        );
        // Its table file was reused from the first checkpoint, which retention removed.
        assert_eq!(
            std::fs::read(to.join("000009.sst")).unwrap(),
            vec![7u8; 1000]
        );
        assert_eq!(snaps.restore(None, 5, &state.join("p5")).unwrap(), None);

        // From a given snapshot folder; a missing or empty one is an error.
        let older = storage.join("checkpoints/chk-0000000002000-w0");
        let to = state.join("partition-0001");
        snaps.restore(Some(&older), 1, &to).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("CURRENT")).unwrap(),
            "2000/1"
        );
        assert_eq!(snaps.restore(Some(&older), 6, &to).unwrap(), None);
        let err = snaps
            .restore(Some(&dir.path().join("nothing")), 0, &to)
            .unwrap_err();
        assert!(err.to_string().contains("no such folder"), "{err:#}");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = snaps.restore(Some(&empty), 0, &to).unwrap_err();
        assert!(err.to_string().contains("no savepoint"), "{err:#}");
    }
}
