//! Reading a `RiskPipeline` manifest from YAML without an apiserver (local mode).

use serde::Deserialize;

use crate::{API_VERSION, KIND, spec::RiskPipeline, validate::ValidationError};

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML, or not a single YAML mapping.
    #[error("cannot read the manifest: {0}")]
    Yaml(#[from] yaml_serde::Error),
    /// A field is missing, has the wrong type, an unknown name or a bad value.
    #[error("{path}: {message}")]
    Field {
        /// Dotted path of the field (`spec.checkpoints.interval`), or of the object
        /// holding a missing or unknown field.
        path: String,
        /// What is wrong, with the line and column.
        message: String,
    },
    /// `apiVersion` is not `riskpipe.io/v1alpha1`.
    #[error(
        "apiVersion is {}; this version of riskpipe reads {API_VERSION:?}",
        shown(found)
    )]
    ApiVersion {
        /// The apiVersion found.
        found: String,
    },
    /// `kind` is not `RiskPipeline`.
    #[error("kind is {}; expected {KIND:?}", shown(found))]
    Kind {
        /// The kind found.
        found: String,
    },
    /// `metadata.name` is missing.
    #[error("metadata.name is required")]
    MissingName,
    /// The spec parsed but breaks a rule (see [`crate::RiskPipelineSpec::validate`]).
    #[error("{} problem(s) in the manifest:{}", .0.len(), list(.0))]
    Invalid(Vec<ValidationError>),
}

fn shown(value: &str) -> String {
    if value.is_empty() {
        "missing".to_owned()
    } else {
        format!("{value:?}")
    }
}

fn list(errors: &[ValidationError]) -> String {
    errors.iter().map(|e| format!("\n  - {e}")).collect()
}

/// The two fields checked before the rest is read, so a manifest of another kind
/// gets an error about its kind rather than about its fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

impl RiskPipeline {
    /// Parses a manifest (one YAML document) and checks its apiVersion, kind and
    /// name. It does not run [`crate::RiskPipelineSpec::validate`]; see [`Self::from_yaml_validated`].
    pub fn from_yaml(text: &str) -> Result<Self, ManifestError> {
        let header: Header = parse_with_path(text)?;
        if header.api_version != API_VERSION {
            return Err(ManifestError::ApiVersion {
                found: header.api_version,
            });
        }
        if header.kind != KIND {
            return Err(ManifestError::Kind { found: header.kind });
        }
        let pipeline: Self = parse_with_path(text)?;
        if pipeline.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(ManifestError::MissingName);
        }
        Ok(pipeline)
    }

    /// [`Self::from_yaml`], then [`crate::RiskPipelineSpec::validate`].
    pub fn from_yaml_validated(text: &str) -> Result<Self, ManifestError> {
        let pipeline = Self::from_yaml(text)?;
        pipeline.spec.validate().map_err(ManifestError::Invalid)?;
        Ok(pipeline)
    }
}

/// Deserialises `text`, naming the exact field on error: yaml_serde's own path stops
/// at the object holding a field whose value failed to parse.
fn parse_with_path<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ManifestError> {
    let deserializer = yaml_serde::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            return ManifestError::Yaml(inner);
        }
        let message = inner.to_string();
        // yaml_serde starts its message with its (shorter) path; drop that prefix.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => rest.to_owned(),
            _ => message,
        };
        ManifestError::Field { path, message }
    })
}

/// Parses a manifest; the same as [`RiskPipeline::from_yaml`].
pub fn from_yaml(text: &str) -> Result<RiskPipeline, ManifestError> {
    RiskPipeline::from_yaml(text)
}
