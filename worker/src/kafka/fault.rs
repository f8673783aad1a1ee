//! Test-only fault injection: stops the process at a named step of the record
//! path, so crash tests can land a crash exactly where it matters (between a
//! commit and the state write, before a commit, …) instead of hoping a random
//! kill does, and slows the record path down so tests can reach the paths that
//! only a slow worker takes.
//!
//! `RISKPIPE_FAULT_INJECTION` holds one or more `<step>:<n>` entries separated
//! by commas:
//! - `<step>:<n>` aborts the process (no destructor, no flush: as `kill -9`)
//!   the `n`-th time the worker reaches `<step>`. Steps: `before_produce`,
//!   `after_produce` (transaction open, records sent), `before_commit`,
//!   `after_commit` (committed, state not yet written), `after_state_write`.
//! - `fail_commit:<n>` makes the `n`-th commit fail with an error instead, so
//!   its transaction is aborted and the batch decided again.
//! - `slow_record:<ms>` makes deciding each record take `ms` milliseconds
//!   longer (a slow worker: its prefetched input falls behind the topic).
//! - `transaction_budget:<ms>` replaces the 20 s budget a micro-batch may take
//!   to decide before it is cut.
//!
//! Unset, each point costs one lookup of a value read once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that arms a fault.
pub const FAULT_ENV: &str = "RISKPIPE_FAULT_INJECTION";

struct Armed {
    step: String,
    at: u64,
    seen: AtomicU64,
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let Ok(value) = std::env::var(FAULT_ENV) else {
            return Vec::new();
        };
        value
            .split(',')
            .filter_map(|entry| {
                let entry = entry.trim();
                let (step, at) = entry.split_once(':').unwrap_or((entry, "1"));
                let Some(at) = at.parse().ok().filter(|n| *n > 0) else {
                    tracing::error!(
                        entry,
                        "fault injection entry ignored: want <step>:<n>, n > 0"
                    );
                    return None;
                };
                tracing::warn!(step, at, "fault injection armed (tests only)");
                Some(Armed {
                    step: step.to_owned(),
                    at,
                    seen: AtomicU64::new(0),
                })
            })
            .collect()
    })
}

fn entry(step: &str) -> Option<&'static Armed> {
    armed().iter().find(|a| a.step == step)
}

/// Whether the armed step is `step` and this is its `n`-th time.
fn due(step: &str) -> bool {
    entry(step).is_some_and(|armed| armed.seen.fetch_add(1, Ordering::Relaxed) + 1 == armed.at)
}

/// Marks that the worker reached `step`; aborts the process when it is armed there.
pub fn point(step: &str) {
    if due(step) {
        eprintln!("fault injection: aborting at {step}");
        std::process::abort();
    }
}

/// Whether an injected failure of `step` is due (armed as `fail_<step>:<n>`).
pub fn fails(step: &str) -> bool {
    due(&format!("fail_{step}"))
}

/// Sleeps as long as `slow_<step>:<ms>` says (nothing when it is not armed).
pub fn slow(step: &str) {
    if armed().is_empty() {
        return;
    }
    if let Some(armed) = entry(&format!("slow_{step}")) {
        std::thread::sleep(Duration::from_millis(armed.at));
    }
}

/// `value:<ms>` as a duration, when armed (a test's override of a limit).
pub fn override_ms(value: &str) -> Option<Duration> {
    if armed().is_empty() {
        return None;
    }
    entry(value).map(|armed| Duration::from_millis(armed.at))
}
