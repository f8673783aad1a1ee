//! The output record (SPEC.md §7): one decision per input transaction, written as
//! JSON under the seed's column names by a small hand-written writer (no
//! intermediate `Value`, exact decimals as JSON numbers).

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::amount::Cents;
use crate::features::ModelFeatures;
use crate::model::OnnxModel;
use crate::rules::{Access, AmountLabel, Blacklist, FinalDecision, Frequency, Geo};
use crate::timefmt::write_wall_time;

/// A decision with every field of SPEC.md §3–§8.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The transaction (also the output key).
    pub transaction_id: i64,
    /// The user.
    pub user_id: i64,
    /// The merchant.
    pub merchant_id: i64,
    /// The amount.
    pub amount: Cents,
    /// Event time, ms since the epoch.
    pub event_time_ms: i64,
    /// Event time as local wall-clock ms (for printing).
    pub event_wall_ms: i64,
    /// §3 `base_risk_score`.
    pub base_risk_score: i64,
    /// §3 `amount_anomaly_score`.
    pub amount_anomaly_score: i64,
    /// §3 `time_anomaly_score`.
    pub time_anomaly_score: i64,
    /// §3 `total_risk_score`.
    pub total_risk_score: i64,
    /// The user's risk level.
    pub user_risk_level: Option<String>,
    /// The merchant's risk level.
    pub merchant_risk_level: Option<String>,
    /// The merchant's fraud rate.
    pub merchant_fraud_rate: Option<Decimal>,
    /// §4 `txn_count_1h`.
    pub txn_count_1h: u32,
    /// §4 `txn_amount_1h`, in cents.
    pub txn_amount_1h_cents: i128,
    /// §4 `distinct_ip_24h`.
    pub distinct_ip_24h: u32,
    /// §4 `distinct_device_24h`.
    pub distinct_device_24h: u32,
    /// §4 `small_amount_pattern`.
    pub small_amount_pattern: bool,
    /// History `avg_amount`.
    pub historical_avg: Option<Cents>,
    /// History `max_amount`.
    pub historical_max: Option<Cents>,
    /// History `transaction_count`.
    pub historical_count: Option<i64>,
    /// §5.
    pub frequency_anomaly: Frequency,
    /// §5.
    pub amount_anomaly: AmountLabel,
    /// §5.
    pub access_anomaly: Access,
    /// §6.
    pub blacklist_status: Blacklist,
    /// §6.
    pub geo_risk: Geo,
    /// §6.
    pub final_decision: FinalDecision,
    /// §6 seed reasons, `; `-separated.
    pub risk_reasons: String,
    /// §6 machine-readable reasons.
    pub reason_codes: Vec<&'static str>,
    /// §8.
    pub user_avg_amount_30d: f64,
    /// §8.
    pub user_amount_stddev_30d: Option<f64>,
    /// §8.
    pub merchant_avg_amount_7d: f64,
    /// §8.
    pub hour_of_day: u8,
    /// §8.
    pub day_of_week: u8,
    /// §8.
    pub time_since_last_txn: Option<i64>,
    /// §8.
    pub amount_ratio_to_prev: Option<f64>,
    /// §8; `None` with ML disabled.
    pub ml_risk_probability: Option<f64>,
    /// §8; `None` with ML disabled.
    pub ml_risk_category: Option<&'static str>,
    /// The trained model's score (`spec.ml.model.file`); `None` without one.
    pub model: Option<ModelScore>,
    /// The shadow model's score (`spec.ml.shadowModel`); never read by a rule.
    pub shadow: Option<ModelScore>,
    /// The features a model reads, for every decision (`--features-out`).
    pub features: ModelFeatures,
    /// When the decision was made, ms since the epoch (set by the caller).
    pub decided_at_ms: i64,
    /// Time from reading the record to deciding, in ms (set by the caller).
    pub processing_latency_ms: f64,
}

/// A trained model's output in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelScore {
    /// The model (its name and version are written).
    pub model: Arc<OnnxModel>,
    /// The probability; `None` when the model gave no valid one.
    pub probability: Option<f64>,
    /// Its category (§8 thresholds).
    pub category: Option<&'static str>,
    /// Top contributing features (linear models).
    pub top_features: Vec<(&'static str, f64)>,
}

/// Writes decisions as JSON objects, sharing the pipeline-wide fields.
#[derive(Debug, Clone)]
pub struct DecisionWriter {
    pipeline: String,
    rule_set_version: String,
}

impl DecisionWriter {
    /// A writer stamping the pipeline name and rule-set version.
    pub fn new(pipeline: &str, rule_set_version: &str) -> Self {
        DecisionWriter {
            pipeline: pipeline.to_owned(),
            rule_set_version: rule_set_version.to_owned(),
        }
    }

