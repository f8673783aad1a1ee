//! Table-driven tests of every branch of SPEC.md §3–§6, through the engine.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use riskpipe_engine::dimensions::{HistoryRow, MerchantProfile, StaticDimensions, UserProfile};
use riskpipe_engine::rules::{self, Access, AmountLabel, Blacklist, FinalDecision, Frequency, Geo};
use riskpipe_engine::timefmt::{Zone, parse_time};
use riskpipe_engine::{Cents, Decision, Engine, EngineConfig, MemoryStore, Transaction};

const USER: i64 = 1;
const MERCHANT: i64 = 10;

fn tx(id: i64, time: &str, amount: i64) -> Transaction {
    Transaction {
        transaction_id: id,
        user_id: USER,
        amount: Cents(amount * 100),
        merchant_id: MERCHANT,
        transaction_type: None,
        event_time_ms: parse_time(time, Zone::Utc).unwrap(),
        ip_address: None,
        device_id: None,
        location: None,
    }
}

fn user(risk: i64, level: &str, avg: i64, max: i64) -> UserProfile {
    UserProfile {
        risk_score: Some(risk),
        risk_level: Some(level.to_owned()),
        avg_daily_amount: Some(Cents(avg * 100)),
        max_single_amount: Some(Cents(max * 100)),
        ..UserProfile::default()
    }
}

fn merchant(level: &str, start: u8, end: u8) -> MerchantProfile {
    MerchantProfile {
        risk_level: Some(level.to_owned()),
        business_hours_start: Some(start),
        business_hours_end: Some(end),
        ..MerchantProfile::default()
    }
}

fn decide_one(dims: &StaticDimensions, t: &Transaction) -> Decision {
    let engine = Engine::new(EngineConfig::default());
    engine.decide(t, dims, &mut MemoryStore::default()).unwrap()
}

#[test]
fn amount_anomaly_score_branches() {
    // (amount, avg_daily, max_single, expected)
    let cases = [
        (2001, 100, 1000, 50), // > max × 2
        (2000, 100, 1000, 30), // not > max × 2, > avg × 10
        (1001, 100, 1000, 30),
        (1000, 100, 1000, 20), // = avg × 10 → falls to > avg × 5
        (501, 100, 1000, 20),
        (500, 100, 1000, 0), // = avg × 5
        (10, 100, 1000, 0),
    ];
    for (amount, avg, max, expected) in cases {
        let mut dims = StaticDimensions::default();
        dims.users.insert(USER, user(0, "LOW", avg, max));
        let d = decide_one(&dims, &tx(1, "2024-03-01 12:00:00", amount));
        assert_eq!(d.amount_anomaly_score, expected, "amount {amount}");
    }
}

#[test]
fn missing_profile_and_null_columns_score_nothing() {
    let dims = StaticDimensions::default();
    let d = decide_one(&dims, &tx(1, "2024-03-01 12:00:00", 1_000_000));
    assert_eq!(
        (
            d.base_risk_score,
            d.amount_anomaly_score,
            d.total_risk_score
        ),
        (0, 0, 0)
    );
    assert_eq!(d.user_risk_level, None);
    assert_eq!(d.final_decision, FinalDecision::Approve);

    let mut dims = StaticDimensions::default();
    dims.users.insert(
        USER,
        UserProfile {
            risk_score: None,
            avg_daily_amount: Some(Cents(100)),
            max_single_amount: None,
            ..UserProfile::default()
        },
    );
    // NULL max_single skips the first branch; avg × 10 still applies.
    let d = decide_one(&dims, &tx(1, "2024-03-01 12:00:00", 11));
    assert_eq!((d.base_risk_score, d.amount_anomaly_score), (0, 30));
}

