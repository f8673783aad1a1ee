//! Kafka mode: the worker owns a static set of input partitions and turns each
//! micro-batch of a partition into one Kafka transaction holding its decisions,
//! dead letters and the input offsets; the partition's RocksDB state is written
//! right after the commit together with the next offset.
//!
//! Exactly once: a crash before the commit aborts the transaction (nothing is
//! visible to read_committed readers, the state on disk is untouched, the batch is
//! read again). A crash after the commit but before the state write leaves the
//! state one batch behind the committed offsets; on start the worker re-reads
//! that range and applies it to the state only, emitting nothing — the engine's
//! window state depends only on the transactions, so the result equals an
//! uninterrupted run.

mod args;
pub mod assignment;
pub mod clients;
pub mod fault;
pub mod identity;
mod partition;
mod watermarks;
pub mod windows;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use riskpipe_crds::{KafkaSource, RiskPipeline, Sink, StartupMode};
use riskpipe_engine::dimensions::Dimensions;
use riskpipe_engine::{DecisionWriter, Engine};

use crate::audit::AuditWriter;
use crate::http::{self, Shared, WorkerStatus};
use crate::metrics::WorkerMetrics;
use crate::pipeline_config::engine_config;
use crate::secrets::{SecretsDir, load_audit_keys};
use crate::snapshots::Snapshots;
pub use args::KafkaArgs;
use clients::retry;
use identity::Identity;
use partition::{AuditOutput, OffsetPolicy, Outputs, PartitionWorker, Polled, StartInputs};

fn topic_partitions(consumer: &BaseConsumer, topic: &str) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len() as i32)
            });
        match result {
            Ok(n) if n > 0 => return Ok(n),
            Ok(_) if Instant::now() < deadline => {
                tracing::warn!(topic, "input topic not found yet; waiting");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(topic, error = %e, "cannot read the topic's metadata yet; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(_) => bail!("input topic '{topic}' does not exist (waited 60 s)"),
            Err(e) => return Err(e).context(format!("reading metadata of topic '{topic}'")),
        }
    }
}

fn kafka_sink_topic(sink: Option<&riskpipe_crds::SinkSpec>, what: &str) -> Result<Option<String>> {
    match sink.and_then(|s| s.kind()) {
        Some(Sink::Kafka(k)) => Ok(Some(k.topic.clone())),
        Some(_) => bail!("spec.sinks.{what}: a Kafka pipeline writes its outputs to Kafka topics"),
        None => Ok(None),
    }
}

/// Records fetched for the next cycle, one queue per owned partition.
struct Fetched {
    owned: Vec<i32>,
    queues: Vec<Vec<Polled>>,
    count: usize,
    /// When the oldest record of the cycle was fetched.
    first_at: Option<Instant>,
    /// Set when the consumer said an assigned position is no longer in the topic.
    out_of_range: bool,
}

impl Fetched {
    fn new(owned: &[i32]) -> Self {
        Fetched {
            owned: owned.to_vec(),
            queues: owned.iter().map(|_| Vec::new()).collect(),
            count: 0,
            first_at: None,
            out_of_range: false,
        }
    }

    /// Polls until `cap` records are held or `max_delay` has passed since the
    /// first held record (at once when nothing arrives and nothing is held).
    fn fill(
        &mut self,
        consumer: &BaseConsumer,
        cap: usize,
        max_delay: Duration,
        metrics: &WorkerMetrics,
    ) {
        while self.count < cap {
            let wait = match self.first_at {
                Some(at) => {
                    let left = (at + max_delay).saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    left
                }
                None => max_delay,
            };
            if !self.poll_one(consumer, wait, metrics) {
                return;
            }
        }
    }

    /// Polls while `committing` says the previous cycle's transactions are
    /// still being committed, up to `cap` records (backpressure: with a full
    /// cycle held, fetching stops and the caller waits for the commits).
    fn fill_while(
        &mut self,
        consumer: &BaseConsumer,
        cap: usize,
        metrics: &WorkerMetrics,
        committing: impl Fn() -> bool,
    ) {
        while self.count < cap && committing() {
            self.poll_one(consumer, Duration::from_millis(1), metrics);
        }
    }

