//! The layout of checkpoints and savepoints and the choice of which checkpoint
//! restores a partition and which ones retention removes: pure names and
//! decisions, defined once in [`riskpipe_contract::layout`] (the operator builds
//! savepoint locations with the same functions) and re-exported here for the
//! worker. The I/O is in [`crate::snapshots::store`] and [`crate::snapshots`].

pub use riskpipe_contract::layout::*;
