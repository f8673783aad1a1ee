//! SPEC §9 monitoring windows as pure code: tumbling event-time windows closed by a
//! watermark (`window.rs`), their alert levels and the seed's message texts
//! (`alerts.rs`) and a mergeable latency summary (`sketch.rs`), all without I/O;
//! `files.rs` writes a local run's records beside its decisions; `merge.rs` is
//! Kafka mode's partials of one partition's batch and the merger's state.

pub mod alerts;
pub mod files;
pub mod merge;
pub mod sketch;
pub mod window;

pub use alerts::{AlertLevel, AlertRecord};
pub use files::MonitoringFiles;
pub use merge::{MergerState, Partial};
pub use sketch::LatencySketch;
pub use window::{
    Aggregate, DecisionKind, HealthRecord, Observation, PerformanceRecord, WindowConfig, Windows,
};
