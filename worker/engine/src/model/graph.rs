//! An ONNX graph compiled into a straight list of steps over one row.
//!
//! Every value of a riskpipe model graph is a row vector of a width known when
//! the model loads (batch size 1), so the steps read and write slices of one
//! scratch buffer. Only the operators scikit-learn, LightGBM and hand-built
//! linear graphs use are accepted; any other is an error at load naming it.

use ahash::AHashMap;

use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};
use super::tree::TreeEnsemble;

/// A node's attributes by name.
pub struct Attrs<'a> {
    op: &'a str,
    by_name: AHashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    fn new(node: &'a NodeProto) -> Self {
        Attrs {
            op: &node.op_type,
            by_name: node
                .attributes
                .iter()
                .map(|a| (a.name.as_str(), a))
                .collect(),
        }
    }
    fn get(&self, name: &str) -> Result<&'a AttributeProto, String> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| format!("{} lacks the attribute {name}", self.op))
    }
    /// A required integer list.
    pub fn ints(&self, name: &str) -> Result<&'a [i64], String> {
        Ok(&self.get(name)?.ints)
    }
    /// An optional integer list (empty when absent).
    pub fn ints_opt(&self, name: &str) -> &'a [i64] {
        self.by_name.get(name).map_or(&[], |a| &a.ints)
    }
    /// An integer, or `default` when absent.
    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.by_name.get(name).map_or(default, |a| a.i)
    }
    /// A required string list.
    pub fn strings(&self, name: &str) -> Result<&'a [Vec<u8>], String> {
        Ok(&self.get(name)?.strings)
    }
    /// An optional string list.
    pub fn strings_opt(&self, name: &str) -> &'a [Vec<u8>] {
        self.by_name.get(name).map_or(&[], |a| &a.strings)
    }
    /// A string, or `default` when absent.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.by_name.get(name).map_or(default.to_owned(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        })
    }
    /// A float list from `name` or its `name_as_tensor` twin.
    pub fn floats_or_tensor(&self, name: &str) -> Result<Vec<f64>, String> {
        if let Some(a) = self.by_name.get(name) {
            return Ok(a.floats.iter().map(|f| f64::from(*f)).collect());
        }
        let tensor = format!("{name}_as_tensor");
        match self.by_name.get(tensor.as_str()).and_then(|a| a.t.as_ref()) {
            Some(t) => Ok(t.values.clone()),
            None => Err(format!("{} lacks the attribute {name}", self.op)),
        }
    }
    /// The same, empty when absent.
    pub fn floats_or_tensor_opt(&self, name: &str) -> Vec<f64> {
        self.floats_or_tensor(name).unwrap_or_default()
    }
}

/// The `post_transform` of ONNX-ML estimators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    /// Scores as they are.
    None,
    /// 1 / (1 + e^−x) of each.
    Logistic,
    /// Softmax over the row.
    Softmax,
}

impl PostTransform {
    /// From the attribute's text.
    pub fn parse(s: &str) -> Result<PostTransform, String> {
        match s {
            "NONE" => Ok(PostTransform::None),
            "LOGISTIC" => Ok(PostTransform::Logistic),
            "SOFTMAX" => Ok(PostTransform::Softmax),
            other => Err(format!("post_transform {other} is not supported")),
        }
    }
    /// The logistic function, as onnxruntime computes it in f32.
    pub fn sigmoid(x: f32) -> f32 {
        (1.0 / (1.0 + f64::from(-x).exp())) as f32
    }
    /// Applies the transform in place.
    pub fn apply(self, v: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => v.iter_mut().for_each(|x| *x = Self::sigmoid(*x)),
            PostTransform::Softmax => {
                let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = v.iter().map(|x| f64::from(*x - max).exp()).sum();
                v.iter_mut()
                    .for_each(|x| *x = (f64::from(*x - max).exp() / sum) as f32);
            }
        }
    }
}

/// A range of the scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Start.
    pub at: usize,
    /// Width.
    pub width: usize,
}

