//! `riskpipe-podrunner`: runs riskpipe Pods as local processes in place of a kubelet.
//! See `riskpipe_e2e::podrunner` for what it does; `e2e/env/up` starts it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use riskpipe_e2e::podrunner::{ImageMap, PodRunner, RunnerConfig};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Runs riskpipe Pods as local processes in place of a kubelet"
)]
struct Args {
    /// Admin kubeconfig of the cluster.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Name of the Node to register.
    #[arg(long, default_value = "riskpipe-e2e-node")]
    node_name: String,
    /// Folder to look up `riskpipe*` images' binaries in (repeatable).
    #[arg(long = "bin-dir")]
    bin_dirs: Vec<PathBuf>,
    /// Explicit image mapping `PATTERN=BINARY`: images containing PATTERN run BINARY.
    #[arg(long = "image", value_parser = parse_image)]
    images: Vec<(String, PathBuf)>,
    /// Folder for Pods' logs, volumes and claims.
    #[arg(long)]
    pods_dir: PathBuf,
    /// `KEY=VALUE` added to every process's env (repeatable).
    #[arg(long = "pod-env", value_parser = parse_env)]
    pod_env: Vec<(String, String)>,
    /// First three octets of Pod addresses (node .1, Pods .2-.254).
    #[arg(long, default_value = "127.0.1", value_parser = parse_prefix)]
    ip_prefix: [u8; 3],
    /// First restart delay in milliseconds (doubles per crash, up to 30 s).
    #[arg(long, default_value_t = 1000)]
    restart_backoff_ms: u64,
}

fn parse_image(s: &str) -> Result<(String, PathBuf), String> {
    ImageMap::parse_entry(s).ok_or_else(|| format!("expected PATTERN=BINARY, got {s:?}"))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_prefix(s: &str) -> Result<[u8; 3], String> {
    let octets: Vec<u8> = s
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{s}: {e}"))?;
    match octets.as_slice() {
        [127, b, c] => Ok([127, *b, *c]),
        _ => Err(format!("expected three octets in 127.0.0.0/8, got {s}")),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        // e2e/env/up sends the log to a file: colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading kubeconfig")?;
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let images = args
        .images
        .into_iter()
        .fold(ImageMap::new(args.bin_dirs), |map, (p, b)| {
            map.with_entry(p, b)
        });
    let mut cfg = RunnerConfig::new(args.node_name, images, args.pods_dir);
    cfg.base_env = args.pod_env;
    cfg.ip_prefix = args.ip_prefix;
    cfg.restart_backoff = Duration::from_millis(args.restart_backoff_ms);
    PodRunner::new(client, cfg).run(shutdown_signal()).await?;
    Ok(())
}
