//! `riskpipe-e2e-helper`: a stand-in container for pod runner tests. It answers HTTP
//! on `--listen` (200 on every path once ready), appends what happens to it
//! (`started`, `sigterm`, `exit`) to `--events`, and exits 0 on SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Stand-in container for pod runner tests")]
struct Args {
    /// Address to serve HTTP on, e.g. `$(POD_IP):8080`.
    #[arg(long)]
    listen: String,
    /// File to append events to (one line each).
    #[arg(long)]
    events: PathBuf,
    /// Delay before binding the listener (readiness comes later).
    #[arg(long, default_value_t = 0)]
    ready_after_ms: u64,
    /// Delay between SIGTERM and exiting.
    #[arg(long, default_value_t = 100)]
    stop_delay_ms: u64,
}

fn event(path: &Path, what: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{what} pid={}", std::process::id())
        .with_context(|| format!("writing {}", path.display()))
}

async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    event(&args.events, &format!("started listen={}", args.listen))?;
    tokio::time::sleep(Duration::from_millis(args.ready_after_ms)).await;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tokio::select! {
        _ = serve(listener) => {}
        _ = term.recv() => {}
    }
    event(&args.events, "sigterm")?;
    tokio::time::sleep(Duration::from_millis(args.stop_delay_ms)).await;
    event(&args.events, "exit")?;
    Ok(())
}
