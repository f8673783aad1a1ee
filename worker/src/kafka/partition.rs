//! One owned input partition: its state, its transactional producer, and the
//! micro-batch → transaction step.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use riskpipe_crds::{KafkaSource, StartupMode};
use riskpipe_engine::dimensions::Dimensions;
use riskpipe_engine::{DecisionWriter, Engine};

use super::args::KafkaArgs;
use super::clients::{self, TXN_TIMEOUT};
use super::fault;
use super::identity::Identity;
use super::watermarks::Watermarks;
use crate::audit::AuditWriter;
use crate::http::Shared;
use crate::metrics::{DecisionLabel, KindLabel, PartitionLabel, WorkerMetrics};
use crate::output::DeadLetter;
use crate::record::{self, Flow, Input, Outcome, now_ms};
use crate::snapshots::Snapshots;
use crate::snapshots::layout::partition_dir;
use crate::state::PartitionState;

/// Aborted transactions in a row after which the worker gives up (and restarts).
const MAX_ABORTS_IN_A_ROW: u32 = 5;
/// Longest time a batch is decided inside one transaction: with the commit's
/// own [`TXN_TIMEOUT`] it stays well inside `transaction.timeout.ms` (60 s).
const PRODUCE_BUDGET: Duration = Duration::from_secs(20);
/// Records a catch-up replays between two state writes (bounds its memory).
pub const CATCH_UP_CHUNK: usize = 5_000;

/// Output topics.
pub struct Outputs {
    /// Decisions, keyed by transaction_id.
    pub decisions: String,
    /// Dead letters, keyed by `partition:offset`.
    pub dead_letters: String,
    /// Audit records (SPEC §10), keyed by transaction_id, when on.
    pub audit: Option<AuditOutput>,
    /// Monitoring windows' partials (SPEC §9), when a metrics or alerts sink is set.
    pub windows: Option<super::windows::PartialsOutput>,
}

/// The audit topic and the writer of its records.
pub struct AuditOutput {
    /// Topic name.
    pub topic: String,
    /// Builds the protected record.
    pub writer: AuditWriter,
}

/// A polled input record.
pub struct Polled {
    offset: i64,
    timestamp_ms: Option<i64>,
    payload: Option<Vec<u8>>,
    fetched_at: Instant,
}

impl Polled {
    /// Copies what the batch needs out of a consumer message.
    pub fn from_message(m: &BorrowedMessage<'_>) -> Self {
        Polled {
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            payload: m.payload().map(<[u8]>::to_vec),
            fetched_at: Instant::now(),
        }
    }

    /// The record's input offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record as input of the record step; event times are bounded against
    /// its Kafka timestamp, so a replay refuses exactly what the live run did.
    pub fn input(&self) -> Input<'_> {
        Input::whole(
            self.payload.as_deref().unwrap_or_default(),
            self.timestamp_ms,
        )
    }
}

/// What a partition does when the offset it must resume from (or the start of
/// the range it must replay into its state) is no longer in the topic
/// (`spec.source.kafka.onOffsetOutOfRange`).
pub use riskpipe_crds::OffsetOutOfRangePolicy as OffsetPolicy;

/// The policy's name in the manifest and in `/status`.
pub fn policy_name(policy: OffsetPolicy) -> &'static str {
    match policy {
        OffsetPolicy::Fail => "fail",
        OffsetPolicy::Earliest => "earliest",
        OffsetPolicy::Latest => "latest",
    }
}

/// A resume position or catch-up range that retention had removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    /// First lost offset.
    pub lost_from: i64,
    /// First offset after the lost range (the partition's oldest, or its end).
    pub lost_to: i64,
    /// The policy applied.
    pub policy: OffsetPolicy,
    /// When it was seen, ms since the epoch.
    pub at_ms: i64,
}

/// How a partition starts, once its state is open and the group's offsets are known.
pub struct StartInputs {
    /// The group's committed offset.
    pub committed: Option<i64>,
    /// The partition's oldest and next offsets.
    pub watermarks: (i64, i64),
    /// Where a partition with no state and no committed offset starts.
    pub startup: StartupMode,
    /// The offset `startupTimestamp` resolves to, under `startupMode: timestamp`.
    pub timestamp_offset: Option<i64>,
    /// What to do when a needed offset is gone.
    pub policy: OffsetPolicy,
}

