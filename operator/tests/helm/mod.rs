//! `helm` for the chart tests: the binary `./x test` installs (`MRBILL_HELM`), and
//! `helm template` output as JSON objects.

// Shared by several test crates, each using part of it.
#![allow(dead_code)]

use std::process::{Command, Output};

use serde_json::Value;

/// Path of the chart `charts/<name>`.
pub fn chart(name: &str) -> String {
    format!("{}/../charts/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn helm(args: &[&str]) -> Output {
    let helm = std::env::var("MRBILL_HELM").unwrap_or_else(|_| "helm".into());
    Command::new(&helm).args(args).output().unwrap_or_else(|e| {
        panic!("{helm} not found: run ./x test (it installs it) or set MRBILL_HELM: {e}")
    })
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template` output as JSON objects (asserting it renders).
pub fn template(chart_name: &str, sets: &[&str]) -> (String, Vec<Value>) {
    let path = chart(chart_name);
    let mut args = vec!["template", "rel", path.as_str(), "--namespace", "mrbill"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm template {chart_name}: {}",
        text(&out)
    );
    let yaml = String::from_utf8(out.stdout).expect("utf-8");
    let objects = yaml
        .split("\n---")
        .filter_map(|doc| serde_norway::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect();
    (yaml, objects)
}

/// The rendered objects of `kind`.
pub fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}
