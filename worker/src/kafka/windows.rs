//! Kafka mode's monitoring windows (SPEC §9), exactly once across kill -9,
//! rescale and upgrades:
//!
//! - Each partition's micro-batch adds one [`Partial`] (its records by window,
//!   and its event-time progress) to the internal one-partition topic
//!   `riskpipe-<pipeline>-window-partials` **inside the batch's transaction**, so
//!   the committed partials of a partition are exactly its committed decisions,
//!   whoever owned it when.
//! - One merger per pipeline, run by the worker that owns input partition 0
//!   with the transactional id `riskpipe-<pipeline>-window-merger` (a new owner
//!   fences the old one), reads the partials read_committed and, in one
//!   transaction each time windows close, writes the window records (metrics
//!   sink), the alerts (alerts sink) and its whole state (the next partial to
//!   read, progress, open windows, watermark) to the compacted topic
//!   `riskpipe-<pipeline>-window-merger-state`. A restarted merger reads the last
//!   committed state and goes on from its offset: every window is written once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use riskpipe_crds::{AlertThresholds, KafkaSource, RiskPipeline};
use riskpipe_engine::Decision;
use serde::Serialize;

use super::clients::{self, KafkaSecurity, TXN_TIMEOUT};
use super::identity::Identity;
use super::kafka_sink_topic;
use crate::monitoring::alerts::alert;
use crate::monitoring::merge::{self, MergerState, Partial};
use crate::monitoring::window::{Closed, Observation, WindowConfig};
use crate::record::now_ms;

/// The merger's metrics.
#[derive(Clone, Default)]
pub struct WindowMetrics {
    /// Records that came after their window was written (counted, not added).
    pub late_records: Counter,
    /// Window records written (performance and health).
    pub windows: Counter,
    /// Alert records written.
    pub alerts: Counter,
}

impl WindowMetrics {
    /// Registers the counters under `riskpipe_worker_window_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("riskpipe_worker_window");
        r.register(
            "late_records",
            "Records later than the watermark: their window was already written (merger only)",
            m.late_records.clone(),
        );
        r.register(
            "records",
            "Window records written to the metrics sink (merger only)",
            m.windows.clone(),
        );
        r.register(
            "alerts",
            "Alert records written to the alerts sink (merger only)",
            m.alerts.clone(),
        );
        m
    }
}

/// What every partition needs to add its batch's partial to its transaction.
pub struct PartialsOutput {
    /// The partials topic.
    pub topic: String,
    config: WindowConfig,
}

/// The monitoring of a Kafka pipeline, when it has a metrics or alerts sink.
pub struct Monitoring {
    /// For the partitions' transactions.
    pub partials: PartialsOutput,
    merger: MergerConfig,
}

#[derive(Clone)]
struct MergerConfig {
    source: KafkaSource,
    security: KafkaSecurity,
    pipeline: String,
    transactional_id: String,
    group_id: String,
    partials_topic: String,
    state_topic: String,
    metrics_topic: Option<String>,
    alerts_topic: Option<String>,
    thresholds: AlertThresholds,
    config: WindowConfig,
    input_partitions: i32,
}

/// The internal topics' names.
fn topic_names(identity: &Identity) -> (String, String) {
    let base = format!("riskpipe-{}-window", identity.qualified());
    (format!("{base}-partials"), format!("{base}-merger-state"))
}

/// Creates the internal topics when missing (one partition each; the state
/// topic compacted, one key).
fn ensure_topics(
    source: &KafkaSource,
    security: &KafkaSecurity,
    partials: &str,
    state: &str,
) -> Result<()> {
    let admin: AdminClient<_> = clients::base_config(source, security)
        .create()
        .context("creating the Kafka admin client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the admin client's runtime")?;
    let topics = [
        NewTopic::new(partials, 1, TopicReplication::Fixed(-1)),
        NewTopic::new(state, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact"),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = runtime
        .block_on(admin.create_topics(&topics, &options))
        .context("creating the monitoring topics")?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!(
                "creating the monitoring topic '{topic}': {code} (create it with one partition, or give the worker the right to create topics)"
            ),
        }
    }
    Ok(())
}

