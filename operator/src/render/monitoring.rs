//! A cell's scrape by the platform's Prometheus (`Images::monitoring`: its namespace): a
//! Prometheus Operator `PodMonitor` of the cell's service pods — each pod's `/metrics` on its
//! public port, with the labels the platform's rules group by (`job="cells"`, `tenant`,
//! `cell`, `service`, `placement`: what the control plane's file discovery gives locally) —
//! and the NetworkPolicy that lets that namespace in to that port (the cell's policies deny
//! everything else). Off: neither, and a cluster without the Prometheus Operator's CRDs needs
//! none.

use cell_model::Cell;
use serde_json::{Value, json};

use super::policies::{policy, services_in};
use super::{CELL_LABEL, Images, PUBLIC_PORT, SERVICE_LABEL, TENANT_LABEL, meta, services};

/// The PodMonitor's name in the cell's namespace.
pub const POD_MONITOR: &str = "cell-services";

pub(super) fn objects(cell: &Cell, images: &Images) -> Vec<Value> {
    let Some(namespace) = &images.monitoring else {
        return Vec::new();
    };
    let label = |from: &str, to: &str| {
        let source = format!(
            "__meta_kubernetes_pod_label_{}",
            from.replace(['.', '/', '-'], "_")
        );
        json!({ "sourceLabels": [source], "targetLabel": to })
    };
    let monitor = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta(cell, POD_MONITOR),
        "spec": {
            "selector": services_in(&services()),
            "podMetricsEndpoints": [{
                "port": "public",
                "path": "/metrics",
                "interval": "30s",
                "relabelings": [
                    { "targetLabel": "job", "replacement": "cells" },
                    label(TENANT_LABEL, "tenant"),
                    label(CELL_LABEL, "cell"),
                    label(SERVICE_LABEL, "service"),
                    { "targetLabel": "placement", "replacement": cell.spec.placement },
                ],
            }],
        },
    });
    let allow = policy(
        cell,
        "allow-metrics-from-prometheus",
        json!({
            "podSelector": services_in(&services()),
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{ "namespaceSelector": { "matchLabels": {
                    "kubernetes.io/metadata.name": namespace,
                } } }],
                "ports": [{ "protocol": "TCP", "port": PUBLIC_PORT }],
            }],
        }),
    );
    vec![monitor, allow]
}
