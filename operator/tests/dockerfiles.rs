//! The Dockerfiles build what the manifests run: every image the operator renders for a cell
//! and the charts install has a `docker/<image>.Dockerfile`, which builds (`cargo build -p
//! <package> --bin …`) binaries that package really has, copies exactly those, and whose
//! ENTRYPOINT is one of them. (No container engine runs here; the pods started from these
//! images in `tests/pods.rs` and `tests/chart_pods.rs` run the same binaries.)

mod fixtures;
use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Binary targets per package, from `cargo metadata`.
fn binaries(package: &str) -> BTreeSet<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let pkg = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("no package {package}"));
    pkg["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect()
}

fn rendered_images() -> BTreeSet<String> {
    use cell_model::{Cell, CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, Tier};
    let mut images = BTreeSet::new();
    for engine in [DatabaseEngine::InCluster, DatabaseEngine::Rds] {
        let cell = Cell::new(
            "c-1",
            CellSpec {
                cell_id: "c-1".into(),
                tenant: "acme".into(),
                tier: Tier::Small,
                version: "1.0.0".into(),
                replicas: Default::default(),
                database: DatabaseSpec {
                    engine,
                    class: None,
                    storage_gib: 20,
                    multi_az: false,
                },
                search: SearchEngine::Embedded,
                placement: "p".into(),
                suspended: false,
                email_domains: Vec::new(),
                bootstrap: None,
                migration: None,
                restore: None,
            },
        );
        let objects = cell_operator::render::desired(&cell, &fixtures::images());
        collect_images(&objects, &mut images);
    }
    let helm = std::env::var("MRBILL_HELM").unwrap_or_else(|_| "helm".into());
    for chart in ["mrbill", "cell-operator"] {
        let out = Command::new(&helm)
            .args(["template", "rel"])
            .arg(root().join("charts").join(chart))
            .args(match chart {
                "mrbill" => ["--set", "image.registry=registry.example.com/mrbill"],
                _ => [
                    "--set",
                    "image.repository=registry.example.com/mrbill/cell-operator",
                ],
            })
            .output()
            .unwrap_or_else(|e| panic!("{helm}: run ./x test (it installs helm): {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let objects: Vec<Value> = String::from_utf8(out.stdout)
            .expect("utf-8")
            .split("\n---")
            .filter_map(|d| serde_norway::from_str(d).ok())
            .collect();
        collect_images(&objects, &mut images);
    }
    images
}

fn collect_images(objects: &[Value], into: &mut BTreeSet<String>) {
    for o in objects {
        for c in o["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let image = c["image"].as_str().expect("image");
            if let Some(ours) = image.strip_prefix("registry.example.com/mrbill/") {
                into.insert(ours.split(':').next().expect("name").to_owned());
            }
        }
    }
}

/// The profile a Dockerfile's `cargo build` uses (`--release` or `--profile <name>`), which the
/// workspace must define.
fn profile<'a>(words: &[&'a str]) -> &'a str {
    let named = words.windows(2).find(|w| w[0] == "--profile").map(|w| w[1]);
    match named {
        None => {
            assert!(words.contains(&"--release"), "a debug build in an image");
            "release"
        }
        Some(name) => {
            let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
            assert!(
                manifest.contains(&format!("[profile.{name}]")),
                "no profile {name} in the workspace"
            );
            name
        }
    }
}

#[test]
fn every_image_the_manifests_run_is_built_by_its_dockerfile() {
    let images = rendered_images();
    for expected in [
        "poc-service",
        "dojo-service",
        "media-service",
        "mrbill-control-plane",
        "mrbill-router",
        "cell-operator",
    ] {
        assert!(images.contains(expected), "{expected} not in {images:?}");
    }
    for image in &images {
        let path = root().join("docker").join(format!("{image}.Dockerfile"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{image} has no {}: {e}", path.display()));
        let words: Vec<&str> = text.split_whitespace().collect();
        let package = words
            .windows(2)
            .find(|w| w[0] == "-p")
            .map(|w| w[1])
            .unwrap_or_else(|| panic!("{image}: no `cargo build -p`"));
        let built = binaries(package);
        let named: BTreeSet<String> = words
            .windows(2)
            .filter(|w| w[0] == "--bin")
            .map(|w| w[1].to_owned())
            .collect();
        let all_bins = words.contains(&"--bins");
        // Where the build puts them: `--release`, or a profile of its own (`--profile router`).
        let out_dir = format!("target/{}/", profile(&words));
        let copied: BTreeSet<String> = words
            .iter()
            .filter_map(|w| w.strip_prefix(out_dir.as_str()))
            .map(str::to_owned)
            .collect();
        assert!(!copied.is_empty(), "{image}: copies no binary");
        for bin in &copied {
            assert!(
                built.contains(bin),
                "{image}: {package} has no binary {bin} ({built:?})"
            );
            assert!(
                all_bins || named.contains(bin),
                "{image}: copies {bin} without building it"
            );
        }
        let entry = text
            .lines()
            .find_map(|l| l.strip_prefix("ENTRYPOINT "))
            .unwrap_or_else(|| panic!("{image}: no ENTRYPOINT"));
        let entry: Vec<String> = serde_json::from_str(entry).expect("exec-form ENTRYPOINT");
        assert!(
            copied
                .iter()
                .any(|b| entry[0] == format!("/usr/local/bin/{b}")),
            "{image}: ENTRYPOINT {entry:?} is not a copied binary ({copied:?})"
        );
        assert!(text.contains("USER 10001"), "{image}: runs as root");
    }
}
