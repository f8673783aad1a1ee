//! Upgrade mode `stateless`: each worker configuration (config hash and
//! parallelism) gets its own state folder and checkpoint folder, so the workers of
//! a new configuration find neither local state nor a checkpoint and start with
//! empty windows, reading on from the group's committed offsets (no decision is
//! emitted twice). Folders of earlier configurations stay on the volumes.

use riskpipe_contract::layout;
use riskpipe_crds::{RiskPipelineSpec, Storage, UpgradeMode};

/// The folder suffix of this configuration in stateless mode; `None` otherwise.
pub fn epoch(spec: &RiskPipelineSpec, hash: &str) -> Option<String> {
    (spec.job.upgrade_mode == UpgradeMode::Stateless).then(|| {
        let key = format!("{hash}/{}", spec.parallelism);
        format!(
            "stateless-{:08x}",
            xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32
        )
    })
}

/// The workers' `--state-dir`: the state volume, or a folder of it per epoch.
pub fn state_dir(spec: &RiskPipelineSpec, epoch: Option<&str>) -> String {
    let root = spec.state.path.trim_end_matches('/');
    match epoch {
        Some(e) => format!("{root}/{e}"),
        None => root.to_owned(),
    }
}

/// The spec the workers read (the ConfigMap): checkpoints in a folder of the epoch.
pub fn worker_spec(spec: &RiskPipelineSpec, epoch: Option<&str>) -> RiskPipelineSpec {
    let mut out = spec.clone();
    let Some(e) = epoch else {
        return out;
    };
    match out.checkpoints.storage.kind() {
        Some(Storage::Path(p)) => {
            out.checkpoints.storage.path = Some(layout::join(p, e));
        }
        Some(Storage::S3(_)) => {
            if let Some(s3) = out.checkpoints.storage.s3.as_mut() {
                s3.prefix = layout::prefix_join(&s3.prefix, e);
            }
        }
        None => {}
    }
    out
}
