//! The restart policy as a pure decision: when the workers' error rate has stayed
//! above `spec.restartPolicy.errorRateThreshold` for `window`, restart the workers
//! (a rolling restart from their local state); high again for `backoff` after a
//! restart within the window, again; at most `maxRestarts` times within `window`;
//! past the limit the pipeline is Degraded instead until the window ends.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use riskpipe_crds::{RestartPolicySpec, RestartStatus};

use super::note::{Note, warning};

/// Prefix of `status.restarts.lastReason` once the limit is reached.
const GAVE_UP: &str = "limit reached: ";

/// What the restart policy reads.
#[derive(Clone, Debug)]
pub struct RestartInput<'a> {
    /// `spec.restartPolicy`.
    pub policy: &'a RestartPolicySpec,
    /// `status.restarts` as last written.
    pub previous: Option<&'a RestartStatus>,
    /// The workers' error rate now, when known.
    pub error_rate: Option<f64>,
    /// Since when the error rate has been above the threshold (the Degraded
    /// condition's transition time with reason HighErrorRate), if it is.
    pub high_since: Option<Timestamp>,
    /// No rollout under way and the pipeline runs (a restart only then).
    pub idle: bool,
    /// Now.
    pub now: Timestamp,
}

/// The restart decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestartDecision {
    /// `status.restarts` after this reconcile; a new `lastRestartTime` restarts the
    /// workers (it goes into their Pod template).
    pub status: Option<RestartStatus>,
    /// Whether the workers restart now.
    pub restart: bool,
    /// The Event, if any.
    pub note: Option<Note>,
    /// Why the pipeline is Degraded (the limit is reached), if so.
    pub stuck: Option<String>,
}

fn after(t: Timestamp, d: std::time::Duration) -> Timestamp {
    t + jiff_span(d)
}

