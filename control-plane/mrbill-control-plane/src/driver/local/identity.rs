//! Each cell's own OS identity when the platform runs as root: its services run as a uid of
//! their own (from [`FIRST_UID`], never a uid in `/etc/passwd`), and the cell's directories are
//! that uid's alone, so a compromised service cannot read another cell's files, the control
//! plane's tokens or the catalog. Not root: everything runs as the invoking user (the README
//! says what isolation that loses). Each cell's Postgres runs as a second uid of the cell's own
//! (`pg_run_as`), named for Postgres by Debian's `libnss-wrapper` (Postgres insists on a user
//! name), so neither the cell's services nor another cell's Postgres can read its data; without
//! that library it runs as the platform's Postgres user.
//!
//! Layout and ownership (`secure`): the cell root `0711 root` (Postgres and the cell's user
//! pass through, nobody lists it); `logs/ search/ objects/ mailbox/ tmp/ secrets/` `0700` the
//! cell's user; in `secrets/` what the services read is the cell user's (0600), what only the
//! control plane and supervisor use (the Postgres superuser's password, the role passwords,
//! the first admin's invite) root's (0600).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use cell_model::local::{CellDir, Home};

use super::set_mode;

/// The first uid handed to a cell; allocations count up from here.
pub const FIRST_UID: u32 = 200_000;

/// Secrets the cell's services read (everything else in `secrets/` stays root's).
const SERVICE_SECRETS: &[&str] = &[
    "jwt-private.pem",
    "jwt-public.pem",
    "jwt.kid",
    "service-token",
    "media-url-key",
    "poc-database-url",
    "dojo-database-url",
    "media-database-url",
];

pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A uid for a new cell: the lowest from [`FIRST_UID`] that no cell of this home ever held and
/// no account in `/etc/passwd` has. Claimed atomically (`O_EXCL` marker files), so concurrent
/// onboardings never share one. A deleted cell's uids are never handed out again (their
/// markers stay): a file the old cell left anywhere (a backup copy, a core dump, a stray temp
/// file) must never become readable by a new tenant. A million uids last half a million
/// cells per home. `None` when not root.
pub fn allocate(home: &Home, cell_id: &str) -> anyhow::Result<Option<u32>> {
    if !running_as_root() {
        return Ok(None);
    }
    // Beside, not among, the cells: one marker file per uid handed out.
    let dir = home.root().join("cell-uids");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(&dir, 0o700)?;
    let system = passwd_uids()?;
    for uid in FIRST_UID..FIRST_UID + 1_000_000 {
        if system.contains(&uid) {
            continue;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(uid.to_string()))
        {
            Ok(mut marker) => {
                marker.write_all(cell_id.as_bytes())?;
                return Ok(Some(uid));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).context("claiming a uid"),
        }
    }
    anyhow::bail!("no free uid for the cell")
}

fn passwd_uids() -> anyhow::Result<BTreeSet<u32>> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    Ok(passwd
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect())
}

/// Gives the cell's directories and secrets their owners and modes (idempotent; cheap when
/// nothing changed). A directory that was someone else's (a cell made before cells had users)
/// is handed over with everything in it.
pub fn secure(dir: &CellDir, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(dir.root(), Some(0), Some(0))?;
    set_mode(dir.root(), 0o711)?;
    for d in [
        dir.logs_dir(),
        dir.search_dir(),
        dir.objects_dir(),
        dir.mailbox_dir(),
        dir.tmp_dir(),
        dir.secrets_dir(),
    ] {
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        if std::fs::metadata(&d)?.uid() != uid {
            chown_tree(&d, uid)?;
        }
        set_mode(&d, 0o700)?;
    }
    for entry in std::fs::read_dir(dir.secrets_dir())? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let owner = if SERVICE_SECRETS.contains(&name) {
            uid
        } else {
            0
        };
        std::os::unix::fs::chown(&path, Some(owner), Some(owner))?;
        set_mode(&path, 0o600)?;
    }
    Ok(())
}

pub(super) fn chown_tree(path: &Path, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .with_context(|| format!("chown {}", path.display()))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// Makes `home/bin/<name>` the current build of each of `names` from `from`: a hard link
/// (a copy across file systems), replaced when the build changed.
pub fn link_binaries(home: &Home, from: &Path, names: &[&str]) -> anyhow::Result<()> {
    let to = home.bin_dir();
    std::fs::create_dir_all(&to)?;
    set_mode(&to, 0o755)?;
    for name in names {
        let (src, dst) = (from.join(name), to.join(name));
        let Ok(s) = std::fs::metadata(&src) else {
            continue; // not built (e.g. a service this build does not have)
        };
        let current = std::fs::metadata(&dst).is_ok_and(|d| {
            (d.dev(), d.ino()) == (s.dev(), s.ino()) || (d.len(), d.mtime()) == (s.len(), s.mtime())
        });
        if current {
            continue;
        }
        let staged = to.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        if std::fs::hard_link(&src, &staged).is_err() {
            std::fs::copy(&src, &staged).with_context(|| format!("copying {}", src.display()))?;
            set_mode(&staged, 0o755)?;
        }
        std::fs::rename(&staged, &dst).with_context(|| format!("installing {}", dst.display()))?;
    }
    Ok(())
}
