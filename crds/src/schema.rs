//! Schema adjustments that are not CEL rules.

use schemars::Schema;
use serde_json::Value;

use crate::cel::is_exactly_one_rule;

/// Schemars transform for structs without fields (`stdout: {}`): Kubernetes refuses
/// `additionalProperties: false`, which `deny_unknown_fields` adds and kube's
/// structural rewrite only removes from objects that have properties.
pub(crate) fn allow_empty_object(schema: &mut Schema) {
    schema.remove("additionalProperties");
}

/// Schemars transform for the spec: no schema `default` may set a union (an object
/// whose rule is "exactly one of …", such as a sink or a storage).
///
/// The apiserver stores defaults, and a stored field that the user never wrote is
/// owned by no field manager, so a later `kubectl apply` that picks another member
/// of the union (`storage: {s3: …}` over a defaulted `path`) would merge into two
/// members and be refused. Such fields stay absent in the stored object instead, and
/// serde fills in the same default when the spec is read. A default left empty by
/// this (the whole `sinks` section) is dropped, because `sinks: {}` means something
/// else than no `sinks` at all.
pub(crate) fn strip_union_defaults(schema: &mut Schema) {
    if let Some(object) = schema.as_object_mut() {
        for child in object_children(object) {
            strip_node(child);
        }
    }
}

fn object_children(
    object: &mut serde_json::Map<String, Value>,
) -> impl Iterator<Item = &mut Value> {
    object
        .iter_mut()
        .filter(|(key, _)| {
            matches!(
                key.as_str(),
                "properties" | "items" | "additionalProperties"
            )
        })
        .flat_map(|(key, value)| {
            let children: Vec<&mut Value> = match (key.as_str(), value) {
                ("properties", Value::Object(properties)) => properties.values_mut().collect(),
                (_, child @ Value::Object(_)) => vec![child],
                _ => Vec::new(),
            };
            children
        })
}

fn is_union(node: &Value) -> bool {
    node.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules
                .iter()
                .filter_map(|r| r.get("rule").and_then(Value::as_str))
                .any(is_exactly_one_rule)
        })
}

fn strip_node(node: &mut Value) {
    let Some(object) = node.as_object_mut() else {
        return;
    };
    for child in object_children(object) {
        strip_node(child);
    }
    if is_union(node) {
        if let Some(object) = node.as_object_mut() {
            object.remove("default");
        }
        return;
    }
    let Some(mut default) = node.get("default").cloned() else {
        return;
    };
    if strip_value(node, &mut default)
        && let Some(object) = node.as_object_mut()
    {
        if default.as_object().is_some_and(serde_json::Map::is_empty) {
            object.remove("default");
        } else {
            object.insert("default".into(), default);
        }
    }
}

/// Removes union members from a default value; true when something was removed.
fn strip_value(schema: &Value, value: &mut Value) -> bool {
    let (Some(properties), Some(fields)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object_mut(),
    ) else {
        return false;
    };
    let mut changed = false;
    fields.retain(|key, field| match properties.get(key) {
        Some(child) if is_union(child) => {
            changed = true;
            false
        }
        Some(child) => {
            changed |= strip_value(child, field);
            true
        }
        None => true,
    });
    changed
}
