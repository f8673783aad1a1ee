//! Prints the RiskPipeline CRD as YAML: `cargo run -p riskpipe-crds --bin crdgen > crds/riskpipe.io_riskpipelines.yaml`.

fn main() -> Result<(), yaml_serde::Error> {
    print!("{}", riskpipe_crds::crdgen::crd_yaml()?);
    Ok(())
}
