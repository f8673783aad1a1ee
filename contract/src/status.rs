//! `GET /status`: what a worker reports about itself, polled by the operator for
//! the pipeline's status, the autoscaler and the restart policy.
//!
//! Field names are camelCase on the wire. The operator reads answers of older or
//! newer workers: every field but `ordinal` may be missing (it takes its default),
//! unknown fields are ignored and an unknown state reads as [`WorkerState::Unknown`].

use serde::{Deserialize, Deserializer, Serialize};

use crate::layout;

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Restoring partitions and catching up; not ready yet.
    #[default]
    Starting,
    /// Restored and processing.
    Running,
    /// Finishing its micro-batch after a stop signal.
    Stopping,
    /// A state this build does not know (sent by a newer worker); never sent.
    #[serde(other)]
    Unknown,
}

impl WorkerState {
    /// The state as it is written on the wire (`starting`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Unknown => "unknown",
        }
    }
}

/// The worker's latest completed checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointInfo {
    /// The checkpoint's folder name, `chk-<millis>-w<ordinal>` (see
    /// [`layout::checkpoint_name`]); a bare number is read as its text.
    #[serde(deserialize_with = "text_or_number")]
    pub id: String,
    /// Where it is: a folder or `s3://bucket/key`.
    pub path: String,
    /// When it completed, ms since the epoch.
    pub timestamp_ms: i64,
    /// How long it took, ms.
    #[serde(default)]
    pub duration_ms: u64,
    /// Bytes written.
    #[serde(default)]
    pub size_bytes: u64,
}

impl CheckpointInfo {
    /// An increasing number for the checkpoint: the time in a
    /// `chk-<millis>-w<ordinal>` name, else the digits the id ends with (a bare
    /// number, or an older `chk-000012` name).
    pub fn number(&self) -> Option<i64> {
        if let Some((millis, _)) = layout::parse_checkpoint_name(&self.id) {
            return Some(millis);
        }
        let start = self
            .id
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |i| i + 1);
        self.id[start..].parse().ok()
    }
}

/// Reads a string, or a number as its decimal text.
fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Number(i64),
    }
    Ok(match TextOrNumber::deserialize(d)? {
        TextOrNumber::Text(t) => t,
        TextOrNumber::Number(n) => n.to_string(),
    })
}

/// Input records of a partition lost because the offsets it needed (a resume
/// position or a catch-up range) had left the topic's retention (Kafka's "offset
/// out of range"), and what the worker did about it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetOutOfRangeReport {
    /// The policy applied: `fail`, `earliest` or `latest`
    /// (`spec.source.kafka.onOffsetOutOfRange`).
    pub policy: String,
    /// First offset that was never processed (the offset the worker asked for).
    pub lost_from: i64,
    /// The offset processing resumed at: offsets `lost_from..lost_to` were skipped.
    pub lost_to: i64,
    /// When it happened, ms since the epoch.
    pub at_ms: i64,
}

/// One owned input partition as the worker sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    /// The input partition.
    pub partition: i32,
    /// The next input offset to process (committed with the state), once known.
    #[serde(default)]
    pub next_offset: Option<i64>,
    /// Where the partition's state came from when the worker started: `local`
    /// (its state folder), a checkpoint or savepoint location, or `empty`.
    #[serde(default)]
    pub start_source: Option<String>,
    /// Why the partition is stopped (not processed), when it is.
    #[serde(default)]
    pub stopped: Option<String>,
    /// The latest offset-out-of-range reset of this partition, if any happened
    /// since the worker started.
    #[serde(default)]
    pub offset_out_of_range: Option<OffsetOutOfRangeReport>,
}

/// What `GET /status` returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// Pipeline name.
    #[serde(default)]
    pub pipeline: String,
    /// This worker's ordinal (its Pod name's `-N` suffix).
    pub ordinal: u32,
    /// Replica count the partition assignment was computed for.
    #[serde(default)]
    pub replicas: u32,
    /// Input partitions this worker owns.
    #[serde(default)]
    pub owned_partitions: Vec<i32>,
    /// Input records per second over the last interval.
    #[serde(default)]
    pub records_per_second: f64,
    /// Share of time spent processing, 0 to 1.
    #[serde(default)]
    pub busy_ratio: f64,
    /// Records behind the high watermarks, summed over owned partitions.
    #[serde(default)]
    pub lag_records: i64,
    /// Lag divided by the processing rate, seconds.
    #[serde(default)]
    pub lag_seconds: f64,
    /// Dead letters and errors per input record over the last interval.
    #[serde(default)]
    pub error_rate: f64,
    /// The last completed checkpoint.
    #[serde(default)]
    pub last_checkpoint: Option<CheckpointInfo>,
    /// Where the worker is in its life.
    #[serde(default)]
    pub state: WorkerState,
    /// Per owned partition: position, where its state came from, whether it is
    /// stopped, data lost to retention. Absent from older workers.
    #[serde(default)]
    pub partitions: Vec<PartitionStatus>,
    /// Dimension tables the worker cannot read now (the database is down or
    /// refuses): records that need an uncached row wait. Empty when all is
    /// well; absent from older workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions_unavailable: Vec<DimensionOutage>,
}