    /// Polls once; false when nothing arrived within `wait`.
    fn poll_one(
        &mut self,
        consumer: &BaseConsumer,
        wait: Duration,
        metrics: &WorkerMetrics,
    ) -> bool {
        match consumer.poll(wait) {
            Some(Ok(m)) => {
                if let Some(i) = self.owned.iter().position(|o| *o == m.partition()) {
                    self.queues[i].push(Polled::from_message(&m));
                    self.count += 1;
                    self.first_at.get_or_insert_with(Instant::now);
                }
                true
            }
            Some(Err(e)) => {
                if matches!(
                    e,
                    KafkaError::MessageConsumption(
                        RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset
                    )
                ) {
                    self.out_of_range = true;
                }
                metrics.errors.inc();
                tracing::warn!(error = %e, "consumer error");
                true
            }
            None => false,
        }
    }

    /// Where partition `i`'s fetching goes on from: after the last record held
    /// for it, else at `next` (its next offset to decide).
    fn resume_at(&self, i: usize, next: i64) -> i64 {
        self.queues[i]
            .iter()
            .map(|p| p.offset() + 1)
            .max()
            .map_or(next, |after| after.max(next))
    }

    /// Adds a queue for a partition taken on while running.
    fn add(&mut self, partition: i32) {
        self.owned.push(partition);
        self.queues.push(Vec::new());
    }

    /// Takes partition `i`'s records for this cycle.
    fn take(&mut self, i: usize) -> Vec<Polled> {
        let batch = std::mem::take(&mut self.queues[i]);
        self.count -= batch.len();
        if self.count == 0 {
            self.first_at = None;
        }
        batch
    }

    /// Puts an aborted batch back in front of what was fetched after it.
    fn put_back(&mut self, i: usize, mut batch: Vec<Polled>) {
        self.count += batch.len();
        batch.append(&mut self.queues[i]);
        self.queues[i] = batch;
        self.first_at.get_or_insert_with(Instant::now);
    }
}

/// `spec.source.kafka.onOffsetOutOfRange`.
fn offset_policy(source: &KafkaSource) -> OffsetPolicy {
    source.on_offset_out_of_range
}

/// Removes the state folders of partitions this worker no longer owns (left
/// when they moved to another worker): their state lives on in checkpoints and
/// in the new owner, and a stale copy must never be resumed from.
fn remove_unowned(state_dir: &std::path::Path, owned: &[i32]) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(partition) = name
            .to_str()
            .and_then(|n| n.strip_prefix("partition-"))
            .and_then(|n| n.split('.').next())
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if owned.contains(&partition) || !entry.path().is_dir() {
            continue;
        }
        tracing::info!(partition, folder = %entry.path().display(), "removing the state of a partition this worker no longer owns");
        std::fs::remove_dir_all(entry.path())
            .with_context(|| format!("removing {}", entry.path().display()))?;
    }
    Ok(())
}

/// The committed offset of each owned partition: the pipeline's group, else
/// (a pipeline from before namespaces were in the group's name) the legacy group.
fn committed_offsets(
    consumer: &BaseConsumer,
    identity: &Identity,
    source: &KafkaSource,
    security: &clients::KafkaSecurity,
    owned: &[i32],
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let read = |consumer: &BaseConsumer| -> Result<std::collections::BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in owned {
            tpl.add_partition(&source.topic, *p);
        }
        let committed = retry("reading the group's committed offsets", || {
            consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))
        })?;
        Ok(offsets_of(&committed))
    };
    let mut offsets = read(consumer)?;
    if let Some(legacy) = identity.legacy_group_id(source)
        && offsets.len() < owned.len()
    {
        let old: BaseConsumer = clients::consumer_config(source, &legacy, security)
            .create()
            .context("creating the legacy group's reader")?;
        for (p, o) in read(&old)? {
            if let std::collections::btree_map::Entry::Vacant(v) = offsets.entry(p) {
                tracing::info!(partition = p, offset = o, group = %legacy, "resuming from the legacy group's offset");
                v.insert(o);
            }
        }
    }
    Ok(offsets)
}

