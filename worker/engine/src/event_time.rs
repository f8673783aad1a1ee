//! The future-event-time rule of SPEC.md §4: an event time further ahead of its
//! reference time than `maxFutureSkew` makes the record a dead letter, so one bad
//! clock cannot push a user's windows (and their retention) forward.
//!
//! The reference is the source record's own timestamp when it has one (a Kafka
//! record's), so that a replay after a crash decides the same as the first run;
//! the wall clock otherwise (files, the generator, records without a timestamp).

use std::fmt;

use chrono::{DateTime, SecondsFormat};

use crate::{Engine, InvalidRecord, Transaction};

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// A mean Gregorian year, for the rough size of a far-off time.
const YEAR_MS: i64 = 31_556_952_000;

/// What an event time is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeReference {
    /// The source record's timestamp, ms since the epoch.
    Record(i64),
    /// The wall clock when the record was read, ms since the epoch.
    WallClock(i64),
}

impl TimeReference {
    /// The record's timestamp when it has one (`Some`, not negative: Kafka writes
    /// −1 for "none"), else the wall clock.
    pub fn of(record_timestamp_ms: Option<i64>, wall_clock_ms: i64) -> Self {
        match record_timestamp_ms {
            Some(t) if t >= 0 => TimeReference::Record(t),
            _ => TimeReference::WallClock(wall_clock_ms),
        }
    }

    /// The reference time, ms since the epoch.
    pub fn millis(self) -> i64 {
        match self {
            TimeReference::Record(t) | TimeReference::WallClock(t) => t,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            TimeReference::Record(_) => "the record's time",
            TimeReference::WallClock(_) => "the wall clock",
        }
    }
}

/// Refuses an event time more than `max_future_skew_ms` after `reference`; an
/// event time exactly at the limit, or earlier (however late), passes.
pub fn check(
    event_time_ms: i64,
    reference: TimeReference,
    max_future_skew_ms: i64,
) -> Result<(), InvalidRecord> {
    if event_time_ms > reference.millis().saturating_add(max_future_skew_ms) {
        Err(InvalidRecord::FutureEventTime {
            event_time_ms,
            reference,
            max_future_skew_ms,
        })
    } else {
        Ok(())
    }
}

impl Engine {
    /// Checks `tx`'s event time against the pipeline's `maxFutureSkew` (SPEC.md §4);
    /// a refusal is a dead letter with kind `future_event_time`. Pure: the caller
    /// chooses the reference (see [`TimeReference::of`]) and calls this before
    /// [`Engine::decide`].
    pub fn check_event_time(
        &self,
        tx: &Transaction,
        reference: TimeReference,
    ) -> Result<(), InvalidRecord> {
        check(
            tx.event_time_ms,
            reference,
            self.config().windows.max_future_skew_ms,
        )
    }
}

/// The dead-letter reason of [`InvalidRecord::FutureEventTime`].
pub(crate) fn future_message(
    event_time_ms: i64,
    reference: TimeReference,
    max_future_skew_ms: i64,
) -> String {
    format!(
        "transaction_time {} is {} after {} {} (maxFutureSkew {}); fix the producer's clock, \
         or raise spec.rules.windows.maxFutureSkew if such skew is expected",
        Iso(event_time_ms),
        Span(event_time_ms.saturating_sub(reference.millis())),
        reference.describe(),
        Iso(reference.millis()),
        Compact(max_future_skew_ms),
    )
}

/// An instant as ISO-8601 UTC, milliseconds only when not zero.
struct Iso(i64);

impl fmt::Display for Iso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::from_timestamp_millis(self.0) {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(f, "{} ms since the epoch", self.0),
        }
    }
}

/// A span for people: whole years or days when large, else exact to the ms.
struct Span(i64);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let plural = |n: i64| if n == 1 { "" } else { "s" };
        if ms >= YEAR_MS {
            let n = ms / YEAR_MS;
            return write!(f, "about {n} year{}", plural(n));
        }
        if ms >= 2 * DAY_MS {
            let n = ms / DAY_MS;
            return write!(f, "about {n} days");
        }
        let (h, rest) = (ms / HOUR_MS, ms % HOUR_MS);
        let (m, rest) = (rest / MINUTE_MS, rest % MINUTE_MS);
        let (s, milli) = (rest / SECOND_MS, rest % SECOND_MS);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        match (s, milli) {
            (0, 0) if h + m > 0 => Ok(()),
            (s, 0) => write!(f, "{s}s"),
            (s, milli) => write!(f, "{s}.{milli:03}s"),
        }
    }
}

/// A duration as the manifest writes it: the largest unit that divides it exactly.
struct Compact(i64);

