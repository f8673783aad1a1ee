//! The autoscaler as a pure decision, in the spirit of the Flink autoscaler: from
//! the processing rate and busy ratio it estimates what one worker can do, sizes
//! the pipeline to keep up with the input plus work off the backlog (and what piles
//! up during the rescale itself) within `catchUpDuration` at `targetUtilization`,
//! within `minReplicas`..`maxReplicas` and the partition count. A change must be
//! wanted for a whole `stabilizationWindow`, and none follows another within it.

use k8s_openapi::jiff::Timestamp;
use riskpipe_crds::{AutoscalerSpec, ObservedMetrics, condition_types as ct};

use super::note::{Note, normal};
use crate::conditions::Cond;

/// What the autoscaler reads.
#[derive(Clone, Debug)]
pub struct ScaleInput<'a> {
    /// `spec.autoscaler`.
    pub spec: &'a AutoscalerSpec,
    /// The parallelism in effect now (the autoscaler's last choice, else
    /// `spec.parallelism`).
    pub parallelism: i32,
    /// Partitions of the input topic, when known (more workers would idle).
    pub partitions: Option<i32>,
    /// The workers' figures, when they answered.
    pub metrics: Option<&'a ObservedMetrics>,
    /// The previous Scaling condition: (reason, since).
    pub previous: Option<(&'a str, Timestamp)>,
    /// When the parallelism last changed (`status.lastScaleTime`).
    pub last_scale_time: Option<Timestamp>,
    /// No rollout under way and the pipeline runs.
    pub idle: bool,
    /// Now.
    pub now: Timestamp,
}

/// The autoscaler's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleDecision {
    /// The new parallelism, kept in `status.autoscaledParallelism` (the spec is the
    /// user's and is never written).
    pub scale_to: Option<i32>,
    /// The Scaling condition.
    pub condition: Cond,
    /// The Event, when scaling.
    pub note: Option<Note>,
}

const UP_PENDING: &str = "ScaleUpPending";
const DOWN_PENDING: &str = "ScaleDownPending";
const EVALUATING: &str = "Evaluating";

/// Workers needed for `m` at `spec`'s targets, clamped to the bounds; `None` without
/// figures to go on (nothing processed, or workers never busy).
pub fn recommended(
    spec: &AutoscalerSpec,
    parallelism: i32,
    partitions: Option<i32>,
    m: &ObservedMetrics,
) -> Option<i32> {
    if m.records_per_second <= 0.0 || m.busy_ratio <= 0.0 || parallelism <= 0 {
        return None;
    }
    let per_worker = m.records_per_second / (m.busy_ratio.min(1.0) * f64::from(parallelism));
    let catch_up = spec.catch_up_duration.as_std().as_secs_f64().max(1.0);
    let restart = spec.restart_time.as_std().as_secs_f64();
    let backlog = m.lag_records as f64 + m.records_per_second * restart;
    let target_rate = m.records_per_second + backlog / catch_up;
    let needed = (target_rate / (per_worker * spec.target_utilization)).ceil();
    let upper = partitions.map_or(spec.max_replicas, |p| spec.max_replicas.min(p));
    let lower = spec.min_replicas.min(upper);
    Some((needed.min(f64::from(i32::MAX)) as i32).clamp(lower, upper))
}

