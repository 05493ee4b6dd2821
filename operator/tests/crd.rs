//! The committed CRD (`crd/cells.mrbill.dev.yaml`, and the chart's copy) is what `crdgen`
//! generates from cell-model today; regenerate with `UPDATE_CRD=1 cargo test -p cell-operator --test crd`.

/// Both committed copies: the operator's and the one the Helm chart installs.
#[test]
fn the_committed_crd_matches_the_types() {
    let generated = cell_operator::crd_yaml().expect("CRD as YAML");
    for path in [
        "crd/cells.mrbill.dev.yaml",
        "../charts/cell-operator/files/cells.mrbill.dev.yaml",
    ] {
        test_support::assert_committed(path, &generated, "UPDATE_CRD");
    }
}

#[test]
fn the_crd_carries_columns_status_and_validation() {
    let crd: serde_norway::Value =
        serde_norway::from_str(&cell_operator::crd_yaml().expect("yaml")).expect("parses");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(crd["spec"]["group"], "mrbill.dev");
    assert_eq!(version["name"], "v1alpha1");
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_sequence()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Tenant", "Tier", "Phase", "Age"]);
    assert!(
        version["subresources"]["status"].is_mapping(),
        "a /status subresource"
    );
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        spec["tenant"]["pattern"].as_str(),
        Some(cell_model::SLUG_PATTERN),
        "tenant slugs are validated by the API server"
    );
    let poc = &spec["replicas"]["properties"]["poc"];
    assert_eq!(
        (poc["minimum"].as_f64(), poc["maximum"].as_f64()),
        (Some(1.0), Some(20.0))
    );
}

/// The CRD validates against the Kubernetes API schemas (PyPI `kubernetes-validate`, strict:
/// unknown fields are errors). `./x test` installs it and sets `MRBILL_KUBERNETES_VALIDATE`.
#[test]
fn the_crd_is_a_valid_kubernetes_object() {
    let program = std::env::var("MRBILL_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "kubernetes-validate".into());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crd/cells.mrbill.dev.yaml");
    let out = std::process::Command::new(&program)
        .args(["--strict", path])
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} not found: run ./x test (it installs it) or set MRBILL_KUBERNETES_VALIDATE: {e}")
        });
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
