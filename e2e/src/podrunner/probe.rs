//! Readiness probes run against a Pod's loopback address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeAction {
    /// `GET path` over HTTP/1.0; a 2xx or 3xx status is a success.
    Http {
        /// Where to connect.
        addr: SocketAddr,
        /// The request path.
        path: String,
    },
    /// A TCP connect.
    Tcp {
        /// Where to connect.
        addr: SocketAddr,
    },
    /// A command run on this machine; exit code 0 is a success.
    Exec {
        /// argv.
        command: Vec<String>,
    },
}

/// A probe with Kubernetes' timing fields (defaults as in the API).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// What to run.
    pub action: ProbeAction,
    /// Wait after the process starts before the first probe.
    pub initial_delay: Duration,
    /// Between probes.
    pub period: Duration,
    /// One probe's deadline.
    pub timeout: Duration,
    /// Successes in a row that make a not-ready container ready.
    pub success_threshold: u32,
    /// Failures in a row that make a ready container not ready.
    pub failure_threshold: u32,
}

/// A probe the runner cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("container {container}: {reason}")]
pub struct ProbeError {
    /// The container.
    pub container: String,
    /// Why.
    pub reason: String,
}

impl ProbeSpec {
    /// The readiness probe of `container` for a Pod at `ip`, if it has one.
    pub fn readiness(container: &Container, ip: IpAddr) -> Result<Option<Self>, ProbeError> {
        container
            .readiness_probe
            .as_ref()
            .map(|p| Self::from_probe(p, container, ip))
            .transpose()
    }

    fn from_probe(p: &Probe, container: &Container, ip: IpAddr) -> Result<Self, ProbeError> {
        let err = |reason: String| ProbeError {
            container: container.name.clone(),
            reason,
        };
        let action = if let Some(http) = &p.http_get {
            let port = resolve_port(&http.port, container).map_err(err)?;
            let host = http
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(ip);
            ProbeAction::Http {
                addr: SocketAddr::new(host, port),
                path: http.path.clone().unwrap_or_else(|| "/".into()),
            }
        } else if let Some(tcp) = &p.tcp_socket {
            let port = resolve_port(&tcp.port, container).map_err(err)?;
            let host = tcp
                .host
                .as_deref()
                .and_then(|h| h.parse().ok())
                .unwrap_or(ip);
            ProbeAction::Tcp {
                addr: SocketAddr::new(host, port),
            }
        } else if let Some(exec) = &p.exec {
            ProbeAction::Exec {
                command: exec.command.clone().unwrap_or_default(),
            }
        } else {
            return Err(err("readiness probe kind not supported (grpc?)".into()));
        };
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(v.map_or(default, |v| v.max(0) as u64))
        };
        Ok(Self {
            action,
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.map_or(1, |v| v.max(1) as u32),
            failure_threshold: p.failure_threshold.map_or(3, |v| v.max(1) as u32),
        })
    }
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("bad probe port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("probe port {name} is not a named port of the container")),
    }
}

/// Runs one probe; `true` on success. Never waits longer than `timeout`.
pub async fn run_once(action: &ProbeAction, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, run(action))
        .await
        .unwrap_or(false)
}

async fn run(action: &ProbeAction) -> bool {
    match action {
        ProbeAction::Tcp { addr } => TcpStream::connect(addr).await.is_ok(),
        ProbeAction::Http { addr, path } => http_get(*addr, path).await.unwrap_or(false),
        ProbeAction::Exec { command } => {
            let Some((program, args)) = command.split_first() else {
                return false;
            };
            tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map(|s| s.success())
                .unwrap_or(false)
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: riskpipe-podrunner\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((200..400).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
    use std::net::Ipv4Addr;

    #[test]
    fn named_ports_and_defaults() {
        let container = Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    port: IntOrString::String("http".into()),
                    path: Some("/ready".into()),
                    ..Default::default()
                }),
                period_seconds: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 3));
        let spec = ProbeSpec::readiness(&container, ip).unwrap().unwrap();
        assert_eq!(
            spec.action,
            ProbeAction::Http {
                addr: SocketAddr::new(ip, 8080),
                path: "/ready".into()
            }
        );
        assert_eq!(spec.failure_threshold, 3);
        assert_eq!(spec.period, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn http_probe_reads_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for code in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.0 {code}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let action = ProbeAction::Http {
            addr,
            path: "/".into(),
        };
        assert!(run_once(&action, Duration::from_secs(5)).await);
        assert!(!run_once(&action, Duration::from_secs(5)).await);
    }
}
