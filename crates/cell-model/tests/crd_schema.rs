//! The generated `Cell` CRD schema must be a valid *structural* schema, or the API server rejects
//! the CRD. These checks follow the Kubernetes rules for structural schemas.

use cell_model::Cell;
use kube::CustomResourceExt;
use serde_json::Value;

/// Walks a schema node and collects every structural-schema violation under `path`.
fn violations(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: schema node is not an object"));
        return;
    };
    for forbidden in [
        "$ref",
        "definitions",
        "$schema",
        "additionalItems",
        "patternProperties",
        "dependencies",
    ] {
        if obj.contains_key(forbidden) {
            out.push(format!("{path}: `{forbidden}` is not allowed"));
        }
    }
    let preserves = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    match obj.get("type") {
        Some(Value::String(_)) => {}
        Some(other) => out.push(format!(
            "{path}: `type` must be a single string, got {other}"
        )),
        None if preserves || int_or_string => {}
        None => out.push(format!("{path}: missing `type`")),
    }
    if obj.get("nullable") == Some(&Value::Bool(true)) && obj.get("type").is_none() {
        out.push(format!("{path}: nullable without type"));
    }
    // Value validations (anyOf/oneOf/allOf/not) may not declare types, descriptions or defaults.
    for junctor in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(branches)) = obj.get(junctor) {
            for (i, b) in branches.iter().enumerate() {
                for key in [
                    "type",
                    "description",
                    "default",
                    "additionalProperties",
                    "nullable",
                ] {
                    if b.get(key).is_some() {
                        out.push(format!(
                            "{path}.{junctor}[{i}]: `{key}` not allowed inside {junctor}"
                        ));
                    }
                }
            }
        }
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, child) in props {
            violations(child, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        violations(items, &format!("{path}[]"), out);
    }
    if let Some(extra @ Value::Object(_)) = obj.get("additionalProperties") {
        violations(extra, &format!("{path}{{*}}"), out);
    }
}

fn schema() -> Value {
    let crd = serde_json::to_value(Cell::crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn generated_crd_schema_is_structural() {
    let mut out = Vec::new();
    violations(&schema(), "", &mut out);
    assert!(
        out.is_empty(),
        "structural schema violations:\n{}",
        out.join("\n")
    );
}

#[test]
fn crd_validates_slug_and_replica_bounds() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    assert_eq!(spec["tenant"]["pattern"], cell_model::SLUG_PATTERN);
    assert_eq!(
        spec["replicas"]["properties"]["poc"]["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        spec["replicas"]["properties"]["poc"]["maximum"].as_f64(),
        Some(20.0)
    );
}

#[test]
fn crd_has_status_subresource_and_printer_columns() {
    let crd = serde_json::to_value(Cell::crd()).expect("CRD serializes");
    let version = &crd["spec"]["versions"][0];
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Tenant", "Tier", "Phase", "Age"]);
}
