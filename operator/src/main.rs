//! `riskpipe-operator`: parses options, sets up logging, runs the operator.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .json()
        .init();
    riskpipe_operator::run::main(riskpipe_operator::run::Cli::parse()).await
}
