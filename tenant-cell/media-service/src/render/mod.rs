//! Turning PoCs into files: reports (PDF via Typst, CSV, JSON) and the yearly video (Typst
//! cards → PNG → ffmpeg). Typst runs in the `media-render` binary and ffmpeg in its own, both
//! as child processes: niced, killed when their job is dropped, and dying with the service.

pub mod report;
pub mod typeset;
pub mod video;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use wire_types::pocs::{KeyCount, Poc};

/// Counts by key, largest first (ties by key).
pub fn count_by<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<KeyCount> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    let mut out: Vec<KeyCount> = counts
        .into_iter()
        .map(|(key, count)| KeyCount {
            key: key.to_owned(),
            count,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    out
}

/// Distinct tags over PoCs.
pub fn distinct_tags(pocs: &[Poc]) -> usize {
    let mut tags: Vec<&str> = pocs
        .iter()
        .flat_map(|p| p.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags.len()
}

/// `https://github.com/a/b` → `github.com/a/b`.
pub fn short_url(url: &str) -> &str {
    url.trim_start_matches("https://")
        .trim_start_matches("www.")
        .trim_end_matches('/')
}

/// `2026-03-04`.
pub fn day(t: time::OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `nice -n <nice> <program>`, killed when dropped and when the service dies.
pub fn child(program: &Path, nice: u8) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("nice");
    cmd.arg("-n")
        .arg(nice.to_string())
        .arg(program)
        // Children need none of the service's settings or secret paths.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        // Dropped (job cancelled, deleted or taken over) → killed.
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    cmd
}

/// The child dies with the service, even on SIGKILL (no orphaned render burning CPU for a job
/// another worker is already redoing).
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
    // is async-signal-safe; it allocates nothing and touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a `media-render` command (a [`child`]) with `data` on stdin; returns its stdout.
pub async fn run_renderer(
    mut cmd: tokio::process::Command,
    data: &serde_json::Value,
) -> anyhow::Result<Vec<u8>> {
    let mut proc = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run media-render: {e}"))?;
    let mut stdin = proc.stdin.take().expect("stdin is piped");
    let input = serde_json::to_vec(data)?;
    let feed = async move {
        stdin.write_all(&input).await?;
        stdin.shutdown().await
    };
    let (fed, out) = tokio::join!(feed, proc.wait_with_output());
    let out = out?;
    anyhow::ensure!(
        out.status.success(),
        "media-render failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    fed?;
    Ok(out.stdout)
}
