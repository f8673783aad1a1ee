//! `ai.onnx.ml` TreeEnsembleClassifier and TreeEnsembleRegressor, evaluated as
//! onnxruntime does for one row of float input: thresholds compared in f32, a
//! NaN feature takes the true branch only where `nodes_missing_value_tracks_true`
//! says so (otherwise every comparison with NaN is false).

use super::graph::{Attrs, PostTransform};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    feature: u32,
    threshold: f32,
    mode: Mode,
    missing_true: bool,
    true_next: u32,
    false_next: u32,
    /// Range into `TreeEnsemble::leaf_weights` (leaves only).
    weights: (u32, u32),
}

/// A tree ensemble ready to evaluate.
#[derive(Debug, Clone)]
pub struct TreeEnsemble {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    leaf_weights: Vec<(u32, f32)>,
    base_values: Vec<f32>,
    /// Scores out: classes (classifier) or targets (regressor).
    outputs: usize,
    post: PostTransform,
    aggregate: Aggregate,
    /// Classifier with two labels whose weights all go to one score.
    binary_single_score: bool,
    classifier: bool,
    /// The largest feature index the trees read.
    pub max_feature: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
}

impl TreeEnsemble {
    /// Builds a classifier (`classifier = true`) or regressor from its attributes.
    pub fn new(a: &Attrs<'_>, classifier: bool) -> Result<TreeEnsemble, String> {
        let tree_ids = a.ints("nodes_treeids")?;
        let node_ids = a.ints("nodes_nodeids")?;
        let feature_ids = a.ints("nodes_featureids")?;
        let values = a.floats_or_tensor("nodes_values")?;
        let modes = a.strings("nodes_modes")?;
        let true_ids = a.ints("nodes_truenodeids")?;
        let false_ids = a.ints("nodes_falsenodeids")?;
        let missing = a.ints_opt("nodes_missing_value_tracks_true");
        let n = tree_ids.len();
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", feature_ids.len()),
            ("nodes_values", values.len()),
            ("nodes_modes", modes.len()),
            ("nodes_truenodeids", true_ids.len()),
            ("nodes_falsenodeids", false_ids.len()),
        ] {
            if len != n {
                return Err(format!("{name} has {len} entries, nodes_treeids {n}"));
            }
        }
        let mut index = ahash::AHashMap::with_capacity(n);
        for i in 0..n {
            if index.insert((tree_ids[i], node_ids[i]), i as u32).is_some() {
                return Err(format!(
                    "tree {} has node {} twice",
                    tree_ids[i], node_ids[i]
                ));
            }
        }
        let mut nodes = Vec::with_capacity(n);
        let mut max_feature = 0usize;
        let mut is_child = vec![false; n];
        for i in 0..n {
            let mode = match modes[i].as_slice() {
                b"BRANCH_LEQ" => Mode::Leq,
                b"BRANCH_LT" => Mode::Lt,
                b"BRANCH_GTE" => Mode::Gte,
                b"BRANCH_GT" => Mode::Gt,
                b"BRANCH_EQ" => Mode::Eq,
                b"BRANCH_NEQ" => Mode::Neq,
                b"LEAF" => Mode::Leaf,
                other => {
                    return Err(format!(
                        "node mode '{}' is not an ONNX tree mode",
                        String::from_utf8_lossy(other)
                    ));
                }
            };
            let child = |id: i64| -> Result<u32, String> {
                index.get(&(tree_ids[i], id)).copied().ok_or_else(|| {
                    format!(
                        "tree {} node {} points to node {id}, which does not exist",
                        tree_ids[i], node_ids[i]
                    )
                })
            };
            let (true_next, false_next) = if mode == Mode::Leaf {
                (0, 0)
            } else {
                let (t, f) = (child(true_ids[i])?, child(false_ids[i])?);
                is_child[t as usize] = true;
                is_child[f as usize] = true;
                (t, f)
            };
            let feature = usize::try_from(feature_ids[i])
                .map_err(|_| format!("negative feature id {}", feature_ids[i]))?;
            if mode != Mode::Leaf {
                max_feature = max_feature.max(feature);
            }
            nodes.push(Node {
                feature: feature as u32,
                threshold: values[i] as f32,
                mode,
                missing_true: missing.get(i).is_some_and(|m| *m != 0),
                true_next,
                false_next,
                weights: (0, 0),
            });
        }
        let mut roots = Vec::new();
        let mut seen_trees = ahash::AHashSet::new();
        for i in 0..n {
            if !is_child[i] && seen_trees.insert(tree_ids[i]) {
                roots.push(i as u32);
            }
        }
        // Leaf weights, grouped per leaf.
        let prefix = if classifier { "class" } else { "target" };
        let w_trees = a.ints(&format!("{prefix}_treeids"))?;
        let w_nodes = a.ints(&format!("{prefix}_nodeids"))?;
        let w_ids = a.ints(&format!("{prefix}_ids"))?;
        let w_values = a.floats_or_tensor(&format!("{prefix}_weights"))?;
        if [w_nodes.len(), w_ids.len(), w_values.len()]
            .iter()
            .any(|l| *l != w_trees.len())
        {
            return Err(format!("the {prefix}_* attributes differ in length"));
        }
        let outputs = if classifier {
            let ints = a.ints_opt("classlabels_int64s").len();
            let strings = a.strings_opt("classlabels_strings").len();
            ints.max(strings)
        } else {
            usize::try_from(a.int_or("n_targets", 1)).map_err(|_| "bad n_targets")?
        };
        if outputs == 0 {
            return Err("the ensemble has no classes or targets".to_owned());
        }
        let mut per_leaf: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        let mut classes_used = ahash::AHashSet::new();
        for k in 0..w_trees.len() {
            let leaf = *index.get(&(w_trees[k], w_nodes[k])).ok_or_else(|| {
                format!(
                    "a weight names tree {} node {}, which does not exist",
                    w_trees[k], w_nodes[k]
                )
            })?;
            let id = usize::try_from(w_ids[k])
                .ok()
                .filter(|id| *id < outputs)
                .ok_or_else(|| format!("weight for class or target {} of {outputs}", w_ids[k]))?;
            classes_used.insert(id);
            per_leaf[leaf as usize].push((id as u32, w_values[k] as f32));
        }
        let mut leaf_weights = Vec::new();
        for (i, ws) in per_leaf.into_iter().enumerate() {
            let start = leaf_weights.len() as u32;
            leaf_weights.extend(ws);
            nodes[i].weights = (start, leaf_weights.len() as u32);
        }
        let base_values: Vec<f32> = a
            .floats_or_tensor_opt("base_values")
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let binary_single_score = classifier && outputs == 2 && classes_used.len() <= 1;
        if classifier && outputs == 2 && !binary_single_score && base_values.len() == 1 {
            return Err(
                "a two-class ensemble with weights on both classes and one base value is ambiguous in ONNX"
                    .to_owned(),
            );
        }
        let aggregate = match a.string_or("aggregate_function", "SUM").as_str() {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            other => return Err(format!("aggregate_function {other} is not supported")),
        };
        Ok(TreeEnsemble {
            nodes,
            roots,
            leaf_weights,
            base_values,
            outputs,
            post: PostTransform::parse(&a.string_or("post_transform", "NONE"))?,
            aggregate,
            binary_single_score,
            classifier,
            max_feature,
        })
    }

    /// Width of the scores output.
    pub fn width(&self) -> usize {
        self.outputs
    }

    fn leaf(&self, x: &[f32], root: u32) -> &Node {
        let mut node = &self.nodes[root as usize];
        loop {
            let v = x[node.feature as usize];
            let go_true = match node.mode {
                Mode::Leaf => return node,
                Mode::Leq => v <= node.threshold,
                Mode::Lt => v < node.threshold,
                Mode::Gte => v >= node.threshold,
                Mode::Gt => v > node.threshold,
                Mode::Eq => v == node.threshold,
                Mode::Neq => v != node.threshold,
            } || (node.missing_true && v.is_nan());
            let next = if go_true {
                node.true_next
            } else {
                node.false_next
            };
            node = &self.nodes[next as usize];
        }
    }

    /// Scores of one row into `out` (width [`Self::width`]); the label output is
    /// the index of the winning class.
    pub fn eval(&self, x: &[f32], out: &mut [f32]) -> f32 {
        let mut sums = [0f32; 16];
        let mut heap;
        let scores: &mut [f32] = if self.outputs <= 16 {
            &mut sums[..self.outputs]
        } else {
            heap = vec![0f32; self.outputs];
            &mut heap
        };
        for root in &self.roots {
            let leaf = self.leaf(x, *root);
            for (id, w) in &self.leaf_weights[leaf.weights.0 as usize..leaf.weights.1 as usize] {
                scores[*id as usize] += *w;
            }
        }
        if self.aggregate == Aggregate::Average && !self.roots.is_empty() {
            let n = self.roots.len() as f32;
            scores.iter_mut().for_each(|s| *s /= n);
        }
        if self.binary_single_score {
            // onnxruntime's binary case: the one score (plus the first base value)
            // is the positive class's; the negative class is its complement.
            let s = scores.iter().sum::<f32>() + self.base_values.first().copied().unwrap_or(0.0);
            let (neg, pos) = match self.post {
                PostTransform::Logistic => {
                    let p = PostTransform::sigmoid(s);
                    (1.0 - p, p)
                }
                _ => (-s, s),
            };
            out[0] = neg;
            out[1] = pos;
            return if pos > 0.5 { 1.0 } else { 0.0 };
        }
        for (k, s) in scores.iter_mut().enumerate() {
            *s += self.base_values.get(k).copied().unwrap_or(0.0);
        }
        out[..self.outputs].copy_from_slice(scores);
        self.post.apply(&mut out[..self.outputs]);
        if !self.classifier {
            return 0.0;
        }
        let mut best = 0;
        for k in 1..self.outputs {
            if out[k] > out[best] {
                best = k;
            }
        }
        best as f32
    }
}
