//! The Events a lifecycle decision asks for. A module of its own so that every
//! decision module (rollout, savepoints, restart, autoscale) depends on it and none
//! on another for it.

/// An Event the decision asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened and why.
    pub message: String,
}

impl Note {
    /// A Normal Event.
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason,
            message: message.into(),
        }
    }

    /// A Warning Event.
    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason,
            message: message.into(),
        }
    }
}

/// A warning note (used by the reconcile for savepoint failures).
pub fn warning(reason: &'static str, message: impl Into<String>) -> Note {
    Note::warning(reason, message)
}

/// A normal note.
pub fn normal(reason: &'static str, message: impl Into<String>) -> Note {
    Note::normal(reason, message)
}
