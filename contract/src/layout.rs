//! The layout of checkpoints and savepoints, whatever holds them (a folder or an
//! S3-compatible bucket), which checkpoint restores a partition and which ones
//! retention removes. Names only: the worker does the I/O, the operator builds
//! savepoint locations with the same functions.
//!
//! A snapshot of a partition is a RocksDB checkpoint of its database, which holds
//! the partition's window state and, in its metadata, the next input offset — a
//! consistent cut by construction. A snapshot is a folder (a key prefix in a bucket):
//!
//! ```text
//! BASE/partition-0003/…              RocksDB files of partition 3
//! BASE/partition-0003.complete       written after every file of partition 3 (their
//!                                    names, sizes and xxh3 hashes, JSON)
//! BASE/_complete                     written last by the worker (its partitions)
//! ```
//!
//! Checkpoints live under `STORAGE/checkpoints/chk-<millis>-w<ordinal>/`, one per
//! worker and moment; a savepoint is any `BASE` (several workers may write their
//! partitions into one savepoint; the operator puts them at
//! `STORAGE/<pipeline>/savepoint-<millis>`). A partition is restored only from a
//! snapshot that holds its `.complete` marker, so an interrupted upload is never
//! read; a checkpoint counts only once its `_complete` is there. The latest
//! checkpoint of a partition is the newest complete one that holds it, whichever
//! worker wrote it, so partitions move between workers at any replica count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Marker a worker writes last into a snapshot.
pub const COMPLETE: &str = "_complete";

/// Folder of the checkpoints inside checkpoint storage.
pub const CHECKPOINTS: &str = "checkpoints";

/// Scheme of a location in an S3-compatible bucket (`s3://bucket/key`).
pub const S3_SCHEME: &str = "s3://";

const PARTITION_PREFIX: &str = "partition-";
const MARKER_SUFFIX: &str = ".complete";
const CHECKPOINT_PREFIX: &str = "chk-";
const SAVEPOINT_PREFIX: &str = "savepoint-";

/// The name of one partition's folder inside a snapshot (`partition-0003`).
pub fn partition_name(partition: i32) -> String {
    format!("{PARTITION_PREFIX}{partition:04}")
}

/// The marker written after every file of a partition (`partition-0003.complete`).
pub fn partition_marker(partition: i32) -> String {
    format!("{}{MARKER_SUFFIX}", partition_name(partition))
}

/// Reads `partition-0003.complete` back.
pub fn parse_partition_marker(name: &str) -> Option<i32> {
    name.strip_prefix(PARTITION_PREFIX)?
        .strip_suffix(MARKER_SUFFIX)?
        .parse()
        .ok()
}

/// The folder of one partition inside a snapshot or the state folder.
pub fn partition_dir(snapshot: &Path, partition: i32) -> PathBuf {
    snapshot.join(partition_name(partition))
}

/// The name of a checkpoint taken by worker `ordinal` at `millis`
/// (`chk-<millis, 13 digits>-w<ordinal>`: names sort by time until the year 2286).
pub fn checkpoint_name(ordinal: u32, millis: i64) -> String {
    format!("{CHECKPOINT_PREFIX}{millis:013}-w{ordinal}")
}

/// Reads `chk-<millis>-w<ordinal>` back.
pub fn parse_checkpoint_name(name: &str) -> Option<(i64, u32)> {
    let rest = name.strip_prefix(CHECKPOINT_PREFIX)?;
    let (millis, ordinal) = rest.split_once("-w")?;
    Some((millis.parse().ok()?, ordinal.parse().ok()?))
}

/// Where a savepoint of `pipeline` started at `millis` goes inside savepoint
/// storage (`<pipeline>/savepoint-<millis>`).
pub fn savepoint_leaf(pipeline: &str, millis: i64) -> String {
    format!("{pipeline}/{SAVEPOINT_PREFIX}{millis}")
}

/// `rel` inside the folder or location `base`, with one `/` between them
/// (`rel` alone when `base` is empty).
pub fn join(base: &str, rel: &str) -> String {
    let rel = rel.trim_start_matches('/');
    if base.is_empty() {
        rel.to_owned()
    } else {
        format!("{}/{rel}", base.trim_end_matches('/'))
    }
}

