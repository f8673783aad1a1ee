//! The worker contract: everything the operator and the worker must agree on, in
//! one crate both depend on, so a change is one edit the compiler checks on both
//! sides.
//!
//! - [`status`]: the JSON of the worker's `GET /status`;
//! - [`savepoint`]: the JSON of `POST /savepoints` and `GET /savepoints/{id}`;
//! - [`api`]: the worker's HTTP port and paths;
//! - [`flags`]: the worker's command line, as the operator renders it;
//! - [`mounts`]: where the rendered manifest and the Secrets are mounted;
//! - [`layout`]: names of snapshot folders, markers and checkpoints, and which
//!   checkpoints restore and retention pick;
//! - [`dead_letter`]: the reasons a record goes to the dead letters.
//!
//! Pure data and functions: no I/O, no Kubernetes, no Kafka.

pub mod api;
pub mod dead_letter;
pub mod flags;
pub mod layout;
pub mod mounts;
pub mod savepoint;
pub mod status;

pub use dead_letter::DeadLetterKind;
pub use flags::WorkerArgs;
pub use savepoint::{SavepointInfo, SavepointState, TriggerSavepoint};
pub use status::{
    CheckpointInfo, DimensionOutage, OffsetOutOfRangeReport, PartitionStatus, WorkerState,
    WorkerStatus,
};