/// One owned partition.
pub struct PartitionWorker {
    /// The input partition.
    pub id: i32,
    /// Its window state.
    pub state: PartitionState,
    producer: BaseProducer,
    /// Next offset whose effect is not yet in the state.
    state_offset: Option<i64>,
    /// The group's committed offset when the worker started.
    committed: Option<i64>,
    /// Next input offset to process.
    next_offset: Option<i64>,
    /// First offset of the catch-up range (replayed into the state only).
    catch_up_from: Option<i64>,
    /// Transactions aborted in a row (a batch that can never commit stops the worker).
    aborts_in_a_row: u32,
    /// Where the state came from: `local`, `empty`, or a snapshot's URL.
    pub start_source: String,
    /// A lost range met at start or while running, with the policy applied.
    pub out_of_range: Option<OutOfRange>,
    /// Why the partition is stopped (its records are no longer read), if it is.
    pub stopped: Option<String>,
}

/// The local database of a partition, as found on the volume.
enum LocalState {
    Missing,
    Opened(Box<PartitionState>, Option<i64>),
    Broken(anyhow::Error),
}

fn open_local(dir: &Path, cache_entries: usize) -> LocalState {
    if !dir.join("CURRENT").exists() {
        return LocalState::Missing;
    }
    match PartitionState::open(dir, cache_entries) {
        Ok(state) => match state.next_offset() {
            Ok(offset) => LocalState::Opened(Box::new(state), offset),
            Err(e) => LocalState::Broken(e.into()),
        },
        Err(e) => LocalState::Broken(e.into()),
    }
}

/// Moves a database that does not open out of the way (kept for inspection).
fn move_aside(dir: &Path) -> Result<PathBuf> {
    let aside = dir.with_extension(format!("broken-{}", now_ms()));
    std::fs::rename(dir, &aside)
        .with_context(|| format!("moving {} to {}", dir.display(), aside.display()))?;
    Ok(aside)
}

impl PartitionWorker {
    /// Opens the partition's state from the newest consistent source — its
    /// local database, the savepoint given by `--restore-from`, or the newest
    /// checkpoint holding it — compared by the offset each recorded (a folder
    /// left behind when the partition moved away loses to a newer snapshot),
    /// then fences older producers, which aborts a transaction a killed
    /// predecessor left open, so the group's offsets are stable to read right
    /// after (see [`Self::resolve_start`]).
    pub fn open(
        identity: &Identity,
        source: &KafkaSource,
        id: i32,
        args: &KafkaArgs,
        snapshots: &Snapshots,
        cache_entries: usize,
    ) -> Result<Self> {
        let dir = partition_dir(&args.state_dir, id);
        let remote = snapshots.find(args.restore_from.as_deref(), id)?;
        let (state, start_source) = match open_local(&dir, cache_entries) {
            LocalState::Opened(state, local)
                if remote.as_ref().is_some_and(|r| r.is_newer_than(local)) =>
            {
                let remote = remote.as_ref().context("a newer snapshot")?;
                tracing::info!(
                    partition = id, local_offset = ?local, snapshot_offset = ?remote.next_offset,
                    from = remote.url(), "the local state is older than a snapshot; restoring the snapshot"
                );
                drop(state);
                let from = snapshots.fetch(remote, &dir)?;
                (PartitionState::open(&dir, cache_entries)?, from)
            }
            LocalState::Opened(state, _) => (*state, "local".to_owned()),
            LocalState::Broken(e) => match &remote {
                Some(remote) => {
                    let aside = move_aside(&dir)?;
                    tracing::error!(
                        partition = id, error = %format!("{e:#}"), moved_to = %aside.display(),
                        from = remote.url(), "the local state does not open; restoring a snapshot"
                    );
                    let from = snapshots.fetch(remote, &dir)?;
                    (PartitionState::open(&dir, cache_entries)?, from)
                }
                None => {
                    return Err(e).context(format!(
                        "the state of partition {id} in {} does not open and no checkpoint or \
                         savepoint holds the partition: restore one with --restore-from, or \
                         remove the folder to start the partition's windows empty",
                        dir.display()
                    ));
                }
            },
            LocalState::Missing => match &remote {
                Some(remote) => {
                    let from = snapshots.fetch(remote, &dir)?;
                    (PartitionState::open(&dir, cache_entries)?, from)
                }
                None => (
                    PartitionState::open(&dir, cache_entries)?,
                    "empty".to_owned(),
                ),
            },
        };
        let state_offset = state.next_offset()?;
        let producer = identity.fence(source, id, &args.security)?;
        Ok(PartitionWorker {
            id,
            state,
            producer,
            state_offset,
            committed: None,
            next_offset: state_offset,
            catch_up_from: None,
            aborts_in_a_row: 0,
            start_source,
            out_of_range: None,
            stopped: None,
        })
    }

