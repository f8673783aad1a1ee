//! Conditions merged so that `lastTransitionTime` changes only when the status
//! changes (Kubernetes API conventions), each stamped with `observedGeneration`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as the reconcile decides it, before it is merged with the previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type (`Ready`, `Progressing`, …).
    pub type_: &'static str,
    /// `true` or `false`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// What happened and, when something is wrong, what to do.
    pub message: String,
}

impl Cond {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_text(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Merges `next` into `previous`: a condition keeps its `lastTransitionTime` while its
/// status stays the same (reason and message may change); types not in `next` are kept
/// unchanged. The result is sorted by type, so equal inputs give equal statuses.
pub fn merge(previous: &[Condition], next: &[Cond], generation: i64, now: &Time) -> Vec<Condition> {
    let mut out: Vec<Condition> = previous
        .iter()
        .filter(|p| !next.iter().any(|n| n.type_ == p.type_))
        .cloned()
        .collect();
    for n in next {
        let status = status_text(n.status);
        let last_transition_time = previous
            .iter()
            .find(|p| p.type_ == n.type_ && p.status == status)
            .map(|p| p.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        out.push(Condition {
            type_: n.type_.to_owned(),
            status: status.to_owned(),
            reason: n.reason.clone(),
            message: n.message.clone(),
            observed_generation: Some(generation),
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_survives_when_status_is_unchanged() {
        let first = merge(&[], &[Cond::yes("Ready", "Running", "all up")], 1, &at(100));
        let second = merge(
            &first,
            &[Cond::yes("Ready", "Running", "still up")],
            2,
            &at(200),
        );
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].message, "still up");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn transition_time_moves_when_status_flips() {
        let first = merge(&[], &[Cond::yes("Ready", "Running", "")], 1, &at(100));
        let second = merge(
            &first,
            &[Cond::no("Ready", "InvalidSpec", "fix x")],
            2,
            &at(200),
        );
        assert_eq!(second[0].last_transition_time, at(200));
        assert_eq!(second[0].status, "False");
        assert_eq!(second[0].reason, "InvalidSpec");
    }

    #[test]
    fn other_types_are_kept_and_output_is_sorted() {
        let first = merge(
            &[],
            &[
                Cond::no("Scaling", "Stable", ""),
                Cond::yes("Ready", "Running", ""),
            ],
            1,
            &at(1),
        );
        let second = merge(&first, &[Cond::no("Degraded", "Healthy", "")], 2, &at(2));
        let types: Vec<_> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Degraded", "Ready", "Scaling"]);
        assert_eq!(
            find(&second, "Scaling").unwrap().observed_generation,
            Some(1)
        );
    }
}