/// The first offset at or after `timestamp_ms` of each owned partition.
fn offsets_for_time(
    consumer: &BaseConsumer,
    source: &KafkaSource,
    owned: &[i32],
    timestamp_ms: i64,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    let mut by_time = TopicPartitionList::new();
    for p in owned {
        by_time
            .add_partition_offset(&source.topic, *p, Offset::Offset(timestamp_ms))
            .context("building the timestamp lookup")?;
    }
    let found = consumer
        .offsets_for_times(by_time, Duration::from_secs(30))
        .context("looking up offsets for startupTimestamp")?;
    Ok(offsets_of(&found))
}

/// The partitions of `tpl` that have an offset, with it.
fn offsets_of(tpl: &TopicPartitionList) -> std::collections::BTreeMap<i32, i64> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// The consumer said a position is gone: each running partition whose next
/// offset is outside its watermarks follows the policy (stops, or seeks); one
/// whose next offset is still in the topic (the error was about the fetch
/// position, e.g. a truncation check while a restarted broker comes back)
/// fetches again from where it was. Returns false when a partition's
/// watermarks could not be read (the broker is away): the check must run
/// again, or that partition would stay in the consumer's error state,
/// fetching nothing, for good.
fn out_of_range_while_running(
    consumer: &BaseConsumer,
    source: &KafkaSource,
    workers: &mut [PartitionWorker],
    fetched: &Fetched,
    policy: OffsetPolicy,
    metrics: &WorkerMetrics,
) -> Result<bool> {
    let mut checked_all = true;
    for (i, w) in workers.iter_mut().enumerate() {
        if w.stopped.is_some() {
            continue;
        }
        let watermarks = match consumer.fetch_watermarks(
            &source.topic,
            w.id,
            Duration::from_secs(5),
        ) {
            Ok(watermarks) => watermarks,
            Err(e) => {
                tracing::warn!(partition = w.id, error = %e, "cannot read the partition's watermarks after an out-of-range error; trying again next cycle");
                checked_all = false;
                continue;
            }
        };
        let next = w.next_offset();
        match w.out_of_range_while_running(watermarks, policy, metrics)? {
            Some(target) => reassign(consumer, &source.topic, w.id, target)?,
            None if w.stopped.is_some() => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&source.topic, w.id);
                consumer
                    .pause(&tpl)
                    .with_context(|| format!("pausing partition {}", w.id))?;
            }
            None => {
                let Some(next) = next else { continue };
                let resume = fetched.resume_at(i, next);
                tracing::warn!(
                    partition = w.id,
                    next,
                    resume,
                    low = watermarks.0,
                    high = watermarks.1,
                    "the partition's position is still in the topic; fetching again from where it was"
                );
                reassign(consumer, &source.topic, w.id, resume)?;
            }
        }
    }
    Ok(checked_all)
}

/// Assigns `partition` again at `offset`. A partition whose fetch failed out of
/// range is in an error state that a seek refuses ("Erroneous state") and in
/// which it fetches nothing more; assigning it again clears that.
fn reassign(consumer: &BaseConsumer, topic: &str, partition: i32, offset: i64) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    consumer
        .incremental_unassign(&tpl)
        .with_context(|| format!("unassigning partition {partition}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .with_context(|| format!("partition {partition} at {offset}"))?;
    consumer
        .incremental_assign(&tpl)
        .with_context(|| format!("assigning partition {partition} at {offset}"))
}

/// The owned partitions' states, for a checkpoint or savepoint.
fn owned_states(workers: &[PartitionWorker]) -> Vec<crate::snapshots::Owned<'_>> {
    workers
        .iter()
        .map(|w| crate::snapshots::Owned {
            id: w.id,
            state: &w.state,
        })
        .collect()
}