impl Slot {
    fn range(self) -> std::ops::Range<usize> {
        self.at..self.at + self.width
    }
}

/// A linear layer: `out[k] = bias[k] + Σ weights[k][i] · x[i]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weights: Vec<Vec<f32>>,
    bias: Vec<f32>,
}

impl Linear {
    fn eval(&self, x: &[f32], out: &mut [f32]) {
        for (k, (row, b)) in self.weights.iter().zip(&self.bias).enumerate() {
            let mut acc = f64::from(*b);
            for (w, v) in row.iter().zip(x) {
                acc += f64::from(*w) * f64::from(*v);
            }
            out[k] = acc as f32;
        }
    }
    /// The weights of output `k`.
    pub fn row(&self, k: usize) -> &[f32] {
        &self.weights[k]
    }
}

/// One compiled operation.
#[derive(Debug, Clone)]
pub enum Step {
    /// Copies inputs one after another (Concat, Identity, Cast to float).
    Copy(Vec<Slot>, Slot),
    /// Replaces NaN with a value per element.
    Impute(Slot, Vec<f32>, Slot),
    /// `(x − offset) × scale` per element.
    Scale(Slot, Vec<f32>, Vec<f32>, Slot),
    /// A linear layer, then the post transform; `label` gets the arg-max index
    /// when it is a classifier.
    Linear {
        /// Input.
        input: Slot,
        /// The layer.
        layer: Linear,
        /// The transform after it.
        post: PostTransform,
        /// Scores out.
        out: Slot,
        /// Label out (classifiers).
        label: Option<Slot>,
    },
    /// A tree ensemble.
    Trees {
        /// Input.
        input: Slot,
        /// The ensemble.
        ensemble: Box<TreeEnsemble>,
        /// Scores out.
        out: Slot,
        /// Label out (classifiers).
        label: Option<Slot>,
    },
    /// Adds a constant row.
    AddConst(Slot, Vec<f32>, Slot),
    /// The logistic function per element.
    Sigmoid(Slot, Slot),
}

/// A compiled graph.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Scratch buffer width.
    pub width: usize,
    /// Where the probability is read.
    pub output: usize,
    /// The first linear step over feature-aligned values: (step index, class row,
    /// feature index per input element) — for top contributions.
    pub explain: Option<(usize, usize, Vec<usize>)>,
}

