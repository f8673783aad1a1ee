//! The delivery files, checked without a cluster: the Argo CD health check runs every
//! case of `deploy/argocd/health_test.yaml` in Lua 5.1 (Argo CD's dialect); the CRD
//! copies in the chart and in `deploy/` equal the generated one; the plain operator
//! manifests equal the chart's rendering; `helm lint` is clean; the examples parse
//! and validate, and the invalid ones fail on the field they say.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use mlua::{Lua, LuaSerdeExt};
use riskpipe_crds::RiskPipeline;
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTests {
    tests: Vec<HealthCase>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthCase {
    health_status: Health,
    input_path: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Health {
    status: String,
    message: String,
}

fn health(script: &str, object: &serde_json::Value) -> Health {
    let lua = Lua::new();
    lua.globals()
        .set("obj", lua.to_value(object).unwrap())
        .unwrap();
    let table: mlua::Table = lua.load(script).eval().unwrap();
    Health {
        status: table.get("status").unwrap(),
        message: table.get("message").unwrap(),
    }
}

#[test]
fn argocd_health_check_passes_every_case() {
    let script = read("deploy/argocd/health.lua");
    let cases: HealthTests = yaml_serde::from_str(&read("deploy/argocd/health_test.yaml")).unwrap();
    assert!(cases.tests.len() >= 7);
    let statuses: std::collections::BTreeSet<_> = cases
        .tests
        .iter()
        .map(|c| c.health_status.status.clone())
        .collect();
    for wanted in ["Healthy", "Progressing", "Degraded", "Suspended"] {
        assert!(statuses.contains(wanted), "no case for {wanted}");
    }
    for case in cases.tests {
        let input: serde_json::Value =
            yaml_serde::from_str(&read(&format!("deploy/argocd/{}", case.input_path))).unwrap();
        assert_eq!(
            health(&script, &input),
            case.health_status,
            "{}",
            case.input_path
        );
    }
}

#[test]
fn health_is_never_healthy_for_an_unobserved_generation() {
    let script = read("deploy/argocd/health.lua");
    let mut input: serde_json::Value =
        yaml_serde::from_str(&read("deploy/argocd/testdata/healthy.yaml")).unwrap();
    assert_eq!(health(&script, &input).status, "Healthy");
    input["metadata"]["generation"] = 5.into();
    assert_eq!(health(&script, &input).status, "Progressing");
}

#[test]
fn crd_copies_equal_the_generated_crd() {
    let generated = riskpipe_crds::crdgen::crd_yaml().unwrap();
    for copy in [
        "crds/riskpipe.io_riskpipelines.yaml",
        "charts/riskpipe/crds/riskpipe.io_riskpipelines.yaml",
        "deploy/crds/riskpipe.io_riskpipelines.yaml",
    ] {
        assert!(
            read(copy) == generated,
            "{copy} differs from the types; run `{}` and copy it to charts/riskpipe/crds/ and deploy/crds/",
            riskpipe_crds::crdgen::REGENERATE
        );
    }
}

#[test]
fn examples_parse_and_validate() {
    let rp = RiskPipeline::from_yaml(&read("deploy/examples/payments.yaml")).unwrap();
    rp.spec.validate().unwrap();
    assert_eq!(rp.spec.parallelism, 2);
}

#[test]
fn invalid_examples_fail_on_the_field_they_name() {
    for (file, field) in [
        ("threshold-order", "reviewScore"),
        ("min-above-max", "minReplicas"),
        ("unknown-field", "paralellism"),
    ] {
        let text = read(&format!("deploy/examples/invalid/{file}.yaml"));
        let err = match RiskPipeline::from_yaml(&text) {
            Err(e) => e.to_string(),
            Ok(rp) => match rp.spec.validate() {
                Err(errors) => errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                Ok(()) => panic!("{file} was accepted"),
            },
        };
        assert!(err.contains(field), "{file}: {err}");
    }
}

/// The helm binary: the e2e environment's, else `helm` on PATH; `None` when absent.
fn helm() -> Option<PathBuf> {
    riskpipe_e2e::tools::helm()
}

fn helm_run(args: &[&str]) -> Option<String> {
    let Some(helm) = helm() else {
        eprintln!("SKIPPED: helm is not installed and the e2e environment (e2e/env/up) has none");
        return None;
    };
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(helm)
        .args(args)
        .current_dir(root())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn helm_lint_is_clean_in_both_rbac_modes() {
    for extra in [
        &[][..],
        &[
            "--set",
            "watchNamespaces={risk,payments}",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.podMonitor.enabled=true",
        ][..],
    ] {
        let mut args = vec!["lint", "--strict", "charts/riskpipe"];
        args.extend_from_slice(extra);
        if let Some(out) = helm_run(&args) {
            assert!(out.contains("0 chart(s) failed"), "{out}");
        }
    }
}

#[test]
fn namespaced_mode_grants_nothing_cluster_wide() {
    let Some(out) = helm_run(&[
        "template",
        "r",
        "charts/riskpipe",
        "--set",
        "watchNamespaces={risk}",
    ]) else {
        return;
    };
    assert!(!out.contains("kind: ClusterRole"), "{out}");
    assert!(
        out.contains("kind: Role\nmetadata:\n  name: r-riskpipe\n  namespace: risk"),
        "{out}"
    );
    assert!(out.contains("--namespaces=risk"));
    assert!(
        !out.contains("secrets"),
        "the operator must not read Secrets"
    );
}

#[test]
fn plain_manifests_equal_the_chart() {
    let Some(rendered) = helm_run(&[
        "template",
        "riskpipe",
        "charts/riskpipe",
        "--namespace",
        "riskpipe-system",
        "--skip-tests",
    ]) else {
        return;
    };
    let committed = read("deploy/operator/operator.yaml");
    assert!(
        committed.ends_with(&rendered),
        "deploy/operator/operator.yaml drifted from the chart; regenerate it with the command in its header"
    );
}
