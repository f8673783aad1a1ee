//! The CRD's CEL rules, evaluated locally (kube-cel: the `cel` interpreter plus the
//! Kubernetes extension libraries, walking the schema as the apiserver does) against
//! good and bad objects. Every rule in the committed CRD must reject at least one
//! bad object here, and `validate()` must reject the same objects.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use kube_cel::{Validator, compile_schema};
use riskpipe_crds::RiskPipeline;
use serde_json::{Value, json};
use support::{committed_schema, example_json, remove, set};

/// A change to the full example.
type Edit = fn(&mut Value);

/// An edit of the full example that breaks one rule.
struct Bad {
    name: &'static str,
    edit: Edit,
    /// A fragment of the expected CEL message.
    message: &'static str,
    /// The field `validate()` must name.
    field: &'static str,
}

fn bad_cases() -> Vec<Bad> {
    vec![
        Bad {
            name: "two source kinds",
            edit: |d| set(d, "/spec/source/generator", json!({})),
            message: "set exactly one of source.kafka",
            field: "spec.source",
        },
        Bad {
            name: "no source kind",
            edit: |d| set(d, "/spec/source", json!({})),
            message: "set exactly one of source.kafka",
            field: "spec.source",
        },
        Bad {
            name: "timestamp mode without a timestamp",
            edit: |d| remove(d, "/spec/source/kafka/startupTimestamp"),
            message: "startupTimestamp",
            field: "spec.source.kafka.startupTimestamp",
        },
        Bad {
            name: "a timestamp with latest",
            edit: |d| set(d, "/spec/source/kafka/startupMode", json!("latest")),
            message: "startupTimestamp",
            field: "spec.source.kafka.startupTimestamp",
        },
        Bad {
            name: "reject not above review",
            edit: |d| set(d, "/spec/rules/decision/rejectScore", json!(70)),
            message: "rejectScore must be greater than reviewScore",
            field: "spec.rules.decision.rejectScore",
        },
        Bad {
            name: "review not above delay",
            edit: |d| set(d, "/spec/rules/decision/delayScore", json!(80)),
            message: "reviewScore must be greater than delayScore",
            field: "spec.rules.decision.reviewScore",
        },
        Bad {
            name: "night window backwards",
            edit: |d| set(d, "/spec/rules/scoring/nightStartHour", json!(22)),
            message: "nightEndHour must not be before nightStartHour",
            field: "spec.rules.scoring.nightEndHour",
        },
        Bad {
            name: "medium daily multiplier above high",
            edit: |d| {
                set(
                    d,
                    "/spec/rules/scoring/avgDailyMediumMultiplier",
                    json!(12.5),
                )
            },
            message: "avgDailyMediumMultiplier must not exceed",
            field: "spec.rules.scoring.avgDailyMediumMultiplier",
        },
        Bad {
            name: "medium frequency multiplier above high",
            edit: |d| {
                set(
                    d,
                    "/spec/rules/history/mediumFrequencyMultiplier",
                    json!(3.5),
                )
            },
            message: "mediumFrequencyMultiplier must not exceed",
            field: "spec.rules.history.mediumFrequencyMultiplier",
        },
        Bad {
            name: "ML high not above medium",
            edit: |d| set(d, "/spec/ml/highRiskProbability", json!(0.6)),
            message: "highRiskProbability must be greater than mediumRiskProbability",
            field: "spec.ml.highRiskProbability",
        },
        Bad {
            name: "ML medium not above low",
            edit: |d| set(d, "/spec/ml/lowRiskProbability", json!(0.65)),
            message: "mediumRiskProbability must be greater than lowRiskProbability",
            field: "spec.ml.mediumRiskProbability",
        },
        Bad {
            name: "ML weight on an unknown feature",
            edit: |d| set(d, "/spec/ml/model/weights/amount_squared", json!(1.0)),
            message: "weights may only name the features",
            field: "spec.ml.model.weights.amount_squared",
        },
        Bad {
            name: "ML model both an ONNX file and weights",
            edit: |d| {
                set(d, "/spec/ml/model/file", json!("models/tree.onnx"));
                set(d, "/spec/ml/model/intercept", json!(1.0));
            },
            message: "a model is either an ONNX file or logistic weights",
            field: "spec.ml.model.file",
        },
        Bad {
            name: "rejection rates out of order",
            edit: |d| set(d, "/spec/monitoring/alerts/highRejectionRate", json!(0.35)),
            message: "rejection rates must be ordered",
            field: "spec.monitoring.alerts.highRejectionRate",
        },
        Bad {
            name: "latencies out of order",
            edit: |d| set(d, "/spec/monitoring/alerts/mediumLatencyMs", json!(4000)),
            message: "latencies must be ordered",
            field: "spec.monitoring.alerts.highLatencyMs",
        },
        Bad {
            name: "decisions sink with two kinds",
            edit: |d| set(d, "/spec/sinks/decisions/stdout", json!({})),
            message: "set exactly one of kafka, file or stdout",
            field: "spec.sinks.decisions",
        },
        Bad {
            name: "audit sink with no kind",
            edit: |d| set(d, "/spec/sinks/audit", json!({})),
            message: "set exactly one of kafka, file or stdout",
            field: "spec.sinks.audit",
        },
        Bad {
            name: "checkpoint storage with two kinds",
            edit: |d| set(d, "/spec/checkpoints/storage/path", json!("/data")),
            message: "set exactly one of storage.path or storage.s3",
            field: "spec.checkpoints.storage",
        },
        Bad {
            name: "savepoint storage with no kind",
            edit: |d| set(d, "/spec/savepoints/storage", json!({})),
            message: "set exactly one of storage.path or storage.s3",
            field: "spec.savepoints.storage",
        },
        Bad {
            name: "checkpoint pause longer than the interval",
            edit: |d| set(d, "/spec/checkpoints/minPause", json!("2m")),
            message: "minPause must not be longer than interval",
            field: "spec.checkpoints.minPause",
        },
        Bad {
            name: "checkpoint pause in days longer than the interval in hours",
            edit: |d| {
                set(d, "/spec/checkpoints/interval", json!("23h"));
                set(d, "/spec/checkpoints/minPause", json!("1d"));
            },
            message: "minPause must not be longer than interval",
            field: "spec.checkpoints.minPause",
        },
        Bad {
            name: "zero checkpoint interval",
            edit: |d| {
                set(d, "/spec/checkpoints/interval", json!("0s"));
                set(d, "/spec/checkpoints/minPause", json!("0ms"));
            },
            message: "interval must be longer than zero",
            field: "spec.checkpoints.interval",
        },
        Bad {
            name: "autoscaler min above max",
            edit: |d| set(d, "/spec/autoscaler/minReplicas", json!(17)),
            message: "minReplicas must not be greater than maxReplicas",
            field: "spec.autoscaler.minReplicas",
        },
        Bad {
            name: "autoscaler target utilisation zero",
            edit: |d| set(d, "/spec/autoscaler/targetUtilization", json!(0.0)),
            message: "targetUtilization must be greater than 0",
            field: "spec.autoscaler.targetUtilization",
        },
    ]
}

