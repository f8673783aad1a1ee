//! Trained models in ONNX format (SPEC.md §8, `spec.ml.model.file`), evaluated
//! inline for each decision by riskpipe's own small runtime.
//!
//! Why not a general ONNX runtime: the models riskpipe serves are tabular
//! classifiers (tree ensembles, linear models) over one row of features, which
//! need a dozen operators; a general runtime (tract) would add minutes of
//! compile time and a per-call graph overhead larger than the 1 µs budget of a
//! 100-tree ensemble. The operators here follow the ONNX-ML definitions and are
//! checked against onnxruntime (`tools/train/parity.py`, `worker/tests/model_parity.rs`).
//!
//! Inputs: either one input per feature, named after a riskpipe feature
//! ([`crate::features::MODEL_FEATURES`]), of shape `[N, 1]`; or one input of
//! shape `[N, F]` with the metadata property `riskpipe.features` listing the F
//! feature names, comma-separated, in column order (what `tools/train` writes).
//! A null feature is NaN; what the model does with it is the model's: trees follow
//! `nodes_missing_value_tracks_true`, the training tool's linear models impute it.

mod graph;
mod proto;
mod tree;

use std::cell::RefCell;
use std::fmt;

use crate::features::{MODEL_FEATURES, ModelFeatures};

/// The metadata key listing the features of a single `[N, F]` input.
pub const FEATURES_METADATA_KEY: &str = "riskpipe.features";

/// A loaded model.
#[derive(Clone)]
pub struct OnnxModel {
    name: String,
    version: String,
    /// Per input element in buffer order, the feature index.
    input_features: Vec<usize>,
    features_used: Vec<&'static str>,
    plan: graph::Plan,
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("features", &self.features_used)
            .finish()
    }
}

impl PartialEq for OnnxModel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.version == other.version
    }
}

/// A model's output for one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The probability of fraud; `None` when the model gave NaN or a value outside
    /// [0, 1] (the decision then carries null, as without a model).
    pub probability: Option<f64>,
    /// The features that pushed the score most, with their contribution to the
    /// linear score (weight × value, largest magnitude first); empty for models
    /// without a linear layer over the features.
    pub top_features: Vec<(&'static str, f64)>,
}

/// How many contributing features a decision carries.
pub const TOP_FEATURES: usize = 3;

/// The value buffer and the contributions of one evaluation.
type Scratch = (Vec<f32>, Vec<(usize, f32)>);

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl OnnxModel {
    /// Loads a model from the bytes of an `.onnx` file. `name` labels it in
    /// decisions; the version is the first 16 hex digits of the file's SHA-256-free
    /// content hash (xxh3-128).
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<OnnxModel, String> {
        let model =
            proto::decode_model(bytes).map_err(|e| format!("not a readable ONNX model: {e}"))?;
        let graph = &model.graph;
        let initializers: ahash::AHashSet<&str> =
            graph.initializers.iter().map(|t| t.name.as_str()).collect();
        let listed: Option<Vec<String>> = model
            .metadata
            .iter()
            .find(|(k, _)| k == FEATURES_METADATA_KEY)
            .map(|(_, v)| v.split(',').map(|s| s.trim().to_owned()).collect());
        let real_inputs: Vec<_> = graph
            .inputs
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .collect();
        if real_inputs.is_empty() {
            return Err("the model has no input".to_owned());
        }
        let feature_index = |name: &str, input: &str| -> Result<usize, String> {
            MODEL_FEATURES.iter().position(|f| *f == name).ok_or_else(|| {
                format!(
                    "model input '{input}' names '{name}', which is not a riskpipe feature; the features are: {}",
                    MODEL_FEATURES.join(", ")
                )
            })
        };
        let mut inputs = Vec::new();
        for input in &real_inputs {
            if !matches!(input.elem_type, 1 | 11) {
                return Err(format!(
                    "model input '{}' has element type {}; riskpipe feeds float tensors",
                    input.name, input.elem_type
                ));
            }
            let width = input.dims.last().copied().flatten().unwrap_or(1);
            let features = if real_inputs.len() == 1 && width != 1 {
                let names = listed.as_ref().ok_or_else(|| {
                    format!(
                        "model input '{}' has {width} columns but the model has no '{FEATURES_METADATA_KEY}' metadata naming them (or give one [N,1] input per feature, named after it)",
                        input.name
                    )
                })?;
                if names.len() as i64 != width {
                    return Err(format!(
                        "'{FEATURES_METADATA_KEY}' names {} features for an input of {width} columns",
                        names.len()
                    ));
                }
                names
                    .iter()
                    .map(|n| feature_index(n, &input.name))
                    .collect::<Result<Vec<_>, _>>()?
            } else if width == 1 {
                let name = match &listed {
                    Some(names) if real_inputs.len() == 1 && names.len() == 1 => names[0].clone(),
                    _ => input.name.clone(),
                };
                vec![feature_index(&name, &input.name)?]
            } else {
                return Err(format!(
                    "model input '{}' has {width} columns; with several inputs each must be one feature of shape [N, 1]",
                    input.name
                ));
            };
            inputs.push((input.name.clone(), features));
        }
        let plan = graph::compile(graph, &inputs)?;
        let input_features: Vec<usize> =
            inputs.iter().flat_map(|(_, f)| f.iter().copied()).collect();
        let mut features_used: Vec<&'static str> =
            input_features.iter().map(|i| MODEL_FEATURES[*i]).collect();
        features_used.dedup();
        let hash = xxhash_rust::xxh3::xxh3_128(bytes);
        Ok(OnnxModel {
            name: name.to_owned(),
            version: format!("{:032x}", hash)[..16].to_owned(),
            input_features,
            features_used,
            plan,
        })
    }

    /// The name decisions carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The content hash decisions carry.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The features the model reads, in input order.
    pub fn features(&self) -> &[&'static str] {
        &self.features_used
    }

    /// Scores one transaction's features.
    pub fn predict(&self, features: &ModelFeatures) -> Prediction {
        self.predict_with(features, true)
    }

    /// The probability alone (no contributions), as the benchmark and shadow use.
    pub fn probability(&self, features: &ModelFeatures) -> Option<f64> {
        self.predict_with(features, false).probability
    }

    fn predict_with(&self, features: &ModelFeatures, explain: bool) -> Prediction {
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let (buf, contributions) = &mut *scratch;
            buf.clear();
            buf.resize(self.plan.width, 0.0);
            for (slot, feature) in buf.iter_mut().zip(&self.input_features) {
                *slot = features.values[*feature];
            }
            self.plan.run(buf);
            let p = f64::from(buf[self.plan.output]);
            let probability = (0.0..=1.0).contains(&p).then_some(p);
            let mut top_features = Vec::new();
            if explain {
                self.plan.contributions(buf, contributions);
                contributions.retain(|(_, c)| c.is_finite() && *c != 0.0);
                contributions.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
                top_features = contributions
                    .iter()
                    .take(TOP_FEATURES)
                    .map(|(i, c)| (MODEL_FEATURES[*i], f64::from(*c)))
                    .collect();
            }
            Prediction {
                probability,
                top_features,
            }
        })
    }
}