/// Compiles `graph`; `inputs` gives each graph input's slot-filling: for each
/// graph input name, the feature index of each of its elements.
pub fn compile(graph: &GraphProto, inputs: &[(String, Vec<usize>)]) -> Result<Plan, String> {
    let mut slots: AHashMap<String, Slot> = AHashMap::new();
    // Feature index per element for values that are features in order.
    let mut aligned: AHashMap<String, Vec<usize>> = AHashMap::new();
    let mut width = 0usize;
    for (name, features) in inputs {
        slots.insert(
            name.clone(),
            Slot {
                at: width,
                width: features.len(),
            },
        );
        aligned.insert(name.clone(), features.clone());
        width += features.len();
    }
    let consts: AHashMap<&str, &TensorProto> = graph
        .initializers
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut steps = Vec::new();
    let mut explain = None;
    for node in &graph.nodes {
        let a = Attrs::new(node);
        let what = format!(
            "node '{}' ({}{})",
            node.name,
            if node.domain.is_empty() {
                String::new()
            } else {
                format!("{}.", node.domain)
            },
            node.op_type
        );
        let input = |i: usize| -> Result<Slot, String> {
            let name = node
                .inputs
                .get(i)
                .ok_or_else(|| format!("{what} lacks input {i}"))?;
            slots
                .get(name)
                .copied()
                .ok_or_else(|| format!("{what} reads '{name}', which is no computed value"))
        };
        let mut alloc = |w: usize| {
            let s = Slot {
                at: width,
                width: w,
            };
            width += w;
            s
        };
        let out_name = node
            .outputs
            .first()
            .ok_or_else(|| format!("{what} has no output"))?
            .clone();
        let mut outs: Vec<(String, Slot)> = Vec::new();
        let mut out_aligned: Option<Vec<usize>> = None;
        match node.op_type.as_str() {
            "Concat" => {
                let axis = a.int_or("axis", 1);
                if axis != 1 && axis != -1 {
                    return Err(format!("{what}: only axis 1 is supported, not {axis}"));
                }
                let ins: Vec<Slot> = (0..node.inputs.len())
                    .map(&input)
                    .collect::<Result<_, _>>()?;
                let out = alloc(ins.iter().map(|s| s.width).sum());
                let al: Option<Vec<usize>> = node
                    .inputs
                    .iter()
                    .map(|n| aligned.get(n).cloned())
                    .collect::<Option<Vec<_>>>()
                    .map(|parts| parts.concat());
                out_aligned = al.filter(|al| al.len() == out.width);
                steps.push(Step::Copy(ins, out));
                outs.push((out_name, out));
            }
            "Identity" | "Cast" => {
                if node.op_type == "Cast" && !matches!(a.int_or("to", 1), 1 | 11) {
                    return Err(format!("{what}: only casts to float are supported"));
                }
                let i = input(0)?;
                let out = alloc(i.width);
                out_aligned = aligned.get(&node.inputs[0]).cloned();
                steps.push(Step::Copy(vec![i], out));
                outs.push((out_name, out));
            }
            "Imputer" => {
                let i = input(0)?;
                let replaced = a
                    .by_name
                    .get("replaced_value_float")
                    .map_or(f32::NAN, |x| x.f);
                if !replaced.is_nan() {
                    return Err(format!("{what}: only NaN can be imputed"));
                }
                let values =
                    broadcast(&a.floats_or_tensor("imputed_value_floats")?, i.width, &what)?;
                let out = alloc(i.width);
                out_aligned = aligned.get(&node.inputs[0]).cloned();
                steps.push(Step::Impute(i, values, out));
                outs.push((out_name, out));
            }
            "Scaler" => {
                let i = input(0)?;
                let offset = broadcast(&a.floats_or_tensor_opt("offset"), i.width, &what)
                    .or_else(|_| Ok::<_, String>(vec![0.0; i.width]))?;
                let scale = broadcast(&a.floats_or_tensor("scale")?, i.width, &what)?;
                let out = alloc(i.width);
                out_aligned = aligned.get(&node.inputs[0]).cloned();
                steps.push(Step::Scale(i, offset, scale, out));
                outs.push((out_name, out));
            }
            "LinearClassifier" | "LinearRegressor" => {
                let i = input(0)?;
                let coefficients = a.floats_or_tensor("coefficients")?;
                let classifier = node.op_type == "LinearClassifier";
                let rows = if classifier {
                    a.ints_opt("classlabels_ints")
                        .len()
                        .max(a.strings_opt("classlabels_strings").len())
                } else {
                    usize::try_from(a.int_or("targets", 1)).unwrap_or(0)
                };
                if rows == 0 || coefficients.len() != rows * i.width {
                    return Err(format!(
                        "{what}: {} coefficients for {rows} rows of {} features (a binary classifier needs one row per class)",
                        coefficients.len(),
                        i.width
                    ));
                }
                let intercepts = a.floats_or_tensor_opt("intercepts");
                let layer = Linear {
                    weights: coefficients
                        .chunks(i.width)
                        .map(|r| r.iter().map(|v| *v as f32).collect())
                        .collect(),
                    bias: (0..rows)
                        .map(|k| intercepts.get(k).copied().unwrap_or(0.0) as f32)
                        .collect(),
                };
                let post = PostTransform::parse(&a.string_or("post_transform", "NONE"))?;
                if explain.is_none()
                    && let Some(al) = aligned.get(&node.inputs[0])
                {
                    explain = Some((steps.len(), rows - 1, al.clone()));
                }
                let (label, out) = if classifier {
                    let label = alloc(1);
                    let out = alloc(rows);
                    outs.push((out_name, label));
                    if let Some(n) = node.outputs.get(1) {
                        outs.push((n.clone(), out));
                    }
                    (Some(label), out)
                } else {
                    let out = alloc(rows);
                    outs.push((out_name, out));
                    (None, out)
                };
                steps.push(Step::Linear {
                    input: i,
                    layer,
                    post,
                    out,
                    label,
                });
            }
            "TreeEnsembleClassifier" | "TreeEnsembleRegressor" => {
                let i = input(0)?;
                let classifier = node.op_type == "TreeEnsembleClassifier";
                let ensemble =
                    TreeEnsemble::new(&a, classifier).map_err(|e| format!("{what}: {e}"))?;
                if ensemble.max_feature >= i.width {
                    return Err(format!(
                        "{what} reads feature {} of an input of {}",
                        ensemble.max_feature, i.width
                    ));
                }
                let (label, out) = if classifier {
                    let label = alloc(1);
                    let out = alloc(ensemble.width());
                    outs.push((out_name, label));
                    if let Some(n) = node.outputs.get(1) {
                        outs.push((n.clone(), out));
                    }
                    (Some(label), out)
                } else {
                    let out = alloc(ensemble.width());
                    outs.push((out_name, out));
                    (None, out)
                };
                steps.push(Step::Trees {
                    input: i,
                    ensemble: Box::new(ensemble),
                    out,
                    label,
                });
            }
            "MatMul" => {
                let i = input(0)?;
                let w = constant(&consts, node.inputs.get(1), &what)?;
                let (k, n) = match w.dims.as_slice() {
                    [k, n] => (*k as usize, *n as usize),
                    _ => return Err(format!("{what}: the weights must be a 2-D constant")),
                };
                if k != i.width {
                    return Err(format!(
                        "{what}: weights of {k} rows for {} inputs",
                        i.width
                    ));
                }
                let layer = Linear {
                    weights: (0..n)
                        .map(|col| (0..k).map(|row| w.values[row * n + col] as f32).collect())
                        .collect(),
                    bias: vec![0.0; n],
                };
                if explain.is_none()
                    && let Some(al) = aligned.get(&node.inputs[0])
                {
                    explain = Some((steps.len(), n - 1, al.clone()));
                }
                let out = alloc(n);
                steps.push(Step::Linear {
                    input: i,
                    layer,
                    post: PostTransform::None,
                    out,
                    label: None,
                });
                outs.push((out_name, out));
            }
            "Add" => {
                let (x, c) = match (slots.get(&node.inputs[0]), node.inputs.get(1)) {
                    (Some(s), Some(c)) => (*s, constant(&consts, Some(c), &what)?),
                    _ => (input(1)?, constant(&consts, node.inputs.first(), &what)?),
                };
                let c: Vec<f64> = c.values.clone();
                let values = broadcast(&c, x.width, &what)?;
                let out = alloc(x.width);
                steps.push(Step::AddConst(x, values, out));
                outs.push((out_name, out));
            }
            "Sigmoid" => {
                let i = input(0)?;
                let out = alloc(i.width);
                steps.push(Step::Sigmoid(i, out));
                outs.push((out_name, out));
            }
            "ZipMap" => {
                return Err(format!(
                    "{what}: export the model without ZipMap (skl2onnx: options={{'zipmap': False}})"
                ));
            }
            other => {
                return Err(format!(
                    "{what}: operator {other} is not supported by riskpipe's model runtime (supported: Concat, Identity, Cast, Imputer, Scaler, LinearClassifier, LinearRegressor, TreeEnsembleClassifier, TreeEnsembleRegressor, MatMul, Add, Sigmoid)"
                ));
            }
        }
        if let (Some(al), Some((name, _))) = (out_aligned, outs.first()) {
            aligned.insert(name.clone(), al);
        }
        for (name, slot) in outs {
            slots.insert(name, slot);
        }
    }
    let chosen = graph
        .outputs
        .iter()
        .find(|o| o.name == "probabilities")
        .or_else(|| graph.outputs.last())
        .ok_or("the graph has no output")?;
    let slot = slots
        .get(&chosen.name)
        .copied()
        .ok_or_else(|| format!("output '{}' is computed by no node", chosen.name))?;
    let output = match slot.width {
        1 => slot.at,
        2 => slot.at + 1,
        w => {
            return Err(format!(
                "output '{}' has {w} values; riskpipe reads a probability (1 value) or a binary classifier's two",
                chosen.name
            ));
        }
    };
    Ok(Plan {
        steps,
        width,
        output,
        explain,
    })
}