#[test]
fn time_anomaly_score_branches() {
    // (hour, merchant hours, expected)
    type Case<'a> = (&'a str, Option<(u8, u8)>, i64);
    let cases: [Case<'_>; 10] = [
        ("02:00:00", None, 15),
        ("05:59:59", None, 15),
        ("01:59:59", None, 0),
        ("06:00:00", None, 0),
        ("03:00:00", Some((9, 17)), 15), // night wins over business hours
        ("08:00:00", Some((9, 17)), 10),
        ("17:30:00", Some((9, 17)), 0), // whole hours: 17 is inside
        ("18:00:00", Some((9, 17)), 10),
        ("23:00:00", Some((22, 6)), 0), // overnight window wraps midnight
        ("12:00:00", Some((22, 6)), 10),
    ];
    for (time, hours, expected) in cases {
        let mut dims = StaticDimensions::default();
        if let Some((s, e)) = hours {
            dims.merchants.insert(MERCHANT, merchant("LOW", s, e));
        }
        let d = decide_one(&dims, &tx(1, &format!("2024-03-01 {time}"), 10));
        assert_eq!(d.time_anomaly_score, expected, "{time} {hours:?}");
    }
    assert!(rules::hour_in(0, 22, 6) && rules::hour_in(6, 22, 6) && !rules::hour_in(7, 22, 6));
}

#[test]
fn merchant_with_null_hours_scores_no_off_hours() {
    let mut dims = StaticDimensions::default();
    dims.merchants.insert(
        MERCHANT,
        MerchantProfile {
            business_hours_start: Some(9),
            business_hours_end: None,
            ..MerchantProfile::default()
        },
    );
    let d = decide_one(&dims, &tx(1, "2024-03-01 23:00:00", 10));
    assert_eq!(d.time_anomaly_score, 0);
}

#[test]
fn total_is_base_plus_scores() {
    let mut dims = StaticDimensions::default();
    dims.users.insert(USER, user(40, "LOW", 100, 1000));
    dims.merchants.insert(MERCHANT, merchant("LOW", 9, 17));
    let d = decide_one(&dims, &tx(1, "2024-03-01 03:00:00", 2500));
    assert_eq!(d.total_risk_score, 40 + 50 + 15);
    assert_eq!(d.final_decision, FinalDecision::Reject);
}

fn history(count: i64, avg: i64, max: i64) -> HistoryRow {
    HistoryRow {
        transaction_count: Some(count),
        avg_amount: Some(Cents(avg * 100)),
        max_amount: Some(Cents(max * 100)),
        ..HistoryRow::default()
    }
}

#[test]
fn frequency_labels() {
    // The 1h count including this transaction vs the hour's historical count.
    for (txns, hist_count, expected) in [
        (7, 2, Frequency::High),
        (6, 2, Frequency::Medium),
        (5, 2, Frequency::Medium),
        (4, 2, Frequency::Normal),
        (1, 0, Frequency::High),
    ] {
        let mut dims = StaticDimensions::default();
        let date = riskpipe_engine::timefmt::days_from_civil(2024, 3, 1) as i32;
        dims.history
            .insert((USER, date, 12), history(hist_count, 1000, 5000));
        let engine = Engine::new(EngineConfig::default());
        let mut store = MemoryStore::default();
        let mut last = None;
        for i in 0..txns {
            let t = tx(i, &format!("2024-03-01 12:{:02}:00", i), 10);
            last = Some(engine.decide(&t, &dims, &mut store).unwrap());
        }
        let d = last.unwrap();
        assert_eq!(d.txn_count_1h, txns as u32);
        assert_eq!(d.frequency_anomaly, expected, "{txns} vs {hist_count}");
        assert_eq!(d.historical_count, Some(hist_count));
    }
}

#[test]
fn no_history_row_is_normal_everywhere() {
    let d = decide_one(
        &StaticDimensions::default(),
        &tx(1, "2024-03-01 12:00:00", 1_000_000),
    );
    assert_eq!(d.frequency_anomaly, Frequency::Normal);
    assert_eq!(d.amount_anomaly, AmountLabel::Normal);
    assert_eq!(d.historical_avg, None);
}

