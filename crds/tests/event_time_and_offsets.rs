//! `spec.rules.windows.maxFutureSkew` and `spec.source.kafka.onOffsetOutOfRange`:
//! their defaults, what a manifest may write, and how a bad value is reported.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use riskpipe_crds::{ManifestError, OffsetOutOfRangePolicy, RiskPipeline, Source, from_yaml};
use support::{committed_schema, example_text};

fn with_spec(spec: &str) -> String {
    format!(
        "apiVersion: riskpipe.io/v1alpha1\nkind: RiskPipeline\nmetadata:\n  name: p\nspec:\n{spec}"
    )
}

fn kafka_policy(p: &RiskPipeline) -> OffsetOutOfRangePolicy {
    match p.spec.source.kind() {
        Some(Source::Kafka(k)) => k.on_offset_out_of_range,
        other => panic!("kafka source expected, got {other:?}"),
    }
}

#[test]
fn defaults_are_five_minutes_and_fail() {
    let p = from_yaml(&example_text("minimal")).expect("minimal parses");
    assert_eq!(p.spec.rules.windows.max_future_skew.millis(), 5 * 60_000);
    assert_eq!(p.spec.rules.windows.max_future_skew.as_str(), "5m");
    assert_eq!(kafka_policy(&p), OffsetOutOfRangePolicy::Fail);
    assert_eq!(
        OffsetOutOfRangePolicy::default(),
        OffsetOutOfRangePolicy::Fail
    );
}

#[test]
fn the_full_example_writes_both() {
    let p = RiskPipeline::from_yaml_validated(&example_text("full")).expect("full is valid");
    assert_eq!(p.spec.rules.windows.max_future_skew.as_str(), "5m");
    assert_eq!(kafka_policy(&p), OffsetOutOfRangePolicy::Fail);
}

#[test]
fn each_policy_parses_and_round_trips() {
    for (text, policy) in [
        ("fail", OffsetOutOfRangePolicy::Fail),
        ("earliest", OffsetOutOfRangePolicy::Earliest),
        ("latest", OffsetOutOfRangePolicy::Latest),
    ] {
        let p = RiskPipeline::from_yaml_validated(&with_spec(&format!(
            "  source: {{kafka: {{onOffsetOutOfRange: {text}}}}}\n"
        )))
        .expect("valid");
        assert_eq!(kafka_policy(&p), policy);
        let yaml = yaml_serde::to_string(&p).expect("serialises");
        assert!(
            yaml.contains(&format!("onOffsetOutOfRange: {text}")),
            "{yaml}"
        );
        assert_eq!(RiskPipeline::from_yaml(&yaml).expect("parses"), p);
    }
}

#[test]
fn an_unknown_policy_is_named_with_its_path() {
    let msg = from_yaml(&with_spec(
        "  source: {kafka: {onOffsetOutOfRange: skip}}\n",
    ))
    .expect_err("refused")
    .to_string();
    assert!(
        msg.contains("spec.source.kafka.onOffsetOutOfRange"),
        "{msg}"
    );
    assert!(msg.contains("earliest"), "should list the variants: {msg}");
}

#[test]
fn a_custom_skew_is_read_and_zero_is_refused() {
    let p = RiskPipeline::from_yaml_validated(&with_spec(
        "  source: {kafka: {}}\n  rules: {windows: {maxFutureSkew: 90s}}\n",
    ))
    .expect("valid");
    assert_eq!(p.spec.rules.windows.max_future_skew.millis(), 90_000);

    let err = RiskPipeline::from_yaml_validated(&with_spec(
        "  source: {kafka: {}}\n  rules: {windows: {maxFutureSkew: 0s}}\n",
    ))
    .expect_err("zero refused");
    let ManifestError::Invalid(errors) = &err else {
        panic!("validation errors expected, got {err}");
    };
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(errors[0].field, "spec.rules.windows.maxFutureSkew");

    let msg = from_yaml(&with_spec(
        "  source: {kafka: {}}\n  rules: {windows: {maxFutureSkew: 5 minutes}}\n",
    ))
    .expect_err("bad text refused")
    .to_string();
    assert!(msg.contains("spec.rules.windows.maxFutureSkew"), "{msg}");
}

#[test]
fn the_schema_documents_and_defaults_both() {
    let schema = committed_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let skew = &spec["rules"]["properties"]["windows"]["properties"]["maxFutureSkew"];
    assert_eq!(skew["type"], "string");
    assert!(
        skew["description"]
            .as_str()
            .is_some_and(|d| d.contains("dead letter"))
    );
    let policy = &spec["source"]["properties"]["kafka"]["properties"]["onOffsetOutOfRange"];
    assert_eq!(
        policy["enum"],
        serde_json::json!(["fail", "earliest", "latest"])
    );
    assert_eq!(policy["default"], "fail");
    assert_eq!(spec["rules"]["default"]["windows"]["maxFutureSkew"], "5m");
}
