//! The `run` and `replay` commands: read the manifest, wire the local pipeline,
//! run it, print the summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use riskpipe_crds::{RiskPipeline, Sink, SinkSpec, Source, SourceSpec};
use riskpipe_engine::dimensions::{Dimensions, StaticDimensions};
use riskpipe_engine::{DecisionWriter, Engine};

use crate::dims::db::Credentials;
use crate::dims::{DbDimensions, DbSettings, DimensionsHealth};
use crate::dims_csv::load_dimensions;
use crate::local::generator::{Generator, GeneratorConfig};
use crate::local::report::RunStats;
use crate::local::source::LocalSource;
use crate::local::{InlineLists, LocalPipeline, LocalSinks, RunOptions, StateDir, WithInlineLists};
use crate::monitoring::MonitoringFiles;
use crate::output::JsonLines;
use crate::pipeline_config::engine_config;
use crate::state::{self, PartitionState};

/// Options of `riskpipe-worker run`.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The RiskPipeline manifest.
    pub manifest: PathBuf,
    /// Keep RocksDB state here instead of a temporary folder.
    pub state_dir: Option<PathBuf>,
    /// Write decisions here instead of the manifest's sink (`-` = stdout).
    pub out: Option<PathBuf>,
    /// Never show the progress line.
    pub no_progress: bool,
    /// Pod name (Kubernetes): the ordinal is its `-N` suffix.
    pub pod_name: Option<String>,
    /// Ordinal when there is no pod name.
    pub ordinal: Option<u32>,
    /// Replica count (Kafka mode).
    pub replicas: u32,
    /// HTTP endpoint address (Kafka mode).
    pub http_addr: Option<std::net::SocketAddr>,
    /// Savepoint to restore from (Kafka mode).
    pub restore_from: Option<PathBuf>,
    /// Folder of mounted Secrets (`secrets::SecretsDir`).
    pub secrets_dir: PathBuf,
    /// Write each decision's model features here (JSONL; local mode).
    pub features_out: Option<PathBuf>,
}

/// Options of `riskpipe-worker replay`.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    /// JSONL transactions.
    pub transactions: PathBuf,
    /// Folder of dimension CSV files (else the manifest's `spec.dimensions`).
    pub dimensions: Option<PathBuf>,
    /// Decisions out.
    pub out: PathBuf,
    /// Dead letters out (default: next to `out`).
    pub dead_letters: Option<PathBuf>,
    /// Thresholds, and dimensions when `dimensions` is not given, from this
    /// manifest (default: the seed's).
    pub manifest: Option<PathBuf>,
    /// Write each decision's model features here (JSONL).
    pub features_out: Option<PathBuf>,
    /// Folder of mounted Secrets (the database credentials).
    pub secrets_dir: PathBuf,
}

/// Reads and validates a manifest file.
pub fn load_manifest(path: &Path) -> Result<RiskPipeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    RiskPipeline::from_yaml_validated(&text).with_context(|| format!("manifest {}", path.display()))
}

fn relative_to(base: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() || path == "-" {
        p
    } else {
        base.join(p)
    }
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    Ok(stop)
}

fn with_lists<D: Dimensions + Send + 'static>(
    base: D,
    pipeline: &RiskPipeline,
) -> Box<dyn Dimensions + Send> {
    Box::new(WithInlineLists {
        base,
        lists: InlineLists::of(&pipeline.spec.dimensions.lists),
    })
}

fn sink_path(sink: &SinkSpec, base: &Path, what: &str) -> Result<Option<PathBuf>> {
    match sink.kind() {
        Some(Sink::File(f)) => Ok(Some(relative_to(base, &f.path))),
        Some(Sink::Stdout) => Ok(Some(PathBuf::from("-"))),
        Some(Sink::Kafka(k)) => bail!(
            "spec.sinks.{what} is the Kafka topic '{}': local mode writes files or stdout; \
             set `{what}: {{file: {{path: ...}}}}` or `{what}: {{stdout: {{}}}}`, or pass --out",
            k.topic
        ),
        None => Ok(None),
    }
}

