//! Copying a cell's files between placements (objects, search index) and comparing them.

use std::path::Path;

use anyhow::Context;

/// Relative path and size of every file under `root`, sorted.
pub fn manifest(root: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    walk(root, root, &mut |rel, meta| {
        out.push((rel.to_owned(), meta.len()))
    })?;
    out.sort();
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    visit: &mut dyn FnMut(&str, &std::fs::Metadata),
) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            walk(root, &path, visit)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
            visit(&rel, &meta);
        }
    }
    Ok(())
}

/// Makes `to` hold `from`'s files: copies new ones and ones whose size or modification time
/// differs; with `exact`, removes files `from` does not have.
pub fn sync_tree(from: &Path, to: &Path, exact: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut wanted = std::collections::BTreeSet::new();
    let mut result = Ok(());
    walk(from, from, &mut |rel, meta| {
        wanted.insert(rel.to_owned());
        if result.is_err() {
            return;
        }
        let dest = to.join(rel);
        let same = std::fs::metadata(&dest)
            .is_ok_and(|d| d.len() == meta.len() && d.modified().ok() == meta.modified().ok());
        if !same {
            result = copy_file(&from.join(rel), &dest, meta);
        }
    })?;
    result?;
    if exact {
        let mut extra = Vec::new();
        walk(to, to, &mut |rel, _| {
            if !wanted.contains(rel) {
                extra.push(to.join(rel));
            }
        })?;
        for path in extra {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Copies through a temporary name, keeping the modification time (the next pass compares it).
fn copy_file(from: &Path, to: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = to.with_extension("mrbill-partial");
    std::fs::copy(from, &partial).with_context(|| format!("copying {}", from.display()))?;
    let file = std::fs::File::options().write(true).open(&partial)?;
    file.set_modified(meta.modified()?)?;
    drop(file);
    std::fs::rename(&partial, to)?;
    Ok(())
}