/// What taking on a partition while running needs.
struct AddContext<'a> {
    identity: &'a Identity,
    source: &'a KafkaSource,
    args: &'a KafkaArgs,
    snapshots: &'a Snapshots,
    consumer: &'a BaseConsumer,
    group_id: &'a str,
    engine: &'a Engine,
    dims: &'a dyn Dimensions,
    metrics: &'a WorkerMetrics,
    policy: OffsetPolicy,
    cache_entries: usize,
}

/// Opens a partition added to the topic while running (the assignment rule
/// gives it to this worker) and adds it to the consumer. Everything in an
/// added partition is newer than the running stream, so with no position of
/// its own it starts at its beginning, whatever the startup mode.
fn take_on(p: i32, cx: &AddContext<'_>) -> Result<PartitionWorker> {
    let mut worker = PartitionWorker::open(
        cx.identity,
        cx.source,
        p,
        cx.args,
        cx.snapshots,
        cx.cache_entries,
    )?;
    let committed =
        committed_offsets(cx.consumer, cx.identity, cx.source, &cx.args.security, &[p])?;
    let watermarks = retry("reading the partition's watermarks", || {
        cx.consumer
            .fetch_watermarks(&cx.source.topic, p, Duration::from_secs(10))
    })?;
    worker.resolve_start(
        &StartInputs {
            committed: committed.get(&p).copied(),
            watermarks,
            startup: StartupMode::Earliest,
            timestamp_offset: None,
            policy: cx.policy,
        },
        cx.metrics,
    )?;
    worker.catch_up(
        cx.source,
        cx.group_id,
        &cx.args.security,
        cx.engine,
        cx.dims,
        cx.metrics,
    )?;
    if let Some(offset) = worker.start_offset() {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&cx.source.topic, p, Offset::Offset(offset))
            .context("building the assignment")?;
        cx.consumer
            .incremental_assign(&tpl)
            .context("adding the partition to the consumer")?;
    }
    tracing::info!(partition = p, next = ?worker.start_offset(), "took on a new partition");
    Ok(worker)
}

/// Each owned partition's position, where its state came from and what was
/// lost, into `/status`.
fn publish_partitions(workers: &[PartitionWorker], shared: &Shared) {
    if let Ok(mut st) = shared.status.lock() {
        st.partitions = workers
            .iter()
            .map(|w| crate::http::PartitionStatus {
                partition: w.id,
                next_offset: w.next_offset(),
                start_source: Some(w.start_source.clone()),
                stopped: w.stopped.clone(),
                offset_out_of_range: w.out_of_range.as_ref().map(|o| {
                    crate::http::OffsetOutOfRangeReport {
                        policy: partition::policy_name(o.policy).to_owned(),
                        lost_from: o.lost_from,
                        lost_to: o.lost_to,
                        at_ms: o.at_ms,
                    }
                }),
            })
            .collect();
    }
}

/// The audit topic and its writer, when `spec.sinks.audit` names a topic and
/// the audit keys are available (SPEC §10); without keys the audit log is off
/// and a warning says so.
fn audit_output(
    pipeline: &RiskPipeline,
    secrets_dir: &std::path::Path,
) -> Result<Option<AuditOutput>> {
    let spec = &pipeline.spec;
    let Some(topic) = kafka_sink_topic(spec.sinks.audit.as_ref(), "audit")? else {
        return Ok(None);
    };
    let keys = load_audit_keys(&spec.secrets, &SecretsDir::new(secrets_dir), |k| {
        std::env::var(k).ok()
    })?;
    let Some(keys) = keys else {
        tracing::warn!(
            topic,
            "audit log off: spec.secrets.encryptionKeyRef and hmacKeyRef are not set (SPEC §10 needs both keys)"
        );
        return Ok(None);
    };
    tracing::info!(topic, key_id = keys.key_id(), "audit log on");
    let name = pipeline.metadata.name.as_deref().unwrap_or_default();
    Ok(Some(AuditOutput {
        topic,
        writer: AuditWriter::new(name, env!("CARGO_PKG_VERSION"), keys),
    }))
}

