//! `riskpipe-worker`: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use riskpipe_worker::commands::{self, ReplayArgs, RunArgs};

/// riskpipe's data plane: real-time risk decisions for card and payment transactions.
#[derive(Parser)]
#[command(name = "riskpipe-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a RiskPipeline manifest locally (generator or JSONL file source).
    Run {
        /// The RiskPipeline manifest (YAML).
        #[arg(short = 'f', long = "file")]
        manifest: PathBuf,
        /// Keep the RocksDB state in this folder (default: a temporary folder).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Write decisions here instead of the manifest's sink (`-` = stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not show the live progress line.
        #[arg(long)]
        no_progress: bool,
        /// Pod name (Kubernetes); the worker's ordinal is its `-N` suffix.
        #[arg(long, env = "POD_NAME")]
        pod_name: Option<String>,
        /// Worker ordinal when there is no pod name (Kafka mode).
        #[arg(long)]
        ordinal: Option<u32>,
        /// Number of workers sharing the input partitions (Kafka mode).
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Address of the HTTP endpoint (/metrics, /status, /savepoints) in Kafka mode.
        #[arg(long)]
        http_addr: Option<std::net::SocketAddr>,
        /// Restore partitions without local state from this savepoint folder.
        #[arg(long)]
        restore_from: Option<PathBuf>,
        /// Folder of mounted Secrets, one sub-folder per Secret with one file per key.
        #[arg(long, env = "RISKPIPE_SECRETS_DIR", default_value = riskpipe_worker::secrets::DEFAULT_SECRETS_DIR)]
        secrets_dir: PathBuf,
    },
    /// Backtest: decide every transaction of a JSONL file against CSV dimension tables.
    Replay {
        /// JSONL file of transactions (`-` = stdin).
        #[arg(long)]
        transactions: PathBuf,
        /// Folder of dimension CSV files (user_risk_profiles.csv, …).
        #[arg(long)]
        dimensions: PathBuf,
        /// Decisions out, one JSON object per valid line.
        #[arg(long)]
        out: PathBuf,
        /// Dead letters out (default: OUT with extension .dead-letters.jsonl).
        #[arg(long)]
        dead_letters: Option<PathBuf>,
        /// Take thresholds from this manifest (default: the seed's).
        #[arg(short = 'f', long = "file")]
        manifest: Option<PathBuf>,
    },
    /// Check a manifest and print what is wrong with it.
    Validate {
        /// The RiskPipeline manifest (YAML).
        #[arg(short = 'f', long = "file")]
        manifest: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RISKPIPE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Run {
            manifest,
            state_dir,
            out,
            no_progress,
            pod_name,
            ordinal,
            replicas,
            http_addr,
            restore_from,
            secrets_dir,
        } => commands::run(&RunArgs {
            manifest,
            state_dir,
            out,
            no_progress,
            pod_name,
            ordinal,
            replicas,
            http_addr,
            restore_from,
            secrets_dir,
        })
        .map(drop),
        Command::Replay {
            transactions,
            dimensions,
            out,
            dead_letters,
            manifest,
        } => commands::replay(&ReplayArgs {
            transactions,
            dimensions,
            out,
            dead_letters,
            manifest,
        })
        .map(drop),
        Command::Validate { manifest } => commands::load_manifest(&manifest).and_then(|p| {
            riskpipe_worker::pipeline_config::engine_config(&p)?;
            println!("{}: valid", manifest.display());
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