    /// Decides where the partition goes on and which range it replays into its
    /// state, from the group's committed offset (read after every owned
    /// partition's producer has fenced its predecessor) and the partition's
    /// watermarks. A partition with no position yet records the one it
    /// resolved at once, so a restart before its first record does not jump to
    /// a newer end. A needed offset that retention removed is never skipped
    /// silently: [`OffsetPolicy`] decides, and what was lost is reported.
    pub fn resolve_start(&mut self, start: &StartInputs, metrics: &WorkerMetrics) -> Result<()> {
        let (low, high) = start.watermarks;
        self.committed = start.committed;
        let mut next = match (self.state_offset, start.committed) {
            (Some(s), Some(c)) => Some(s.max(c)),
            (s, c) => s.or(c),
        };
        // The range the state misses, replayed without output.
        if let (Some(from), Some(to)) = (self.state_offset, start.committed)
            && from < to
        {
            if from < low {
                self.lost(from, low.min(to), start.policy, metrics)?;
                if start.policy == OffsetPolicy::Earliest && low < to {
                    self.catch_up_from = Some(low);
                }
            } else {
                self.catch_up_from = Some(from);
            }
        }
        if let Some(n) = next
            && (n < low || n > high)
        {
            let (lost_from, lost_to) = if n < low { (n, low) } else { (high, n) };
            self.lost(lost_from, lost_to, start.policy, metrics)?;
            next = Some(if start.policy == OffsetPolicy::Earliest {
                low
            } else {
                high
            });
            // Nothing to replay: the state goes on from where the input does.
            self.catch_up_from = None;
        }
        if self.stopped.is_some() {
            // Nothing is recorded: the state stays where it was, for whoever
            // restores a snapshot or sets a policy to decide.
            tracing::error!(partition = self.id, source = %self.start_source, "partition stopped");
            return Ok(());
        }
        let next = match next {
            Some(n) => n,
            None => match start.startup {
                StartupMode::Earliest => low,
                StartupMode::Latest | StartupMode::GroupOffsets => high,
                StartupMode::Timestamp => start.timestamp_offset.unwrap_or(high).clamp(low, high),
            },
        };
        self.next_offset = Some(next);
        if self.catch_up_from.is_none() && self.state_offset != Some(next) {
            // Recorded at once: the position survives a restart before the first record.
            self.state.flush_at(next)?;
            self.state_offset = Some(next);
        }
        tracing::info!(
            partition = self.id,
            state_offset = ?self.state_offset,
            committed = ?start.committed,
            next,
            catch_up_from = ?self.catch_up_from,
            source = %self.start_source,
            "partition opened"
        );
        Ok(())
    }

    /// Records a lost range; under [`OffsetPolicy::Fail`] the partition stops.
    fn lost(
        &mut self,
        from: i64,
        to: i64,
        policy: OffsetPolicy,
        metrics: &WorkerMetrics,
    ) -> Result<()> {
        metrics
            .offsets_out_of_range
            .get_or_create(&PartitionLabel { partition: self.id })
            .inc();
        self.out_of_range = Some(OutOfRange {
            lost_from: from,
            lost_to: to,
            policy,
            at_ms: now_ms(),
        });
        let what = format!(
            "partition {}: offsets {from}..{to} are no longer in the topic (retention passed)",
            self.id
        );
        if policy == OffsetPolicy::Fail {
            let reason = format!(
                "{what}; the partition is stopped. Restore a savepoint or checkpoint that holds \
                 offset {to} or later (--restore-from), or set \
                 spec.source.kafka.onOffsetOutOfRange to earliest or latest to accept the loss"
            );
            tracing::error!("{reason}");
            self.stopped = Some(reason);
        } else {
            tracing::warn!(
                policy = policy_name(policy),
                "{what}; going on as spec.source.kafka.onOffsetOutOfRange says"
            );
        }
        Ok(())
    }

    /// Where consumption starts (after [`Self::resolve_start`]); `None` while
    /// the partition is stopped.
    pub fn start_offset(&self) -> Option<i64> {
        if self.stopped.is_some() {
            return None;
        }
        self.next_offset
    }