#[test]
fn amount_labels() {
    // (amount, hist avg, hist max, expected)
    for (amount, avg, max, expected) in [
        (2001, 100, 1000, AmountLabel::Extreme),
        (1001, 100, 1000, AmountLabel::High),
        (601, 100, 2000, AmountLabel::Deviation), // |601-100|/100 = 5.01 > 5
        (600, 100, 2000, AmountLabel::Normal),    // exactly 5
        (0, 0, 0, AmountLabel::Normal),           // avg 0: no deviation, 0 > 0 false
        (50, 100, 2000, AmountLabel::Normal),
    ] {
        let mut dims = StaticDimensions::default();
        let date = riskpipe_engine::timefmt::days_from_civil(2024, 3, 1) as i32;
        dims.history
            .insert((USER, date, 12), history(100, avg, max));
        let d = decide_one(&dims, &tx(1, "2024-03-01 12:00:00", amount));
        assert_eq!(d.amount_anomaly, expected, "amount {amount}");
    }
}

#[test]
fn access_labels_count_distinct_non_null_values() {
    let engine = Engine::new(EngineConfig::default());
    let mut store = MemoryStore::default();
    let dims = StaticDimensions::default();
    let mut last = None;
    for i in 0..7 {
        let mut t = tx(i, &format!("2024-03-01 12:{:02}:00", i), 10);
        t.ip_address = Some(format!("10.0.0.{i}"));
        t.device_id = (i % 2 == 0).then(|| "same".to_owned());
        last = Some(engine.decide(&t, &dims, &mut store).unwrap());
        let d = last.as_ref().unwrap();
        let expected = if i + 1 > 5 {
            Access::MultipleIp
        } else {
            Access::Normal
        };
        assert_eq!(d.access_anomaly, expected, "after {} ips", i + 1);
    }
    let d = last.take().unwrap();
    assert_eq!((d.distinct_ip_24h, d.distinct_device_24h), (7, 1));
    assert_eq!(d.final_decision, FinalDecision::ManualReview);

    let mut store = MemoryStore::default();
    for i in 0..4 {
        let mut t = tx(i, "2024-03-01 12:00:00", 10);
        t.device_id = Some(format!("d{i}"));
        last = Some(engine.decide(&t, &dims, &mut store).unwrap());
    }
    assert_eq!(last.unwrap().access_anomaly, Access::MultipleDevice);
}

#[test]
fn blacklist_precedence_and_effect() {
    let mut dims = StaticDimensions::default();
    dims.blacklist_merchants.insert(MERCHANT);
    let mut t = tx(1, "2024-03-01 12:00:00", 10);
    t.ip_address = Some("1.2.3.4".to_owned());
    dims.blacklist_ips.insert("1.2.3.4".to_owned());
    let d = decide_one(&dims, &t);
    assert_eq!(d.blacklist_status, Blacklist::Merchant);
    assert_eq!(
        d.final_decision,
        FinalDecision::Approve,
        "only a blacklisted user rejects"
    );
    dims.blacklist_merchants.clear();
    assert_eq!(decide_one(&dims, &t).blacklist_status, Blacklist::Ip);
    dims.blacklist_users.insert(USER);
    let d = decide_one(&dims, &t);
    assert_eq!(d.blacklist_status, Blacklist::User);
    assert_eq!(d.final_decision, FinalDecision::Reject);
    assert!(d.reason_codes.contains(&"BLACKLIST_USER"));
}

#[test]
fn geo_risk_with_nulls_and_changes() {
    let engine = Engine::new(EngineConfig::default());
    let dims = StaticDimensions::default();
    let mut store = MemoryStore::default();
    let mut go = |id: i64, time: &str, loc: Option<&str>| {
        let mut t = tx(id, time, 10);
        t.location = loc.map(str::to_owned);
        engine.decide(&t, &dims, &mut store).unwrap().geo_risk
    };
    assert_eq!(go(1, "2024-03-01 12:00:00", Some("Taipei")), Geo::Normal);
    assert_eq!(go(2, "2024-03-01 12:01:00", Some("Taipei")), Geo::Normal);
    assert_eq!(
        go(3, "2024-03-01 12:02:00", Some("Tokyo")),
        Geo::LocationChange
    );
    assert_eq!(go(4, "2024-03-01 12:03:00", None), Geo::Normal);
    // The previous location is NULL: no change can be claimed.
    assert_eq!(go(5, "2024-03-01 12:04:00", Some("Paris")), Geo::Normal);
    assert_eq!(go(6, "2024-03-01 12:05:00", Some("高風險國家1")), Geo::High);
    // Ties in time: the previous transaction is the one with the smaller id.
    assert_eq!(
        go(8, "2024-03-01 12:06:00", Some("Paris")),
        Geo::LocationChange
    );
    assert_eq!(go(7, "2024-03-01 12:06:00", Some("高風險國家1")), Geo::High);
    assert_eq!(go(9, "2024-03-01 12:06:00", Some("Paris")), Geo::Normal);
}

