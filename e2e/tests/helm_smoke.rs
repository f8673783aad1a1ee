//! `helm install` of a minimal chart succeeds against the e2e apiserver.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use riskpipe_e2e::env::keys;

#[tokio::test]
async fn helm_installs_a_minimal_chart() {
    let env = common::env();
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minimal-chart");
    let ns = common::unique("e2e-helm");
    let release = "smoke";
    let helm_home = tempfile::tempdir().unwrap();
    let home = helm_home.path().display().to_string();
    // Helm keeps its caches under HOME's XDG folders: a private one per test.
    let out = std::process::Command::new(env.get(keys::HELM).unwrap())
        .args([
            "install",
            release,
            chart,
            "--namespace",
            &ns,
            "--create-namespace",
            "--wait",
            "--timeout",
            "2m",
            "--set",
            "greeting=installed by the smoke test",
        ])
        .env("KUBECONFIG", env.get(keys::KUBECONFIG).unwrap())
        .env("HELM_CACHE_HOME", format!("{home}/cache"))
        .env("HELM_CONFIG_HOME", format!("{home}/config"))
        .env("HELM_DATA_HOME", format!("{home}/data"))
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm install failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let client = env.kube_client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    let cm = cms.get(&format!("{release}-settings")).await.unwrap();
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("greeting")
            .map(String::as_str),
        Some("installed by the smoke test")
    );
    let _ = common::kubectl(&env, &["delete", "namespace", &ns, "--wait=false"]);
}