    /// Brings the state up to the committed offset when it is behind (a crash
    /// between a commit and the state write, or a restore from an older
    /// snapshot): the range goes through the same record step as live input,
    /// but only into the state; nothing is emitted. The state is written every
    /// [`CATCH_UP_CHUNK`] records with the offset reached, so memory stays
    /// bounded and a crash during a long replay resumes where it was.
    pub fn catch_up(
        &mut self,
        source: &KafkaSource,
        group_id: &str,
        security: &clients::KafkaSecurity,
        engine: &Engine,
        dims: &dyn Dimensions,
        metrics: &WorkerMetrics,
    ) -> Result<()> {
        if self.stopped.is_some() {
            return Ok(());
        }
        let (Some(from), Some(to)) = (self.catch_up_from, self.committed) else {
            if self.state_offset.is_none() && self.committed.is_some() {
                tracing::warn!(
                    partition = self.id,
                    "no state and no snapshot for a partition with committed offsets: windows start empty"
                );
            }
            return Ok(());
        };
        if to <= from {
            return Ok(());
        }
        tracing::info!(
            partition = self.id,
            from,
            to,
            "replaying into state (no output)"
        );
        let consumer: BaseConsumer = clients::consumer_config(source, group_id, security)
            .create()
            .context("creating the catch-up consumer")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&source.topic, self.id, Offset::Offset(from))?;
        consumer.assign(&tpl)?;
        let mut last_progress = Instant::now();
        let mut applied = 0u64;
        let mut chunk: Vec<Polled> = Vec::with_capacity(CATCH_UP_CHUNK);
        let mut done = false;
        while !done {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    if m.offset() >= to {
                        done = true;
                    } else {
                        chunk.push(Polled::from_message(&m));
                    }
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange))) => {
                    bail!(
                        "catch-up of partition {}: the range {from}..{to} was removed by retention while it was being replayed; restore a newer savepoint or checkpoint",
                        self.id
                    );
                }
                Some(Err(e)) => tracing::warn!(error = %e, "catch-up consumer error"),
                None => {
                    let position = consumer.position().ok().and_then(|p| {
                        p.find_partition(&source.topic, self.id)
                            .and_then(|e| e.offset().to_raw())
                    });
                    if position.is_some_and(|p| p >= to) {
                        done = true;
                    } else if last_progress.elapsed() > Duration::from_secs(60) {
                        bail!(
                            "catch-up of partition {} stalled before offset {to}",
                            self.id
                        );
                    }
                }
            }
            if chunk.len() >= CATCH_UP_CHUNK || (done && !chunk.is_empty()) {
                let next = chunk.last().map_or(from, |p| p.offset + 1);
                let inputs: Vec<Input<'_>> = chunk.iter().map(Polled::input).collect();
                record::run_batch(engine, dims, &mut self.state, &inputs, |_, _| {
                    Ok::<Flow, anyhow::Error>(Flow::Go)
                })?;
                if !done {
                    // The last chunk is written by the flush at `to` below.
                    self.state.flush_at(next)?;
                }
                applied += chunk.len() as u64;
                metrics.caught_up_records.inc_by(chunk.len() as u64);
                chunk.clear();
            }
        }
        self.state.flush_at(to)?;
        self.state_offset = Some(to);
        self.next_offset = Some(to);
        self.catch_up_from = None;
        tracing::info!(partition = self.id, applied, "state caught up");
        Ok(())
    }

    /// The partition's transactional producer (committed from another thread
    /// while the loop fetches the next batch).
    pub fn producer(&self) -> &BaseProducer {
        &self.producer
    }

    /// Begins the partition's transaction and produces the micro-batch's
    /// decisions, audit records and dead letters into it; the state cache then
    /// holds the batch's effects until [`finish`](Self::finish) writes or
    /// discards them. The transaction begins once the batch's dimensions are
    /// fetched, and a batch that takes longer than [`PRODUCE_BUDGET`] to decide
    /// is cut there: the records not decided are returned to go first into the
    /// next cycle, so a transaction never outlives `transaction.timeout.ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn produce(
        &mut self,
        batch: &mut Vec<Polled>,
        engine: &Engine,
        dims: &dyn Dimensions,
        writer: &DecisionWriter,
        outputs: &Outputs,
        topic: &str,
        metrics: &WorkerMetrics,
    ) -> Result<Vec<Polled>> {
        fault::point("before_produce");
        let budget = fault::override_ms("transaction_budget").unwrap_or(PRODUCE_BUDGET);
        let inputs: Vec<Input<'_>> = batch.iter().map(Polled::input).collect();
        let mut json = Vec::with_capacity(2048);
        let mut key = String::with_capacity(24);
        let mut began: Option<Instant> = None;
        let mut handled = 0usize;
        let (producer, id) = (&self.producer, self.id);
        let sender = Sender { producer };
        let state = &mut self.state;
        let first = batch.first().map_or(0, |p| p.offset);
        let mut windows = outputs.windows.as_ref().map(|w| w.batch(id, first));
        let result: Result<bool> = record::run_batch(engine, dims, state, &inputs, |i, outcome| {
            let started = match began {
                Some(at) => at,
                None => {
                    producer
                        .begin_transaction()
                        .context("beginning a transaction")?;
                    *began.insert(Instant::now())
                }
            };
            let p = &batch[i];
            fault::slow("record");
            metrics.records_in.inc();
            match outcome {
                Outcome::Decided { tx, mut decision } => {
                    decision.decided_at_ms = now_ms();
                    let latency = p.fetched_at.elapsed();
                    decision.processing_latency_ms = latency.as_secs_f64() * 1000.0;
                    metrics.in_worker_latency.observe(latency.as_secs_f64());
                    metrics
                        .decisions
                        .get_or_create(&DecisionLabel {
                            decision: decision.final_decision.as_str(),
                        })
                        .inc();
                    json.clear();
                    writer.write(&decision, &mut json);
                    key.clear();
                    key.push_str(itoa::Buffer::new().format(tx.transaction_id));
                    sender.send(&outputs.decisions, key.as_bytes(), &json)?;
                    if let Some(w) = &mut windows {
                        w.decided(&decision);
                    }
                    if let Some(audit) = &outputs.audit {
                        json.clear();
                        audit.writer.write(&decision, tx, &mut json)?;
                        sender.send(&audit.topic, key.as_bytes(), &json)?;
                    }
                }
                Outcome::Refused(refusal) => {
                    metrics
                        .dead_letters
                        .get_or_create(&KindLabel { kind: refusal.kind })
                        .inc();
                    json.clear();
                    DeadLetter {
                        raw: p.payload.as_deref().unwrap_or_default(),
                        kind: refusal.kind,
                        reason: &refusal.reason,
                        source: topic,
                        position: p.offset as u64,
                        partition: Some(id),
                        at_ms: now_ms(),
                    }
                    .write(&mut json);
                    let key = format!("{id}:{}", p.offset);
                    sender.send(&outputs.dead_letters, key.as_bytes(), &json)?;
                    if let Some(w) = &mut windows {
                        w.refused(p.timestamp_ms);
                    }
                }
            }
            metrics.records_out.inc();
            handled = i + 1;
            Ok(if started.elapsed() >= budget {
                Flow::Stop
            } else {
                Flow::Go
            })
        });
        // Every outcome leaves a transaction open, for the commit or the abort.
        if began.is_none() {
            producer
                .begin_transaction()
                .context("beginning a transaction")?;
        }
        let cut = result?;
        // The batch's windows, in its transaction: exactly once with its decisions.
        if let Some((topic, key, payload)) = windows.as_ref().and_then(|w| w.record()) {
            sender.send(topic, key.as_bytes(), &payload)?;
        }
        let rest = if cut {
            batch.split_off(handled)
        } else {
            Vec::new()
        };
        if !rest.is_empty() {
            metrics.transactions_cut.inc();
            tracing::warn!(
                partition = id,
                decided = handled,
                left = rest.len(),
                "the batch took longer than the transaction budget; the rest goes into the next one"
            );
        }
        fault::point("after_produce");
        Ok(rest)
    }

    /// Ends a micro-batch after its commit: on success the state is written
    /// with the next offset; on failure the transaction is aborted, the cached
    /// effects are dropped and the batch is handed back to be processed again
    /// (before any record polled after it). A fenced producer, or too many
    /// aborts in a row, stops the worker.
    pub fn finish(
        &mut self,
        batch: Vec<Polled>,
        outcome: Result<()>,
        metrics: &WorkerMetrics,
    ) -> Result<Option<Vec<Polled>>> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(None);
        };
        match outcome {
            Ok(()) => {}
            Err(e) if is_fatal(&e) => {
                return Err(e).context(format!(
                    "partition {}: this worker was fenced or its producer failed fatally; another worker owns the partition now",
                    self.id
                ));
            }
            Err(e) if self.aborts_in_a_row >= MAX_ABORTS_IN_A_ROW => {
                return Err(e).context(format!(
                    "partition {}: {MAX_ABORTS_IN_A_ROW} transactions in a row aborted at offset {}; stopping",
                    self.id, first.offset
                ));
            }
            Err(e) => {
                self.aborts_in_a_row += 1;
                metrics.errors.inc();
                tracing::warn!(partition = self.id, error = %format!("{e:#}"), "transaction aborted; the batch will be processed again");
                self.abort()?;
                self.state.discard_cache();
                return Ok(Some(batch));
            }
        }
        fault::point("after_commit");
        self.aborts_in_a_row = 0;
        let next = last.offset + 1;
        self.state.flush_at(next)?;
        fault::point("after_state_write");
        self.state_offset = Some(next);
        self.next_offset = Some(next);
        let now = now_ms();
        for p in &batch {
            if let Some(ts) = p.timestamp_ms {
                metrics
                    .end_to_end_latency
                    .observe((now - ts).max(0) as f64 / 1000.0);
            }
        }
        let stats = self.state.stats();
        metrics
            .cache_hits
            .inner()
            .store(stats.hits, Ordering::Relaxed);
        metrics
            .cache_misses
            .inner()
            .store(stats.misses, Ordering::Relaxed);
        Ok(None)
    }

    /// Aborts the open transaction, retrying while the coordinator is busy; a
    /// fatal error (fenced) stops the worker.
    fn abort(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.producer.abort_transaction(TXN_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(t)) if t.is_fatal() => {
                    return Err(KafkaError::Transaction(t)).context("aborting the transaction");
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(partition = self.id, error = %e, "abort not finished yet; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e).context("aborting the transaction (gave up after 120 s)"),
            }
        }
    }

    /// The next offset to process, when known.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// Handles the input position of this partition falling out of the topic
    /// while running: under `fail` the partition stops; otherwise it goes on
    /// from the oldest offset or the end. Returns the offset to seek to, if any.
    pub fn out_of_range_while_running(
        &mut self,
        (low, high): (i64, i64),
        policy: OffsetPolicy,
        metrics: &WorkerMetrics,
    ) -> Result<Option<i64>> {
        let Some(next) = self.next_offset else {
            return Ok(None);
        };
        if next >= low && next <= high {
            return Ok(None);
        }
        let (from, to) = if next < low {
            (next, low)
        } else {
            (high, next)
        };
        self.lost(from, to, policy, metrics)?;
        if self.stopped.is_some() {
            return Ok(None);
        }
        let target = if policy == OffsetPolicy::Earliest {
            low
        } else {
            high
        };
        self.next_offset = Some(target);
        Ok(Some(target))
    }

    /// Records behind the partition's high watermark `high`.
    pub fn lag(&self, high: i64) -> i64 {
        (high - self.next_offset.unwrap_or(high)).max(0)
    }
}

