//! Reading manifests without an apiserver: the examples, the seed's defaults, and
//! errors that name the field and say what to fix.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use riskpipe_crds::{
    GeneratorSource, JobState, ManifestError, RiskPipeline, Sink, Source, StartupMode, Storage,
    UpgradeMode, from_yaml,
};
use support::example_text;

#[test]
fn minimal_example_gets_the_seed_defaults() {
    let p = from_yaml(&example_text("minimal")).expect("minimal parses");
    p.spec.validate().expect("minimal is valid");
    let s = &p.spec;

    let Some(Source::Kafka(kafka)) = s.source.kind() else {
        panic!("kafka source expected");
    };
    assert_eq!(kafka.bootstrap_servers, "localhost:9092");
    assert_eq!(kafka.topic, "financial-transactions");
    assert_eq!(kafka.group_id_or("payments"), "payments");
    assert_eq!(kafka.startup_mode, StartupMode::Latest);
    assert_eq!(kafka.max_batch_size, 1000);
    assert_eq!(kafka.max_batch_delay.millis(), 20);

    assert_eq!(s.parallelism, 1);
    assert_eq!(s.time_zone, "UTC");
    assert_eq!(s.job.state, JobState::Running);
    assert_eq!(s.job.upgrade_mode, UpgradeMode::Savepoint);

    let users = s.dimensions.users.settings();
    assert_eq!(
        (users.table, users.max_rows, users.ttl.as_secs()),
        ("user_risk_profiles", 100_000, 1800)
    );
    let merchants = s.dimensions.merchants.settings();
    assert_eq!(
        (merchants.table, merchants.max_rows, merchants.ttl.as_secs()),
        ("merchant_risk_profiles", 50_000, 3600)
    );
    assert_eq!(
        s.dimensions.history.settings().table,
        "transaction_history_summary"
    );

    let r = &s.rules;
    assert_eq!(r.scoring.max_single_amount_multiplier, 2.0);
    assert_eq!(r.scoring.avg_daily_high_multiplier, 10.0);
    assert_eq!(r.scoring.avg_daily_medium_multiplier, 5.0);
    assert_eq!(
        (
            r.scoring.extreme_amount_score,
            r.scoring.high_amount_score,
            r.scoring.medium_amount_score
        ),
        (50, 30, 20)
    );
    assert_eq!(
        (r.scoring.night_start_hour, r.scoring.night_end_hour),
        (2, 5)
    );
    assert_eq!((r.scoring.night_score, r.scoring.off_hours_score), (15, 10));
    assert_eq!(r.windows.short_window.secs(), 3600);
    assert_eq!(r.windows.distinct_window.secs(), 86_400);
    assert_eq!(r.windows.small_amount_limit, 100.0);
    assert_eq!(r.windows.small_amount_run, 3);
    assert_eq!(r.history.high_frequency_multiplier, 3.0);
    assert_eq!(r.history.medium_frequency_multiplier, 2.0);
    assert_eq!(r.history.extreme_amount_multiplier, 2.0);
    assert_eq!(r.history.high_amount_multiplier, 10.0);
    assert_eq!(r.history.deviation_ratio, 5.0);
    assert_eq!(
        (r.access.max_distinct_ips, r.access.max_distinct_devices),
        (5, 3)
    );
    assert_eq!(
        (
            r.decision.reject_score,
            r.decision.review_score,
            r.decision.delay_score
        ),
        (100, 70, 50)
    );
    assert_eq!(r.geo.high_risk_locations, ["高風險國家1", "高風險國家2"]);

    assert!(s.ml.enabled);
    assert_eq!(s.ml.user_window.secs(), 30 * 86_400);
    assert_eq!(s.ml.merchant_window.secs(), 7 * 86_400);
    assert_eq!(
        (
            s.ml.high_risk_probability,
            s.ml.medium_risk_probability,
            s.ml.low_risk_probability
        ),
        (0.8, 0.6, 0.3)
    );

    let m = &s.monitoring;
    assert_eq!(
        (
            m.window.secs(),
            m.health_window.secs(),
            m.watermark_delay.secs(),
            m.idle_timeout.secs()
        ),
        (60, 300, 10, 30)
    );
    assert_eq!(
        (
            m.alerts.critical_rejection_rate,
            m.alerts.high_rejection_rate,
            m.alerts.medium_rejection_rate
        ),
        (0.3, 0.2, 0.1)
    );
    assert_eq!(
        (
            m.alerts.critical_latency_ms,
            m.alerts.high_latency_ms,
            m.alerts.medium_latency_ms
        ),
        (5000, 3000, 1000)
    );
    assert_eq!(m.alerts.high_risk_ratio, 0.3);

    let topics: Vec<&str> = [
        Some(&s.sinks.decisions),
        s.sinks.dead_letters.as_ref(),
        s.sinks.alerts.as_ref(),
        s.sinks.audit.as_ref(),
    ]
    .into_iter()
    .map(|sink| match sink.and_then(|k| k.kind()) {
        Some(Sink::Kafka(k)) => k.topic.as_str(),
        other => panic!("kafka sink expected, got {other:?}"),
    })
    .collect();
    assert_eq!(
        topics,
        [
            "risk-decisions",
            "risk-dead-letters",
            "risk-alerts",
            "risk-audit"
        ]
    );

    assert_eq!(s.checkpoints.interval.secs(), 60);
    assert_eq!(s.checkpoints.min_pause.secs(), 30);
    assert_eq!(
        s.checkpoints.storage.kind(),
        Some(Storage::Path("/var/lib/riskpipe/checkpoints"))
    );
    assert_eq!(s.checkpoints.retain, 3);
    assert_eq!(s.savepoints.max_count, 10);
    assert_eq!(s.savepoints.max_age.secs(), 7 * 86_400);
    assert!(s.savepoints.schedule.is_none());
    assert!(!s.autoscaler.enabled);
    assert_eq!(
        (s.autoscaler.min_replicas, s.autoscaler.max_replicas),
        (1, 8)
    );
    assert_eq!(s.restart_policy.error_rate_threshold, 0.05);
    assert_eq!(s.restart_policy.max_restarts, 3);
    assert_eq!(s.state.volume_size.0, "10Gi");
}

