//! How a Kafka worker was started: its place in the StatefulSet and its folders.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::clients;

/// How this worker was started.
#[derive(Debug, Clone)]
pub struct KafkaArgs {
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Replica count.
    pub replicas: u32,
    /// Local state folder (one RocksDB per owned partition).
    pub state_dir: PathBuf,
    /// HTTP endpoint address.
    pub http_addr: Option<SocketAddr>,
    /// Savepoint to restore partitions from when they have no local state.
    pub restore_from: Option<PathBuf>,
    /// TLS/SASL settings of every Kafka client (`spec.source.kafka.securitySecretRef`).
    pub security: clients::KafkaSecurity,
    /// Where referenced Secrets are mounted (`--secrets-dir`).
    pub secrets_dir: PathBuf,
    /// Outages of database-backed dimension tables, for `/status`.
    pub dimensions_health: Option<std::sync::Arc<crate::dims::DimensionsHealth>>,
}
