use k8s_openapi::jiff::Timestamp;
use riskpipe_crds::{PipelineState, RiskPipelineSpec, RiskPipelineStatus, SourceSpec};

use super::*;
use crate::lifecycle::Decision;

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

/// A `/status` body exactly as the worker writes it (worker/src/http.rs).
fn worker(ordinal: i32, rate: f64, errors: f64, checkpoint_ms: Option<i64>) -> WorkerStatus {
    let checkpoint = checkpoint_ms.map_or(serde_json::Value::Null, |ms| {
        serde_json::json!({"id": format!("chk-{:06}", ms / 1000), "path": format!("/ck/chk-{ms}"), "timestampMs": ms, "durationMs": 40, "sizeBytes": 1024})
    });
    serde_json::from_value(serde_json::json!({
        "pipeline": "payments", "ordinal": ordinal, "replicas": 2, "ownedPartitions": [ordinal],
        "recordsPerSecond": rate, "busyRatio": 0.5, "lagRecords": 10, "lagSeconds": f64::from(ordinal),
        "errorRate": errors, "lastCheckpoint": checkpoint, "state": "running"
    }))
    .unwrap()
}

fn decision(state: PipelineState) -> Decision {
    Decision {
        plan: None,
        rollout: None,
        savepoints: Vec::new(),
        disposed: Vec::new(),
        trigger: None,
        last_nonce: None,
        notes: Vec::new(),
        state,
        stuck: None,
        ops: Default::default(),
    }
}

fn running_workload(ready: i32) -> Workload {
    Workload {
        hash: Some("h".into()),
        parallelism: Some(2),
        restore_from: None,
        spec_replicas: 2,
        replicas: 2,
        ready_replicas: ready,
        rolled_out: true,
    }
}

fn compose_with(
    d: &Decision,
    workers: &[WorkerStatus],
    previous: &RiskPipelineStatus,
) -> RiskPipelineStatus {
    let mut spec = RiskPipelineSpec::with_source(SourceSpec::kafka());
    spec.parallelism = 2;
    let w = running_workload(2);
    compose(&Input {
        generation: 3,
        spec: &spec,
        previous,
        selector: "sel".into(),
        decision: d,
        workload: Some(&w),
        workers,
        partitions: Some(4),
        now: now(),
    })
}

fn cond<'a>(
    s: &'a RiskPipelineStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    crate::conditions::find(&s.conditions, t).unwrap()
}

#[test]
fn figures_add_rates_weight_errors_and_take_the_worst_lag() {
    let m = aggregate(
        &[worker(0, 100.0, 0.0, None), worker(1, 300.0, 0.1, None)],
        now(),
    )
    .unwrap();
    assert_eq!(m.records_per_second, 400.0);
    assert_eq!(m.lag_records, 20);
    assert_eq!(m.lag_seconds, 1.0);
    assert!((m.error_rate - 0.075).abs() < 1e-9, "{}", m.error_rate);
    assert!(aggregate(&[], now()).is_none());
}

#[test]
fn the_common_checkpoint_is_the_oldest_latest_one_and_needs_every_worker() {
    let ms = now().as_millisecond();
    let c = common_checkpoint(&[
        worker(0, 1.0, 0.0, Some(ms)),
        worker(1, 1.0, 0.0, Some(ms - 60_000)),
    ])
    .unwrap();
    assert_eq!(c.completed_at.0.as_millisecond(), ms - 60_000);
    assert_eq!(
        c.id,
        (ms - 60_000) / 1000,
        "the number of a chk-NNNNNN folder"
    );
    assert!(
        common_checkpoint(&[worker(0, 1.0, 0.0, Some(ms)), worker(1, 1.0, 0.0, None)]).is_none()
    );
}

#[test]
fn running_pipeline_is_ready_with_scale_fields_and_healthy_checkpoints() {
    let ms = now().as_millisecond();
    let workers = [
        worker(0, 10.0, 0.0, Some(ms - 1000)),
        worker(1, 10.0, 0.0, Some(ms - 2000)),
    ];
    let s = compose_with(
        &decision(PipelineState::Running),
        &workers,
        &RiskPipelineStatus::default(),
    );
    assert_eq!(
        (s.replicas, s.ready_replicas, s.selector.as_deref()),
        (2, 2, Some("sel"))
    );
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "Progressing").status, "False");
    assert_eq!(cond(&s, "Degraded").status, "False");
    assert_eq!(cond(&s, "CheckpointHealthy").status, "True");
}