/// Local mode's audit log: on when `spec.sinks.audit` is a file or stdout and
/// the keys are there (from `spec.secrets` under the secrets folder, else the
/// `RISKPIPE_AUDIT_*` environment variables). A Kafka audit sink (the default)
/// has no meaning locally and is skipped.
fn local_audit(
    pipeline: &RiskPipeline,
    base: &Path,
    secrets_dir: &Path,
) -> Result<Option<(crate::audit::AuditWriter, JsonLines)>> {
    let Some(sink) = &pipeline.spec.sinks.audit else {
        return Ok(None);
    };
    if let Some(Sink::Kafka(_)) = sink.kind() {
        return Ok(None);
    }
    let Some(path) = sink_path(sink, base, "audit")? else {
        return Ok(None);
    };
    let keys = crate::secrets::load_audit_keys(
        &pipeline.spec.secrets,
        &crate::secrets::SecretsDir::new(secrets_dir),
        |k| std::env::var(k).ok(),
    )?;
    let Some(keys) = keys else {
        tracing::warn!(
            path = %path.display(),
            "audit log off: no keys (spec.secrets, or RISKPIPE_AUDIT_ENCRYPTION_KEY and RISKPIPE_AUDIT_HMAC_KEY)"
        );
        return Ok(None);
    };
    tracing::info!(path = %path.display(), key_id = keys.key_id(), "audit log");
    let name = pipeline.metadata.name.as_deref().unwrap_or_default();
    let writer = crate::audit::AuditWriter::new(name, env!("CARGO_PKG_VERSION"), keys);
    Ok(Some((writer, JsonLines::create(&path)?)))
}

fn dead_letter_output(path: Option<PathBuf>, decisions: &Path) -> Result<JsonLines> {
    let path = match path {
        Some(p) => p,
        None if decisions.as_os_str() == "-" => return Ok(JsonLines::stderr()),
        None => decisions.with_extension("dead-letters.jsonl"),
    };
    tracing::info!(path = %path.display(), "dead letters");
    Ok(JsonLines::create(&path)?)
}

fn feature_dump(path: Option<&Path>) -> Result<Option<crate::feature_dump::FeatureDump>> {
    path.map(|p| {
        crate::feature_dump::FeatureDump::create(p)
            .with_context(|| format!("features out {}", p.display()))
    })
    .transpose()
}

/// `riskpipe-worker run -f MANIFEST`.
pub fn run(args: &RunArgs) -> Result<RunStats> {
    let mut pipeline = load_manifest(&args.manifest)?;
    let name = pipeline.metadata.name.clone().unwrap_or_default();
    let base = args
        .manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    crate::model_config::resolve_model_paths(&mut pipeline, &base);
    let cfg = engine_config(&pipeline)
        .with_context(|| format!("manifest {}", args.manifest.display()))?;
    let spec = &pipeline.spec;

    let mut rate = 0;
    let (mut source, generated) = match spec.source.kind() {
        Some(Source::Generator(g)) => {
            rate = u32::try_from(g.rate_per_second).unwrap_or(0);
            let generator = Generator::new(GeneratorConfig {
                users: u32::try_from(g.users)
                    .context("spec.source.generator.users is too large")?,
                merchants: u32::try_from(g.merchants)
                    .context("spec.source.generator.merchants is too large")?,
                rate_per_second: rate,
                count: u64::try_from(g.count).unwrap_or(0),
                seed: g.seed as u64,
                fraud_ratio: g.fraud_ratio,
            });
            let dims = generator.dimensions();
            (LocalSource::Generator(Box::new(generator)), Some(dims))
        }
        Some(Source::File(f)) => (LocalSource::file(&relative_to(&base, &f.path))?, None),
        Some(Source::Kafka(k)) => {
            return run_kafka(&pipeline, k, &base, args).map(|()| RunStats::default());
        }
        None => bail!("spec.source: set exactly one of generator, file or kafka"),
    };
    let stop = stop_flag()?;
    let (dims, _) = dimensions_of(&pipeline, &base, &args.secrets_dir, &stop, generated)?;

    let decisions_path = match &args.out {
        Some(p) => p.clone(),
        None => sink_path(&spec.sinks.decisions, &base, "decisions")?
            .unwrap_or_else(|| PathBuf::from("-")),
    };
    let dead_path = match &spec.sinks.dead_letters {
        Some(s) => sink_path(s, &base, "deadLetters")?,
        None => None,
    };
    let state_dir =
        StateDir::new(args.state_dir.as_deref(), &name).context("creating the state folder")?;
    let state = PartitionState::open(&state_dir.partition(0), state::cache_entries(1))?;
    let mut local = LocalPipeline {
        sinks: LocalSinks {
            writer: DecisionWriter::new(&cfg.pipeline, &cfg.rule_set_version),
            decisions: JsonLines::create(&decisions_path)?,
            dead_letters: dead_letter_output(dead_path, &decisions_path)?,
            source_name: source_name(&spec.source),
            audit: local_audit(&pipeline, &base, &args.secrets_dir)?,
            monitoring: MonitoringFiles::beside(&decisions_path, &spec.monitoring)?,
            features: feature_dump(args.features_out.as_deref())?,
        },
        engine: Engine::new(cfg),
        dims,
        state,
    };
    tracing::info!(pipeline = %name, decisions = %decisions_path.display(), state = %state_dir.path().display(), "pipeline started");
    let started = std::time::Instant::now();
    let stats = local.run(
        &mut source,
        &RunOptions {
            progress: !args.no_progress,
            rate_per_second: rate,
            stop,
        },
    )?;
    eprint!(
        "{}",
        stats.summary(started.elapsed(), local.state.approximate_bytes())
    );
    Ok(stats)
}