impl Monitoring {
    /// The pipeline's monitoring, when `spec.sinks.metrics` or `spec.sinks.alerts`
    /// names a Kafka topic; creates the internal topics.
    pub fn of(
        pipeline: &RiskPipeline,
        identity: &Identity,
        source: &KafkaSource,
        security: &KafkaSecurity,
        group_id: &str,
        input_partitions: i32,
    ) -> Result<Option<Self>> {
        let spec = &pipeline.spec;
        let metrics_topic = kafka_sink_topic(spec.sinks.metrics.as_ref(), "metrics")?;
        let alerts_topic = kafka_sink_topic(spec.sinks.alerts.as_ref(), "alerts")?;
        if metrics_topic.is_none() && alerts_topic.is_none() {
            tracing::info!("monitoring windows off: no metrics or alerts sink");
            return Ok(None);
        }
        let (partials_topic, state_topic) = topic_names(identity);
        ensure_topics(source, security, &partials_topic, &state_topic)?;
        let config = WindowConfig::from_spec(&spec.monitoring);
        tracing::info!(partials = %partials_topic, metrics = ?metrics_topic, alerts = ?alerts_topic, "monitoring windows on");
        Ok(Some(Self {
            partials: PartialsOutput {
                topic: partials_topic.clone(),
                config,
            },
            merger: MergerConfig {
                source: source.clone(),
                security: security.clone(),
                pipeline: identity.name.clone(),
                transactional_id: format!("riskpipe-{}-window-merger", identity.qualified()),
                group_id: format!("{group_id}-window-merger"),
                partials_topic,
                state_topic,
                metrics_topic,
                alerts_topic,
                thresholds: spec.monitoring.alerts.clone(),
                config,
                input_partitions,
            },
        }))
    }

    /// Starts the merger when this worker owns input partition 0.
    pub fn start_merger(&self, owned: &[i32], metrics: WindowMetrics) -> Option<MergerHandle> {
        if !owned.contains(&0) {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (cfg, flag) = (self.merger.clone(), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("window-merger".into())
            .spawn(move || merger_thread(&cfg, &flag, &metrics))
            .map_err(|e| tracing::error!(error = %e, "cannot start the window merger"))
            .ok()?;
        Some(MergerHandle {
            stop,
            thread: Some(thread),
        })
    }
}

/// A running merger; dropping it stops it after its current transaction.
pub struct MergerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MergerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The windows of one partition's micro-batch, being filled.
pub struct BatchWindows<'a> {
    output: &'a PartialsOutput,
    partial: Partial,
}

impl PartialsOutput {
    /// An empty partial for the batch of `partition` starting at `first_offset`.
    pub fn batch(&self, partition: i32, first_offset: i64) -> BatchWindows<'_> {
        BatchWindows {
            output: self,
            partial: Partial::new(partition, first_offset),
        }
    }
}

impl BatchWindows<'_> {
    /// A decision of the batch.
    pub fn decided(&mut self, d: &Decision) {
        let o = merge::decided(d, self.partial.partition);
        self.partial.observe(&o, &self.output.config);
    }

    /// A refused record: an error in the window of its Kafka timestamp (it has no
    /// event time of its own); without one it is not placed.
    pub fn refused(&mut self, timestamp_ms: Option<i64>) {
        if let Some(t) = timestamp_ms {
            let o = Observation {
                partition: self.partial.partition,
                event_time_ms: t,
                decision: None,
                total_risk_score: 0,
                latency_ms: 0.0,
            };
            self.partial.observe(&o, &self.output.config);
        }
    }

    /// The partial as (topic, key, payload), when the batch placed anything.
    pub fn record(&self) -> Option<(&str, String, Vec<u8>)> {
        if self.partial.cells.is_empty() {
            return None;
        }
        let payload = serde_json::to_vec(&self.partial).ok()?;
        Some((
            &self.output.topic,
            self.partial.partition.to_string(),
            payload,
        ))
    }
}