/// Edits of the full example that stay valid (edge cases of the rules).
fn good_cases() -> Vec<(&'static str, Edit)> {
    vec![
        ("full example as is", |_| {}),
        ("pause equal to the interval, in other units", |d| {
            set(d, "/spec/checkpoints/interval", json!("1d"));
            set(d, "/spec/checkpoints/minPause", json!("24h"));
        }),
        ("pause in milliseconds", |d| {
            set(d, "/spec/checkpoints/minPause", json!("500ms"));
        }),
        ("one-hour night window", |d| {
            set(d, "/spec/rules/scoring/nightStartHour", json!(3));
            set(d, "/spec/rules/scoring/nightEndHour", json!(3));
        }),
        ("equal alert levels", |d| {
            set(d, "/spec/monitoring/alerts/highLatencyMs", json!(1000));
        }),
        ("generator source", |d| {
            set(d, "/spec/source", json!({"generator": {"count": 10}}));
        }),
        ("file sinks and stdout", |d| {
            set(
                d,
                "/spec/sinks",
                json!({"decisions": {"stdout": {}}, "deadLetters": {"file": {"path": "dead.jsonl"}}}),
            );
        }),
        ("model without weights", |d| {
            set(d, "/spec/ml/model", json!({"intercept": 0.5}));
        }),
        ("autoscaler with one replica", |d| {
            set(d, "/spec/autoscaler/minReplicas", json!(1));
            set(d, "/spec/autoscaler/maxReplicas", json!(1));
        }),
    ]
}

