//! The CRD as YAML, generated from the types.

use kube::CustomResourceExt;

use crate::spec::RiskPipeline;

/// Path of the committed CRD, relative to the workspace root.
pub const CRD_PATH: &str = "crds/riskpipe.io_riskpipelines.yaml";

/// The command that regenerates the committed CRD (run from the workspace root).
pub const REGENERATE: &str =
    "cargo run -p riskpipe-crds --bin crdgen > crds/riskpipe.io_riskpipelines.yaml";

/// The `CustomResourceDefinition` of `RiskPipeline` as YAML, with a header saying it
/// is generated.
pub fn crd_yaml() -> Result<String, yaml_serde::Error> {
    let body = yaml_serde::to_string(&RiskPipeline::crd())?;
    Ok(format!(
        "# Generated from crds/src by `{REGENERATE}`; do not edit.\n{body}"
    ))
}
