//! Helpers shared by the integration tests: the committed CRD, the examples, and
//! editing a manifest as JSON.

#![allow(dead_code)]

use std::{fs, path::PathBuf};

use serde_json::Value;

/// A file under the crate's folder.
pub fn crate_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The text of `examples/<name>.yaml`.
pub fn example_text(name: &str) -> String {
    let path = crate_file(&format!("examples/{name}.yaml"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `examples/<name>.yaml` as JSON.
pub fn example_json(name: &str) -> Value {
    yaml_serde::from_str(&example_text(name)).expect("example is YAML")
}

/// The committed CRD as JSON.
pub fn committed_crd() -> Value {
    let path = crate_file("riskpipe.io_riskpipelines.yaml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    yaml_serde::from_str(&text).expect("CRD is YAML")
}

/// The `openAPIV3Schema` of the committed CRD's only version.
pub fn committed_schema() -> Value {
    committed_crd()
        .pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .expect("CRD has an openAPIV3Schema")
}

/// Sets the value at a JSON pointer, creating missing objects on the way.
pub fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut node = doc;
    let keys: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let (last, parents) = keys.split_last().expect("pointer has a key");
    for key in parents {
        let object = node.as_object_mut().expect("parent is an object");
        node = object
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    node.as_object_mut()
        .expect("parent is an object")
        .insert(last.to_string(), value);
}

/// Removes the value at a JSON pointer (no-op when absent).
pub fn remove(doc: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("pointer has a key");
    if let Some(object) = doc.pointer_mut(parent).and_then(Value::as_object_mut) {
        object.remove(last);
    }
}
