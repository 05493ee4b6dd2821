//! `cell-templates/`: every CloudFormation template is `cfn-lint` clean (PyPI `cfn-lint`,
//! installed by `./x test`, `MRBILL_CFN_LINT` points at it) and documents each of its
//! parameters and outputs in its header.

use std::process::Command;

fn templates() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../cell-templates");
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .expect("cell-templates/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no templates in {dir}");
    found
}

fn cfn_lint(path: &std::path::Path) -> std::process::Output {
    let lint = std::env::var("MRBILL_CFN_LINT").unwrap_or_else(|_| "cfn-lint".into());
    Command::new(&lint).arg(path).output().unwrap_or_else(|e| {
        panic!("{lint} not found: run ./x test (it installs it) or set MRBILL_CFN_LINT: {e}")
    })
}

#[test]
fn every_template_is_cfn_lint_clean() {
    for path in templates() {
        let out = cfn_lint(&path);
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn cfn_lint_catches_a_broken_template() {
    let path = std::env::temp_dir().join(format!("mrbill-broken-{}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "AWSTemplateFormatVersion: \"2010-09-09\"\nResources:\n  Bucket:\n    Type: AWS::S3::Bucket\n    Properties:\n      VersioningConfiguration:\n        Status: Sometimes\n",
    )
    .expect("write");
    let out = cfn_lint(&path);
    let _ = std::fs::remove_file(&path);
    assert!(
        !out.status.success(),
        "cfn-lint must reject an invalid property value"
    );
}

#[test]
fn every_parameter_and_output_is_documented_in_the_header() {
    for path in templates() {
        let text = std::fs::read_to_string(&path).expect("read");
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let doc: serde_json::Value = serde_norway::from_str(&text).expect("long-form YAML parses");
        for section in ["Parameters", "Outputs"] {
            for name in doc[section].as_object().expect(section).keys() {
                assert!(
                    header.contains(name.as_str()),
                    "{}: {section} `{name}` is not described in the header",
                    path.display()
                );
            }
        }
    }
}

/// A cell's pods hold only their own services' database credentials: the role they assume
/// may use the cell's bucket and key and nothing else — in particular not the instance's
/// master credentials, which only the operator reads.
#[test]
fn the_cells_role_grants_its_bucket_and_key_only() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cell-templates/cell-foundation.yaml"
    );
    let text = std::fs::read_to_string(path).expect("read");
    let doc: serde_json::Value = serde_norway::from_str(&text).expect("long-form YAML parses");
    let policies = doc["Resources"]["IrsaRole"]["Properties"]["Policies"]
        .as_array()
        .expect("the role's policies");
    let mut actions = Vec::new();
    for policy in policies {
        for statement in policy["PolicyDocument"]["Statement"]
            .as_array()
            .expect("statements")
        {
            assert_eq!(statement["Effect"], "Allow");
            for action in statement["Action"].as_array().expect("actions") {
                actions.push(action.as_str().expect("action").to_owned());
            }
        }
    }
    actions.sort();
    assert_eq!(
        actions,
        [
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:GenerateDataKey",
            "s3:DeleteObject",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:PutObject",
        ]
    );
}