impl fmt::Display for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let unit = [
            (DAY_MS, "d"),
            (HOUR_MS, "h"),
            (MINUTE_MS, "m"),
            (SECOND_MS, "s"),
        ]
        .into_iter()
        .find(|(size, _)| ms != 0 && ms % size == 0);
        match unit {
            Some((size, name)) => write!(f, "{}{name}", ms / size),
            None => write!(f, "{ms}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::timefmt::{Zone, parse_time};

    fn at(text: &str) -> i64 {
        parse_time(text, Zone::Utc).unwrap()
    }

    fn tx(event_time_ms: i64) -> Transaction {
        Transaction {
            transaction_id: 1,
            user_id: 2,
            amount: crate::Cents(100),
            merchant_id: 3,
            transaction_type: None,
            event_time_ms,
            ip_address: None,
            device_id: None,
            location: None,
        }
    }

    #[test]
    fn far_future_time_is_refused_and_named() {
        let engine = Engine::new(EngineConfig::default());
        let reference = TimeReference::Record(at("2026-12-03T13:40:00Z"));
        let err = engine
            .check_event_time(&tx(at("2096-01-01T00:00:00Z")), reference)
            .unwrap_err();
        assert_eq!(err.kind(), "future_event_time");
        assert_eq!(
            err.to_string(),
            "transaction_time 2096-01-01T00:00:00Z is about 69 years after the record's time \
             2026-12-03T13:40:00Z (maxFutureSkew 5m); fix the producer's clock, or raise \
             spec.rules.windows.maxFutureSkew if such skew is expected"
        );
    }

    #[test]
    fn the_limit_is_inclusive() {
        let engine = Engine::new(EngineConfig::default());
        let now = at("2026-12-03T13:40:00Z");
        let skew = engine.config().windows.max_future_skew_ms;
        assert_eq!(skew, 5 * 60_000);
        let wall = TimeReference::WallClock(now);
        assert_eq!(engine.check_event_time(&tx(now + skew), wall), Ok(()));
        let err = engine
            .check_event_time(&tx(now + skew + 1), wall)
            .unwrap_err();
        assert_eq!(
            err,
            InvalidRecord::FutureEventTime {
                event_time_ms: now + skew + 1,
                reference: wall,
                max_future_skew_ms: skew,
            }
        );
        assert!(
            err.to_string().starts_with(
                "transaction_time 2026-12-03T13:45:00.001Z is 5m0.001s after the wall clock \
                 2026-12-03T13:40:00Z (maxFutureSkew 5m)"
            ),
            "{err}"
        );
    }

    #[test]
    fn past_and_present_times_pass() {
        let engine = Engine::new(EngineConfig::default());
        let now = at("2026-12-03T13:40:00Z");
        for t in [now, now - 1, at("1999-01-01T00:00:00Z"), i64::MIN] {
            assert_eq!(
                engine.check_event_time(&tx(t), TimeReference::Record(now)),
                Ok(())
            );
        }
        // A reference near the end of time does not overflow.
        assert_eq!(
            check(i64::MAX, TimeReference::Record(i64::MAX - 1), 10),
            Ok(())
        );
    }

    #[test]
    fn the_configured_skew_applies() {
        let mut cfg = EngineConfig::default();
        cfg.windows.max_future_skew_ms = 90 * 60_000;
        let engine = Engine::new(cfg);
        let now = at("2026-12-03T13:40:00Z");
        let wall = TimeReference::WallClock(now);
        assert_eq!(
            engine.check_event_time(&tx(now + 90 * 60_000), wall),
            Ok(())
        );
        let err = engine
            .check_event_time(&tx(now + 3 * DAY_MS), wall)
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "is about 3 days after the wall clock 2026-12-03T13:40:00Z (maxFutureSkew 90m)"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_record_timestamp_wins_over_the_wall_clock() {
        assert_eq!(TimeReference::of(Some(5), 9), TimeReference::Record(5));
        assert_eq!(TimeReference::of(None, 9), TimeReference::WallClock(9));
        assert_eq!(TimeReference::of(Some(-1), 9), TimeReference::WallClock(9));
    }

    #[test]
    fn spans_read_well() {
        for (ms, text) in [
            (1, "0.001s"),
            (1_000, "1s"),
            (61_500, "1m1.500s"),
            (HOUR_MS, "1h"),
            (HOUR_MS + 2 * MINUTE_MS, "1h2m"),
            (DAY_MS + 5 * SECOND_MS, "24h5s"),
            (2 * DAY_MS, "about 2 days"),
            (YEAR_MS, "about 1 year"),
        ] {
            assert_eq!(Span(ms).to_string(), text);
        }
        assert_eq!(Compact(300_000).to_string(), "5m");
        assert_eq!(Compact(1_500).to_string(), "1500ms");
        assert_eq!(Compact(DAY_MS).to_string(), "1d");
    }
}