/// Produces into a partition's open transaction, waiting while the queue is full.
struct Sender<'a> {
    producer: &'a BaseProducer,
}

impl Sender<'_> {
    fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<()> {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context(format!("producing to '{topic}'")),
            }
        }
    }
}

fn is_fatal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<KafkaError>() {
        Some(KafkaError::Transaction(t)) => {
            t.is_fatal() || t.code() == RDKafkaErrorCode::ProducerFenced
        }
        _ => false,
    })
}

/// Adds the input offsets up to `last` to the open transaction of `producer`
/// and commits it. Safe to call from another thread while the loop fetches.
pub fn commit(
    producer: &BaseProducer,
    topic: &str,
    partition: i32,
    last: i64,
    group: &ConsumerGroupMetadata,
) -> Result<()> {
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(topic, partition, Offset::Offset(last + 1))?;
    let started = Instant::now();
    producer
        .send_offsets_to_transaction(&offsets, group, TXN_TIMEOUT)
        .context("adding the input offsets to the transaction")?;
    let offsets_added = started.elapsed();
    // rdkafka's commit flushes by polling in 100 ms steps; waiting for the
    // deliveries here in 1 ms steps takes that fixed 100 ms off every commit.
    let deadline = Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(1));
    }
    fault::point("before_commit");
    if fault::fails("commit") {
        bail!("injected commit failure (RISKPIPE_FAULT_INJECTION)");
    }
    producer
        .commit_transaction(TXN_TIMEOUT)
        .context("committing the transaction")?;
    tracing::trace!(
        partition,
        offsets_ms = offsets_added.as_secs_f64() * 1000.0,
        commit_ms = (started.elapsed() - offsets_added).as_secs_f64() * 1000.0,
        "committed"
    );
    Ok(())
}

