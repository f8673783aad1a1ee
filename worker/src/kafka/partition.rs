//! One owned input partition: its state, its transactional producer, and the
//! micro-batch → transaction step.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use riskpipe_crds::KafkaSource;
use riskpipe_engine::dimensions::Dimensions;
use riskpipe_engine::{BatchKeys, DecisionWriter, Engine, Transaction, parse_transaction};

use super::KafkaArgs;
use super::clients;
use super::snapshots::Snapshots;
use super::watermarks::Watermarks;
use crate::audit::AuditWriter;
use crate::checkpoint::partition_dir;
use crate::http::Shared;
use crate::metrics::{DecisionLabel, KindLabel, PartitionLabel, WorkerMetrics};
use crate::output::DeadLetter;
use crate::source::MAX_RECORD_BYTES;
use crate::state::PartitionState;

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Aborted transactions in a row after which the worker gives up (and restarts).
const MAX_ABORTS_IN_A_ROW: u32 = 5;
/// Users and merchants cached in memory per partition.
const CACHE_ENTRIES: usize = 100_000;

/// Output topics.
pub struct Outputs {
    /// Decisions, keyed by transaction_id.
    pub decisions: String,
    /// Dead letters, keyed by `partition:offset`.
    pub dead_letters: String,
    /// Audit records (SPEC §10), keyed by transaction_id, when on.
    pub audit: Option<AuditOutput>,
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
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    /// Transactions aborted in a row (a batch that can never commit stops the worker).
    aborts_in_a_row: u32,
}

fn offset_meta(state: &PartitionState) -> Result<Option<i64>> {
    Ok(state
        .meta("offset")?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_be_bytes))
}

impl PartitionWorker {
    /// Opens the partition's state (restoring it from a savepoint or the latest
    /// checkpoint when there is none locally) and fences older producers, which
    /// aborts a transaction a killed predecessor left open — so the group's
    /// offsets are stable to read right after (see [`Self::set_committed`]).
    pub fn open(
        pipeline: &str,
        source: &KafkaSource,
        id: i32,
        args: &KafkaArgs,
        snapshots: &Snapshots,
    ) -> Result<Self> {
        let dir = partition_dir(&args.state_dir, id);
        if !dir.join("CURRENT").exists() {
            snapshots.restore(args.restore_from.as_deref(), id, &dir)?;
        }
        let state = PartitionState::open(&dir, CACHE_ENTRIES)?;
        let state_offset = offset_meta(&state)?;
        let producer: BaseProducer = clients::producer_config(
            source,
            &clients::transactional_id(pipeline, &source.topic, id),
            &args.security,
        )
        .create()
        .context("creating the transactional producer")?;
        super::retry("initialising transactions", || {
            producer.init_transactions(TXN_TIMEOUT)
        })?;
        Ok(PartitionWorker {
            id,
            state,
            producer,
            state_offset,
            committed: None,
            next_offset: state_offset,
            aborts_in_a_row: 0,
        })
    }

    /// The group's committed offset, read after every owned partition's
    /// producer has fenced its predecessor.
    pub fn set_committed(&mut self, committed: Option<i64>) {
        self.committed = committed;
        self.next_offset = self.state_offset.or(committed);
        tracing::info!(
            partition = self.id,
            state_offset = ?self.state_offset,
            ?committed,
            "partition opened"
        );
    }

