//! Command-line tools the tests run beside the environment: Prometheus' binaries
//! and helm, found the same way by every test crate.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::{TestEnv, keys};

/// The folder holding `promtool` and `prometheus`: `e2e/env/parts/prometheus.sh`
/// installs them into the cache on first use (Debian's package, unpacked) and
/// prints the folder.
pub fn prometheus_bin() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("env/parts/prometheus.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} printed no folder", script.display()))
}

/// The helm binary: the e2e environment's, else `helm` on PATH; `None` when
/// neither exists.
pub fn helm() -> Option<PathBuf> {
    let from_env = TestEnv::load()
        .ok()
        .and_then(|e| e.get(keys::HELM).ok().map(PathBuf::from))
        .filter(|p| p.is_file());
    from_env.or_else(|| {
        Command::new("helm")
            .arg("version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("helm"))
    })
}
