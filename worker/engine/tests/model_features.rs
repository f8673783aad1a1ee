//! The model features the README defines beyond SPEC §3/§4/§8, the decision
//! rules on `ml_risk_category`, and model files that cannot be served.
// Tests: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use riskpipe_engine::config::CategoryRule;
use riskpipe_engine::dimensions::StaticDimensions;
use riskpipe_engine::model::OnnxModel;
use riskpipe_engine::rules::{FinalDecision, apply_category_rules};
use riskpipe_engine::timefmt::{Zone, parse_time};
use riskpipe_engine::{Cents, Decision, Engine, EngineConfig, MemoryStore, Transaction};

fn tx(id: i64, time: &str, cents: i64, ip: Option<&str>, device: Option<&str>) -> Transaction {
    Transaction {
        transaction_id: id,
        user_id: 1,
        amount: Cents(cents),
        merchant_id: 10,
        transaction_type: None,
        event_time_ms: parse_time(time, Zone::Utc).unwrap(),
        ip_address: ip.map(str::to_owned),
        device_id: device.map(str::to_owned),
        location: None,
    }
}

fn run(txs: &[Transaction]) -> Vec<Decision> {
    let engine = Engine::new(EngineConfig::default());
    let dims = StaticDimensions::default();
    let mut store = MemoryStore::default();
    txs.iter()
        .map(|t| engine.decide(t, &dims, &mut store).unwrap())
        .collect()
}

fn f(d: &Decision, name: &str) -> f32 {
    d.features.get(name).unwrap()
}

#[test]
fn new_device_and_ip_are_within_the_24h_window() {
    let d = run(&[
        tx(1, "2024-01-01 10:00:00", 1000, Some("1.1.1.1"), Some("a")),
        tx(2, "2024-01-01 11:00:00", 1000, Some("1.1.1.1"), Some("b")),
        tx(3, "2024-01-01 12:00:00", 1000, Some("2.2.2.2"), Some("a")),
        // 25 h after the first: device a was last seen 23 h ago, IP 1.1.1.1 24 h ago.
        tx(4, "2024-01-02 11:00:00", 1000, Some("1.1.1.1"), Some("a")),
        tx(5, "2024-01-02 12:00:00", 1000, None, None),
    ]);
    let new: Vec<(f32, f32)> = d
        .iter()
        .map(|d| (f(d, "new_device_24h"), f(d, "new_ip_24h")))
        .collect();
    assert_eq!(new[0], (1.0, 1.0));
    assert_eq!(new[1], (1.0, 0.0));
    assert_eq!(new[2], (0.0, 1.0));
    // 1.1.1.1 was used at 11:00 the day before: exactly 24 h, still in the window
    // (the window includes its start, as distinct_ip_24h does).
    assert_eq!(new[3], (0.0, 0.0));
    assert!(
        new[4].0.is_nan() && new[4].1.is_nan(),
        "no device / IP is null"
    );
}

#[test]
fn amount_relative_to_the_prior_30_day_mean() {
    let d = run(&[
        tx(1, "2024-01-01 10:00:00", 1000, None, None),
        tx(2, "2024-01-02 10:00:00", 3000, None, None),
        tx(3, "2024-01-03 10:00:00", 20000, None, None),
    ]);
    assert!(
        f(&d[0], "amount_to_prior_avg_30d").is_nan(),
        "no prior transaction"
    );
    assert_eq!(f(&d[0], "prior_txn_count_30d"), 0.0);
    assert_eq!(f(&d[1], "amount_to_prior_avg_30d"), 3.0);
    // prior mean (10 + 30) / 2 = 20; 200 / 20 = 10
    assert_eq!(f(&d[2], "amount_to_prior_avg_30d"), 10.0);
    assert_eq!(f(&d[2], "prior_txn_count_30d"), 2.0);
    assert!(f(&d[0], "amount_zscore_30d").is_nan(), "null stddev");
    assert!(f(&d[0], "time_since_last_txn").is_nan());
    assert_eq!(f(&d[1], "time_since_last_txn"), 86_400.0);
}

#[test]
fn category_rules_escalate_and_override_but_never_lift_a_reject() {
    let rules = [
        CategoryRule {
            category: "HIGH_RISK",
            decision: FinalDecision::ManualReview,
            override_rules: false,
        },
        CategoryRule {
            category: "VERY_LOW_RISK",
            decision: FinalDecision::Approve,
            override_rules: true,
        },
    ];
    use FinalDecision::*;
    let cases = [
        (Approve, Some("HIGH_RISK"), ManualReview, true),
        (Reject, Some("HIGH_RISK"), Reject, false),
        (DelayedApproval, Some("VERY_LOW_RISK"), Approve, true),
        (ManualReview, Some("VERY_LOW_RISK"), Approve, true),
        (Reject, Some("VERY_LOW_RISK"), Reject, false),
        (DelayedApproval, Some("LOW_RISK"), DelayedApproval, false),
        (DelayedApproval, None, DelayedApproval, false),
    ];
    for (rules_decision, category, expected, changed) in cases {
        assert_eq!(
            apply_category_rules(rules_decision, category, &rules),
            (expected, changed),
            "{rules_decision:?} {category:?}"
        );
    }
}

#[test]
fn a_file_that_is_not_onnx_is_a_clear_error() {
    for bytes in [&b""[..], b"\xff\xff\xff", b"hello world, not protobuf"] {
        let err = OnnxModel::from_bytes("m", bytes).unwrap_err();
        assert!(err.contains("not a readable ONNX model"), "{err}");
    }
}

#[test]
fn without_a_model_decisions_carry_no_model_fields() {
    let d = run(&[tx(1, "2024-01-01 10:00:00", 1000, None, None)]);
    let json = riskpipe_engine::DecisionWriter::new("p", "v1").to_json(&d[0]);
    assert!(
        !json.contains("ml_model") && !json.contains("shadow_"),
        "{json}"
    );
    assert!(json.contains("\"ml_risk_probability\":"));
}
