//! Prometheus metrics of the reconciles (count, failures by kind, durations) and the
//! HTTP endpoint that serves them with the health probes.

use std::{sync::Arc, time::Instant};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use riskpipe_crds::{RiskPipelineStatus, status::condition_types as ct};
use tokio_util::sync::CancellationToken;

/// Label of a failed reconcile: what kind of step failed (a bounded set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

/// A pipeline (bounded by the pipelines that exist; removed when one is deleted).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    namespace: String,
    pipeline: String,
}

/// One condition type of a pipeline (the CRD's five types).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    namespace: String,
    pipeline: String,
    condition: String,
}

/// An Event the operator published about a pipeline (bounded: the operator's
/// CamelCase reasons).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    namespace: String,
    pipeline: String,
    reason: &'static str,
    #[prometheus(flatten)]
    kind: EventKind,
}

/// Normal or Warning.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventKind {
    r#type: &'static str,
}

/// The condition types a pipeline's gauges are kept for.
const CONDITION_TYPES: [&str; 5] = [
    ct::READY,
    ct::PROGRESSING,
    ct::DEGRADED,
    ct::SCALING,
    ct::CHECKPOINT_HEALTHY,
];

/// What the operator knows of each pipeline, from the status it writes.
#[derive(Clone, Default)]
struct PipelineMetrics {
    conditions: Family<ConditionLabels, Gauge>,
    replicas: Family<PipelineLabels, Gauge>,
    ready_replicas: Family<PipelineLabels, Gauge>,
    checkpoint_time: Family<PipelineLabels, Gauge>,
    events: Family<EventLabels, Counter>,
}

/// The operator's metrics; cheap to clone, shared by every reconcile.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Counter,
    failures: Family<ErrorLabels, Counter>,
    invalid: Counter,
    duration: Histogram,
    leader: Gauge,
    pipelines: PipelineMetrics,
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
        let pipelines = PipelineMetrics::default();
        registry.register(
            "pipeline_condition",
            "1 while the pipeline's condition (Ready, Degraded, Scaling, ...) is True",
            pipelines.conditions.clone(),
        );
        registry.register(
            "pipeline_replicas",
            "Workers the pipeline's StatefulSet asks for",
            pipelines.replicas.clone(),
        );
        registry.register(
            "pipeline_ready_replicas",
            "Workers ready",
            pipelines.ready_replicas.clone(),
        );
        registry.register(
            "pipeline_checkpoint_timestamp_seconds",
            "Unix time of the pipeline's last completed checkpoint (as in its status)",
            pipelines.checkpoint_time.clone(),
        );
        registry.register(
            "events",
            "Events published about a pipeline, by reason (Scaled, Restarted, SavepointFailed, ...)",
            pipelines.events.clone(),
        );
        Self {
            reconciles,
            failures,
            invalid,
            duration,
            leader,
            pipelines,
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

    /// Records the status just written for pipeline `namespace/name`.
    pub fn pipeline_status(&self, namespace: &str, name: &str, status: &RiskPipelineStatus) {
        let p = &self.pipelines;
        let at = pipeline(namespace, name);
        for c in &status.conditions {
            p.conditions
                .get_or_create(&ConditionLabels {
                    namespace: namespace.to_owned(),
                    pipeline: name.to_owned(),
                    condition: c.type_.clone(),
                })
                .set(i64::from(c.status == "True"));
        }
        p.replicas
            .get_or_create(&at)
            .set(i64::from(status.replicas));
        p.ready_replicas
            .get_or_create(&at)
            .set(i64::from(status.ready_replicas));
        if let Some(c) = &status.last_checkpoint {
            p.checkpoint_time
                .get_or_create(&at)
                .set(c.completed_at.0.as_second());
        }
    }

    /// Counts an Event published about pipeline `namespace/name`.
    pub fn event(&self, namespace: &str, name: &str, reason: &'static str, warning: bool) {
        self.pipelines
            .events
            .get_or_create(&EventLabels {
                namespace: namespace.to_owned(),
                pipeline: name.to_owned(),
                reason,
                kind: EventKind {
                    r#type: if warning { "Warning" } else { "Normal" },
                },
            })
            .inc();
    }

    /// Drops the gauges of a deleted pipeline (its Event counts stay until the
    /// operator restarts, so an increase over the deletion still shows).
    pub fn forget_pipeline(&self, namespace: &str, name: &str) {
        let p = &self.pipelines;
        let at = pipeline(namespace, name);
        p.replicas.remove(&at);
        p.ready_replicas.remove(&at);
        p.checkpoint_time.remove(&at);
        for condition in CONDITION_TYPES {
            p.conditions.remove(&ConditionLabels {
                namespace: namespace.to_owned(),
                pipeline: name.to_owned(),
                condition: condition.to_owned(),
            });
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn pipeline(namespace: &str, name: &str) -> PipelineLabels {
    PipelineLabels {
        namespace: namespace.to_owned(),
        pipeline: name.to_owned(),
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

    #[test]
    fn renders_pipeline_conditions_and_events_and_forgets_a_deleted_pipeline() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let m = Metrics::default();
        let at = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let cond = |t: &str, s: &str| Condition {
            type_: t.into(),
            status: s.into(),
            reason: "R".into(),
            message: String::new(),
            last_transition_time: at.clone(),
            observed_generation: None,
        };
        let status = RiskPipelineStatus {
            conditions: vec![cond("Ready", "True"), cond("Degraded", "False")],
            replicas: 3,
            ready_replicas: 2,
            ..Default::default()
        };
        m.pipeline_status("risk", "payments", &status);
        m.event("risk", "payments", "Scaled", false);
        m.event("risk", "payments", "SavepointFailed", true);
        let text = m.render().unwrap();
        for line in [
            r#"riskpipe_operator_pipeline_condition{namespace="risk",pipeline="payments",condition="Ready"} 1"#,
            r#"riskpipe_operator_pipeline_condition{namespace="risk",pipeline="payments",condition="Degraded"} 0"#,
            r#"riskpipe_operator_pipeline_replicas{namespace="risk",pipeline="payments"} 3"#,
            r#"riskpipe_operator_pipeline_ready_replicas{namespace="risk",pipeline="payments"} 2"#,
            r#"riskpipe_operator_events_total{namespace="risk",pipeline="payments",reason="Scaled",type="Normal"} 1"#,
            r#"riskpipe_operator_events_total{namespace="risk",pipeline="payments",reason="SavepointFailed",type="Warning"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        m.forget_pipeline("risk", "payments");
        let text = m.render().unwrap();
        assert!(!text.contains("pipeline_condition{"), "{text}");
        assert!(!text.contains("pipeline_replicas{"), "{text}");
        assert!(text.contains("reason=\"Scaled\""), "{text}");
    }
}
