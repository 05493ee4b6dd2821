//! Reading a rendered workload: whether it is one, its containers, its ports.

use serde_json::Value;

pub(super) fn is_workload(o: &Value) -> bool {
    matches!(
        o["kind"].as_str(),
        Some("Deployment" | "StatefulSet" | "Job")
    )
}

pub(super) fn containers(w: &Value) -> Vec<&Value> {
    w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

/// A port by number or by container port name.
pub(super) fn container_port(w: &Value, port: &Value) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return Some(n as u16);
    }
    let name = port.as_str()?;
    containers(w)
        .into_iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .map(|p| p as u16)
}
