//! The images pods run, made of this machine's files: the platform's (from their Dockerfiles
//! and the built binaries) and CloudNativePG's Postgres image (this machine's Postgres client
//! and shell).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A platform image as its Dockerfile (`docker/<name>.Dockerfile`) builds it: the binaries it
/// copies into `/usr/local/bin`, its ENTRYPOINT and CMD. Unpacked as hard links to the built
/// binaries, readable by the pod's user.
pub(super) struct Image {
    root: PathBuf,
    pub(super) entrypoint: Vec<String>,
    pub(super) cmd: Vec<String>,
    /// The image's own `PATH`, when it differs from this machine's.
    pub(super) path_env: Option<String>,
}

impl Image {
    pub(super) fn unpack(reference: &str, images: &Path) -> Self {
        // CloudNativePG's Postgres image (a move's schema Job runs its shell, pg_dump and
        // psql): this machine's Postgres client and shell.
        if reference.starts_with("ghcr.io/cloudnative-pg/postgresql:") {
            let bin = pg_cluster::bin_dir().expect("postgres installed");
            return Self {
                root: PathBuf::from("/"),
                entrypoint: Vec::new(),
                cmd: Vec::new(),
                path_env: Some(format!("{}:/usr/bin:/bin", bin.display())),
            };
        }
        let name = reference
            .rsplit('/')
            .next()
            .and_then(|n| n.split(':').next())
            .expect("image name");
        let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docker")
            .join(format!("{name}.Dockerfile"));
        let text = std::fs::read_to_string(&dockerfile)
            .unwrap_or_else(|e| panic!("image {reference}: no {}: {e}", dockerfile.display()));
        // Copied from where the build put them: `target/release/`, or a profile's own directory.
        let binaries: Vec<String> = text
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("target/"))
            .filter_map(|w| w.split_once('/').map(|(_, bin)| bin))
            .filter(|bin| !bin.is_empty() && !bin.contains('/'))
            .map(str::to_owned)
            .collect();
        let json_line = |key: &str| -> Vec<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|rest| serde_json::from_str(rest.trim()).expect("exec-form JSON"))
                .unwrap_or_default()
        };
        let root = images.join(name);
        let bin = root.join("usr/local/bin");
        std::fs::create_dir_all(&bin).expect("image dir");
        for b in &binaries {
            let built = test_support::bin_dir().join(b);
            let target = bin.join(b);
            if !target.exists() {
                std::fs::hard_link(&built, &target)
                    .or_else(|_| std::fs::copy(&built, &target).map(drop))
                    .unwrap_or_else(|e| panic!("{name}: {} not built: {e}", built.display()));
            }
        }
        for dir in [
            images.to_path_buf(),
            root.clone(),
            root.join("usr"),
            root.join("usr/local"),
            bin,
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let image = Self {
            root,
            entrypoint: json_line("ENTRYPOINT "),
            cmd: json_line("CMD "),
            path_env: None,
        };
        let entry = image
            .entrypoint
            .first()
            .unwrap_or_else(|| panic!("{name}: no ENTRYPOINT"));
        assert!(
            binaries
                .iter()
                .any(|b| *entry == format!("/usr/local/bin/{b}")),
            "{name}: ENTRYPOINT {entry} is not a binary the Dockerfile builds ({binaries:?})"
        );
        image
    }

    /// An absolute path in the image, on this machine.
    pub(super) fn path(&self, in_image: &str) -> String {
        match in_image.strip_prefix('/') {
            Some(rel) if self.root.join(rel).exists() => self.root.join(rel).display().to_string(),
            _ => in_image.to_owned(),
        }
    }
}
