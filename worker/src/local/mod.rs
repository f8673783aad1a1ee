//! Local mode: one process runs a whole pipeline (source → engine with RocksDB
//! state → outputs) without Kubernetes or Kafka. `run` and `replay` both use it.

pub mod generator;
pub mod report;
pub mod source;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use riskpipe_engine::dimensions::{
    BatchKeys, BatchView, Dimensions, HistoryRow, IpRange, MerchantProfile, Unavailable,
    UserProfile,
};
use riskpipe_engine::{Decision, DecisionWriter, Engine, Transaction};

use crate::audit::AuditWriter;
use crate::local::report::RunStats;
use crate::local::source::{LocalSource, RawRecord, SourceError};
use crate::monitoring::MonitoringFiles;
use crate::output::{DeadLetter, JsonLines, OutputError};
use crate::record::{self, Flow, Input, Outcome, Refusal};
use crate::state::{PartitionState, StateError};

/// Records per micro-batch: state is flushed once per batch.
pub const BATCH: usize = 1024;

/// A local run that failed (a bad record never fails a run; it is a dead letter).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An output could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// An audit record could not be built.
    #[error("writing an audit record: {0}")]
    Audit(String),
    /// The dimensions of a batch could not be fetched (the run stops undecided).
    #[error(transparent)]
    Dimensions(#[from] Unavailable),
}

/// The manifest's inline lists (`spec.dimensions.lists.blacklist*`).
#[derive(Debug, Clone, Default)]
pub struct InlineLists {
    /// Blacklisted users.
    pub users: ahash::AHashSet<i64>,
    /// Blacklisted merchants.
    pub merchants: ahash::AHashSet<i64>,
    /// Blacklisted IPs (exact text).
    pub ips: ahash::AHashSet<String>,
    /// Blacklisted IP ranges (CIDR entries).
    pub ip_ranges: Vec<IpRange>,
}

impl InlineLists {
    /// The lists of a manifest.
    pub fn of(lists: &riskpipe_crds::ListsSpec) -> Self {
        let mut inline = InlineLists {
            users: lists.blacklist_users.iter().copied().collect(),
            merchants: lists.blacklist_merchants.iter().copied().collect(),
            ..InlineLists::default()
        };
        for entry in &lists.blacklist_ips {
            match IpRange::parse(entry) {
                Some(range) => inline.ip_ranges.push(range),
                None => {
                    inline.ips.insert(entry.clone());
                }
            }
        }
        inline
    }
}

/// Dimension tables plus the manifest's inline lists.
pub struct WithInlineLists<D, L = InlineLists> {
    /// The tables.
    pub base: D,
    /// The inline lists (owned, or borrowed by a batch's view).
    pub lists: L,
}

impl<D: Dimensions, L: std::borrow::Borrow<InlineLists>> Dimensions for WithInlineLists<D, L> {
    fn prefetch<'s>(&'s self, keys: &BatchKeys) -> Result<Option<BatchView<'s>>, Unavailable> {
        Ok(self.base.prefetch(keys)?.map(|view| {
            Box::new(WithInlineLists {
                base: view,
                lists: self.lists.borrow(),
            }) as BatchView<'s>
        }))
    }
    fn user(&self, user_id: i64) -> Option<&UserProfile> {
        self.base.user(user_id)
    }
    fn merchant(&self, merchant_id: i64) -> Option<&MerchantProfile> {
        self.base.merchant(merchant_id)
    }
    fn history(&self, user_id: i64, date_days: i32, hour: u8) -> Option<HistoryRow> {
        self.base.history(user_id, date_days, hour)
    }
    fn user_blacklisted(&self, user_id: i64) -> bool {
        self.lists.borrow().users.contains(&user_id) || self.base.user_blacklisted(user_id)
    }
    fn merchant_blacklisted(&self, merchant_id: i64) -> bool {
        self.lists.borrow().merchants.contains(&merchant_id)
            || self.base.merchant_blacklisted(merchant_id)
    }
    fn ip_blacklisted(&self, ip: &str) -> bool {
        let lists = self.lists.borrow();
        lists.ips.contains(ip)
            || IpRange::any_contains(&lists.ip_ranges, ip)
            || self.base.ip_blacklisted(ip)
    }
    fn location_high_risk(&self, location: &str) -> bool {
        self.base.location_high_risk(location)
    }
}

