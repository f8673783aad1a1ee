//! `spec.ml` → the engine's [`MlConfig`]: thresholds, the live model (built-in
//! weights, manifest weights or a trained ONNX file), the shadow model and the
//! decision rules on `ml_risk_category`.
//!
//! A model file that cannot be read or does not fit riskpipe's features is an
//! error at start naming the file and the cause (an unknown input, an
//! unsupported operator …), so a bad model never replaces running workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use riskpipe_crds::RiskPipeline;
use riskpipe_crds::ml::{MlSpec, ModelSpec};
use riskpipe_engine::FinalDecision;
use riskpipe_engine::config::{CategoryRule, MlConfig};
use riskpipe_engine::features::Model;
use riskpipe_engine::model::OnnxModel;

use crate::pipeline_config::ConfigError;

/// Loads an ONNX model file; `name` defaults to the file's stem.
pub fn load_onnx(path: &Path, name: Option<&str>) -> Result<OnnxModel, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let default_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    OnnxModel::from_bytes(name.unwrap_or(&default_name), &bytes)
        .map_err(|e| format!("model {}: {e}", path.display()))
}

fn onnx(spec: &ModelSpec, field: &'static str) -> Result<Option<Arc<OnnxModel>>, ConfigError> {
    let Some(file) = &spec.file else {
        return Ok(None);
    };
    load_onnx(Path::new(file), spec.name.as_deref())
        .map(|m| Some(Arc::new(m)))
        .map_err(|reason| ConfigError { field, reason })
}

const CATEGORIES: [&str; 4] = ["HIGH_RISK", "MEDIUM_RISK", "LOW_RISK", "VERY_LOW_RISK"];

/// The engine's ML configuration of `spec.ml`.
pub fn ml_config(ml: &MlSpec) -> Result<MlConfig, ConfigError> {
    let (model, live) = match &ml.model {
        Some(m) if m.file.is_some() => (Model::default(), onnx(m, "ml.model.file")?),
        Some(m) => (
            Model::from_weights(m.intercept, &m.weights).map_err(|reason| ConfigError {
                field: "ml.model",
                reason,
            })?,
            None,
        ),
        None => (Model::default(), None),
    };
    let shadow = match &ml.shadow_model {
        Some(m) if m.file.is_some() => onnx(m, "ml.shadowModel.file")?,
        Some(_) => {
            return Err(ConfigError {
                field: "ml.shadowModel",
                reason: "a shadow model must name an ONNX file".to_owned(),
            });
        }
        None => None,
    };
    let mut category_rules = Vec::new();
    for d in &ml.decisions {
        let category = CATEGORIES
            .into_iter()
            .find(|c| *c == d.category)
            .ok_or_else(|| ConfigError {
                field: "ml.decisions",
                reason: format!(
                    "category {} is not one of {}",
                    d.category,
                    CATEGORIES.join(", ")
                ),
            })?;
        let decision = FinalDecision::parse(&d.decision).ok_or_else(|| ConfigError {
            field: "ml.decisions",
            reason: format!(
                "decision {} is not one of REJECT, MANUAL_REVIEW, DELAYED_APPROVAL, APPROVE",
                d.decision
            ),
        })?;
        category_rules.push(CategoryRule {
            category,
            decision,
            override_rules: d.override_rules,
        });
    }
    Ok(MlConfig {
        enabled: ml.enabled,
        high: ml.high_risk_probability,
        medium: ml.medium_risk_probability,
        low: ml.low_risk_probability,
        model,
        onnx: live,
        shadow,
        category_rules,
    })
}

/// Makes relative model paths relative to `base` (the manifest's folder).
pub fn resolve_model_paths(pipeline: &mut RiskPipeline, base: &Path) {
    let ml = &mut pipeline.spec.ml;
    for spec in [ml.model.as_mut(), ml.shadow_model.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(file) = &mut spec.file
            && Path::new(file).is_relative()
        {
            *file = PathBuf::from(base).join(&*file).display().to_string();
        }
    }
}
