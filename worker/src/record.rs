//! The one record step of every mode — local run, replay, Kafka, and the
//! state-only catch-up after a crash: parse → refuse (oversized, invalid, an
//! event time beyond `maxFutureSkew` of the record's timestamp) →
//! prefetch the batch's dimensions → decide → hand each outcome to the caller.
//!
//! Whatever a mode does with an outcome (write a decision, a dead letter, or
//! nothing during catch-up), the state sees exactly the same updates, so a
//! replayed range leaves the windows as the live path left them.

use std::time::{SystemTime, UNIX_EPOCH};

use riskpipe_engine::dimensions::Dimensions;
use riskpipe_engine::store::StateStore;
use riskpipe_engine::{
    BatchKeys, Decision, Engine, TimeReference, Transaction, Unavailable, parse_transaction,
};

/// Longest record accepted; longer ones go to the dead letters, truncated.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Dead-letter kind of a record over [`MAX_RECORD_BYTES`].
pub const OVERSIZED: &str = riskpipe_contract::DeadLetterKind::Oversized.as_str();

/// One raw input record of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The record's bytes (a file source may have cut them at the limit).
    pub bytes: &'a [u8],
    /// The record's size before any cut.
    pub size: usize,
    /// The time event times are bounded against: a Kafka record's timestamp, so
    /// that a replay after a crash refuses exactly what the live run refused;
    /// `None` takes the wall clock.
    pub reference_ms: Option<i64>,
}

impl<'a> Input<'a> {
    /// A record as it was read, whole.
    pub fn whole(bytes: &'a [u8], reference_ms: Option<i64>) -> Self {
        Input {
            bytes,
            size: bytes.len(),
            reference_ms,
        }
    }
}

/// Why a record is a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable kind (the `kind` label of the dead-letter metrics).
    pub kind: &'static str,
    /// What is wrong, for people.
    pub reason: String,
}

/// What one record became. Handed straight to the caller's callback and
/// dropped there, so the decision is not boxed: no allocation per record.
#[allow(clippy::large_enum_variant)]
pub enum Outcome<'t> {
    /// A decision (its clock fields are left for the caller to set).
    Decided {
        /// The parsed transaction.
        tx: &'t Transaction,
        /// The engine's decision.
        decision: Decision,
    },
    /// A dead letter.
    Refused(Refusal),
}

/// Whether the batch goes on after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Decide the next record.
    Go,
    /// Stop after this record (the caller keeps the rest for later).
    Stop,
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses one record, or says why it is refused.
pub fn parse(input: &Input<'_>, engine: &Engine) -> Result<Transaction, Refusal> {
    if input.size > MAX_RECORD_BYTES {
        return Err(Refusal {
            kind: OVERSIZED,
            reason: format!(
                "record of {} bytes exceeds the {MAX_RECORD_BYTES} byte limit (raw truncated)",
                input.size
            ),
        });
    }
    let tx = parse_transaction(input.bytes, engine.config().zone).map_err(|e| Refusal {
        kind: e.kind(),
        reason: e.to_string(),
    })?;
    let reference = match input.reference_ms {
        Some(ms) => TimeReference::of(Some(ms), now_ms()),
        None => TimeReference::WallClock(now_ms()),
    };
    engine
        .check_event_time(&tx, reference)
        .map_err(|e| Refusal {
            kind: e.kind(),
            reason: e.to_string(),
        })?;
    Ok(tx)
}

/// Runs one batch through the engine: every record is parsed first, the
/// dimensions of the valid ones are prefetched together, then each is decided
/// in order against `state` and handed to `each` with its index in `inputs`.
/// Returns whether `each` stopped the batch early ([`Flow::Stop`]); the records
/// after the one it stopped at were not touched. When the dimensions cannot be
/// fetched ([`Unavailable`]: the source gave up waiting for its database
/// because the worker stops) no record is decided and `each` is not called.
pub fn run_batch<S, E>(
    engine: &Engine,
    dims: &dyn Dimensions,
    state: &mut S,
    inputs: &[Input<'_>],
    mut each: impl FnMut(usize, Outcome<'_>) -> Result<Flow, E>,
) -> Result<bool, E>
where
    S: StateStore,
    E: From<S::Error> + From<Unavailable>,
{
    let parsed: Vec<Result<Transaction, Refusal>> =
        inputs.iter().map(|input| parse(input, engine)).collect();
    let view = dims.prefetch(&BatchKeys::of(parsed.iter().flatten()))?;
    let dims: &dyn Dimensions = match &view {
        Some(view) => view.as_ref(),
        None => dims,
    };
    for (i, parsed) in parsed.into_iter().enumerate() {
        let flow = match parsed {
            Ok(tx) => {
                let decision = engine.decide(&tx, dims, state)?;
                each(i, Outcome::Decided { tx: &tx, decision })?
            }
            Err(refusal) => each(i, Outcome::Refused(refusal))?,
        };
        if flow == Flow::Stop && i + 1 < inputs.len() {
            return Ok(true);
        }
    }
    Ok(false)
}
