//! The monitoring files, checked with the real Prometheus tools (no cluster):
//! `promtool check rules` on the chart's PrometheusRule; `promtool test rules` with a
//! case for every alert (`e2e/tests/fixtures/prometheus/rules-test.yaml`); every
//! alert has a summary and a runbook; the plain copies in `deploy/monitoring/` equal
//! the chart; every query of the Grafana dashboard parses as PromQL.
//!
//! promtool comes from `e2e/env/parts/prometheus.sh` (Debian's package, unpacked into
//! the cache; the script installs it when missing).
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The folder holding `promtool` and `prometheus` (installed on first use).
fn prometheus_bin() -> PathBuf {
    riskpipe_e2e::tools::prometheus_bin().unwrap_or_else(|e| panic!("{e}"))
}

/// The helm binary: the e2e environment's, else `helm` on PATH.
fn helm() -> PathBuf {
    riskpipe_e2e::tools::helm().unwrap_or_else(|| PathBuf::from("helm"))
}

fn helm_template(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(helm())
        .args(["template", "riskpipe", "charts/riskpipe"])
        .args(args)
        .current_dir(root())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("running helm (the e2e environment's, or on PATH)");
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The chart's PrometheusRule, rendered with the default values.
fn prometheus_rule() -> Value {
    let text = helm_template(&[
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]);
    yaml_serde::from_str(&text).unwrap()
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new(prometheus_bin().join("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

fn alerts(rule: &Value) -> Vec<&Value> {
    rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn the_rules_pass_promtool_and_every_alert_fires_in_its_test_case() {
    let rule = prometheus_rule();
    assert_eq!(rule["kind"], "PrometheusRule");
    let dir = tempfile::tempdir().unwrap();
    let groups = serde_json::json!({ "groups": rule["spec"]["groups"] });
    std::fs::write(
        dir.path().join("rules.yaml"),
        yaml_serde::to_string(&groups).unwrap(),
    )
    .unwrap();
    let out = promtool(&["check", "rules", "rules.yaml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");

    // The unit tests compare labels; annotations (long runbooks) are checked below.
    let mut bare = groups.clone();
    for g in bare["groups"].as_array_mut().unwrap() {
        for r in g["rules"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(
        dir.path().join("rules.yaml"),
        yaml_serde::to_string(&bare).unwrap(),
    )
    .unwrap();
    let cases = read("e2e/tests/fixtures/prometheus/rules-test.yaml");
    std::fs::write(dir.path().join("rules-test.yaml"), &cases).unwrap();
    let out = promtool(&["test", "rules", "rules-test.yaml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");

    // Every alert has a case in which it fires (a non-empty exp_alerts).
    let cases: Value = yaml_serde::from_str(&cases).unwrap();
    let fired: BTreeSet<&str> = cases["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|a| a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()))
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    let names: BTreeSet<&str> = alerts(&rule)
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    let untested: Vec<_> = names.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "alerts without a firing case: {untested:?}"
    );
    // The seed's AutoOps checks and alert windows, the issue's operational alerts.
    for name in [
        "RiskpipeThroughputLow",
        "RiskpipeLatencyP99High",
        "RiskpipeErrorRateHigh",
        "RiskpipeErrorRateRestart",
        "RiskpipeConsumerLagHigh",
        "RiskpipeCheckpointStale",
        "RiskpipeSavepointFailed",
        "RiskpipeDegraded",
        "RiskpipeWindowRejectionRateCritical",
        "RiskpipeWindowLatencyMedium",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}

#[test]
fn every_alert_says_what_to_do() {
    let rule = prometheus_rule();
    for a in alerts(&rule) {
        let name = a["alert"].as_str().unwrap();
        let ann = &a["annotations"];
        assert!(
            ann["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: no summary"
        );
        let description = ann["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("Runbook:"),
            "{name}: the description has no runbook: {description}"
        );
        for label in ["severity", "level"] {
            assert!(a["labels"][label].is_string(), "{name}: no {label} label");
        }
    }
}

#[test]
fn thresholds_come_from_the_values() {
    let rule: Value = yaml_serde::from_str(&helm_template(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.thresholds.minTps=250",
        "--set",
        "prometheusRule.for.errorRate=2m",
        // `--set` passes decimals as strings: the schema takes numeric strings.
        "--set",
        "prometheusRule.thresholds.errorRatio=0.02",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]))
    .unwrap();
    let find = |n: &str| {
        alerts(&rule)
            .into_iter()
            .find(|a| a["alert"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        find("RiskpipeThroughputLow")["expr"],
        "riskpipe:records_in:rate5m < 250"
    );
    assert_eq!(find("RiskpipeErrorRateHigh")["for"], "2m");
    assert_eq!(
        find("RiskpipeErrorRateHigh")["expr"],
        "riskpipe:error_ratio:rate5m > 0.02"
    );
}

#[test]
fn the_monitoring_objects_are_off_by_default() {
    let out = helm_template(&[]);
    assert!(!out.contains("kind: PrometheusRule"), "{out}");
    assert!(!out.contains("grafana_dashboard"), "{out}");
}

#[test]
fn the_plain_copies_in_deploy_equal_the_chart() {
    let rendered = helm_template(&[
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ]);
    let groups: String = rendered
        .split_once("\nspec:\n")
        .unwrap()
        .1
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    let committed = read("deploy/monitoring/riskpipe-rules.yaml");
    assert!(
        committed.ends_with(&groups),
        "deploy/monitoring/riskpipe-rules.yaml drifted from the chart; run deploy/monitoring/generate.sh"
    );
    assert_eq!(
        read("deploy/monitoring/grafana-dashboard.json"),
        read("charts/riskpipe/dashboards/riskpipe.json"),
        "deploy/monitoring/grafana-dashboard.json drifted from the chart; run deploy/monitoring/generate.sh"
    );
    // The ConfigMap carries the same JSON, labelled for the sidecar.
    let cm: Value = yaml_serde::from_str(&helm_template(&[
        "--set",
        "grafanaDashboard.enabled=true",
        "--show-only",
        "templates/grafana-dashboard.yaml",
    ]))
    .unwrap();
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let in_cm: Value = serde_json::from_str(cm["data"]["riskpipe.json"].as_str().unwrap()).unwrap();
    let file: Value =
        serde_json::from_str(&read("charts/riskpipe/dashboards/riskpipe.json")).unwrap();
    assert_eq!(in_cm, file);
}

/// Every query of the dashboard, with Grafana's variables replaced by what Grafana
/// sends for "All".
pub fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value =
        serde_json::from_str(&read("charts/riskpipe/dashboards/riskpipe.json")).unwrap();
    dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    let expr = t["expr"]
                        .as_str()
                        .unwrap()
                        .replace("$__rate_interval", "1m")
                        .replace("$namespace", ".*")
                        .replace("$pipeline", ".*");
                    (title.clone(), expr)
                })
        })
        .collect()
}

#[test]
fn every_dashboard_query_parses_and_the_issue_panels_are_there() {
    let queries = dashboard_queries();
    // promtool parses recording rules' expressions: one rule per query.
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({ "record": format!("dashboard:query:{i}"), "expr": expr }))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("queries.yaml"),
        yaml_serde::to_string(
            &serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] }),
        )
        .unwrap(),
    )
    .unwrap();
    let out = promtool(&["check", "rules", "queries.yaml"], dir.path());
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{out}"
    );
    let titles: BTreeSet<&str> = queries.iter().map(|(t, _)| t.as_str()).collect();
    for panel in [
        "Throughput",
        "Decisions by kind",
        "Rejection rate",
        "End-to-end latency p50 / p99 / p99.9",
        "Consumer lag",
        "Busy ratio",
        "State cache hit rate",
        "Checkpoint duration",
        "Checkpoint age",
        "Restarts",
        "Scaling events",
        "Firing alerts",
    ] {
        assert!(titles.contains(panel), "no panel {panel:?} in {titles:?}");
    }
}
