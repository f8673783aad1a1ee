//! `--features-out`: one JSON line per decision with the features a model reads
//! ([`MODEL_FEATURES`], null for NaN), the rules' decision and, for a labelled
//! source (the generator), `is_fraud` — the training tool's input
//! (`tools/train/train.py`).

use std::path::Path;

use riskpipe_engine::Decision;
use riskpipe_engine::decision::write_json_str;
use riskpipe_engine::features::MODEL_FEATURES;

use crate::output::{JsonLines, OutputError};

/// Writes feature lines.
pub struct FeatureDump {
    out: JsonLines,
    line: Vec<u8>,
}

impl FeatureDump {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> Result<Self, OutputError> {
        Ok(FeatureDump {
            out: JsonLines::create(path)?,
            line: Vec::with_capacity(1024),
        })
    }

    /// Writes one decision's line; `label` is `Some(is_fraud)` for a labelled source.
    pub fn write(&mut self, d: &Decision, label: Option<bool>) -> Result<(), OutputError> {
        let o = &mut self.line;
        o.clear();
        o.extend_from_slice(b"{\"transaction_id\":");
        o.extend_from_slice(itoa::Buffer::new().format(d.transaction_id).as_bytes());
        o.extend_from_slice(b",\"event_time_ms\":");
        o.extend_from_slice(itoa::Buffer::new().format(d.event_time_ms).as_bytes());
        o.extend_from_slice(b",\"final_decision\":");
        write_json_str(d.final_decision.as_str(), o);
        o.extend_from_slice(b",\"ml_risk_probability\":");
        push_float(o, d.ml_risk_probability);
        if let Some(is_fraud) = label {
            o.extend_from_slice(if is_fraud {
                b",\"is_fraud\":1"
            } else {
                b",\"is_fraud\":0"
            });
        }
        for (name, v) in MODEL_FEATURES.iter().zip(d.features.values) {
            o.extend_from_slice(b",\"");
            o.extend_from_slice(name.as_bytes());
            o.extend_from_slice(b"\":");
            if v.is_finite() {
                o.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
            } else {
                o.extend_from_slice(b"null");
            }
        }
        o.push(b'}');
        self.out.write_line(&self.line)
    }

    /// Flushes the file.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.out.flush()
    }
}

fn push_float(o: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(f) if f.is_finite() => {
            o.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes())
        }
        _ => o.extend_from_slice(b"null"),
    }
}