#[test]
fn decision_rule_order() {
    let cfg = EngineConfig::default().decision;
    let base = rules::DecisionInputs {
        total_risk_score: 0,
        blacklist: Blacklist::None,
        user_risk_level: None,
        merchant_risk_level: None,
        frequency: Frequency::Normal,
        amount: AmountLabel::Normal,
        access: Access::Normal,
    };
    let cases = [
        (
            rules::DecisionInputs {
                total_risk_score: 101,
                ..base
            },
            FinalDecision::Reject,
        ),
        (
            rules::DecisionInputs {
                total_risk_score: 100,
                ..base
            },
            FinalDecision::ManualReview,
        ),
        (
            rules::DecisionInputs {
                frequency: Frequency::High,
                amount: AmountLabel::Extreme,
                ..base
            },
            FinalDecision::Reject,
        ),
        (
            rules::DecisionInputs {
                frequency: Frequency::High,
                ..base
            },
            FinalDecision::Approve,
        ),
        (
            rules::DecisionInputs {
                user_risk_level: Some("HIGH"),
                ..base
            },
            FinalDecision::ManualReview,
        ),
        (
            rules::DecisionInputs {
                amount: AmountLabel::High,
                ..base
            },
            FinalDecision::ManualReview,
        ),
        (
            rules::DecisionInputs {
                amount: AmountLabel::Deviation,
                ..base
            },
            FinalDecision::Approve,
        ),
        (
            rules::DecisionInputs {
                access: Access::MultipleDevice,
                ..base
            },
            FinalDecision::ManualReview,
        ),
        (
            rules::DecisionInputs {
                total_risk_score: 70,
                ..base
            },
            FinalDecision::DelayedApproval,
        ),
        (
            rules::DecisionInputs {
                total_risk_score: 51,
                ..base
            },
            FinalDecision::DelayedApproval,
        ),
        (
            rules::DecisionInputs {
                total_risk_score: 50,
                ..base
            },
            FinalDecision::Approve,
        ),
        (
            rules::DecisionInputs {
                merchant_risk_level: Some("HIGH"),
                ..base
            },
            FinalDecision::DelayedApproval,
        ),
        (
            rules::DecisionInputs {
                frequency: Frequency::Medium,
                ..base
            },
            FinalDecision::DelayedApproval,
        ),
        (base, FinalDecision::Approve),
    ];
    for (inputs, expected) in cases {
        assert_eq!(rules::final_decision(&inputs, &cfg), expected, "{inputs:?}");
    }
}

#[test]
fn reasons_follow_the_seed_concat() {
    let cfg = EngineConfig::default().decision;
    let inputs = rules::DecisionInputs {
        total_risk_score: 71,
        blacklist: Blacklist::None,
        user_risk_level: None,
        merchant_risk_level: None,
        frequency: Frequency::Medium,
        amount: AmountLabel::Deviation,
        access: Access::MultipleIp,
    };
    let (text, codes) = rules::reasons(&inputs, &cfg);
    assert_eq!(text, "高風險評分; 金額異常; 頻次異常; 訪問異常");
    assert_eq!(
        codes,
        [
            "HIGH_RISK_SCORE",
            "AMOUNT_ANOMALY",
            "FREQUENCY_ANOMALY",
            "ACCESS_ANOMALY"
        ]
    );
    let quiet = rules::DecisionInputs {
        total_risk_score: 70,
        frequency: Frequency::Normal,
        amount: AmountLabel::Normal,
        access: Access::Normal,
        ..inputs
    };
    assert_eq!(rules::reasons(&quiet, &cfg).0, "");
}