/// A mode's dimension source.
pub type BoxedDimensions = Box<dyn Dimensions + Send>;

/// The dimension source of a manifest: its database (with history rows from
/// its CSV folder, if it also names one), else its CSV folder, else `fallback`
/// (the generator's tables) or empty tables. With a database, also the health
/// `/status` reports.
pub fn dimensions_of(
    pipeline: &RiskPipeline,
    base: &Path,
    secrets_dir: &Path,
    stop: &Arc<AtomicBool>,
    fallback: Option<Arc<crate::local::generator::GeneratedDimensions>>,
) -> Result<(BoxedDimensions, Option<Arc<DimensionsHealth>>)> {
    let spec = &pipeline.spec.dimensions;
    let csv = match &spec.directory {
        Some(dir) => {
            let dir = relative_to(base, dir);
            let (dims, counts) = load_dimensions(&dir)?;
            tracing::info!(dir = %dir.display(), ?counts, "dimension tables loaded");
            Some(dims)
        }
        None => None,
    };
    let credentials = match spec
        .database
        .as_ref()
        .and_then(|d| d.credentials_secret_ref.as_ref())
    {
        Some(secret) => Some(db_credentials(secret, secrets_dir)?),
        None => None,
    };
    if let Some(settings) = DbSettings::of(spec, credentials) {
        let history = StaticDimensions {
            history: csv.map(|c| c.history).unwrap_or_default(),
            ..StaticDimensions::default()
        };
        let health = Arc::new(DimensionsHealth::default());
        let dims = DbDimensions::start(&settings, history, Arc::clone(&health), Arc::clone(stop))
            .context("spec.dimensions.database")?;
        tracing::info!(
            users = %settings.users.table, merchants = %settings.merchants.table,
            "dimension tables in the database"
        );
        return Ok((with_lists(dims, pipeline), Some(health)));
    }
    let dims = match (csv, fallback) {
        (Some(dims), _) => with_lists(dims, pipeline),
        (None, Some(generated)) => with_lists(generated, pipeline),
        (None, None) => with_lists(StaticDimensions::default(), pipeline),
    };
    Ok((dims, None))
}

/// The database login from the mounted Secret (keys `username`, `password`).
fn db_credentials(secret: &riskpipe_crds::SecretRef, secrets_dir: &Path) -> Result<Credentials> {
    let what = "spec.dimensions.database.credentialsSecretRef";
    let folder = crate::secrets::SecretsDir::new(secrets_dir).secret(secret, what)?;
    let username = folder.read("username")?;
    let password = folder.read("password")?;
    Ok(Credentials {
        username: username
            .trimmed_str(&format!("{what} key username"))?
            .to_owned(),
        password: password
            .trimmed_str(&format!("{what} key password"))?
            .to_owned()
            .into(),
    })
}

