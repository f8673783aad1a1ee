//! Prometheus metrics of the reconciles (count, failures by kind, durations) and the
//! HTTP endpoint that serves them with the health probes.

use std::{sync::Arc, time::Instant};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio_util::sync::CancellationToken;

/// Label of a failed reconcile: what kind of step failed (a bounded set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

/// The operator's metrics; cheap to clone, shared by every reconcile.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Counter,
    failures: Family<ErrorLabels, Counter>,
    invalid: Counter,
    duration: Histogram,
    leader: Gauge,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let invalid = Counter::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let leader = Gauge::default();
        let mut registry = Registry::with_prefix("riskpipe_operator");
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind",
            failures.clone(),
        );
        registry.register(
            "invalid_specs",
            "Reconciles that found an invalid spec",
            invalid.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of a reconcile",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            reconciles,
            failures,
            invalid,
            duration,
            leader,
            registry: Arc::new(registry),
        }
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned guard drops.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Counts a failed reconcile of `kind`.
    pub fn reconcile_failed(&self, kind: &'static str) {
        self.failures.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// Counts an invalid spec.
    pub fn invalid_spec(&self) {
        self.invalid.inc();
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics(State(m): State<Metrics>) -> impl IntoResponse {
    match m.render() {
        Ok(text) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown`.
pub async fn serve(
    addr: std::net::SocketAddr,
    m: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(m);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_failures_by_kind_and_durations() {
        let m = Metrics::default();
        drop(m.reconcile_timer());
        m.reconcile_failed("apply");
        m.reconcile_failed("apply");
        m.set_leader(true);
        let text = m.render().unwrap();
        assert!(
            text.contains("riskpipe_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("riskpipe_operator_reconcile_errors_total{kind=\"apply\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("riskpipe_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("riskpipe_operator_leader 1"), "{text}");
    }
}
