//! Client-free validation of a [`RiskPipelineSpec`]: the CEL rules of the CRD plus
//! what CEL cannot say easily (time zone names, exact decimals, quantities). Local
//! mode runs it instead of an apiserver; the operator runs it before building objects.

mod sections;

use crate::{duration::Duration, rules::exact_decimal, spec::RiskPipelineSpec};

/// One problem in a spec: the field (a dotted path from the resource root, e.g.
/// `spec.rules.decision.reviewScore`) and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl RiskPipelineSpec {
    /// Checks the spec without an apiserver: every CEL rule of the CRD, the schema's
    /// ranges, and what CEL cannot express. Returns every problem found, each naming
    /// its field (`spec.…`) and what to fix.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut c = Checker::default();
        sections::check_spec(&mut c, self);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(c.errors)
        }
    }
}

/// Collects problems while walking the spec.
#[derive(Default)]
pub(crate) struct Checker {
    errors: Vec<ValidationError>,
}

impl Checker {
    /// Records a problem with `field` unless `ok`.
    pub(crate) fn ensure(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.errors.push(ValidationError {
                field: field.to_owned(),
                message: message.into(),
            });
        }
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty(&mut self, value: &str, field: &str) {
        self.ensure(!value.trim().is_empty(), field, "must not be empty");
    }

    /// An integer within `min..=max`.
    pub(crate) fn int_range(&mut self, value: i64, min: i64, max: i64, field: &str) {
        self.ensure(
            (min..=max).contains(&value),
            field,
            format!("must be between {min} and {max}, got {value}"),
        );
    }

    /// An integer of at least `min`.
    pub(crate) fn int_min(&mut self, value: i64, min: i64, field: &str) {
        self.ensure(
            value >= min,
            field,
            format!("must be at least {min}, got {value}"),
        );
    }

    /// A number ≥ 0 that converts to an exact decimal (thresholds compared with amounts).
    pub(crate) fn decimal(&mut self, value: f64, field: &str) {
        if let Err(e) = exact_decimal(value) {
            self.ensure(false, field, e.to_string());
        } else {
            self.ensure(
                value >= 0.0,
                field,
                format!("must not be negative, got {value}"),
            );
        }
    }

    /// A number in [0, 1].
    pub(crate) fn ratio(&mut self, value: f64, field: &str) {
        self.ensure(
            value.is_finite() && (0.0..=1.0).contains(&value),
            field,
            format!("must be between 0 and 1, got {value}"),
        );
    }

    /// A duration longer than zero.
    pub(crate) fn positive(&mut self, value: &Duration, field: &str) {
        self.ensure(
            !value.is_zero(),
            field,
            format!(
                "must be longer than zero, got {value:?}",
                value = value.as_str()
            ),
        );
    }
}
