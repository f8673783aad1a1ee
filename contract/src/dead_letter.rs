//! Why a record went to the dead letters: the `kind` label of the worker's
//! dead-letter counter and the `kind` field of a dead letter. A fixed set, so the
//! metric's cardinality is bounded and sums over it are complete.

/// The reason a record was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterKind {
    /// Not a JSON object.
    MalformedJson,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type or value.
    InvalidField,
    /// Larger than the source's record size limit.
    Oversized,
    /// Its event time is further in the future than the pipeline allows.
    FutureEventTime,
}

impl DeadLetterKind {
    /// Every kind, in a fixed order.
    pub const ALL: [DeadLetterKind; 5] = [
        Self::MalformedJson,
        Self::MissingField,
        Self::InvalidField,
        Self::Oversized,
        Self::FutureEventTime,
    ];

    /// The label as it appears in metrics and dead letters (`malformed_json`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::Oversized => "oversized",
            Self::FutureEventTime => "future_event_time",
        }
    }

    /// The kind with label `label`, if it is one.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == label)
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_read_back() {
        let mut labels: Vec<&str> = DeadLetterKind::ALL.iter().map(|k| k.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DeadLetterKind::ALL.len());
        for k in DeadLetterKind::ALL {
            assert_eq!(DeadLetterKind::from_label(k.as_str()), Some(k));
        }
        assert_eq!(DeadLetterKind::from_label("other"), None);
    }

    /// A new variant fails to compile here until it is listed, as a reminder
    /// that `ALL` must list it too (the length of `ALL` is in its type).
    #[test]
    fn all_is_complete() {
        let position = |k: DeadLetterKind| match k {
            DeadLetterKind::MalformedJson => 0,
            DeadLetterKind::MissingField => 1,
            DeadLetterKind::InvalidField => 2,
            DeadLetterKind::Oversized => 3,
            DeadLetterKind::FutureEventTime => 4,
        };
        for (i, k) in DeadLetterKind::ALL.into_iter().enumerate() {
            assert_eq!(position(k), i, "{k}");
        }
    }
}
