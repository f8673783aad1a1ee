//! References to other objects in the pipeline's namespace.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Secret in the pipeline's namespace, by name. Which keys are read is said where
/// the reference is used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
