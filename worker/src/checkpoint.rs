//! Checkpoints and savepoints on a filesystem path (a volume in Kubernetes).
//!
//! A snapshot of a partition is a RocksDB checkpoint of its database, which holds
//! the partition's window state and, in its metadata, the next input offset — a
//! consistent cut by construction. Each worker writes the partitions it owns:
//!
//! ```text
//! ROOT/checkpoints/chk-<millis>-w<ordinal>/partition-0003/   (RocksDB files)
//! ROOT/checkpoints/chk-<millis>-w<ordinal>/_complete           (written last)
//! SAVEPOINT/partition-0003/ …
//! ```
//!
//! A folder without `_complete` is an interrupted snapshot and is ignored. The
//! latest checkpoint of a partition is the newest complete folder that holds it,
//! so partitions can move between workers at any replica count.

use std::path::{Path, PathBuf};

/// A snapshot that could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct SnapshotError {
    /// What was being done.
    pub what: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The folder name of one partition inside a snapshot.
pub fn partition_dir(snapshot: &Path, partition: i32) -> PathBuf {
    snapshot.join(format!("partition-{partition:04}"))
}

/// Marks a snapshot folder complete (after every partition was written).
pub fn mark_complete(snapshot: &Path, summary: &str) -> Result<(), SnapshotError> {
    let marker = snapshot.join("_complete");
    std::fs::write(&marker, summary).map_err(io("writing", &marker))
}

/// Whether a snapshot folder is complete.
pub fn is_complete(snapshot: &Path) -> bool {
    snapshot.join("_complete").is_file()
}

/// Checkpoints of one pipeline under a root folder.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    root: PathBuf,
}

impl CheckpointStore {
    /// Checkpoints under `root/checkpoints`.
    pub fn new(root: &Path) -> Self {
        CheckpointStore {
            root: root.join("checkpoints"),
        }
    }

    /// A new (empty) checkpoint folder for `ordinal`.
    pub fn create(&self, ordinal: u32, now_ms: i64) -> Result<PathBuf, SnapshotError> {
        let dir = self.root.join(format!("chk-{now_ms:013}-w{ordinal}"));
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        Ok(dir)
    }

    /// Complete checkpoint folders, oldest first.
    pub fn list(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("chk-"))
                    && is_complete(p)
            })
            .collect();
        dirs.sort();
        dirs
    }

    /// The newest complete checkpoint that holds `partition`.
    pub fn latest_for(&self, partition: i32) -> Option<PathBuf> {
        self.list()
            .into_iter()
            .rev()
            .map(|d| partition_dir(&d, partition))
            .find(|p| p.is_dir())
    }

    /// Deletes this worker's complete checkpoints beyond the newest `retain`, and
    /// its incomplete ones older than the newest complete one.
    pub fn retain(&self, ordinal: u32, retain: usize) -> Result<usize, SnapshotError> {
        let suffix = format!("-w{ordinal}");
        let mine: Vec<PathBuf> = self
            .list()
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(&suffix))
            .collect();
        let mut removed = 0;
        if mine.len() > retain {
            for dir in &mine[..mine.len() - retain] {
                std::fs::remove_dir_all(dir).map_err(io("removing", dir))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Copies a snapshot of a partition into a fresh database folder.
pub fn restore_partition(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(io("removing", to))?;
    }
    std::fs::create_dir_all(to).map_err(io("creating", to))?;
    for entry in std::fs::read_dir(from).map_err(io("reading", from))? {
        let entry = entry.map_err(io("reading", from))?;
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).map_err(io("copying to", &target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_complete_checkpoint_per_partition_and_retention() {
        let root = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(root.path());
        let a = store.create(0, 1_000).unwrap();
        std::fs::create_dir_all(partition_dir(&a, 0)).unwrap();
        std::fs::create_dir_all(partition_dir(&a, 2)).unwrap();
        mark_complete(&a, "").unwrap();
        let b = store.create(1, 2_000).unwrap();
        std::fs::create_dir_all(partition_dir(&b, 1)).unwrap();
        mark_complete(&b, "").unwrap();
        let c = store.create(0, 3_000).unwrap();
        std::fs::create_dir_all(partition_dir(&c, 0)).unwrap();
        // c is incomplete: ignored.
        assert_eq!(store.latest_for(0), Some(partition_dir(&a, 0)));
        assert_eq!(store.latest_for(1), Some(partition_dir(&b, 1)));
        assert_eq!(store.latest_for(5), None);
        mark_complete(&c, "").unwrap();
        assert_eq!(store.latest_for(0), Some(partition_dir(&c, 0)));
        assert_eq!(store.latest_for(2), Some(partition_dir(&a, 2)));
        assert_eq!(store.retain(0, 1).unwrap(), 1);
        assert!(!a.exists() && c.exists() && b.exists());
    }
}
