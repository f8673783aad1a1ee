//! The worker contract seen from the worker: every reason the engine refuses a
//! record for is a dead-letter kind the contract lists, so a sum over
//! [`DeadLetterKind::ALL`] counts every dead letter.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use riskpipe_contract::DeadLetterKind;
use riskpipe_engine::InvalidRecord;

/// One refusal of each kind the engine has. The match has no wildcard: a new
/// variant of `InvalidRecord` does not compile until it gets an example here.
fn example(of: &InvalidRecord) -> InvalidRecord {
    match of {
        InvalidRecord::Json(_) => InvalidRecord::Json("expected value at line 1".into()),
        InvalidRecord::Missing(_) => InvalidRecord::Missing("amount"),
        InvalidRecord::Field { .. } => InvalidRecord::Field {
            field: "amount",
            reason: "not a number".into(),
        },
        InvalidRecord::FutureEventTime { .. } => InvalidRecord::FutureEventTime {
            event_time_ms: 4_000_000_000_000,
            reference: riskpipe_engine::TimeReference::Record(1_800_000_000_000),
            max_future_skew_ms: 300_000,
        },
    }
}

fn every_engine_refusal() -> Vec<InvalidRecord> {
    [
        InvalidRecord::Json(String::new()),
        InvalidRecord::Missing(""),
        InvalidRecord::Field {
            field: "",
            reason: String::new(),
        },
        InvalidRecord::FutureEventTime {
            event_time_ms: 0,
            reference: riskpipe_engine::TimeReference::WallClock(0),
            max_future_skew_ms: 0,
        },
    ]
    .iter()
    .map(example)
    .collect()
}

#[test]
fn the_record_steps_own_kind_is_a_contract_kind() {
    assert_eq!(
        DeadLetterKind::from_label(riskpipe_worker::record::OVERSIZED),
        Some(DeadLetterKind::Oversized)
    );
}

#[test]
fn every_engine_kind_is_a_contract_kind() {
    for refusal in every_engine_refusal() {
        let kind = refusal.kind();
        assert!(
            DeadLetterKind::from_label(kind).is_some(),
            "the engine's kind '{kind}' ({refusal}) is not in riskpipe_contract::DeadLetterKind::ALL"
        );
    }
}
