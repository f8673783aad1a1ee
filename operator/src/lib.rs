//! riskpipe-operator: reconciles `RiskPipeline` resources into running, observable
//! pipelines.
//!
//! The reconcile is a pipeline of small steps (see [`reconcile`]): read → validate →
//! decide the lifecycle step ([`lifecycle`], pure) → build the desired objects
//! ([`build`], pure) → server-side apply ([`apply`]) → act on the workers → status
//! ([`status`], pure) with merged [`conditions`].

pub mod apply;
pub mod build;
pub mod check;
pub mod checks;
pub mod conditions;
pub mod kafka;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod names;
pub mod reconcile;
pub mod run;
pub mod status;
pub mod worker_api;
