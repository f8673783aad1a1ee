//! Waiting on a condition with a deadline: the only way tests and the pod runner wait.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// A wait that ran out of time, with the last thing it saw.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
pub struct WaitTimeout {
    /// What was awaited, in words.
    pub what: String,
    /// How long the wait lasted.
    pub timeout: Duration,
    /// The last observation or error, to say why the condition did not hold.
    pub last: String,
}

/// Polls `check` every `interval` until it returns `Ok(Some(value))`, or fails with
/// [`WaitTimeout`] once `timeout` has passed. `Ok(None)` means "not yet"; an `Err` is
/// treated as "not yet" too (a server still starting refuses connections), and its
/// message is kept for the timeout error.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T, WaitTimeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => String::from("condition not met"),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() + interval > deadline {
            return Err(WaitTimeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_value_once_the_condition_holds() {
        let mut calls = 0;
        let got = wait_for(
            "three calls",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                calls += 1;
                let n = calls;
                async move { Ok((n >= 3).then_some(n)) }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn times_out_with_the_last_error() {
        let err = wait_for::<(), _, _>(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Err(anyhow::anyhow!("connection refused")) },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert!(err.to_string().contains("never"), "{err}");
    }
}
