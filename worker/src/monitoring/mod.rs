//! SPEC §9 monitoring windows as pure code: tumbling event-time windows closed by a
//! watermark (`window.rs`), their alert levels and the seed's message texts
//! (`alerts.rs`) and a mergeable latency summary (`sketch.rs`), all without I/O;
//! `files.rs` writes a local run's records beside its decisions.

pub mod alerts;
pub mod files;
pub mod sketch;
pub mod window;

pub use alerts::{AlertLevel, AlertRecord};
pub use files::MonitoringFiles;
pub use sketch::LatencySketch;
pub use window::{
    Aggregate, DecisionKind, HealthRecord, Observation, PerformanceRecord, WindowConfig, Windows,
};
