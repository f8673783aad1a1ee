//! Savepoints over HTTP: `POST /savepoints` with a [`TriggerSavepoint`] body
//! answers `202` with a [`SavepointInfo`]; `GET /savepoints/{id}` answers its
//! progress; `DELETE /savepoints/{id}` answers `204`, `404` when the id is unknown,
//! `409` while it is still being written.
//!
//! The operator reads answers of older or newer workers: `path` and `error` may be
//! missing, unknown fields are ignored and an unknown state reads as
//! [`SavepointState::Unknown`].

use serde::{Deserialize, Serialize};

/// How a savepoint is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavepointState {
    /// Being written.
    #[default]
    InProgress,
    /// Every file of every owned partition is written, markers included.
    Completed,
    /// It could not be written (see [`SavepointInfo::error`]).
    Failed,
    /// A state this build does not know (sent by a newer worker); never sent.
    #[serde(other)]
    Unknown,
}

impl SavepointState {
    /// The state as it is written on the wire (`in_progress`, `completed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// One savepoint a worker took or is taking (the answer to `POST /savepoints` and
/// `GET /savepoints/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointInfo {
    /// Identifier, to poll and delete it by (`sp-<millis>`).
    pub id: String,
    /// How it is doing.
    #[serde(default)]
    pub state: SavepointState,
    /// Where it is written: a folder or `s3://bucket/key`.
    #[serde(default)]
    pub path: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// The body of `POST /savepoints`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSavepoint {
    /// Where to write it; the worker's savepoint storage when absent.
    #[serde(default)]
    pub path: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn states_are_the_strings_on_the_wire() {
        for s in [
            SavepointState::InProgress,
            SavepointState::Completed,
            SavepointState::Failed,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            let back: SavepointState = serde_json::from_value(json!(s.as_str())).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(
            serde_json::from_value::<SavepointState>(json!("queued")).unwrap(),
            SavepointState::Unknown
        );
    }

    #[test]
    fn info_json_is_the_one_workers_always_wrote() {
        let info = SavepointInfo {
            id: "sp-1".into(),
            state: SavepointState::InProgress,
            path: "/sp/payments/savepoint-1".into(),
            error: None,
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(
            v,
            json!({"id":"sp-1","state":"in_progress","path":"/sp/payments/savepoint-1","error":null})
        );
        assert_eq!(serde_json::from_value::<SavepointInfo>(v).unwrap(), info);
        let sparse: SavepointInfo = serde_json::from_value(json!({"id": "sp-2"})).unwrap();
        assert_eq!(
            (sparse.state, sparse.path.as_str(), sparse.error),
            (SavepointState::InProgress, "", None)
        );
    }

    #[test]
    fn trigger_body_path_is_optional() {
        assert_eq!(
            serde_json::to_value(TriggerSavepoint {
                path: Some("/sp/x".into())
            })
            .unwrap(),
            json!({"path": "/sp/x"})
        );
        let empty: TriggerSavepoint = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty.path, None);
    }
}
