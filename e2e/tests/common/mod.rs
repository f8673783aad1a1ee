//! Helpers shared by the smoke tests: the environment, unique names, CLI tools.
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use riskpipe_e2e::env::{TestEnv, keys};

/// Deadline for a Kubernetes object to reach a state.
pub const K8S_DEADLINE: Duration = Duration::from_secs(120);
/// Poll interval of waits.
pub const POLL: Duration = Duration::from_millis(250);

/// The environment written by `e2e/env/up`; panics naming the script when it is missing.
pub fn env() -> TestEnv {
    TestEnv::load().unwrap_or_else(|err| panic!("{err}"))
}

/// A name unique to this test run: `prefix-<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}", nanos % 1_000_000_000_000)
}

/// Runs a CLI tool of the environment (kubectl, helm) with the admin kubeconfig and
/// returns stdout; fails with the tool's stderr.
pub fn run_tool(
    env: &TestEnv,
    key: &str,
    args: &[&str],
    dir: Option<&Path>,
) -> anyhow::Result<String> {
    let program = env.get(key)?;
    let kubeconfig = env.get(keys::KUBECONFIG)?;
    let mut cmd = Command::new(program);
    cmd.args(args).env("KUBECONFIG", kubeconfig);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl ARGS...`.
pub fn kubectl(env: &TestEnv, args: &[&str]) -> anyhow::Result<String> {
    run_tool(env, keys::KUBECTL, args, None)
}
