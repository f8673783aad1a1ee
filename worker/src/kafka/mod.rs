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

pub mod assignment;
pub mod clients;
mod partition;
mod snapshots;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use riskpipe_crds::{KafkaSource, RiskPipeline, Sink, StartupMode};
use riskpipe_engine::dimensions::Dimensions;
use riskpipe_engine::{DecisionWriter, Engine};

use crate::http::{self, Shared, WorkerStatus};
use crate::metrics::WorkerMetrics;
use crate::pipeline_config::engine_config;
use partition::{Outputs, PartitionWorker, Polled};
use snapshots::Snapshots;

/// How this worker was started.
#[derive(Debug, Clone)]
pub struct KafkaArgs {
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Replica count.
    pub replicas: u32,
    /// Local state folder (one RocksDB per owned partition).
    pub state_dir: PathBuf,
    /// HTTP endpoint address.
    pub http_addr: Option<SocketAddr>,
    /// Savepoint to restore partitions from when they have no local state.
    pub restore_from: Option<PathBuf>,
    /// TLS/SASL settings of every Kafka client (`spec.source.kafka.securitySecretRef`).
    pub security: clients::KafkaSecurity,
}

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

/// Retries a broker call for up to 60 s: right after a crash or a broker
/// restart the group and transaction coordinators may answer late.
pub(crate) fn retry<T>(
    what: &str,
    mut call: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match call() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "{what}: retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e).context(format!("{what} (gave up after 60 s)")),
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
    };
    let group_id = source.group_id_or(&name).to_owned();

    let mut registry = Registry::default();
    let metrics = Arc::new(WorkerMetrics::register(&mut registry));
    let snapshots = Snapshots::from_spec(spec, &args.state_dir)?;
    let (tx, requests) = mpsc::channel();
    let shared = Arc::new(Shared {
        status: Mutex::new(WorkerStatus {
            pipeline: name.clone(),
            ordinal: args.ordinal,
            replicas: args.replicas,
            state: "starting".to_owned(),
            ..WorkerStatus::default()
        }),
        savepoints: Mutex::new(Default::default()),
        requests: Mutex::new(tx),
        savepoint_root: snapshots.savepoint_root().display().to_string(),
        ready: AtomicBool::new(false),
        registry,
    });
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

    let mut committed_tpl = TopicPartitionList::new();
    for p in &owned {
        committed_tpl.add_partition(&source.topic, *p);
    }
    let committed = retry("reading the group's committed offsets", || {
        consumer.committed_offsets(committed_tpl.clone(), Duration::from_secs(10))
    })?;
    let mut workers = Vec::with_capacity(owned.len());
    for &p in &owned {
        let committed = committed
            .find_partition(&source.topic, p)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let worker = PartitionWorker::open(&name, source, p, args, &snapshots, committed)
            .with_context(|| format!("opening partition {p}"))?;
        workers.push(worker);
    }
    for w in &mut workers {
        w.catch_up(source, &group_id, &args.security, &engine, dims.as_ref())
            .with_context(|| format!("catching up partition {}", w.id))?;
    }

    let mut assign = TopicPartitionList::new();
    for w in &workers {
        let offset = match w.start_offset() {
            Some(o) => Offset::Offset(o),
            None => match source.startup_mode {
                StartupMode::Earliest => Offset::Beginning,
                StartupMode::Timestamp => Offset::Beginning,
                StartupMode::Latest | StartupMode::GroupOffsets => Offset::End,
            },
        };
        assign
            .add_partition_offset(&source.topic, w.id, offset)
            .context("building the assignment")?;
    }
    if source.startup_mode == StartupMode::Timestamp
        && let Some(ts) = source.startup_timestamp
        && workers.iter().any(|w| w.start_offset().is_none())
    {
        let mut by_time = TopicPartitionList::new();
        for w in workers.iter().filter(|w| w.start_offset().is_none()) {
            by_time
                .add_partition_offset(&source.topic, w.id, Offset::Offset(ts))
                .context("building the timestamp lookup")?;
        }
        let found = consumer
            .offsets_for_times(by_time, Duration::from_secs(30))
            .context("looking up offsets for startupTimestamp")?;
        for e in found.elements() {
            assign
                .set_partition_offset(&source.topic, e.partition(), e.offset())
                .context("applying the timestamp offsets")?;
        }
    }
    consumer
        .assign(&assign)
        .context("assigning the owned partitions")?;
    shared.ready.store(true, Ordering::Relaxed);
    if let Ok(mut st) = shared.status.lock() {
        st.state = "running".to_owned();
    }
    tracing::info!("running");

    let max_batch = usize::try_from(source.max_batch_size)
        .unwrap_or(1000)
        .max(1);
    let max_delay = source.max_batch_delay.as_std();
    let mut loop_state = partition::LoopClock::new();
    let group_metadata = consumer
        .group_metadata()
        .context("the consumer has no group metadata (group.id missing?)")?;
    let mut buckets: Vec<Vec<Polled>> = (0..workers.len()).map(|_| Vec::new()).collect();
    let index_of = |p: i32| owned.iter().position(|o| *o == p);
    while !stop.load(Ordering::Relaxed) {
        let deadline = Instant::now() + max_delay;
        let mut n = 0;
        while n < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match consumer.poll(left) {
                Some(Ok(m)) => {
                    if n == 0 {
                        loop_state.busy_from(Instant::now());
                    }
                    if let Some(i) = index_of(m.partition()) {
                        buckets[i].push(Polled::from_message(&m));
                        n += 1;
                    }
                }
                Some(Err(e)) => {
                    metrics.errors.inc();
                    tracing::warn!(error = %e, "consumer error");
                }
                None => break,
            }
        }
        for (i, bucket) in buckets.iter_mut().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            let batch = std::mem::take(bucket);
            workers[i].process(
                &batch,
                &engine,
                dims.as_ref(),
                &writer,
                &outputs,
                &consumer,
                &source.topic,
                &group_metadata,
                &metrics,
            )?;
            loop_state.count(batch.len());
        }
        loop_state.idle_from(Instant::now());
        snapshots.maybe_checkpoint(&workers, args.ordinal, &metrics, &shared)?;
        while let Ok(request) = requests.try_recv() {
            snapshots.savepoint(&workers, &request, &shared);
        }
        loop_state.report(&workers, &consumer, &source.topic, &metrics, &shared);
    }
    tracing::info!("stopping: the last batch is committed; taking a final checkpoint");
    snapshots.final_checkpoint(&workers, args.ordinal, &metrics, &shared)?;
    Ok(())
}