#[test]
fn high_error_rate_is_degraded_and_names_the_threshold() {
    let s = compose_with(
        &decision(PipelineState::Running),
        &[worker(0, 10.0, 0.5, None)],
        &RiskPipelineStatus::default(),
    );
    let d = cond(&s, "Degraded");
    assert_eq!(
        (d.status.as_str(), d.reason.as_str()),
        ("True", "HighErrorRate")
    );
    assert!(d.message.contains("errorRateThreshold"), "{}", d.message);
}

#[test]
fn invalid_keeps_everything_else_and_transition_times_survive() {
    let first = compose_with(
        &decision(PipelineState::Running),
        &[],
        &RiskPipelineStatus::default(),
    );
    let bad = invalid(
        &first,
        4,
        "Fix: x",
        "sel".into(),
        Timestamp::from_second(1_700_000_100).unwrap(),
    );
    assert_eq!(cond(&bad, "Ready").reason, "InvalidSpec");
    assert_eq!(bad.observed_generation, Some(4));
    assert_eq!(bad.replicas, first.replicas);
    // Degraded did not change: its transition time is the first one.
    assert_eq!(
        cond(&bad, "Degraded").last_transition_time,
        cond(&first, "Degraded").last_transition_time
    );
    assert_ne!(
        cond(&bad, "Ready").last_transition_time,
        cond(&first, "Ready").last_transition_time
    );
}

#[test]
fn a_stopped_partition_degrades_the_pipeline_with_what_to_do() {
    let mut w = worker(0, 100.0, 0.0, Some(1_700_000_000_000));
    w.partitions = vec![riskpipe_contract::status::PartitionStatus {
        partition: 3,
        next_offset: Some(10),
        start_source: Some("local".into()),
        stopped: Some(
            "partition 3: offsets 10..500 are no longer in the topic; restore a savepoint".into(),
        ),
        offset_out_of_range: None,
    }];
    let s = compose_with(
        &decision(PipelineState::Running),
        &[w, worker(1, 100.0, 0.0, Some(1_700_000_000_000))],
        &RiskPipelineStatus::default(),
    );
    let c = cond(&s, "Degraded");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "PartitionsStopped")
    );
    assert!(
        c.message.contains("(3)") && c.message.contains("restore a savepoint"),
        "{}",
        c.message
    );
    let healthy = compose_with(
        &decision(PipelineState::Running),
        &[worker(0, 100.0, 0.0, None)],
        &RiskPipelineStatus::default(),
    );
    assert_eq!(cond(&healthy, "Degraded").reason, "Healthy");
}

#[test]
fn an_unavailable_dimension_table_degrades_the_pipeline_naming_it_and_clears() {
    let mut w = worker(0, 100.0, 0.0, Some(1_700_000_000_000));
    w.dimensions_unavailable = vec![riskpipe_contract::DimensionOutage {
        table: "user_risk_profiles".into(),
        error: "pool timed out while waiting for an open connection".into(),
        since_ms: 1_699_999_990_000,
    }];
    let mut w1 = worker(1, 100.0, 0.0, Some(1_700_000_000_000));
    w1.dimensions_unavailable = w.dimensions_unavailable.clone();
    let s = compose_with(
        &decision(PipelineState::Running),
        &[w, w1],
        &RiskPipelineStatus::default(),
    );
    let c = cond(&s, "Degraded");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "DimensionsUnavailable")
    );
    assert!(
        c.message.contains("(user_risk_profiles)")
            && c.message.contains("for 10s")
            && c.message.contains("pool timed out"),
        "{}",
        c.message
    );
    let back = compose_with(
        &decision(PipelineState::Running),
        &[worker(0, 100.0, 0.0, None), worker(1, 100.0, 0.0, None)],
        &s,
    );
    assert_eq!(cond(&back, "Degraded").reason, "Healthy");
}