    /// Appends one decision as a JSON object (no trailing newline).
    pub fn write(&self, d: &Decision, out: &mut Vec<u8>) {
        let mut w = Obj::new(out);
        w.int("transaction_id", d.transaction_id);
        w.int("user_id", d.user_id);
        w.int("merchant_id", d.merchant_id);
        w.raw_with("amount", |o| {
            o.extend_from_slice(d.amount.to_string().as_bytes())
        });
        w.raw_with("transaction_time", |o| {
            o.push(b'"');
            write_wall_time(d.event_wall_ms, o);
            o.push(b'"');
        });
        w.int("base_risk_score", d.base_risk_score);
        w.int("amount_anomaly_score", d.amount_anomaly_score);
        w.int("time_anomaly_score", d.time_anomaly_score);
        w.int("total_risk_score", d.total_risk_score);
        w.opt_str("user_risk_level", d.user_risk_level.as_deref());
        w.opt_str("merchant_risk_level", d.merchant_risk_level.as_deref());
        match d.merchant_fraud_rate {
            Some(rate) => w.raw_with("merchant_fraud_rate", |o| {
                o.extend_from_slice(rate.to_string().as_bytes())
            }),
            None => w.null("merchant_fraud_rate"),
        }
        w.int("txn_count_1h", i64::from(d.txn_count_1h));
        w.raw_with("txn_amount_1h", |o| {
            write_cents_i128(d.txn_amount_1h_cents, o)
        });
        w.int("distinct_ip_24h", i64::from(d.distinct_ip_24h));
        w.int("distinct_device_24h", i64::from(d.distinct_device_24h));
        w.int("small_amount_pattern", i64::from(d.small_amount_pattern));
        w.opt_cents("historical_avg", d.historical_avg);
        w.opt_cents("historical_max", d.historical_max);
        match d.historical_count {
            Some(n) => w.int("historical_count", n),
            None => w.null("historical_count"),
        }
        w.str("frequency_anomaly", d.frequency_anomaly.as_str());
        w.str("amount_anomaly", d.amount_anomaly.as_str());
        w.str("access_anomaly", d.access_anomaly.as_str());
        w.str("blacklist_status", d.blacklist_status.as_str());
        w.str("geo_risk", d.geo_risk.as_str());
        w.str("final_decision", d.final_decision.as_str());
        w.str("risk_reasons", &d.risk_reasons);
        w.raw_with("reason_codes", |o| {
            o.push(b'[');
            for (i, code) in d.reason_codes.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                write_json_str(code, o);
            }
            o.push(b']');
        });
        w.float("user_avg_amount_30d", Some(d.user_avg_amount_30d));
        w.float("user_amount_stddev_30d", d.user_amount_stddev_30d);
        w.float("merchant_avg_amount_7d", Some(d.merchant_avg_amount_7d));
        w.int("hour_of_day", i64::from(d.hour_of_day));
        w.int("day_of_week", i64::from(d.day_of_week));
        match d.time_since_last_txn {
            Some(s) => w.int("time_since_last_txn", s),
            None => w.null("time_since_last_txn"),
        }
        w.float("amount_ratio_to_prev", d.amount_ratio_to_prev);
        w.float("ml_risk_probability", d.ml_risk_probability);
        w.opt_str("ml_risk_category", d.ml_risk_category);
        if let Some(m) = &d.model {
            w.str("ml_model", m.model.name());
            w.str("ml_model_version", m.model.version());
            w.raw_with("ml_top_features", |o| {
                o.push(b'[');
                for (i, (name, c)) in m.top_features.iter().enumerate() {
                    if i > 0 {
                        o.push(b',');
                    }
                    let mut f = Obj::new(o);
                    f.str("feature", name);
                    f.float("contribution", Some(*c));
                    f.finish();
                }
                o.push(b']');
            });
        }
        if let Some(m) = &d.shadow {
            w.float("shadow_ml_risk_probability", m.probability);
            w.opt_str("shadow_ml_risk_category", m.category);
            w.str("shadow_ml_model", m.model.name());
            w.str("shadow_ml_model_version", m.model.version());
        }
        w.int("decided_at", d.decided_at_ms);
        w.float("processing_latency_ms", Some(d.processing_latency_ms));
        w.str("pipeline", &self.pipeline);
        w.str("rule_set_version", &self.rule_set_version);
        w.finish();
    }

    /// One decision as a JSON string.
    pub fn to_json(&self, d: &Decision) -> String {
        let mut out = Vec::with_capacity(1024);
        self.write(d, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn write_cents_i128(cents: i128, out: &mut Vec<u8>) {
    if cents < 0 {
        out.push(b'-');
    }
    let abs = cents.unsigned_abs();
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(abs / 100).as_bytes());
    out.push(b'.');
    let frac = (abs % 100) as u8;
    out.push(b'0' + frac / 10);
    out.push(b'0' + frac % 10);
}

/// Appends `s` as a JSON string literal.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
    fn int(&mut self, k: &str, v: i64) {
        self.key(k);
        let mut buf = itoa::Buffer::new();
        self.out.extend_from_slice(buf.format(v).as_bytes());
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        write_json_str(v, self.out);
    }
    fn null(&mut self, k: &str) {
        self.key(k);
        self.out.extend_from_slice(b"null");
    }
    fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }
    fn opt_cents(&mut self, k: &str, v: Option<Cents>) {
        match v {
            Some(c) => self.raw_with(k, |o| write_cents_i128(i128::from(c.0), o)),
            None => self.null(k),
        }
    }
    fn float(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(f) if f.is_finite() => {
                self.key(k);
                let mut buf = ryu::Buffer::new();
                self.out.extend_from_slice(buf.format_finite(f).as_bytes());
            }
            _ => self.null(k),
        }
    }
    fn raw_with(&mut self, k: &str, f: impl FnOnce(&mut Vec<u8>)) {
        self.key(k);
        f(self.out);
    }
    fn finish(self) {
        self.out.push(b'}');
    }
}
