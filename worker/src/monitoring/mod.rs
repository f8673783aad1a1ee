//! SPEC §9 monitoring windows as pure code: tumbling event-time windows closed by a
//! watermark (`window.rs`), their alert levels and the seed's message texts
//! (`alerts.rs`) and a mergeable latency summary (`sketch.rs`). Nothing here does
//! I/O; the caller feeds observations and writes the closed records.

pub mod alerts;
pub mod sketch;
pub mod window;

pub use alerts::{AlertLevel, AlertRecord};
pub use sketch::LatencySketch;
pub use window::{
    Aggregate, DecisionKind, HealthRecord, Observation, PerformanceRecord, WindowConfig, Windows,
};
