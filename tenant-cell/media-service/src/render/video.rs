//! The yearly video: an intro card, one card per PoC, an outro with totals — laid out by Typst,
//! rasterised to 1280×720 PNGs, and encoded by the ffmpeg CLI (run niced, with a thread cap)
//! to H.264 `yuv420p` MP4 at 30 fps: 3 s intro, 2 s per card, 3 s outro, `+faststart`. The
//! thumbnail is the intro card as a 640×360 JPEG.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use wire_types::pocs::Poc;

use super::{count_by, day, distinct_tags, short_url, typeset};
use crate::config::Ffmpeg;

const TEMPLATE: &str = include_str!("../../templates/cards.typ");
pub const INTRO_SECS: u32 = 3;
pub const CARD_SECS: u32 = 2;
pub const OUTRO_SECS: u32 = 3;
pub const FPS: u32 = 30;
/// Cards are 640×360 pt; 2 px per pt gives 1280×720.
const PIXELS_PER_PT: f32 = 2.0;

/// Seconds of a video with `cards` PoC cards.
pub fn duration_secs(cards: usize) -> u32 {
    INTRO_SECS + OUTRO_SECS + CARD_SECS * u32::try_from(cards).unwrap_or(u32::MAX / 4)
}

/// What the video shows besides the PoCs.
#[derive(Clone, Debug)]
pub struct Meta {
    pub tenant: String,
    pub title: String,
    pub year: i32,
}

/// The rendered files in the work directory.
#[derive(Debug)]
pub struct Rendered {
    pub mp4: PathBuf,
    pub thumbnail: PathBuf,
}

/// Lays out and rasterises the cards (CPU work, on two threads).
fn cards(meta: &Meta, pocs: &[Poc]) -> anyhow::Result<Vec<Vec<u8>>> {
    let languages = count_by(pocs.iter().map(|p| p.language.as_str()));
    let top_language = languages
        .first()
        .map(|l| format!("most used: {} ({} PoCs)", l.key, l.count))
        .unwrap_or_default();
    let data = json!({
        "tenant": meta.tenant,
        "title": meta.title,
        "year": meta.year,
        "totals": {
            "languages": languages.len(),
            "tags": distinct_tags(pocs),
            "top_language": top_language,
        },
        "pocs": pocs.iter().map(|p| json!({
            "name": p.name,
            "language": p.language,
            "tags": p.tags,
            "date": day(p.created_at),
            "repository": short_url(&p.repository_url),
        })).collect::<Vec<_>>(),
    });
    let document = typeset::layout(TEMPLATE, &data)?;
    let pages = document.pages();
    anyhow::ensure!(
        pages.len() == pocs.len() + 2,
        "the card template made {} pages for {} PoCs",
        pages.len(),
        pocs.len()
    );
    // Rasterising dominates; split the pages over two threads.
    let half = pages.len().div_ceil(2);
    std::thread::scope(|s| {
        let (a, b) = pages.split_at(half);
        let first = s.spawn(|| {
            a.iter()
                .map(render_page)
                .collect::<anyhow::Result<Vec<_>>>()
        });
        let second: anyhow::Result<Vec<_>> = b.iter().map(render_page).collect();
        let mut all = first
            .join()
            .map_err(|_| anyhow::anyhow!("a card renderer panicked"))??;
        all.extend(second?);
        Ok(all)
    })
}

fn render_page(page: &typst_layout::Page) -> anyhow::Result<Vec<u8>> {
    typst_render::render(
        page,
        &typst_render::RenderOptions {
            pixel_per_pt: typst::utils::Scalar::new(f64::from(PIXELS_PER_PT)),
            render_bleed: false,
        },
    )
    .encode_png()
    .map_err(|e| anyhow::anyhow!("PNG encoding failed: {e}"))
}

fn ffmpeg(config: &Ffmpeg) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("nice");
    cmd.arg("-n")
        .arg(config.nice.to_string())
        .arg(&config.program)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .stdin(Stdio::null())
        // Dropped (job cancelled, deleted or taken over) → killed.
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    cmd
}

/// The render dies with the service, even on SIGKILL (no orphaned ffmpeg burning CPU for a
/// job another worker is already redoing).
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

/// Renders the video into `dir`, reporting progress 0–100 on `progress`.
pub async fn render(
    config: &Ffmpeg,
    dir: &Path,
    meta: Meta,
    pocs: Vec<Poc>,
    progress: &watch::Sender<u8>,
) -> anyhow::Result<Rendered> {
    let count = pocs.len();
    let pngs = tokio::task::spawn_blocking(move || cards(&meta, &pocs)).await??;
    progress.send_replace(30);
    let mut list = String::from("ffconcat version 1.0\n");
    for (i, png) in pngs.iter().enumerate() {
        let name = format!("card-{i:05}.png");
        tokio::fs::write(dir.join(&name), png).await?;
        let secs = if i == 0 {
            INTRO_SECS
        } else if i + 1 == pngs.len() {
            OUTRO_SECS
        } else {
            CARD_SECS
        };
        list.push_str(&format!("file '{name}'\nduration {secs}\n"));
    }
    // The concat demuxer ends at the last file's start unless it is listed once more.
    list.push_str(&format!("file 'card-{:05}.png'\n", pngs.len() - 1));
    tokio::fs::write(dir.join("cards.ffconcat"), list).await?;
    progress.send_replace(35);

    let total = duration_secs(count);
    let mp4 = dir.join("video.mp4");
    let mut child = ffmpeg(config)
        .current_dir(dir)
        .args(["-f", "concat", "-safe", "0", "-i", "cards.ffconcat"])
        .args(["-vf", &format!("fps={FPS},format=yuv420p")])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "stillimage",
        ])
        .args(["-threads", &config.threads.to_string()])
        .args(["-r", &FPS.to_string(), "-t", &total.to_string()])
        .args(["-movflags", "+faststart", "-progress", "pipe:1"])
        .arg(&mp4)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", config.program.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let mut lines = BufReader::new(stdout).lines();
    let total_us = f64::from(total) * 1e6;
    while let Some(line) = lines.next_line().await? {
        if let Some(us) = line
            .strip_prefix("out_time_us=")
            .and_then(|v| v.parse::<f64>().ok())
        {
            let done = (us / total_us).clamp(0.0, 1.0);
            progress.send_replace(35 + (done * 60.0) as u8);
        }
    }
    let status = child.wait().await?;
    let errors = errors.await.unwrap_or_default();
    anyhow::ensure!(
        status.success(),
        "ffmpeg failed ({status}): {}",
        errors.trim()
    );

    let thumbnail = dir.join("thumbnail.jpg");
    let status = ffmpeg(config)
        .current_dir(dir)
        .args(["-i", "card-00000.png", "-vf", "scale=640:-2", "-q:v", "3"])
        .args(["-frames:v", "1"])
        .arg(&thumbnail)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "ffmpeg thumbnail failed ({status})");
    progress.send_replace(95);
    Ok(Rendered { mp4, thumbnail })
}