/// Busy time, rates and the periodic status report.
pub struct LoopClock {
    started: Instant,
    last_report: Instant,
    busy_since: Option<Instant>,
    busy: Duration,
    records: u64,
    /// (inputs, errors) of each of the last [`ERROR_WINDOW_REPORTS`] reports.
    error_window: std::collections::VecDeque<(u64, u64)>,
    /// (inputs, errors) counted up to the previous report.
    error_totals: (u64, u64),
}

/// The error rate in `/status` covers this many one-second reports, so a burst
/// of bad records shows at once however long the worker has been running.
const ERROR_WINDOW_REPORTS: usize = 60;

impl LoopClock {
    /// A clock starting now.
    pub fn new() -> Self {
        let now = Instant::now();
        LoopClock {
            started: now,
            last_report: now,
            busy_since: None,
            busy: Duration::ZERO,
            records: 0,
            error_window: std::collections::VecDeque::with_capacity(ERROR_WINDOW_REPORTS),
            error_totals: (0, 0),
        }
    }

    /// Work began.
    pub fn busy_from(&mut self, at: Instant) {
        self.busy_since.get_or_insert(at);
    }

    /// Work ended.
    pub fn idle_from(&mut self, at: Instant) {
        if let Some(since) = self.busy_since.take() {
            self.busy += at.saturating_duration_since(since);
        }
    }

