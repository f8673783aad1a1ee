//! The riskpipe worker: the data plane around the engine — the one record step,
//! state in RocksDB, local mode, Kafka mode, and checkpoints and savepoints.

pub mod audit;
pub mod commands;
pub mod dims;
pub mod dims_csv;
pub mod feature_dump;
pub mod http;
pub mod kafka;
pub mod local;
pub mod metrics;
pub mod model_config;
pub mod monitoring;
pub mod output;
pub mod pipeline_config;
pub mod record;
pub mod secrets;
pub mod snapshots;
pub mod state;

pub use riskpipe_engine as engine;