fn jiff_span(d: std::time::Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

/// Decides whether the error rate calls for a restart now.
pub fn decide(input: &RestartInput<'_>) -> RestartDecision {
    let policy = input.policy;
    let now = input.now;
    let window = policy.window.as_std();
    // The count is per window: a window that has ended starts again at zero.
    let mut status = input.previous.cloned().unwrap_or_default();
    let window_over = status
        .window_start
        .as_ref()
        .is_none_or(|s| now >= after(s.0, window));
    if window_over {
        status.count = 0;
        status.window_start = None;
        if status
            .last_reason
            .as_deref()
            .is_some_and(|r| r.starts_with(GAVE_UP))
        {
            status.last_reason = None;
        }
    }
    let keep = |status: RestartStatus| RestartDecision {
        status: (status != RestartStatus::default()).then_some(status),
        ..RestartDecision::default()
    };
    let threshold = policy.error_rate_threshold;
    let Some(rate) = input.error_rate.filter(|r| *r > threshold) else {
        return keep(status);
    };
    if policy.max_restarts == 0 || !input.idle {
        return keep(status);
    }
    // High for a whole window; after a restart within the window, high for
    // `backoff` is enough (the restart itself reset the workers' error counts).
    let needed = if status.count > 0 {
        policy.backoff.as_std()
    } else {
        window
    };
    if input.high_since.is_none_or(|s| now < after(s, needed)) {
        return keep(status);
    }
    let cause = format!(
        "error rate {rate:.4} above spec.restartPolicy.errorRateThreshold {threshold} for {}",
        policy.window.as_str()
    );
    if status.count >= policy.max_restarts {
        let stuck = format!(
            "{cause}; {} restart(s) within {} did not help, so no more restarts until the \
             window ends. Look at the dead letters and the workers' logs",
            status.count,
            policy.window.as_str()
        );
        let first = !status
            .last_reason
            .as_deref()
            .is_some_and(|r| r.starts_with(GAVE_UP));
        status.last_reason = Some(format!("{GAVE_UP}{cause}"));
        return RestartDecision {
            status: Some(status),
            restart: false,
            note: first.then(|| warning("RestartLimitReached", stuck.clone())),
            stuck: Some(stuck),
        };
    }
    let backoff_over = status
        .last_restart_time
        .as_ref()
        .is_none_or(|t| now >= after(t.0, policy.backoff.as_std()));
    if !backoff_over {
        return keep(status);
    }
    status.count += 1;
    status.window_start.get_or_insert(Time(now));
    status.last_restart_time = Some(Time(now));
    status.last_reason = Some(cause.clone());
    RestartDecision {
        note: Some(warning(
            "Restarted",
            format!(
                "restarting the workers: {cause} (restart {} of at most {} within {})",
                status.count,
                policy.max_restarts,
                policy.window.as_str()
            ),
        )),
        status: Some(status),
        restart: true,
        stuck: None,
    }
}

#[cfg(test)]
mod tests {
    use riskpipe_crds::Duration;

    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn policy() -> RestartPolicySpec {
        RestartPolicySpec {
            error_rate_threshold: 0.05,
            window: Duration::from_millis(300_000),
            backoff: Duration::from_millis(60_000),
            max_restarts: 2,
        }
    }

    fn input<'a>(
        policy: &'a RestartPolicySpec,
        previous: Option<&'a RestartStatus>,
        rate: f64,
        high_since: Option<i64>,
        now: i64,
    ) -> RestartInput<'a> {
        RestartInput {
            policy,
            previous,
            error_rate: Some(rate),
            high_since: high_since.map(at),
            idle: true,
            now: at(now),
        }
    }

    #[test]
    fn a_high_rate_restarts_only_after_the_whole_window() {
        let p = policy();
        assert!(
            !decide(&input(&p, None, 0.01, None, 0)).restart,
            "below the threshold"
        );
        assert!(
            !decide(&input(&p, None, 0.2, None, 0)).restart,
            "just went high"
        );
        assert!(!decide(&input(&p, None, 0.2, Some(0), 299)).restart);
        let d = decide(&input(&p, None, 0.2, Some(0), 300));
        assert!(d.restart);
        let s = d.status.unwrap();
        assert_eq!((s.count, s.last_restart_time), (1, Some(Time(at(300)))));
        let note = d.note.unwrap();
        assert_eq!(note.reason, "Restarted");
        assert!(
            note.message.contains("error rate 0.2000"),
            "{}",
            note.message
        );
    }

    #[test]
    fn restarts_wait_for_backoff_then_stop_at_the_limit_until_a_new_window() {
        let p = RestartPolicySpec {
            window: Duration::from_millis(600_000),
            backoff: Duration::from_millis(120_000),
            max_restarts: 2,
            ..policy()
        };
        let first = decide(&input(&p, None, 0.2, Some(0), 600)).status.unwrap();
        // Still high, but inside the backoff.
        assert!(!decide(&input(&p, Some(&first), 0.2, Some(0), 650)).restart);
        let d = decide(&input(&p, Some(&first), 0.2, Some(0), 720));
        assert!(d.restart, "backoff over, still high");
        let second = d.status.unwrap();
        assert_eq!(second.count, 2);
        // The limit within the window: Degraded, one Warning, no restart.
        let d = decide(&input(&p, Some(&second), 0.2, Some(0), 900));
        assert!(!d.restart);
        assert!(d.stuck.as_deref().unwrap().contains("did not help"));
        assert_eq!(d.note.unwrap().reason, "RestartLimitReached");
        let again = decide(&input(&p, d.status.as_ref(), 0.2, Some(0), 905));
        assert!(
            again.stuck.is_some() && again.note.is_none(),
            "reported once"
        );
        // High again (new since) after a restart: `backoff` of it is enough.
        let d = decide(&input(&p, Some(&first), 0.2, Some(640), 700));
        assert!(!d.restart, "high for 60 s < backoff 120 s");
        let d = decide(&input(&p, Some(&first), 0.2, Some(640), 760));
        assert!(d.restart);
        // A new window starts the count again.
        let later = decide(&input(&p, again.status.as_ref(), 0.2, Some(0), 1200));
        assert!(later.restart, "{later:?}");
        assert_eq!(later.status.unwrap().count, 1);
    }

    #[test]
    fn never_during_a_rollout_or_with_max_restarts_zero() {
        let p = policy();
        let mut i = input(&p, None, 0.2, Some(0), 1000);
        i.idle = false;
        assert!(!decide(&i).restart);
        let zero = RestartPolicySpec {
            max_restarts: 0,
            ..policy()
        };
        assert!(!decide(&input(&zero, None, 0.2, Some(0), 1000)).restart);
    }
}
