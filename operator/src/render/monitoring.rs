//! Where a cell's signals go. Metrics: a cell's scrape by the platform's Prometheus (`Images::monitoring`: its namespace): a
//! Prometheus Operator `PodMonitor` of the cell's service pods — each pod's `/metrics` on its
//! public port, with the labels the platform's rules group by (`job="cells"`, `tenant`,
//! `cell`, `service`, `placement`: what the control plane's file discovery gives locally) —
//! and the NetworkPolicy that lets that Prometheus's pods (its namespace and pod labels) in
//! to that port (the cell's policies deny everything else; nothing else in that namespace gets
//! past the router's limits). Off: neither, and a cluster without the Prometheus Operator's CRDs needs
//! none. Traces (`Images::tracing`): the services' egress to the collector's pods on its OTLP
//! port, and nothing else (the variables themselves are in each container's `env`).

use cell_model::Cell;
use serde_json::{Value, json};

use super::policies::{policy, services_in};
use super::{CELL_LABEL, Images, PUBLIC_PORT, SERVICE_LABEL, TENANT_LABEL, meta, services};

/// The PodMonitor's name in the cell's namespace.
pub const POD_MONITOR: &str = "cell-services";

pub(super) fn objects(cell: &Cell, images: &Images) -> Vec<Value> {
    let mut out = scrape(cell, images);
    if let Some(tracing) = &images.tracing {
        out.push(policy(
            cell,
            "allow-traces-to-collector",
            json!({
                "podSelector": services_in(&services()),
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{
                        "namespaceSelector": { "matchLabels": {
                            "kubernetes.io/metadata.name": tracing.namespace,
                        } },
                        "podSelector": { "matchLabels": tracing.pod_labels },
                    }],
                    "ports": [{ "protocol": "TCP", "port": tracing.port }],
                }],
            }),
        ));
    }
    out
}

fn scrape(cell: &Cell, images: &Images) -> Vec<Value> {
    let Some(monitoring) = &images.monitoring else {
        return Vec::new();
    };
    let label = |from: &str, to: &str| {
        let source = format!(
            "__meta_kubernetes_pod_label_{}",
            from.replace(['.', '/', '-'], "_")
        );
        json!({ "sourceLabels": [source], "targetLabel": to })
    };
    let mut metadata = meta(cell, POD_MONITOR);
    for (key, value) in &monitoring.labels {
        metadata["labels"][key] = json!(value);
    }
    let monitor = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata,
        "spec": {
            "selector": services_in(&services()),
            "podMetricsEndpoints": [{
                "port": "public",
                "path": "/metrics",
                "interval": monitoring.interval,
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
                "from": [{
                    "namespaceSelector": { "matchLabels": {
                        "kubernetes.io/metadata.name": monitoring.namespace,
                    } },
                    "podSelector": { "matchLabels": monitoring.pod_labels },
                }],
                "ports": [{ "protocol": "TCP", "port": PUBLIC_PORT }],
            }],
        }),
    );
    vec![monitor, allow]
}