/// How a local run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Show a live progress line (only when stderr is a terminal).
    pub progress: bool,
    /// Pace the source to this many records per second; 0 = as fast as possible.
    pub rate_per_second: u32,
    /// Set by SIGINT/SIGTERM: finish the batch, flush, summarise.
    pub stop: Arc<AtomicBool>,
}

/// A pipeline wired for local mode.
pub struct LocalPipeline {
    /// The engine.
    pub engine: Engine,
    /// Lookups.
    pub dims: Box<dyn Dimensions + Send>,
    /// State of partition 0.
    pub state: PartitionState,
    /// Where decisions, dead letters and audit records go.
    pub sinks: LocalSinks,
}

impl LocalPipeline {
    /// Runs until the source ends or `stop` is set; returns what was counted.
    pub fn run(
        &mut self,
        source: &mut LocalSource,
        opts: &RunOptions,
    ) -> Result<RunStats, RunError> {
        let mut stats = RunStats::default();
        let started = Instant::now();
        let progress = opts.progress && std::io::stderr().is_terminal();
        let mut next_progress = started + Duration::from_secs(1);
        let batch = if opts.rate_per_second > 0 {
            (opts.rate_per_second as usize / 100).clamp(1, BATCH)
        } else {
            BATCH
        };
        let mut json = Vec::with_capacity(2048);
        let mut last_position = 0u64;
        let mut records: Vec<(RawRecord, Instant)> = Vec::with_capacity(batch);
        loop {
            records.clear();
            while records.len() < batch {
                let Some(record) = source.next_record()? else {
                    break;
                };
                records.push((record, Instant::now()));
            }
            let Some((last, _)) = records.last() else {
                break;
            };
            last_position = last.position;
            let inputs: Vec<Input<'_>> = records
                .iter()
                .map(|(r, _)| Input {
                    bytes: &r.bytes,
                    size: r.oversized.unwrap_or(r.bytes.len()),
                    reference_ms: None,
                })
                .collect();
            let sinks = &mut self.sinks;
            record::run_batch(
                &self.engine,
                self.dims.as_ref(),
                &mut self.state,
                &inputs,
                |i, outcome| -> Result<Flow, RunError> {
                    let (raw, read_at) = &records[i];
                    stats.records += 1;
                    match outcome {
                        Outcome::Decided { tx, mut decision } => {
                            let latency = read_at.elapsed();
                            decision.decided_at_ms = record::now_ms();
                            decision.processing_latency_ms = latency.as_secs_f64() * 1000.0;
                            stats.latency.record(latency);
                            stats.count_decision(decision.final_decision, raw.label, raw.labelled);
                            sinks.decision(&decision, tx, &mut json)?;
                            if let Some(m) = &mut sinks.monitoring {
                                m.decision(&decision, record::now_ms())?;
                            }
                            if let Some(f) = &mut sinks.features {
                                f.write(&decision, raw.labelled.then_some(raw.label.is_some()))?;
                            }
                        }
                        Outcome::Refused(refusal) => {
                            stats.count_dead_letter(refusal.kind);
                            sinks.dead_letter(&mut json, &raw.bytes, &refusal, raw.position)?;
                            if let Some(m) = &mut sinks.monitoring {
                                m.error(record::now_ms());
                            }
                        }
                    }
                    Ok(Flow::Go)
                },
            )?;
            let ended = records.len() < batch;
            self.state.flush_at(last_position as i64 + 1)?;
            if opts.stop.load(Ordering::Relaxed) {
                tracing::info!(
                    records = stats.records,
                    "stop requested; finishing after this batch"
                );
                break;
            }
            if opts.rate_per_second > 0 {
                let due = started
                    + Duration::from_secs_f64(
                        stats.records as f64 / f64::from(opts.rate_per_second),
                    );
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            if progress && Instant::now() >= next_progress {
                eprint!("\r{}\x1b[K", stats.progress_line(started.elapsed()));
                next_progress += Duration::from_secs(1);
            }
            if ended {
                break;
            }
        }
        self.state.flush_at(last_position as i64 + 1)?;
        self.sinks.flush()?;
        if progress {
            eprintln!("\r{}\x1b[K", stats.progress_line(started.elapsed()));
        }
        Ok(stats)
    }
}

/// Where a local run writes: decisions, dead letters and, when on, audit records.
pub struct LocalSinks {
    /// Decision JSON writer.
    pub writer: DecisionWriter,
    /// Decisions out.
    pub decisions: JsonLines,
    /// Dead letters out.
    pub dead_letters: JsonLines,
    /// The source's name for dead letters.
    pub source_name: String,
    /// Audit records (SPEC §10) and where they go, when on.
    pub audit: Option<(AuditWriter, JsonLines)>,
    /// SPEC §9 window and alert records beside the decisions, when they go to a file.
    pub monitoring: Option<MonitoringFiles>,
    /// Model features per decision (`--features-out`), when on.
    pub features: Option<crate::feature_dump::FeatureDump>,
}

impl LocalSinks {
    fn decision(
        &mut self,
        d: &Decision,
        tx: &Transaction,
        json: &mut Vec<u8>,
    ) -> Result<(), RunError> {
        json.clear();
        self.writer.write(d, json);
        self.decisions.write_line(json)?;
        if let Some((writer, out)) = &mut self.audit {
            json.clear();
            writer
                .write(d, tx, json)
                .map_err(|e| RunError::Audit(format!("{e:#}")))?;
            out.write_line(json)?;
        }
        Ok(())
    }