/// Decides whether to scale now.
pub fn decide(input: &ScaleInput<'_>) -> ScaleDecision {
    let stay = |reason: &str, message: String| ScaleDecision {
        scale_to: None,
        condition: Cond::no(ct::SCALING, reason, message),
        note: None,
    };
    let spec = input.spec;
    if !spec.enabled {
        return stay("Disabled", "spec.autoscaler.enabled is false".into());
    }
    if !input.idle {
        return stay(
            "RolloutInProgress",
            "no scaling while a rollout runs or the pipeline is suspended".into(),
        );
    }
    let n = input.parallelism;
    let Some(m) = input.metrics else {
        return stay("NoMetrics", "no worker answered /status".into());
    };
    let Some(wanted) = recommended(spec, n, input.partitions, m) else {
        return stay(
            "NoMetrics",
            "nothing processed yet: no rate or busy ratio to size the workers by".into(),
        );
    };
    let figures = format!(
        "{:.0} records/s, busy {:.2}, lag {} records ({:.1}s)",
        m.records_per_second, m.busy_ratio, m.lag_records, m.lag_seconds
    );
    if wanted == n {
        return stay(
            "Stable",
            format!("{n} worker(s) keep up at the target utilization: {figures}"),
        );
    }
    let reason = if wanted > n { UP_PENDING } else { DOWN_PENDING };
    let window = spec.stabilization_window.as_std();
    let since = match input.previous {
        Some((r, since)) if r == reason => since,
        // Evaluated last time: the wish is now pending, and its window starts with
        // this condition's transition to True.
        Some((EVALUATING, _)) => {
            return ScaleDecision {
                scale_to: None,
                condition: Cond::yes(
                    ct::SCALING,
                    reason,
                    format!(
                        "{n} → {wanted} worker(s) once wanted for {}: {figures}",
                        spec.stabilization_window.as_str()
                    ),
                ),
                note: None,
            };
        }
        // A new wish (or the direction changed): the window starts now, shown by one
        // reconcile with Scaling=False so that the transition time restarts.
        _ => {
            return stay(
                EVALUATING,
                format!(
                    "{wanted} worker(s) wanted ({figures}); must hold for {}",
                    spec.stabilization_window.as_str()
                ),
            );
        }
    };
    let span = |t: Timestamp| {
        std::time::Duration::try_from(input.now.duration_since(t)).unwrap_or_default()
    };
    let held = span(since) >= window;
    let quiet = input.last_scale_time.is_none_or(|t| span(t) >= window);
    if !(held && quiet) {
        return ScaleDecision {
            scale_to: None,
            condition: Cond::yes(
                ct::SCALING,
                reason,
                format!(
                    "{n} → {wanted} worker(s) once wanted for {}{}: {figures}",
                    spec.stabilization_window.as_str(),
                    if quiet { "" } else { " after the last scaling" }
                ),
            ),
            note: None,
        };
    }
    ScaleDecision {
        scale_to: Some(wanted),
        condition: Cond::yes(
            ct::SCALING,
            "Scaling",
            format!("{n} → {wanted} worker(s): {figures}"),
        ),
        note: Some(normal(
            "Scaled",
            format!(
                "parallelism {n} → {wanted} (status.autoscaledParallelism; spec.parallelism is \
                 left as written): {figures}; target utilization {}, catch-up {}, wanted for {}",
                spec.target_utilization,
                spec.catch_up_duration.as_str(),
                spec.stabilization_window.as_str()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use riskpipe_crds::Duration;

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn spec() -> AutoscalerSpec {
        AutoscalerSpec {
            enabled: true,
            min_replicas: 1,
            max_replicas: 10,
            target_utilization: 0.5,
            stabilization_window: Duration::from_millis(60_000),
            catch_up_duration: Duration::from_millis(100_000),
            restart_time: Duration::from_millis(0),
        }
    }

    fn metrics(rate: f64, busy: f64, lag: i64) -> ObservedMetrics {
        ObservedMetrics {
            records_per_second: rate,
            busy_ratio: busy,
            lag_records: lag,
            lag_seconds: 0.0,
            error_rate: 0.0,
            observed_at: None,
        }
    }

    #[test]
    fn sizes_by_capacity_backlog_and_bounds() {
        let s = spec();
        // 2 workers at busy 0.5 do 1000/s: one worker can do 1000/s; at 0.5 → 2.
        assert_eq!(recommended(&s, 2, None, &metrics(1000.0, 0.5, 0)), Some(2));
        // Saturated: one worker does 500/s, at 0.5 → 4.
        assert_eq!(recommended(&s, 2, None, &metrics(1000.0, 1.0, 0)), Some(4));
        // A backlog of 50k worked off in 100 s adds 500/s → 6.
        assert_eq!(
            recommended(&s, 2, None, &metrics(1000.0, 1.0, 50_000)),
            Some(6)
        );
        // What piles up during a 100 s rescale counts too: +1000/s → 8.
        let slow = AutoscalerSpec {
            restart_time: Duration::from_millis(100_000),
            ..spec()
        };
        assert_eq!(
            recommended(&slow, 2, None, &metrics(1000.0, 1.0, 0)),
            Some(8)
        );
        // Bounded by the partitions and maxReplicas; at least minReplicas.
        assert_eq!(
            recommended(&s, 2, Some(3), &metrics(1000.0, 1.0, 0)),
            Some(3)
        );
        assert_eq!(
            recommended(&s, 2, None, &metrics(1000.0, 1.0, 10_000_000)),
            Some(10)
        );
        assert_eq!(recommended(&s, 4, None, &metrics(10.0, 0.01, 0)), Some(1));
        assert_eq!(recommended(&s, 2, None, &metrics(0.0, 0.0, 50)), None);
    }

    fn input<'a>(
        s: &'a AutoscalerSpec,
        m: &'a ObservedMetrics,
        previous: Option<(&'a str, i64)>,
        last_scale: Option<i64>,
        now: i64,
    ) -> ScaleInput<'a> {
        ScaleInput {
            spec: s,
            parallelism: 2,
            partitions: Some(8),
            metrics: Some(m),
            previous: previous.map(|(r, t)| (r, at(t))),
            last_scale_time: last_scale.map(at),
            idle: true,
            now: at(now),
        }
    }

    #[test]
    fn scales_only_after_the_wish_held_a_whole_window_and_not_twice_within_it() {
        let s = spec();
        let busy = metrics(1000.0, 1.0, 0);
        let d = decide(&input(&s, &busy, None, None, 0));
        assert_eq!(
            (d.scale_to, d.condition.reason.as_str()),
            (None, "Evaluating")
        );
        // The next look: the wish is pending (True; its window starts now).
        let d = decide(&input(&s, &busy, Some(("Evaluating", 0)), None, 5));
        assert_eq!((d.scale_to, d.condition.status), (None, true));
        assert_eq!(d.condition.reason, "ScaleUpPending");
        let d = decide(&input(&s, &busy, Some(("ScaleUpPending", 0)), None, 30));
        assert_eq!((d.scale_to, d.condition.status), (None, true));
        assert_eq!(d.condition.reason, "ScaleUpPending");
        let d = decide(&input(&s, &busy, Some(("ScaleUpPending", 0)), None, 60));
        assert_eq!(d.scale_to, Some(4));
        let note = d.note.unwrap();
        assert_eq!(note.reason, "Scaled");
        assert!(note.message.contains("2 → 4"), "{}", note.message);
        // A scaling 20 s ago: wait.
        let d = decide(&input(&s, &busy, Some(("ScaleUpPending", 0)), Some(40), 60));
        assert_eq!(d.scale_to, None);
        // The direction flips: evaluation starts again.
        let idle = metrics(10.0, 0.01, 0);
        let d = decide(&input(&s, &idle, Some(("ScaleUpPending", 0)), None, 600));
        assert_eq!(
            (d.scale_to, d.condition.reason.as_str()),
            (None, "Evaluating")
        );
    }

    #[test]
    fn stays_when_disabled_during_rollouts_and_without_figures() {
        let s = spec();
        let busy = metrics(1000.0, 1.0, 100_000);
        let off = AutoscalerSpec {
            enabled: false,
            ..spec()
        };
        assert_eq!(
            decide(&input(&off, &busy, None, None, 0)).condition.reason,
            "Disabled"
        );
        let mut i = input(&s, &busy, Some(("ScaleUpPending", 0)), None, 600);
        i.idle = false;
        assert_eq!(decide(&i).scale_to, None);
        i.idle = true;
        i.metrics = None;
        assert_eq!(decide(&i).condition.reason, "NoMetrics");
    }
}
