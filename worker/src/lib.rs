//! The riskpipe worker: the data plane around the engine — sources, state in
//! RocksDB, outputs, and local mode.

pub mod audit;
pub mod checkpoint;
pub mod commands;
pub mod dims_csv;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod local;
pub mod metrics;
pub mod output;
pub mod pipeline_config;
pub mod record;
pub mod report;
pub mod secrets;
pub mod snapshot_store;
pub mod source;
pub mod state;

pub use riskpipe_engine as engine;
