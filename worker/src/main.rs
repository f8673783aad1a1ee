//! `riskpipe-worker`: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use riskpipe_contract::{flags, mounts};
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
    #[command(name = flags::RUN)]
    Run {
        /// The RiskPipeline manifest (YAML).
        #[arg(short = flags::FILE_SHORT, long = flags::FILE)]
        manifest: PathBuf,
        /// Keep the RocksDB state in this folder (default: a temporary folder).
        #[arg(long = flags::STATE_DIR)]
        state_dir: Option<PathBuf>,
        /// Write decisions here instead of the manifest's sink (`-` = stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not show the live progress line.
        #[arg(long)]
        no_progress: bool,
        /// Pod name (Kubernetes); the worker's ordinal is its `-N` suffix.
        #[arg(long = flags::POD_NAME, env = mounts::POD_NAME_ENV)]
        pod_name: Option<String>,
        /// Worker ordinal when there is no pod name (Kafka mode).
        #[arg(long = flags::ORDINAL)]
        ordinal: Option<u32>,
        /// Number of workers sharing the input partitions (Kafka mode).
        #[arg(long = flags::REPLICAS, default_value_t = 1)]
        replicas: u32,
        /// Address of the HTTP endpoint (/metrics, /status, /savepoints) in Kafka mode.
        #[arg(long = flags::HTTP_ADDR)]
        http_addr: Option<std::net::SocketAddr>,
        /// Restore partitions without local state from this savepoint folder.
        #[arg(long = flags::RESTORE_FROM)]
        restore_from: Option<PathBuf>,
        /// Folder of mounted Secrets, one sub-folder per Secret with one file per key.
        #[arg(long = flags::SECRETS_DIR, env = mounts::SECRETS_DIR_ENV, default_value = riskpipe_worker::secrets::DEFAULT_SECRETS_DIR)]
        secrets_dir: PathBuf,
        /// Also write each decision's model features (JSONL; local mode), with
        /// `is_fraud` for the generator's labelled records: the training tool's input.
        #[arg(long)]
        features_out: Option<PathBuf>,
    },
    /// Backtest: decide every transaction of a JSONL file against dimension
    /// tables in CSV files or in the manifest's database.
    Replay {
        /// JSONL file of transactions (`-` = stdin).
        #[arg(long)]
        transactions: PathBuf,
        /// Folder of dimension CSV files (user_risk_profiles.csv, …); without
        /// it, the manifest's `spec.dimensions` (a database or a directory).
        #[arg(long)]
        dimensions: Option<PathBuf>,
        /// Decisions out, one JSON object per valid line.
        #[arg(long)]
        out: PathBuf,
        /// Dead letters out (default: OUT with extension .dead-letters.jsonl).
        #[arg(long)]
        dead_letters: Option<PathBuf>,
        /// Take thresholds (and dimensions without --dimensions) from this
        /// manifest (default: the seed's).
        #[arg(short = 'f', long = "file")]
        manifest: Option<PathBuf>,
        /// Also write each decision's model features (JSONL): the training tool's input.
        #[arg(long)]
        features_out: Option<PathBuf>,
        /// Folder of Secrets, one sub-folder per Secret (database credentials).
        #[arg(long = flags::SECRETS_DIR, env = mounts::SECRETS_DIR_ENV, default_value = riskpipe_worker::secrets::DEFAULT_SECRETS_DIR)]
        secrets_dir: PathBuf,
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
            features_out,
        } => commands::run(&RunArgs {
            features_out,
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
            features_out,
            secrets_dir,
        } => commands::replay(&ReplayArgs {
            features_out,
            transactions,
            dimensions,
            out,
            dead_letters,
            manifest,
            secrets_dir,
        })
        .map(drop),
        Command::Validate { manifest } => commands::load_manifest(&manifest).and_then(|mut p| {
            let base = manifest.parent().map(PathBuf::from).unwrap_or_default();
            riskpipe_worker::model_config::resolve_model_paths(&mut p, &base);
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

#[cfg(test)]
mod tests {
    use super::*;
    use riskpipe_contract::WorkerArgs;

    fn parse(args: &WorkerArgs) -> Command {
        let argv = std::iter::once("riskpipe-worker".to_owned()).chain(args.to_args());
        Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("the operator's command line does not parse: {e}"))
            .command
    }

    /// The command line the operator renders is one this worker accepts, each value
    /// landing in its field.
    #[test]
    fn parses_the_command_line_the_operator_renders() {
        let rendered = WorkerArgs {
            manifest: mounts::config_path(),
            pod_name: "payments-2".into(),
            replicas: 3,
            state_dir: "/var/lib/riskpipe/state".into(),
            http_addr: "127.0.1.3:8080".into(),
            restore_from: Some("s3://bucket/payments/savepoint-1".into()),
            secrets_dir: Some("/run/secrets".into()),
        };
        let Command::Run {
            manifest,
            state_dir,
            pod_name,
            ordinal,
            replicas,
            http_addr,
            restore_from,
            secrets_dir,
            ..
        } = parse(&rendered)
        else {
            panic!("not the run command");
        };
        assert_eq!(manifest, PathBuf::from("/etc/riskpipe/pipeline.yaml"));
        assert_eq!(state_dir, Some(PathBuf::from("/var/lib/riskpipe/state")));
        assert_eq!(pod_name.as_deref(), Some("payments-2"));
        assert_eq!((ordinal, replicas), (None, 3));
        assert_eq!(http_addr, Some("127.0.1.3:8080".parse().unwrap()));
        assert_eq!(
            restore_from,
            Some(PathBuf::from("s3://bucket/payments/savepoint-1"))
        );
        assert_eq!(secrets_dir, PathBuf::from("/run/secrets"));

        let plain = WorkerArgs {
            restore_from: None,
            secrets_dir: None,
            ..rendered
        };
        let Command::Run { restore_from, .. } = parse(&plain) else {
            panic!("not the run command");
        };
        assert_eq!(restore_from, None);
    }
}