/// Every `x-kubernetes-validations` rule in the schema.
fn all_rules(node: &Value, out: &mut BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    out.insert(rule["rule"].as_str().expect("rule text").to_owned());
                }
            }
            map.values().for_each(|v| all_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| all_rules(v, out)),
        _ => {}
    }
}

#[test]
fn every_rule_compiles() {
    let compiled = compile_schema(&committed_schema());
    let errors: Vec<String> = compiled
        .compilation_errors()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "CEL rules that do not compile:\n{}",
        errors.join("\n")
    );
}

#[test]
fn examples_and_edge_cases_pass_every_rule() {
    let schema = committed_schema();
    let validator = Validator::new();
    let minimal = example_json("minimal");
    validator
        .validate(&schema, &minimal, None)
        .unwrap_or_else(|e| panic!("minimal example fails CEL: {e:?}"));
    for (name, edit) in good_cases() {
        let mut doc = example_json("full");
        edit(&mut doc);
        if let Err(errors) = validator.validate(&schema, &doc, None) {
            panic!("{name}: CEL rejected a valid object: {errors:?}");
        }
        let pipeline: RiskPipeline = serde_json::from_value(doc).expect("object deserialises");
        if let Err(errors) = pipeline.spec.validate() {
            panic!("{name}: validate() rejected a valid object: {errors:?}");
        }
    }
}

#[test]
fn every_rule_rejects_a_bad_object_and_validate_agrees() {
    let schema = committed_schema();
    let validator = Validator::new();
    let mut failed_rules = BTreeSet::new();
    for case in bad_cases() {
        let mut doc = example_json("full");
        (case.edit)(&mut doc);

        let errors = match validator.validate(&schema, &doc, None) {
            Ok(()) => panic!("{}: CEL accepted a bad object", case.name),
            Err(errors) => errors.into_vec(),
        };
        assert!(
            errors
                .iter()
                .all(|e| e.kind == kube_cel::ErrorKind::ValidationFailure),
            "{}: a rule did not evaluate cleanly: {errors:?}",
            case.name
        );
        assert!(
            errors.iter().any(|e| e.message.contains(case.message)),
            "{}: expected a message containing {:?}, got {errors:?}",
            case.name,
            case.message
        );
        failed_rules.extend(errors.iter().map(|e| e.rule.clone()));

        let pipeline: RiskPipeline = serde_json::from_value(doc).expect("object deserialises");
        let local = pipeline
            .spec
            .validate()
            .expect_err(&format!("{}: validate() accepted a bad object", case.name));
        assert!(
            local.iter().any(|e| e.field == case.field),
            "{}: validate() should name {}, got {local:?}",
            case.name,
            case.field
        );
    }

    let mut rules = BTreeSet::new();
    all_rules(&schema, &mut rules);
    let untested: Vec<&String> = rules.difference(&failed_rules).collect();
    assert!(
        untested.is_empty(),
        "CEL rules no bad case exercises: {untested:#?}"
    );
}