#[test]
fn full_example_parses_validates_and_round_trips() {
    let p =
        RiskPipeline::from_yaml_validated(&example_text("full")).expect("full example is valid");
    assert_eq!(p.spec.parallelism, 4);
    assert_eq!(p.spec.time_zone, "Asia/Taipei");
    let Some(Source::Kafka(kafka)) = p.spec.source.kind() else {
        panic!("kafka source expected");
    };
    assert_eq!(kafka.startup_timestamp, Some(1_735_689_600_000));
    assert!(
        matches!(p.spec.checkpoints.storage.kind(), Some(Storage::S3(s3)) if s3.bucket == "risk-state")
    );
    assert_eq!(
        p.spec.savepoints.schedule.as_ref().map(|d| d.secs()),
        Some(6 * 3600)
    );
    assert_eq!(p.spec.ml.model.as_ref().map(|m| m.weights.len()), Some(3));

    let yaml = yaml_serde::to_string(&p).expect("serialises");
    let again = RiskPipeline::from_yaml(&yaml).expect("round trip parses");
    assert_eq!(again, p);
}

#[test]
fn generator_source_alone_is_enough() {
    let text = "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata: {name: demo}\nspec:\n  source:\n    generator: {count: 10}\n";
    let p = from_yaml(text).expect("parses");
    let Some(Source::Generator(g)) = p.spec.source.kind() else {
        panic!("generator expected");
    };
    assert_eq!(
        g,
        &GeneratorSource {
            count: 10,
            ..GeneratorSource::default()
        }
    );
    assert_eq!(
        (g.users, g.merchants, g.seed, g.fraud_ratio),
        (1_000_000, 10_000, 42, 0.02)
    );
    p.spec.validate().expect("valid");
}