    fn dead_letter(
        &mut self,
        json: &mut Vec<u8>,
        raw: &[u8],
        refusal: &Refusal,
        position: u64,
    ) -> Result<(), RunError> {
        tracing::debug!(line = position, kind = refusal.kind, reason = %refusal.reason, "dead letter");
        json.clear();
        DeadLetter {
            raw,
            kind: refusal.kind,
            reason: &refusal.reason,
            source: &self.source_name,
            position,
            partition: None,
            at_ms: record::now_ms(),
        }
        .write(json);
        self.dead_letters.write_line(json)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RunError> {
        if let Some(m) = &mut self.monitoring {
            m.finish()?;
        }
        self.decisions.flush()?;
        self.dead_letters.flush()?;
        if let Some((_, out)) = &mut self.audit {
            out.flush()?;
        }
        if let Some(f) = &mut self.features {
            f.flush()?;
        }
        Ok(())
    }
}

/// A fresh state folder for a local run, removed when dropped unless kept.
pub struct StateDir {
    path: PathBuf,
    remove: bool,
}

impl StateDir {
    /// `dir` when given (kept), else a new temporary folder (removed at the end).
    pub fn new(dir: Option<&Path>, pipeline: &str) -> std::io::Result<Self> {
        match dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                Ok(StateDir {
                    path: d.to_owned(),
                    remove: false,
                })
            }
            None => {
                let path = std::env::temp_dir().join(format!(
                    "riskpipe-{pipeline}-{}-{}",
                    std::process::id(),
                    record::now_ms()
                ));
                std::fs::create_dir_all(&path)?;
                Ok(StateDir { path, remove: true })
            }
        }
    }

    /// The folder of one partition's database.
    pub fn partition(&self, partition: u32) -> PathBuf {
        self.path.join(format!("partition-{partition:04}"))
    }

    /// The state root.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
