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

/// A CEL expression for the milliseconds of the duration held in the string `field`
/// (e.g. `self.interval`).
///
/// Durations here match [`DURATION_PATTERN`](crate::duration::DURATION_PATTERN) (one
/// number, one unit). CEL's `duration()` has no day unit, and rewriting `7d` as
/// `168h` needs `string(int)`, whose size the apiserver cannot bound: its cost
/// estimate then refuses the CRD. Integer arithmetic on a bounded substring is cheap.
pub fn millis_expr(field: &str) -> String {
    format!(
        "(int({field}.substring(0, {field}.size() - ({field}.endsWith('ms') ? 2 : 1))) * \
         ({field}.endsWith('ms') ? 1 : {field}.endsWith('s') ? 1000 : {field}.endsWith('m') ? 60000 : \
         {field}.endsWith('h') ? 3600000 : 86400000))"
    )
}

/// A CEL expression that is true when exactly one of `fields` is set on `self`: the
/// rule of a union (one-of) object such as `source` or a sink.
pub fn exactly_one_expr(fields: &[&str]) -> String {
    let terms: Vec<String> = fields
        .iter()
        .map(|f| format!("(has(self.{f}) ? 1 : 0)"))
        .collect();
    format!("{} == 1", terms.join(" + "))
}

/// True for a rule made by [`exactly_one_expr`].
pub(crate) fn is_exactly_one_rule(rule: &str) -> bool {
    rule.starts_with("(has(self.") && rule.ends_with(" == 1")
}