/// A dimension table that cannot be read (never with credentials).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DimensionOutage {
    /// The table's name in the database.
    pub table: String,
    /// The last error.
    pub error: String,
    /// Since when it fails, ms since the epoch.
    pub since_ms: i64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn states_are_the_strings_on_the_wire() {
        for s in [
            WorkerState::Starting,
            WorkerState::Running,
            WorkerState::Stopping,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            let back: WorkerState = serde_json::from_value(json!(s.as_str())).unwrap();
            assert_eq!(back, s);
        }
        let newer: WorkerState = serde_json::from_value(json!("draining")).unwrap();
        assert_eq!(newer, WorkerState::Unknown);
    }

    #[test]
    fn status_json_is_the_one_workers_write() {
        let status = WorkerStatus {
            pipeline: "p".into(),
            ordinal: 1,
            replicas: 2,
            owned_partitions: vec![1, 3],
            state: WorkerState::Running,
            last_checkpoint: Some(CheckpointInfo {
                id: "chk-0000000001000-w1".into(),
                path: "/ck/checkpoints/chk-0000000001000-w1".into(),
                timestamp_ms: 1000,
                duration_ms: 40,
                size_bytes: 1024,
            }),
            ..WorkerStatus::default()
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"pipeline":"p","ordinal":1,"replicas":2,"ownedPartitions":[1,3],
                "recordsPerSecond":0.0,"busyRatio":0.0,"lagRecords":0,"lagSeconds":0.0,
                "errorRate":0.0,"state":"running","partitions":[],"lastCheckpoint":{"id":"chk-0000000001000-w1",
                "path":"/ck/checkpoints/chk-0000000001000-w1","timestampMs":1000,
                "durationMs":40,"sizeBytes":1024}})
        );
    }

    #[test]
    fn partitions_round_trip() {
        let status = WorkerStatus {
            ordinal: 0,
            partitions: vec![PartitionStatus {
                partition: 3,
                next_offset: Some(120),
                start_source: Some("local".into()),
                stopped: None,
                offset_out_of_range: Some(OffsetOutOfRangeReport {
                    policy: "earliest".into(),
                    lost_from: 100,
                    lost_to: 120,
                    at_ms: 5,
                }),
            }],
            ..WorkerStatus::default()
        };
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(
            v["partitions"][0],
            json!({"partition":3,"nextOffset":120,"startSource":"local","stopped":null,
                "offsetOutOfRange":{"policy":"earliest","lostFrom":100,"lostTo":120,"atMs":5}})
        );
        assert_eq!(serde_json::from_value::<WorkerStatus>(v).unwrap(), status);
    }

    #[test]
    fn a_sparse_or_newer_answer_still_reads() {
        let status: WorkerStatus = serde_json::from_value(json!({
            "ordinal": 2, "state": "rebalancing", "somethingNew": true,
            "lastCheckpoint": {"id": 17, "path": "/ck/17", "timestampMs": 9},
            "partitions": [{"partition": 4}]
        }))
        .unwrap();
        assert_eq!(status.ordinal, 2);
        assert_eq!(status.state, WorkerState::Unknown);
        assert_eq!(status.partitions[0].next_offset, None);
        let checkpoint = status.last_checkpoint.unwrap();
        assert_eq!(
            (checkpoint.id.as_str(), checkpoint.number()),
            ("17", Some(17))
        );
        assert!(serde_json::from_value::<WorkerStatus>(json!({"state": "running"})).is_err());
    }

    #[test]
    fn checkpoint_numbers_increase_with_time() {
        let info = |id: &str| CheckpointInfo {
            id: id.into(),
            path: String::new(),
            timestamp_ms: 0,
            duration_ms: 0,
            size_bytes: 0,
        };
        assert_eq!(
            info(&layout::checkpoint_name(3, 1_700_000_000_123)).number(),
            Some(1_700_000_000_123)
        );
        assert_eq!(info("chk-000012").number(), Some(12));
        assert_eq!(info("sp-x").number(), None);
    }
}