/// Whether the merger was fenced by a newer one (it then stops for good).
fn fenced(e: &anyhow::Error) -> bool {
    e.chain().any(|c| match c.downcast_ref::<KafkaError>() {
        Some(KafkaError::Transaction(t)) => {
            t.is_fatal() || t.code() == RDKafkaErrorCode::ProducerFenced
        }
        _ => false,
    })
}

/// Runs the merger until `stop`; an error restarts it from its last committed
/// state after a pause, a fenced merger stops (another one runs).
fn merger_thread(cfg: &MergerConfig, stop: &AtomicBool, metrics: &WindowMetrics) {
    while !stop.load(Ordering::Relaxed) {
        match run_merger(cfg, stop, metrics) {
            Ok(()) => return,
            Err(e) if fenced(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "window merger fenced: a newer merger owns the windows; this one stops");
                return;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "window merger failed; restarting from its last committed state in 2 s");
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// A reader of one single-partition topic with read_committed.
fn reader(cfg: &MergerConfig, eof: bool) -> Result<BaseConsumer> {
    let mut c = clients::consumer_config(&cfg.source, &cfg.group_id, &cfg.security);
    c.set("enable.partition.eof", if eof { "true" } else { "false" })
        .set("auto.offset.reset", "earliest");
    c.create().context("creating the window merger's reader")
}

/// The last committed merger state, or an empty one.
fn load_state(cfg: &MergerConfig) -> Result<MergerState> {
    let consumer = reader(cfg, true)?;
    let (low, high) = clients::retry("reading the merger state's offsets", || {
        consumer.fetch_watermarks(&cfg.state_topic, 0, Duration::from_secs(10))
    })?;
    if high <= low {
        return Ok(MergerState::default());
    }
    // Each commit is a record and a marker; aborted attempts add more: look
    // further back until a committed record is found.
    let mut back = 64;
    loop {
        let from = (high - back).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&cfg.state_topic, 0, Offset::Offset(from))?;
        consumer.assign(&tpl)?;
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => last = m.payload().map(<[u8]>::to_vec),
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => tracing::warn!(error = %e, "reading the merger state"),
                None if Instant::now() > deadline => {
                    bail!(
                        "reading the merger state topic '{}' timed out",
                        cfg.state_topic
                    )
                }
                None => {}
            }
        }
        if let Some(bytes) = last {
            return serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "the merger state in '{}' does not parse (written by another version?)",
                    cfg.state_topic
                )
            });
        }
        if from == low {
            return Ok(MergerState::default());
        }
        back = back.saturating_mul(8);
    }
}

/// A window record on the metrics sink.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    record_type: &'a str,
    pipeline: &'a str,
    #[serde(flatten)]
    record: &'a T,
}

fn send(producer: &BaseProducer, topic: &str, key: &str, payload: &[u8]) -> Result<()> {
    let mut record = BaseRecord::to(topic).key(key.as_bytes()).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e).context(format!("producing to '{topic}'")),
        }
    }
}

fn json(v: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(v).context("serialising a window record")
}