#[test]
fn features_of_a_small_stream() {
    let engine = Engine::new(EngineConfig::default());
    let mut store = MemoryStore::default();
    let dims = StaticDimensions::default();
    let a = engine
        .decide(&tx(1, "2024-03-03 10:00:00.500", 10), &dims, &mut store)
        .unwrap();
    assert_eq!(
        (
            a.time_since_last_txn,
            a.amount_ratio_to_prev,
            a.user_amount_stddev_30d
        ),
        (None, None, None)
    );
    assert_eq!((a.hour_of_day, a.day_of_week), (10, 1));
    let b = engine
        .decide(&tx(2, "2024-03-03 10:00:02.100", 30), &dims, &mut store)
        .unwrap();
    // Whole epoch seconds: 10:00:02 − 10:00:00.
    assert_eq!(b.time_since_last_txn, Some(2));
    assert_eq!(b.amount_ratio_to_prev, Some(3.0));
    assert_eq!(b.user_avg_amount_30d, 20.0);
    assert!((b.user_amount_stddev_30d.unwrap() - 200f64.sqrt()).abs() < 1e-9);
    assert_eq!(b.merchant_avg_amount_7d, 20.0);
    let c = engine
        .decide(&tx(3, "2024-03-03 10:00:03", 5), &dims, &mut store)
        .unwrap();
    assert!(c.small_amount_pattern);
    assert_eq!(c.txn_amount_1h_cents, 45_00);
    let mut zero = tx(4, "2024-03-03 10:00:04", 0);
    zero.amount = Cents(0);
    engine.decide(&zero, &dims, &mut store).unwrap();
    let e = engine
        .decide(&tx(5, "2024-03-03 10:00:05", 5), &dims, &mut store)
        .unwrap();
    assert_eq!(e.amount_ratio_to_prev, None, "previous amount 0");
    assert!(e.ml_risk_probability.is_some() && e.ml_risk_category.is_some());
}

#[test]
fn decision_json_has_the_seed_columns() {
    let mut dims = StaticDimensions::default();
    dims.users.insert(USER, user(10, "LOW", 100, 1000));
    let d = decide_one(&dims, &tx(42, "2024-03-01 12:00:00.250", 12));
    let writer = riskpipe_engine::DecisionWriter::new("payments", "v7");
    let text = writer.to_json(&d);
    assert!(text.contains(r#""amount":12.00,"#), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["transaction_id"], 42);
    assert_eq!(v["transaction_time"], "2024-03-01 12:00:00.250");
    assert_eq!(v["final_decision"], "APPROVE");
    assert_eq!(v["user_risk_level"], "LOW");
    assert_eq!(v["merchant_risk_level"], serde_json::Value::Null);
    assert_eq!(v["pipeline"], "payments");
    assert_eq!(v["rule_set_version"], "v7");
    for field in [
        "base_risk_score",
        "amount_anomaly_score",
        "time_anomaly_score",
        "total_risk_score",
        "merchant_fraud_rate",
        "txn_count_1h",
        "txn_amount_1h",
        "distinct_ip_24h",
        "distinct_device_24h",
        "small_amount_pattern",
        "historical_avg",
        "historical_max",
        "historical_count",
        "frequency_anomaly",
        "amount_anomaly",
        "access_anomaly",
        "blacklist_status",
        "geo_risk",
        "risk_reasons",
        "reason_codes",
        "user_avg_amount_30d",
        "user_amount_stddev_30d",
        "merchant_avg_amount_7d",
        "hour_of_day",
        "day_of_week",
        "time_since_last_txn",
        "amount_ratio_to_prev",
        "ml_risk_probability",
        "ml_risk_category",
        "decided_at",
        "processing_latency_ms",
    ] {
        assert!(v.get(field).is_some(), "missing {field}");
    }
}
