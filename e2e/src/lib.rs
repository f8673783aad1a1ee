//! riskpipe's real test environment, seen from Rust.
//!
//! `e2e/env/up` starts Kafka, a Kubernetes control plane, MariaDB, PostgreSQL and the
//! pod runner on loopback and writes an env file; [`env::TestEnv`] reads that file so
//! the tests find every part. [`podrunner`] stands in for a kubelet: it binds Pods to
//! one Node and runs their containers as local processes.

pub mod env;
pub mod podrunner;
pub mod tools;
pub mod wait;