fn with_spec(spec: &str) -> String {
    format!(
        "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: p\nspec:\n{spec}"
    )
}

fn parse_error(text: &str) -> String {
    from_yaml(text).expect_err("should not parse").to_string()
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let msg = parse_error(&with_spec(
        "  source: {kafka: {}}\n  rules:\n    decision:\n      rejectScor: 90\n",
    ));
    assert!(msg.contains("spec.rules.decision"), "{msg}");
    assert!(msg.contains("unknown field `rejectScor`"), "{msg}");
    assert!(
        msg.contains("rejectScore"),
        "should list the expected fields: {msg}"
    );
}

#[test]
fn bad_duration_is_named_with_its_path() {
    let msg = parse_error(&with_spec(
        "  source: {kafka: {}}\n  checkpoints:\n    interval: 1 minute\n",
    ));
    assert!(msg.contains("spec.checkpoints.interval"), "{msg}");
    assert!(msg.contains("invalid duration \"1 minute\""), "{msg}");
}

#[test]
fn broken_yaml_and_other_shapes_are_reported() {
    let err = from_yaml("apiVersion: riskpipe.io/v1alpha1\nspec: {source: [\n").unwrap_err();
    assert!(err.to_string().contains("line 3 column 1"), "{err}");
    let err = from_yaml("- a list\n").unwrap_err();
    assert!(
        err.to_string().starts_with("cannot read the manifest"),
        "{err}"
    );
    let err = from_yaml("").unwrap_err();
    assert!(
        err.to_string().starts_with("apiVersion is missing"),
        "{err}"
    );
}

#[test]
fn missing_source_is_reported() {
    let msg = parse_error(&with_spec("  parallelism: 2\n"));
    assert!(msg.contains("missing field `source`"), "{msg}");
}

#[test]
fn wrong_api_version_kind_or_name() {
    let text = example_text("minimal");
    let err = from_yaml(&text.replace("riskpipe.io/v1alpha1", "riskpipe.io/v1")).unwrap_err();
    assert!(
        matches!(err, ManifestError::ApiVersion { ref found } if found == "riskpipe.io/v1"),
        "{err}"
    );
    let err = from_yaml(&text.replace("kind: RiskPipeline", "kind: Deployment")).unwrap_err();
    assert!(matches!(err, ManifestError::Kind { .. }), "{err}");
    let err = from_yaml(&text.replace("name: payments", "labels: {}")).unwrap_err();
    assert!(matches!(err, ManifestError::MissingName), "{err}");
}

#[test]
fn validate_reports_every_problem_with_its_field() {
    let text = with_spec(concat!(
        "  source: {kafka: {topic: 'bad topic'}}\n",
        "  timeZone: Mars/Olympus_Mons\n",
        "  rules:\n",
        "    windows: {smallAmountLimit: -1, shortWindow: 0s}\n",
        "    scoring: {maxSingleAmountMultiplier: .nan}\n",
        "  state: {volumeSize: lots}\n",
        "  secrets: {hmacKeyRef: {name: keys, key: ''}}\n",
    ));
    let err = RiskPipeline::from_yaml_validated(&text).expect_err("invalid");
    let ManifestError::Invalid(errors) = &err else {
        panic!("validation errors expected, got {err}");
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for field in [
        "spec.source.kafka.topic",
        "spec.timeZone",
        "spec.rules.windows.smallAmountLimit",
        "spec.rules.windows.shortWindow",
        "spec.rules.scoring.maxSingleAmountMultiplier",
        "spec.state.volumeSize",
        "spec.secrets.hmacKeyRef.key",
    ] {
        assert!(fields.contains(&field), "{field} not reported: {err}");
    }
    let text = err.to_string();
    assert!(
        text.contains("spec.timeZone: unknown time zone \"Mars/Olympus_Mons\""),
        "{text}"
    );
    assert!(text.contains("7 problem(s)"), "{text}");
}