fn run_kafka(
    pipeline: &RiskPipeline,
    source: &riskpipe_crds::KafkaSource,
    base: &Path,
    args: &RunArgs,
) -> Result<()> {
    let ordinal = match (&args.pod_name, args.ordinal) {
        (_, Some(o)) => o,
        (Some(pod), None) => crate::kafka::assignment::ordinal_from_pod_name(pod)?,
        (None, None) => 0,
    };
    if ordinal >= args.replicas {
        bail!(
            "ordinal {ordinal} is not below --replicas {}",
            args.replicas
        );
    }
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&pipeline.spec.state.path));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state folder {}", state_dir.display()))?;
    let stop = stop_flag()?;
    let (dims, health) = dimensions_of(pipeline, base, &args.secrets_dir, &stop, None)?;
    let secrets = crate::secrets::SecretsDir::new(&args.secrets_dir);
    let security = crate::kafka::clients::KafkaSecurity::load(source, &secrets)?;
    if !security.is_empty() {
        let names: Vec<&str> = security.property_names().collect();
        tracing::info!(properties = ?names, "Kafka TLS/SASL settings loaded");
        crate::kafka::clients::check_access(source, &security, Duration::from_secs(30))?;
    }
    crate::kafka::run(
        pipeline,
        source,
        dims,
        &crate::kafka::KafkaArgs {
            ordinal,
            replicas: args.replicas,
            state_dir,
            http_addr: args.http_addr,
            restore_from: args.restore_from.clone(),
            security,
            secrets_dir: args.secrets_dir.clone(),
            dimensions_health: health,
        },
        stop,
    )
}

fn source_name(source: &SourceSpec) -> String {
    match source.kind() {
        Some(Source::File(f)) => f.path.clone(),
        Some(Source::Generator(_)) => "generator".to_owned(),
        Some(Source::Kafka(k)) => k.topic.clone(),
        None => String::new(),
    }
}

/// `riskpipe-worker replay`.
pub fn replay(args: &ReplayArgs) -> Result<RunStats> {
    let pipeline = match &args.manifest {
        Some(path) => {
            let mut p = load_manifest(path)?;
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            crate::model_config::resolve_model_paths(&mut p, &base);
            p
        }
        None => {
            let mut p = RiskPipeline::new(
                "replay",
                riskpipe_crds::RiskPipelineSpec::with_source(SourceSpec::kafka()),
            );
            p.metadata.name = Some("replay".to_owned());
            p
        }
    };
    let cfg = engine_config(&pipeline).context("pipeline thresholds")?;
    let base = args
        .manifest
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut pipeline = pipeline;
    if let Some(dir) = &args.dimensions {
        if pipeline.spec.dimensions.database.is_some() {
            bail!(
                "replay: --dimensions names a CSV folder, but the manifest's dimensions are in a database; pass one or the other"
            );
        }
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        pipeline.spec.dimensions.directory = Some(dir.display().to_string());
    } else if pipeline.spec.dimensions.database.is_none()
        && pipeline.spec.dimensions.directory.is_none()
    {
        bail!(
            "replay: pass --dimensions FOLDER, or a manifest (-f) whose spec.dimensions names a database or a directory"
        );
    }
    let stop = stop_flag()?;
    let (dims, _) = dimensions_of(&pipeline, &base, &args.secrets_dir, &stop, None)?;
    let state_dir = StateDir::new(None, "replay").context("creating the state folder")?;
    let mut local = LocalPipeline {
        sinks: LocalSinks {
            writer: DecisionWriter::new(&cfg.pipeline, &cfg.rule_set_version),
            decisions: JsonLines::create(&args.out)?,
            dead_letters: dead_letter_output(args.dead_letters.clone(), &args.out)?,
            source_name: args.transactions.display().to_string(),
            audit: None,
            monitoring: MonitoringFiles::beside(&args.out, &pipeline.spec.monitoring)?,
            features: feature_dump(args.features_out.as_deref())?,
        },
        engine: Engine::new(cfg),
        dims,
        state: PartitionState::open(&state_dir.partition(0), state::cache_entries(1))?,
    };
    let mut source = LocalSource::file(&args.transactions)?;
    let started = std::time::Instant::now();
    let stats = local.run(
        &mut source,
        &RunOptions {
            progress: true,
            rate_per_second: 0,
            stop,
        },
    )?;
    eprint!(
        "{}",
        stats.summary(started.elapsed(), local.state.approximate_bytes())
    );
    Ok(stats)
}