/// The `s3://bucket/prefix` location of a bucket's key prefix (no trailing slash).
pub fn s3_url(bucket: &str, prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{S3_SCHEME}{bucket}")
    } else {
        format!("{S3_SCHEME}{bucket}/{prefix}")
    }
}

/// The key prefix of the folder `name` inside the key prefix `prefix`, ending in
/// `/` (`a/` or `a` and `b` give `a/b/`; an empty prefix gives `b/`).
pub fn prefix_join(prefix: &str, name: &str) -> String {
    format!("{}/", join(prefix, name.trim_end_matches('/')))
}

/// One checkpoint as a listing of checkpoint storage shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// Folder name, `chk-<millis>-w<ordinal>`.
    pub name: String,
    /// When it was taken, ms since the epoch.
    pub millis: i64,
    /// The worker that wrote it.
    pub ordinal: u32,
    /// Whether its `_complete` marker is there.
    pub complete: bool,
    /// Partitions whose `.complete` marker is there.
    pub partitions: BTreeSet<i32>,
}

/// Checkpoints from the keys under the checkpoint folder (relative to it, `/`
/// separated), oldest first. Keys of anything else are ignored.
pub fn checkpoints_from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<CheckpointEntry> {
    let mut by_name: BTreeMap<String, CheckpointEntry> = BTreeMap::new();
    for key in keys {
        let mut parts = key.splitn(2, '/');
        let (Some(name), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((millis, ordinal)) = parse_checkpoint_name(name) else {
            continue;
        };
        let entry = by_name
            .entry(name.to_owned())
            .or_insert_with(|| CheckpointEntry {
                name: name.to_owned(),
                millis,
                ordinal,
                complete: false,
                partitions: BTreeSet::new(),
            });
        if rest == COMPLETE {
            entry.complete = true;
        } else if let Some(p) = parse_partition_marker(rest) {
            entry.partitions.insert(p);
        }
    }
    let mut entries: Vec<CheckpointEntry> = by_name.into_values().collect();
    entries.sort_by_key(|e| (e.millis, e.ordinal));
    entries
}

/// The newest complete checkpoint that holds `partition`.
pub fn latest_for(entries: &[CheckpointEntry], partition: i32) -> Option<&CheckpointEntry> {
    entries
        .iter()
        .rev()
        .find(|e| e.complete && e.partitions.contains(&partition))
}

/// The checkpoints that retention removes, as worker `ordinal` sees them:
///
/// - a complete checkpoint that is among the newest `retain` complete checkpoints of
///   none of its partitions (whichever worker wrote it: after a rescale the old
///   workers' checkpoints go once the new owners have written `retain` of their own);
/// - this worker's incomplete checkpoints older than its newest complete one (left
///   by a crash during an upload; other workers' may still be uploading).
pub fn retention_victims(entries: &[CheckpointEntry], ordinal: u32, retain: usize) -> Vec<String> {
    let retain = retain.max(1);
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeMap<i32, usize> = BTreeMap::new();
    for e in entries.iter().rev().filter(|e| e.complete) {
        for p in &e.partitions {
            let n = seen.entry(*p).or_default();
            if *n < retain {
                kept.insert(&e.name);
            }
            *n += 1;
        }
    }
    let newest_own_complete = entries
        .iter()
        .filter(|e| e.complete && e.ordinal == ordinal)
        .map(|e| e.millis)
        .max();
    entries
        .iter()
        .filter(|e| {
            if e.complete {
                !kept.contains(e.name.as_str())
            } else {
                e.ordinal == ordinal && newest_own_complete.is_some_and(|m| e.millis < m)
            }
        })
        .map(|e| e.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<CheckpointEntry> {
        checkpoints_from_keys(list.iter().copied())
    }

    #[test]
    fn locations_join_with_one_slash() {
        assert_eq!(
            join("/sp/", "payments/savepoint-1"),
            "/sp/payments/savepoint-1"
        );
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("", "a/b"), "a/b");
        assert_eq!(join("s3://b", "/a"), "s3://b/a");
        assert_eq!(s3_url("b", ""), "s3://b");
        assert_eq!(s3_url("b", "/x/y/"), "s3://b/x/y");
        assert_eq!(prefix_join("", "e"), "e/");
        assert_eq!(prefix_join("a/", "e"), "a/e/");
        assert_eq!(prefix_join("a", "e"), "a/e/");
        assert_eq!(prefix_join("/a/", "e/"), "/a/e/");
        assert_eq!(savepoint_leaf("payments", 7), "payments/savepoint-7");
    }

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let name = checkpoint_name(3, 1_700_000_000_123);
        assert_eq!(name, "chk-1700000000123-w3");
        assert_eq!(parse_checkpoint_name(&name), Some((1_700_000_000_123, 3)));
        assert_eq!(parse_checkpoint_name("sp-1"), None);
        assert_eq!(partition_marker(7), "partition-0007.complete");
        assert_eq!(parse_partition_marker(&partition_marker(7)), Some(7));
        assert_eq!(parse_partition_marker("partition-0007"), None);
        assert!(checkpoint_name(0, 999) < checkpoint_name(0, 1_000));
    }

    #[test]
    fn listing_reads_markers_and_orders_oldest_first() {
        let entries = keys(&[
            "chk-0000000002000-w1/partition-0001/CURRENT",
            "chk-0000000002000-w1/partition-0001.complete",
            "chk-0000000002000-w1/_complete",
            "chk-0000000001000-w0/partition-0000/000009.sst",
            "chk-0000000001000-w0/partition-0000.complete",
            "chk-0000000001000-w0/partition-0002/CURRENT",
            "chk-0000000001000-w0/_complete",
            "chk-0000000003000-w0/partition-0000/CURRENT",
            "stray-file",
            "other/_complete",
        ]);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "chk-0000000001000-w0",
                "chk-0000000002000-w1",
                "chk-0000000003000-w0"
            ]
        );
        // Partition 2's files are there but its marker is not: not restorable.
        assert_eq!(entries[0].partitions, BTreeSet::from([0]));
        assert!(entries[0].complete && entries[1].complete && !entries[2].complete);
        assert_eq!(
            latest_for(&entries, 0).unwrap().name,
            "chk-0000000001000-w0"
        );
        assert_eq!(
            latest_for(&entries, 1).unwrap().name,
            "chk-0000000002000-w1"
        );
        assert_eq!(latest_for(&entries, 2), None);
    }

    #[test]
    fn retention_keeps_the_newest_per_partition_across_workers() {
        let mut list = Vec::new();
        // Two workers over partitions 0-3, then one worker owning all of them.
        for (millis, ordinal, parts) in [
            (1_000, 0, vec![0, 2]),
            (1_000, 1, vec![1, 3]),
            (2_000, 0, vec![0, 2]),
            (2_000, 1, vec![1, 3]),
            (3_000, 0, vec![0, 1, 2, 3]),
            (4_000, 0, vec![0, 1, 2, 3]),
        ] {
            let name = checkpoint_name(ordinal, millis);
            for p in parts {
                list.push(format!("{name}/{}", partition_marker(p)));
            }
            list.push(format!("{name}/{COMPLETE}"));
        }
        // An upload of worker 0 that died, and one of worker 1 still under way.
        list.push(format!(
            "{}/partition-0000/CURRENT",
            checkpoint_name(0, 2_500)
        ));
        list.push(format!(
            "{}/partition-0001/CURRENT",
            checkpoint_name(1, 4_500)
        ));
        let entries = checkpoints_from_keys(list.iter().map(String::as_str));
        let mut victims = retention_victims(&entries, 0, 2);
        victims.sort();
        assert_eq!(
            victims,
            [
                "chk-0000000001000-w0",
                "chk-0000000001000-w1",
                "chk-0000000002000-w0",
                "chk-0000000002000-w1",
                "chk-0000000002500-w0",
            ]
        );
        // With three kept, each partition's third newest stays.
        let mut victims = retention_victims(&entries, 0, 3);
        victims.sort();
        assert_eq!(
            victims,
            [
                "chk-0000000001000-w0",
                "chk-0000000001000-w1",
                "chk-0000000002500-w0"
            ]
        );
        // Worker 1 never removes worker 0's interrupted upload.
        assert!(
            !retention_victims(&entries, 1, 3)
                .iter()
                .any(|v| v.ends_with("2500-w0"))
        );
    }
}
