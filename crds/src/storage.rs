//! `spec.state`, `spec.checkpoints`, `spec.savepoints`: where state lives and where its
//! consistent copies go.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

use crate::{
    cel::{CelRule, add_rules, exactly_one_expr, millis_expr},
    duration::Duration,
    refs::SecretRef,
};

/// The worker's local state (one RocksDB per owned partition) and its volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StateSpec {
    /// Folder of the state inside the worker (the volume's mount point).
    #[schemars(length(min = 1))]
    pub path: String,
    /// Size of each worker's volume.
    pub volume_size: Quantity,
    /// Storage class of the volumes; the cluster's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StateSpec {
    fn default() -> Self {
        Self {
            path: "/var/lib/riskpipe/state".into(),
            volume_size: Quantity("10Gi".into()),
            storage_class_name: None,
        }
    }
}

/// Where checkpoints or savepoints are stored: exactly one of `path` or `s3`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = StorageSpec::cel)]
pub struct StorageSpec {
    /// A folder (a shared volume on Kubernetes, a local folder in local mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// An S3-compatible object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
}

/// The storage kind that is set, borrowed from a [`StorageSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage<'a> {
    /// A folder.
    Path(&'a str),
    /// An object store.
    S3(&'a S3Storage),
}

impl StorageSpec {
    /// Storage in the folder `path`.
    pub fn path(path: &str) -> Self {
        Self {
            path: Some(path.into()),
            s3: None,
        }
    }

    /// The storage kind that is set, or `None` unless exactly one is set
    /// ([`validate`](crate::RiskPipelineSpec::validate) reports that case).
    pub fn kind(&self) -> Option<Storage<'_>> {
        match (&self.path, &self.s3) {
            (Some(p), None) => Some(Storage::Path(p)),
            (None, Some(s)) => Some(Storage::S3(s)),
            _ => None,
        }
    }

    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![CelRule::new(
            exactly_one_expr(&["path", "s3"]),
            "set exactly one of storage.path or storage.s3",
        )]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// An S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Storage {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix inside the bucket (e.g. `riskpipe/payments/`).
    #[serde(default)]
    pub prefix: String,
    /// Endpoint URL for S3-compatible stores (MinIO, Ceph); AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region; the store's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret with keys `accessKeyId` and `secretAccessKey`; the workers' ambient
    /// credentials when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// Periodic checkpoints: a consistent cut of every partition's state and offsets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[schemars(transform = CheckpointSpec::cel)]
pub struct CheckpointSpec {
    /// Time between the starts of two checkpoints.
    pub interval: Duration,
    /// Least time between the end of one checkpoint and the start of the next; not
    /// longer than `interval`.
    pub min_pause: Duration,
    /// Where checkpoints are copied; the folder /var/lib/riskpipe/checkpoints when absent.
    pub storage: StorageSpec,
    /// How many completed checkpoints are kept.
    #[schemars(range(min = 1, max = 100))]
    pub retain: i32,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(60_000),
            min_pause: Duration::from_millis(30_000),
            storage: StorageSpec::path("/var/lib/riskpipe/checkpoints"),
            retain: 3,
        }
    }
}

impl CheckpointSpec {
    /// The CEL rules on this object.
    pub fn cel_rules() -> Vec<CelRule> {
        vec![
            CelRule::new(
                format!(
                    "{} <= {}",
                    millis_expr("self.minPause"),
                    millis_expr("self.interval")
                ),
                "minPause must not be longer than interval",
            )
            .at(".minPause"),
            CelRule::new(
                format!("{} > 0", millis_expr("self.interval")),
                "interval must be longer than zero",
            )
            .at(".interval"),
        ]
    }

    fn cel(schema: &mut Schema) {
        add_rules(schema, Self::cel_rules());
    }
}

/// Savepoints: checkpoints taken on demand (by `savepointTriggerNonce`), on a
/// schedule, or before an upgrade, kept until retention removes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SavepointSpec {
    /// Where savepoints are written; the folder /var/lib/riskpipe/savepoints when absent.
    pub storage: StorageSpec,
    /// Take a savepoint this often; none on a schedule when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Duration>,
    /// Most savepoints kept; the oldest are removed first.
    #[schemars(range(min = 1, max = 1000))]
    pub max_count: i32,
    /// Savepoints older than this are removed (the newest is always kept).
    pub max_age: Duration,
}

impl Default for SavepointSpec {
    fn default() -> Self {
        Self {
            storage: StorageSpec::path("/var/lib/riskpipe/savepoints"),
            schedule: None,
            max_count: 10,
            max_age: Duration::from_millis(7 * 86_400_000),
        }
    }
}