fn broadcast(v: &[f64], width: usize, what: &str) -> Result<Vec<f32>, String> {
    match v.len() {
        1 => Ok(vec![v[0] as f32; width]),
        n if n == width => Ok(v.iter().map(|x| *x as f32).collect()),
        n => Err(format!("{what}: {n} values for a row of {width}")),
    }
}

fn constant<'a>(
    consts: &AHashMap<&str, &'a TensorProto>,
    name: Option<&String>,
    what: &str,
) -> Result<&'a TensorProto, String> {
    let name = name.ok_or_else(|| format!("{what} lacks its constant input"))?;
    consts
        .get(name.as_str())
        .copied()
        .ok_or_else(|| format!("{what}: '{name}' must be a constant (initializer)"))
}

impl Plan {
    /// Runs the steps over `buf` (inputs already written at the start).
    pub fn run(&self, buf: &mut [f32]) {
        for step in &self.steps {
            match step {
                Step::Copy(ins, out) => {
                    let mut at = out.at;
                    for s in ins {
                        buf.copy_within(s.range(), at);
                        at += s.width;
                    }
                }
                Step::Impute(i, values, out) => {
                    for k in 0..i.width {
                        let v = buf[i.at + k];
                        buf[out.at + k] = if v.is_nan() { values[k] } else { v };
                    }
                }
                Step::Scale(i, offset, scale, out) => {
                    for k in 0..i.width {
                        buf[out.at + k] = (buf[i.at + k] - offset[k]) * scale[k];
                    }
                }
                Step::Linear {
                    input,
                    layer,
                    post,
                    out,
                    label,
                } => {
                    let (head, tail) = buf.split_at_mut(out.at);
                    let scores = &mut tail[..out.width];
                    layer.eval(&head[input.range()], scores);
                    post.apply(scores);
                    if let Some(l) = label {
                        let mut best = 0;
                        for k in 1..scores.len() {
                            if scores[k] > scores[best] {
                                best = k;
                            }
                        }
                        buf[l.at] = best as f32;
                    }
                }
                Step::Trees {
                    input,
                    ensemble,
                    out,
                    label,
                } => {
                    let (head, tail) = buf.split_at_mut(out.at);
                    let l = ensemble.eval(&head[input.range()], &mut tail[..out.width]);
                    if let Some(s) = label {
                        buf[s.at] = l;
                    }
                }
                Step::AddConst(i, c, out) => {
                    for k in 0..i.width {
                        buf[out.at + k] = buf[i.at + k] + c[k];
                    }
                }
                Step::Sigmoid(i, out) => {
                    for k in 0..i.width {
                        buf[out.at + k] = PostTransform::sigmoid(buf[i.at + k]);
                    }
                }
            }
        }
    }

    /// `(feature index, weight × value)` of the explained linear step, after a run.
    pub fn contributions(&self, buf: &[f32], out: &mut Vec<(usize, f32)>) {
        out.clear();
        let Some((step, row, features)) = &self.explain else {
            return;
        };
        if let Some(Step::Linear { input, layer, .. }) = self.steps.get(*step) {
            for (k, w) in layer.row(*row).iter().enumerate() {
                out.push((features[k], w * buf[input.at + k]));
            }
        }
    }
}
