//! CEL validation rules (`x-kubernetes-validations`) attached to the generated schema.
//!
//! Each struct with rules lists them in a `cel_rules()` function; schemars'
//! `transform` attribute adds them to its schema node. The client-free
//! [`validate`](crate::RiskPipelineSpec::validate) repeats each check in Rust, and the
//! crate's tests prove that both reject the same objects.
//!
//! Why not kube's `#[derive(KubeSchema)]` with `#[x_kube(validation = Rule…)]`: that
//! derive re-declares the struct without its `Default` impl, which breaks the
//! container-level `#[serde(default)]` every spec struct uses to carry the seed's
//! defaults.

use schemars::Schema;
use serde_json::{Value, json};

/// One CEL rule on one schema node (`self` is the object the rule is attached to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelRule {
    /// The CEL expression; it must evaluate to `true` for a valid object.
    pub rule: String,
    /// What the user sees when the rule fails: which field and what to fix.
    pub message: String,
    /// The field the failure is reported on, relative to `self` (e.g. `.reviewScore`).
    pub field_path: Option<String>,
}

impl CelRule {
    /// A rule with its message.
    pub fn new(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            rule: rule.into(),
            message: message.into(),
            field_path: None,
        }
    }

    /// Reports a failure on `field_path` (relative to the node, e.g. `.minPause`).
    pub fn at(mut self, field_path: impl Into<String>) -> Self {
        self.field_path = Some(field_path.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut rule = json!({
            "rule": self.rule,
            "message": self.message,
            "reason": "FieldValueInvalid",
        });
        if let (Some(path), Some(object)) = (&self.field_path, rule.as_object_mut()) {
            object.insert("fieldPath".into(), Value::String(path.clone()));
        }
        rule
    }
}

/// Appends `rules` to the node's `x-kubernetes-validations`.
pub(crate) fn add_rules(schema: &mut Schema, rules: Vec<CelRule>) {
    let new = rules.iter().map(CelRule::to_json);
    match schema.get_mut("x-kubernetes-validations") {
        Some(Value::Array(existing)) => existing.extend(new),
        _ => {
            schema.insert(
                "x-kubernetes-validations".into(),
                Value::Array(new.collect()),
            );
        }
    }
}

/// A CEL expression for the duration held in the string `field` (e.g. `self.interval`).
///
/// CEL's `duration()` reads Go durations, which have no day unit; durations here match
/// [`DURATION_PATTERN`](crate::duration::DURATION_PATTERN) (one number, one unit),
/// so a `d` suffix is rewritten to hours first.
pub fn duration_expr(field: &str) -> String {
    format!(
        "({field}.endsWith('d') ? duration(string(int({field}.substring(0, {field}.size() - 1)) * 24) + 'h') : duration({field}))"
    )
}

/// A CEL expression that is true when exactly one of `fields` is set on `self`.
pub fn exactly_one_expr(fields: &[&str]) -> String {
    let terms: Vec<String> = fields
        .iter()
        .map(|f| format!("(has(self.{f}) ? 1 : 0)"))
        .collect();
    format!("{} == 1", terms.join(" + "))
}

/// Schemars transform for structs without fields (`stdout: {}`): Kubernetes refuses
/// `additionalProperties: false`, which `deny_unknown_fields` adds and kube's
/// structural rewrite only removes from objects that have properties.
pub(crate) fn allow_empty_object(schema: &mut Schema) {
    schema.remove("additionalProperties");
}