/// Runs a Kafka pipeline until `stop` is set.
pub fn run(
    pipeline: &RiskPipeline,
    source: &KafkaSource,
    dims: Box<dyn Dimensions + Send>,
    args: &KafkaArgs,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let name = pipeline.metadata.name.clone().unwrap_or_default();
    let spec = &pipeline.spec;
    let cfg = engine_config(pipeline)?;
    let engine = Engine::new(cfg.clone());
    let writer = DecisionWriter::new(&cfg.pipeline, &cfg.rule_set_version);
    let outputs = Outputs {
        decisions: kafka_sink_topic(Some(&spec.sinks.decisions), "decisions")?
            .context("spec.sinks.decisions must name a Kafka topic")?,
        dead_letters: kafka_sink_topic(spec.sinks.dead_letters.as_ref(), "deadLetters")?
            .unwrap_or_else(|| "risk-dead-letters".to_owned()),
        audit: audit_output(pipeline, &args.secrets_dir)?,
        windows: None,
    };
    let identity = Identity::of(pipeline);
    let group_id = identity.group_id(source);
    let policy = offset_policy(source);

    let mut registry = Registry::default();
    let metrics = Arc::new(WorkerMetrics::register(&mut registry));
    let window_metrics = windows::WindowMetrics::register(&mut registry);
    let snapshots = Snapshots::with_secrets_dir(spec, &args.state_dir, &args.secrets_dir)?
        .in_folder(
            &identity.checkpoint_folder(),
            &identity.legacy_checkpoint_folders(),
        );
    let (tx, requests) = mpsc::channel();
    let shared = Arc::new(Shared {
        status: Mutex::new(WorkerStatus {
            pipeline: name.clone(),
            ordinal: args.ordinal,
            replicas: args.replicas,
            state: http::WorkerState::Starting,
            ..WorkerStatus::default()
        }),
        savepoints: Mutex::new(Default::default()),
        requests: Mutex::new(tx),
        savepoint_root: snapshots.savepoint_root().display().to_string(),
        ready: AtomicBool::new(false),
        registry,
    });
    // A batch waiting for its dimensions blocks this loop: the outage reaches
    // `/status` from the dimension source itself.
    if let Some(health) = &args.dimensions_health {
        let shared = Arc::clone(&shared);
        health.on_change(Box::new(move |outages| {
            if let Ok(mut st) = shared.status.lock() {
                st.dimensions_unavailable = outages;
            }
        }));
    }
    if let Some(addr) = args.http_addr {
        http::serve(addr, Arc::clone(&shared))
            .with_context(|| format!("binding the HTTP endpoint {addr}"))?;
    }

    let consumer: BaseConsumer = clients::consumer_config(source, &group_id, &args.security)
        .create()
        .context("creating the Kafka consumer")?;
    let partition_count = topic_partitions(&consumer, &source.topic)?;
    let owned = assignment::owned_partitions(partition_count, args.replicas, args.ordinal);
    tracing::info!(
        pipeline = %name, topic = %source.topic, partitions = partition_count,
        ordinal = args.ordinal, replicas = args.replicas, ?owned, "partition assignment"
    );
    if let Ok(mut st) = shared.status.lock() {
        st.owned_partitions = owned.clone();
    }

    remove_unowned(&args.state_dir, &owned)?;
    let monitoring = windows::Monitoring::of(
        pipeline,
        &identity,
        source,
        &args.security,
        &group_id,
        partition_count,
    )?;
    let _merger = monitoring
        .as_ref()
        .and_then(|m| m.start_merger(&owned, window_metrics));
    let outputs = Outputs {
        windows: monitoring.map(|m| m.partials),
        ..outputs
    };

    // Producers first: fencing a killed predecessor aborts its open
    // transaction, whose pending offsets would otherwise keep the group's
    // committed offsets unreadable until the transaction times out.
    let cache_entries = crate::state::cache_entries(owned.len());
    let mut workers = Vec::with_capacity(owned.len());
    for &p in &owned {
        let worker = PartitionWorker::open(&identity, source, p, args, &snapshots, cache_entries)
            .with_context(|| format!("opening partition {p}"))?;
        workers.push(worker);
    }
    let committed = committed_offsets(&consumer, &identity, source, &args.security, &owned)?;
    let timestamp_offsets = match (source.startup_mode, source.startup_timestamp) {
        (StartupMode::Timestamp, Some(ts)) => offsets_for_time(&consumer, source, &owned, ts)?,
        _ => Default::default(),
    };
    for w in &mut workers {
        let (low, high) = retry("reading the partition's watermarks", || {
            consumer.fetch_watermarks(&source.topic, w.id, Duration::from_secs(10))
        })?;
        w.resolve_start(
            &StartInputs {
                committed: committed.get(&w.id).copied(),
                watermarks: (low, high),
                startup: source.startup_mode,
                timestamp_offset: timestamp_offsets.get(&w.id).copied(),
                policy,
            },
            &metrics,
        )
        .with_context(|| format!("resolving the start of partition {}", w.id))?;
    }
    for w in &mut workers {
        w.catch_up(
            source,
            &group_id,
            &args.security,
            &engine,
            dims.as_ref(),
            &metrics,
        )
        .with_context(|| format!("catching up partition {}", w.id))?;
    }

    let mut assign = TopicPartitionList::new();
    for w in &workers {
        if let Some(offset) = w.start_offset() {
            assign
                .add_partition_offset(&source.topic, w.id, Offset::Offset(offset))
                .context("building the assignment")?;
        }
    }
    consumer
        .assign(&assign)
        .context("assigning the owned partitions")?;
    publish_partitions(&workers, &shared);
    shared.ready.store(true, Ordering::Relaxed);
    if let Ok(mut st) = shared.status.lock() {
        st.state = http::WorkerState::Running;
    }
    tracing::info!("running");

    let max_batch = usize::try_from(source.max_batch_size)
        .unwrap_or(1000)
        .max(1);
    // One cycle holds up to `maxBatchSize` records per owned partition.
    let mut cycle_cap = max_batch.saturating_mul(workers.len().max(1));
    let mut known_partitions = partition_count;
    let max_delay = source.max_batch_delay.as_std();
    let mut loop_state = partition::LoopClock::new();
    let group_metadata = consumer
        .group_metadata()
        .context("the consumer has no group metadata (group.id missing?)")?;
    let mut fetched = Fetched::new(&owned);
    let watermarks = watermarks::Watermarks::watch(source, &args.security, &owned)?;
    while !stop.load(Ordering::Relaxed) {
        fetched.fill(&consumer, cycle_cap, max_delay, &metrics);
        if std::mem::take(&mut fetched.out_of_range) {
            fetched.out_of_range = !out_of_range_while_running(
                &consumer,
                source,
                &mut workers,
                &fetched,
                policy,
                &metrics,
            )?;
            publish_partitions(&workers, &shared);
        }
        // Decide every partition's batch inside its own transaction.
        let cycle_started = Instant::now();
        if fetched.count > 0 {
            loop_state.busy_from(cycle_started);
        }
        let mut open = Vec::new();
        for (i, worker) in workers.iter_mut().enumerate() {
            let mut batch = fetched.take(i);
            // A stopped partition decides nothing of what was fetched before it
            // stopped; after a seek (onOffsetOutOfRange) records fetched before
            // it are behind the partition's position and dropped.
            if worker.stopped.is_some() {
                continue;
            }
            if let Some(next) = worker.next_offset() {
                batch.retain(|p| p.offset() >= next);
            }
            if batch.is_empty() {
                continue;
            }
            let produced = worker
                .produce(
                    &mut batch,
                    &engine,
                    dims.as_ref(),
                    &writer,
                    &outputs,
                    &source.topic,
                    &metrics,
                )
                .map(|rest| {
                    if !rest.is_empty() {
                        fetched.put_back(i, rest);
                    }
                });
            open.push((i, batch, produced));
        }
        let produced_at = Instant::now();
        // Busy means deciding and writing state; waiting on the coordinators
        // for commits is not (the loop fetches meanwhile).
        loop_state.idle_from(produced_at);
        // Commit the partitions' transactions concurrently (each is a few
        // round trips to the coordinators) while fetching the next batch.
        let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = open
                .iter()
                .map(|(i, batch, produced)| {
                    let producer = workers[*i].producer();
                    let (id, topic, group) = (workers[*i].id, &source.topic, &group_metadata);
                    let last = batch.last().map_or(0, |p| p.offset());
                    produced.is_ok().then(|| {
                        scope.spawn(move || partition::commit(producer, topic, id, last, group))
                    })
                })
                .collect();
            let committing = || handles.iter().flatten().any(|h| !h.is_finished());
            fetched.fill_while(&consumer, cycle_cap, &metrics, committing);
            handles
                .into_iter()
                .map(|h| match h {
                    Some(h) => h
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the commit thread panicked"))),
                    None => Ok(()),
                })
                .collect()
        });
        // One observation per cycle: its partitions commit in parallel, so the
        // cycle waits for the slowest.
        if !open.is_empty() {
            metrics
                .commit_duration
                .observe(produced_at.elapsed().as_secs_f64());
        }
        tracing::debug!(
            records = open.iter().map(|(_, b, _)| b.len()).sum::<usize>(),
            transactions = open.len(),
            produce_ms = produced_at.duration_since(cycle_started).as_secs_f64() * 1000.0,
            commit_ms = produced_at.elapsed().as_secs_f64() * 1000.0,
            "cycle"
        );
        if !open.is_empty() {
            loop_state.busy_from(Instant::now());
        }
        for ((i, batch, produced), committed) in open.into_iter().zip(outcomes) {
            let n = batch.len();
            let outcome = produced.and(committed);
            let ok = outcome.is_ok();
            if ok {
                metrics.batch_records.observe(n as f64);
            }
            if let Some(again) = workers[i].finish(batch, outcome, &metrics)? {
                fetched.put_back(i, again);
            }
            if ok {
                loop_state.count(n);
            }
        }
        loop_state.idle_from(Instant::now());
        snapshots.maybe_checkpoint(&owned_states(&workers), args.ordinal, &metrics, &shared)?;
        while let Ok(request) = requests.try_recv() {
            snapshots.savepoint(&owned_states(&workers), &request, &shared);
        }
        // Partition positions go to `/status` once a second, not every cycle.
        if loop_state.report(&workers, &watermarks, &metrics, &shared) {
            publish_partitions(&workers, &shared);
        }
        let count = watermarks.partition_count();
        if count > known_partitions {
            let added = assignment::owned_partitions(count, args.replicas, args.ordinal)
                .into_iter()
                .filter(|p| !workers.iter().any(|w| w.id == *p))
                .collect::<Vec<_>>();
            tracing::info!(
                from = known_partitions,
                to = count,
                ?added,
                "the input topic has new partitions"
            );
            for p in added {
                let worker = take_on(
                    p,
                    &AddContext {
                        identity: &identity,
                        source,
                        args,
                        snapshots: &snapshots,
                        consumer: &consumer,
                        group_id: &group_id,
                        engine: &engine,
                        dims: dims.as_ref(),
                        metrics: &metrics,
                        policy,
                        cache_entries,
                    },
                )
                .with_context(|| format!("taking on the new partition {p}"))?;
                workers.push(worker);
                fetched.add(p);
                watermarks.add(p);
            }
            cycle_cap = max_batch.saturating_mul(workers.len().max(1));
            known_partitions = count;
            if let Ok(mut st) = shared.status.lock() {
                st.owned_partitions = workers.iter().map(|w| w.id).collect();
            }
            publish_partitions(&workers, &shared);
        }
    }
    tracing::info!("stopping: the last batch is committed; taking a final checkpoint");
    snapshots.final_checkpoint(&owned_states(&workers), args.ordinal, &metrics, &shared)?;
    Ok(())
}