    /// Records processed.
    pub fn count(&mut self, n: usize) {
        self.records += n as u64;
    }

    /// Once a second: rates, lag and busy ratio into `/status` and the metrics;
    /// returns whether it reported this time.
    pub fn report(
        &mut self,
        workers: &[PartitionWorker],
        watermarks: &Watermarks,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) -> bool {
        let elapsed = self.last_report.elapsed();
        if elapsed < Duration::from_secs(1) {
            return false;
        }
        let rate = self.records as f64 / elapsed.as_secs_f64();
        let busy = (self.busy.as_secs_f64() / elapsed.as_secs_f64()).min(1.0);
        let mut lag_total = 0;
        for (i, w) in workers.iter().enumerate() {
            if let Some(lag) = watermarks.high(i).map(|high| w.lag(high)) {
                lag_total += lag;
                metrics
                    .lag
                    .get_or_create(&PartitionLabel { partition: w.id })
                    .set(lag);
            }
        }
        metrics.busy_ratio.set(busy);
        // Every kind of the contract, so a new kind can never escape the rate.
        let dead: u64 = riskpipe_contract::DeadLetterKind::ALL
            .iter()
            .map(|k| {
                metrics
                    .dead_letters
                    .get_or_create(&KindLabel { kind: k.as_str() })
                    .get()
            })
            .sum();
        let totals = (metrics.records_in.get(), dead + metrics.errors.get());
        if self.error_window.len() == ERROR_WINDOW_REPORTS {
            self.error_window.pop_front();
        }
        self.error_window.push_back((
            totals.0.saturating_sub(self.error_totals.0),
            totals.1.saturating_sub(self.error_totals.1),
        ));
        self.error_totals = totals;
        let (inputs, errors) = self
            .error_window
            .iter()
            .fold((0, 0), |(i, e), (di, de)| (i + di, e + de));
        if let Ok(mut st) = shared.status.lock() {
            st.records_per_second = rate;
            st.busy_ratio = busy;
            st.lag_records = lag_total;
            st.lag_seconds = if rate > 0.0 {
                lag_total as f64 / rate
            } else if lag_total > 0 {
                f64::INFINITY.min(1e9)
            } else {
                0.0
            };
            metrics.lag_seconds.set(st.lag_seconds);
            // Over the last minute; aborted transactions count as errors.
            st.error_rate = errors as f64 / inputs.max(1) as f64;
        }
        tracing::debug!(rate, busy, lag_total, uptime = ?self.started.elapsed(), "status");
        self.last_report = Instant::now();
        self.busy = Duration::ZERO;
        self.records = 0;
        true
    }
}
