//! The committed CRD: up to date with the types, structural, documented, and its
//! defaults equal to the Rust defaults.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use riskpipe_crds::{
    RiskPipeline,
    crdgen::{CRD_PATH, REGENERATE, crd_yaml},
};
use serde_json::Value;
use support::{committed_schema, crate_file, example_json, example_text};

#[test]
fn committed_crd_matches_the_types() {
    let committed =
        std::fs::read_to_string(crate_file("riskpipe.io_riskpipelines.yaml")).unwrap_or_default();
    let generated = crd_yaml().expect("CRD serialises");
    assert!(
        committed == generated,
        "{CRD_PATH} is out of date with crds/src. Regenerate it from the workspace root:\n\n    {REGENERATE}\n"
    );
}

/// Walks every schema node with its path.
fn walk<'a>(node: &'a Value, path: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&path, node);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            walk(child, format!("{path}.{name}"), visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, format!("{path}[]"), visit);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        walk(additional, format!("{path}{{}}"), visit);
    }
}

#[test]
fn schema_is_structural() {
    let schema = committed_schema();
    let mut problems = Vec::new();
    walk(&schema, String::new(), &mut |path, node| {
        let typed = node.get("type").is_some()
            || node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if !typed {
            problems.push(format!("{path}: no type"));
        }
        for keyword in ["oneOf", "anyOf", "allOf", "not", "$ref"] {
            if node.get(keyword).is_some() {
                problems.push(format!("{path}: uses {keyword}"));
            }
        }
        if node.get("additionalProperties") == Some(&Value::Bool(false)) {
            problems.push(format!("{path}: additionalProperties: false"));
        }
        if node.get("x-kubernetes-preserve-unknown-fields").is_some() {
            problems.push(format!("{path}: preserves unknown fields"));
        }
        // A settings-free marker such as `stdout: {}` is the only object that may
        // have no properties (it then keeps no fields); anything else is a map or a
        // struct whose fields went missing.
        if node.get("type") == Some(&Value::String("object".into()))
            && node.get("properties").is_none()
            && node.get("additionalProperties").is_none()
            && !path.ends_with(".stdout")
        {
            problems.push(format!("{path}: object without properties"));
        }
    });
    assert!(
        problems.is_empty(),
        "not structural:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_spec_and_status_field_has_a_description() {
    let schema = committed_schema();
    let mut missing = Vec::new();
    for root in ["spec", "status"] {
        let node = &schema["properties"][root];
        walk(node, root.to_owned(), &mut |path, node| {
            let described = node
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            // Array items and map values are described by their parent.
            if !described && !path.ends_with("[]") && !path.ends_with("{}") {
                missing.push(path.to_owned());
            }
        });
    }
    assert!(
        missing.is_empty(),
        "fields without a description:\n{}",
        missing.join("\n")
    );
}

#[test]
fn only_source_is_required_in_the_spec() {
    let schema = committed_schema();
    assert_eq!(
        schema["properties"]["spec"]["required"],
        serde_json::json!(["source"])
    );
}

#[test]
fn schema_defaults_equal_the_rust_defaults() {
    // What the apiserver stores for the minimal manifest (schema defaults applied)
    // must be what local mode reads from it (serde defaults).
    let schema = committed_schema();
    let defaulted = kube_cel::apply_defaults(&schema, &example_json("minimal"));
    let from_apiserver: RiskPipeline =
        serde_json::from_value(defaulted.clone()).expect("defaulted object deserialises");
    let local = RiskPipeline::from_yaml(&example_text("minimal")).expect("minimal parses");
    assert_eq!(from_apiserver, local);

    // And the schema defaults every spec field that has a Rust default, except
    // `sinks` (see `no_default_sets_a_union`).
    let mut expected: BTreeSet<String> = serde_json::to_value(&local.spec)
        .expect("spec serialises")
        .as_object()
        .expect("spec is an object")
        .keys()
        .cloned()
        .collect();
    expected.remove("sinks");
    let actual: BTreeSet<String> = defaulted["spec"]
        .as_object()
        .expect("spec is an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(actual, expected);
}

/// True for a union: an object whose rule is "exactly one of …".
fn is_union(node: &Value) -> bool {
    node["x-kubernetes-validations"]
        .as_array()
        .is_some_and(|rules| {
            rules.iter().any(|r| {
                r["rule"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("(has(self.") && t.ends_with(" == 1"))
            })
        })
}

/// The paths of unions that `default` (a default for `schema`) sets.
fn unions_set(schema: &Value, default: &Value, path: &str, out: &mut Vec<String>) {
    if is_union(schema) {
        out.push(path.to_owned());
        return;
    }
    if let Some(fields) = default.as_object() {
        for (key, value) in fields {
            let child = &schema["properties"][key];
            unions_set(child, value, &format!("{path}.{key}"), out);
        }
    }
}

#[test]
fn no_default_sets_a_union() {
    // A stored default is owned by no field manager: a later `kubectl apply` choosing
    // another member of the union would merge into two members and be refused.
    let schema = committed_schema();
    let mut found = Vec::new();
    walk(&schema, String::new(), &mut |path, node| {
        if let Some(default) = node.get("default") {
            unions_set(node, default, path, &mut found);
        }
    });
    assert!(
        found.is_empty(),
        "schema defaults that set a union: {found:?}"
    );
}

#[test]
fn scale_subresource_and_printer_columns() {
    let crd = support::committed_crd();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(
        version["subresources"]["scale"],
        serde_json::json!({
            "specReplicasPath": ".spec.parallelism",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        })
    );
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in ["State", "Parallelism", "Ready", "Condition", "Age"] {
        assert!(
            columns.contains(&name),
            "missing printer column {name}: {columns:?}"
        );
    }
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["rp"])
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
}