    /// Where consumption starts; `None` means the startup mode decides.
    pub fn start_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// Brings the state up to the committed offset when it is behind (a crash
    /// between a commit and the state write, or a restore from an older
    /// snapshot): the range is applied to the state only, nothing is emitted.
    pub fn catch_up(
        &mut self,
        source: &KafkaSource,
        group_id: &str,
        security: &clients::KafkaSecurity,
        engine: &Engine,
        dims: &dyn Dimensions,
    ) -> Result<()> {
        let (Some(from), Some(to)) = (self.state_offset, self.committed) else {
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
        let zone = engine.config().zone;
        let mut last_progress = Instant::now();
        let mut applied = 0u64;
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    if m.offset() >= to {
                        break;
                    }
                    if let Some(tx) = m.payload().and_then(|b| parse_transaction(b, zone).ok()) {
                        engine.decide(&tx, dims, &mut self.state)?;
                        applied += 1;
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "catch-up consumer error"),
                None => {
                    let position = consumer.position().ok().and_then(|p| {
                        p.find_partition(&source.topic, self.id)
                            .and_then(|e| e.offset().to_raw())
                    });
                    if position.is_some_and(|p| p >= to) {
                        break;
                    }
                    if last_progress.elapsed() > Duration::from_secs(60) {
                        bail!(
                            "catch-up of partition {} stalled before offset {to}",
                            self.id
                        );
                    }
                }
            }
        }
        self.state.flush(&[("offset", &to.to_be_bytes())])?;
        self.state_offset = Some(to);
        self.next_offset = Some(to);
        tracing::info!(partition = self.id, applied, "state caught up");
        Ok(())
    }

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

    /// The partition's transactional producer (committed from another thread
    /// while the loop fetches the next batch).
    pub fn producer(&self) -> &BaseProducer {
        &self.producer
    }

    /// Begins the partition's transaction and produces the micro-batch's
    /// decisions and dead letters into it; the state cache then holds the
    /// batch's effects until [`finish`](Self::finish) writes or discards them.
    #[allow(clippy::too_many_arguments)]
    pub fn produce(
        &mut self,
        batch: &[Polled],
        engine: &Engine,
        dims: &dyn Dimensions,
        writer: &DecisionWriter,
        outputs: &Outputs,
        topic: &str,
        metrics: &WorkerMetrics,
    ) -> Result<()> {
        if self.state_offset.is_none()
            && let Some(first) = batch.first()
        {
            // A fresh state records where it starts before its first commit, so a
            // crash between that commit and the state write is caught up on start
            // like any other (the gap is replayed into the state).
            self.state
                .flush(&[("offset", &first.offset.to_be_bytes())])?;
            self.state_offset = Some(first.offset);
        }
        self.producer
            .begin_transaction()
            .context("beginning a transaction")?;
        let zone = engine.config().zone;
        // Parse the whole batch first so that its dimension lookups can be
        // fetched together before any transaction is decided.
        let parsed: Vec<Result<Transaction, (&'static str, String)>> = batch
            .iter()
            .map(|p| {
                let bytes = p.payload.as_deref().unwrap_or_default();
                if bytes.len() > MAX_RECORD_BYTES {
                    return Err((
                        "oversized",
                        format!(
                            "record of {} bytes exceeds the {MAX_RECORD_BYTES} byte limit (raw truncated)",
                            bytes.len()
                        ),
                    ));
                }
                parse_transaction(bytes, zone).map_err(|e| (e.kind(), e.to_string()))
            })
            .collect();
        dims.prefetch(&BatchKeys::of(parsed.iter().flatten()));
        let mut json = Vec::with_capacity(2048);
        let mut key = String::with_capacity(24);
        for (p, parsed) in batch.iter().zip(parsed) {
            metrics.records_in.inc();
            let bytes = p.payload.as_deref().unwrap_or_default();
            let refused = match parsed {
                Ok(tx) => {
                    let mut d = engine.decide(&tx, dims, &mut self.state)?;
                    d.decided_at_ms = now_ms();
                    let latency = p.fetched_at.elapsed();
                    d.processing_latency_ms = latency.as_secs_f64() * 1000.0;
                    metrics.in_worker_latency.observe(latency.as_secs_f64());
                    metrics
                        .decisions
                        .get_or_create(&DecisionLabel {
                            decision: d.final_decision.as_str(),
                        })
                        .inc();
                    json.clear();
                    writer.write(&d, &mut json);
                    key.clear();
                    key.push_str(itoa::Buffer::new().format(tx.transaction_id));
                    self.send(&outputs.decisions, key.as_bytes(), &json)?;
                    if let Some(audit) = &outputs.audit {
                        json.clear();
                        audit.writer.write(&d, &tx, &mut json)?;
                        self.send(&audit.topic, key.as_bytes(), &json)?;
                    }
                    None
                }
                Err(refused) => Some(refused),
            };
            if let Some((kind, reason)) = refused {
                metrics
                    .dead_letters
                    .get_or_create(&KindLabel { kind })
                    .inc();
                json.clear();
                DeadLetter {
                    raw: bytes,
                    kind,
                    reason: &reason,
                    source: topic,
                    position: p.offset as u64,
                    partition: Some(self.id),
                    at_ms: now_ms(),
                }
                .write(&mut json);
                let key = format!("{}:{}", self.id, p.offset);
                self.send(&outputs.dead_letters, key.as_bytes(), &json)?;
            }
            metrics.records_out.inc();
        }
        Ok(())
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
        self.aborts_in_a_row = 0;
        let next = last.offset + 1;
        self.state.flush(&[("offset", &next.to_be_bytes())])?;
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

    /// Records behind the partition's high watermark `high`.
    pub fn lag(&self, high: i64) -> i64 {
        (high - self.next_offset.unwrap_or(high)).max(0)
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

    /// Once a second: rates, lag and busy ratio into `/status` and the metrics.
    pub fn report(
        &mut self,
        workers: &[PartitionWorker],
        watermarks: &Watermarks,
        metrics: &WorkerMetrics,
        shared: &Shared,
    ) {
        let elapsed = self.last_report.elapsed();
        if elapsed < Duration::from_secs(1) {
            return;
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
        let dead: u64 = [
            "malformed_json",
            "missing_field",
            "invalid_field",
            "oversized",
        ]
        .iter()
        .map(|k| {
            metrics
                .dead_letters
                .get_or_create(&KindLabel { kind: k })
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
            // Over the last minute; aborted transactions count as errors.
            st.error_rate = errors as f64 / inputs.max(1) as f64;
        }
        tracing::debug!(rate, busy, lag_total, uptime = ?self.started.elapsed(), "status");
        self.last_report = Instant::now();
        self.busy = Duration::ZERO;
        self.records = 0;
    }
}
