//! Custom resources validated against their CustomResourceDefinitions' schemas by
//! `crd_schema.py` (PyPI jsonschema in the test venv; `MRBILL_PYTHON` names its python).

// Shared by several test crates, each using part of it.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// `(valid, report)` of `objects` against the CRDs (YAML files) in `dir`.
pub fn validate(dir: &Path, objects: &[Value]) -> (bool, String) {
    let python = std::env::var("MRBILL_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/crd_schema.py"))
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e} (./x test sets MRBILL_PYTHON)"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(objects).expect("json"))
        .expect("objects written");
    let out = child.wait_with_output().expect("validator");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}
