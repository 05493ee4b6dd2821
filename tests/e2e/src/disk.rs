//! A size-limited filesystem (tmpfs) mounted under a path, for the full-disk fault: the cells
//! of a placement live on it, and [`Bounded::fill`] takes every free byte. Mounting needs root
//! (the test machines and CI run as root); the mount goes when the guard drops.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Bounded {
    path: PathBuf,
    ballast: PathBuf,
}

impl Bounded {
    /// Mounts a tmpfs of `bytes` at `path` (created, mode 0755: Postgres runs as another user).
    pub fn mount(path: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs at {} (the full-disk fault needs root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            path: path.to_owned(),
            ballast: path.join(".ballast"),
        }
    }

    /// Writes a ballast file until the filesystem has no byte left.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(&self.ballast).expect("ballast");
        let chunk = vec![0u8; 1 << 20];
        loop {
            match file.write_all(&chunk).and_then(|()| file.flush()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", self.path.display()),
            }
        }
        // The last partial chunk: byte by byte is slow; a small one fills what is left.
        let small = [0u8; 4096];
        while file.write_all(&small).is_ok() {}
    }

    /// Removes the ballast: the space is free again.
    pub fn free(&self) {
        std::fs::remove_file(&self.ballast).expect("ballast removed");
    }

    /// Bytes free on the filesystem.
    pub fn available(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.path)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Bounded {
    /// Lazily: the cell's processes may still hold files there until the platform stops.
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
