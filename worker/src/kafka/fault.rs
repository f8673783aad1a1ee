//! Test-only fault injection: stops the process at a named step of the record
//! path, so crash tests can land a crash exactly where it matters (between a
//! commit and the state write, before a commit, …) instead of hoping a random
//! kill does.
//!
//! `RISKPIPE_FAULT_INJECTION=<step>:<n>` aborts the process (no destructor,
//! no flush: as `kill -9`) the `n`-th time the worker reaches `<step>`. Steps:
//! `before_produce`, `after_produce` (transaction open, records sent),
//! `before_commit`, `after_commit` (committed, state not yet written),
//! `after_state_write`. `fail_commit:<n>` instead makes the `n`-th commit
//! fail with an error, so its transaction is aborted and the batch decided
//! again. Unset, each point costs one lookup of a value read once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a fault.
pub const FAULT_ENV: &str = "RISKPIPE_FAULT_INJECTION";

struct Armed {
    step: String,
    at: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(FAULT_ENV).ok()?;
            let (step, at) = value.split_once(':').unwrap_or((value.as_str(), "1"));
            let at = at.parse().ok().filter(|n| *n > 0)?;
            tracing::warn!(step, at, "fault injection armed (tests only)");
            Some(Armed {
                step: step.to_owned(),
                at,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Whether the armed step is `step` and this is its `n`-th time.
fn due(step: &str) -> bool {
    armed().is_some_and(|armed| {
        armed.step == step && armed.seen.fetch_add(1, Ordering::Relaxed) + 1 == armed.at
    })
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
    armed().is_some_and(|armed| armed.step.strip_prefix("fail_") == Some(step)) && {
        let name = format!("fail_{step}");
        due(&name)
    }
}
