//! Scenario tests of the controller against `kube_fake::FakeApi`, an in-memory API server (no
//! Kubernetes cluster can run on the test machines): create, readiness, idempotency, scale,
//! suspend, switching search engines (`create`); delete, API errors, pause, the mail relay and
//! secrets' bindings (`lifecycle`).

mod create;
#[path = "../fixtures/mod.rs"]
mod fixtures;
mod lifecycle;

use std::sync::Arc;
use std::time::Duration;

use cell_model::{ConditionStatus, Phase, SearchEngine};
use cell_operator::controller::{
    Context, FINALIZER, PAUSED_ANNOTATION, error_policy, reconcile, retry_delay,
};
use cell_operator::render::{Images, desired};
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use fixtures::scenario::*;

fn path_of(object: &Value) -> String {
    let kind = object["kind"].as_str().expect("kind");
    let (_, _, plural, namespaced) = cell_operator::apply::KINDS
        .iter()
        .find(|k| k.1 == kind)
        .expect("a managed kind");
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let prefix = if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    };
    let name = object["metadata"]["name"].as_str().expect("name");
    if *namespaced {
        format!("{prefix}/namespaces/{NS}/{plural}/{name}")
    } else {
        format!("{prefix}/{plural}/{name}")
    }
}