/// Writes what closed, the alerts and the state in one transaction.
fn commit(
    cfg: &MergerConfig,
    producer: &BaseProducer,
    closed: &Closed,
    state: &MergerState,
    metrics: &WindowMetrics,
) -> Result<()> {
    producer
        .begin_transaction()
        .context("beginning the merger's transaction")?;
    let (mut windows, mut alerts) = (0, 0);
    for w in &closed.performance {
        if let Some(topic) = &cfg.metrics_topic {
            let r = Tagged {
                record_type: "performance",
                pipeline: &cfg.pipeline,
                record: w,
            };
            send(
                producer,
                topic,
                &format!("performance:{}", w.window_start),
                &json(&r)?,
            )?;
            windows += 1;
        }
        if let (Some(topic), Some(a)) = (&cfg.alerts_topic, alert(w, &cfg.thresholds)) {
            let r = Tagged {
                record_type: "alert",
                pipeline: &cfg.pipeline,
                record: &a,
            };
            send(producer, topic, &a.window_start.to_string(), &json(&r)?)?;
            alerts += 1;
        }
    }
    if let Some(topic) = &cfg.metrics_topic {
        for h in &closed.health {
            let r = Tagged {
                record_type: "health",
                pipeline: &cfg.pipeline,
                record: h,
            };
            send(
                producer,
                topic,
                &format!("health:{}", h.window_start),
                &json(&r)?,
            )?;
            windows += 1;
        }
    }
    send(producer, &cfg.state_topic, "state", &json(state)?)?;
    let deadline = Instant::now() + TXN_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(1));
    }
    super::fault::point("merger_before_commit");
    producer
        .commit_transaction(TXN_TIMEOUT)
        .context("committing the merger's transaction")?;
    metrics.windows.inc_by(windows);
    metrics.alerts.inc_by(alerts);
    Ok(())
}

/// How often the merger commits its state when no window closed.
const STATE_EVERY: Duration = Duration::from_secs(2);

fn run_merger(cfg: &MergerConfig, stop: &AtomicBool, metrics: &WindowMetrics) -> Result<()> {
    let producer: BaseProducer =
        clients::producer_config(&cfg.source, &cfg.transactional_id, &cfg.security)
            .create()
            .context("creating the window merger's producer")?;
    // Fences an older merger first, so the state read next is final.
    clients::retry("initialising the window merger's transactions", || {
        producer.init_transactions(TXN_TIMEOUT)
    })?;
    let mut state = load_state(cfg)?;
    state.expect_partitions(cfg.input_partitions, now_ms());
    tracing::info!(
        next_offset = state.next_offset,
        watermark = ?state.watermark,
        open_windows = state.performance.len(),
        "window merger running"
    );
    let consumer = reader(cfg, false)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&cfg.partials_topic, 0, Offset::Offset(state.next_offset))?;
    consumer
        .assign(&tpl)
        .context("assigning the partials topic")?;
    let mut dirty = false;
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let until = Instant::now() + Duration::from_millis(200);
        let mut caught_up = false;
        let mut read = 0;
        while read < 20_000 {
            let wait = until.saturating_duration_since(Instant::now());
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    read += 1;
                    state.next_offset = m.offset() + 1;
                    dirty = true;
                    let produced = m.timestamp().to_millis().unwrap_or_else(now_ms);
                    match m.payload().map(serde_json::from_slice::<Partial>) {
                        Some(Ok(p)) => {
                            let late = state.apply(&p, produced, &cfg.config);
                            if late > 0 {
                                metrics.late_records.inc_by(late);
                                tracing::info!(
                                    partition = p.partition,
                                    late,
                                    "records later than the watermark (counted, not in any window)"
                                );
                            }
                        }
                        Some(Err(e)) => {
                            tracing::error!(offset = m.offset(), error = %e, "a window partial does not parse; skipped")
                        }
                        None => {
                            tracing::error!(offset = m.offset(), "an empty window partial; skipped")
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "window merger: consumer error");
                    break;
                }
                None => {
                    caught_up = true;
                    break;
                }
            }
            if Instant::now() >= until {
                break;
            }
        }
        let closed = state.advance(&cfg.config, state.now(now_ms(), caught_up));
        if !closed.is_empty() || (dirty && last_commit.elapsed() >= STATE_EVERY) {
            commit(cfg, &producer, &closed, &state, metrics)?;
            tracing::debug!(
                windows = closed.performance.len(),
                health = closed.health.len(),
                watermark = ?state.watermark,
                "window merger committed"
            );
            dirty = false;
            last_commit = Instant::now();
        }
    }
    Ok(())
}
