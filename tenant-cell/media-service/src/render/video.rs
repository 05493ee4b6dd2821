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

use super::{count_by, day, distinct_tags, short_url};
use crate::config::Ffmpeg;

pub const INTRO_SECS: u32 = 3;
pub const CARD_SECS: u32 = 2;
pub const OUTRO_SECS: u32 = 3;
pub const FPS: u32 = 30;
/// Cards are 640×360 pt; 2 px per pt gives 1280×720.
pub const PIXELS_PER_PT: f64 = 2.0;

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

/// What `templates/cards.typ` reads.
fn cards_data(meta: &Meta, pocs: &[Poc]) -> serde_json::Value {
    let languages = count_by(pocs.iter().map(|p| p.language.as_str()));
    let top_language = languages
        .first()
        .map(|l| format!("most used: {} ({} PoCs)", l.key, l.count))
        .unwrap_or_default();
    json!({
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
    })
}

fn ffmpeg(config: &Ffmpeg) -> tokio::process::Command {
    let mut cmd = super::child(&config.program, config.nice);
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    cmd
}

/// Renders the video into `dir` (cards by `renderer`, the `media-render` binary, run at `nice`),
/// reporting progress 0–100 on `progress`.
pub async fn render(
    renderer: &Path,
    nice: u8,
    config: &Ffmpeg,
    dir: &Path,
    meta: Meta,
    pocs: Vec<Poc>,
    progress: &watch::Sender<u8>,
) -> anyhow::Result<Rendered> {
    let count = pocs.len();
    let pages = count + 2;
    let mut render = super::child(renderer, nice);
    render
        .arg("cards")
        .arg("--out")
        .arg(dir)
        .arg("--pixel-per-pt")
        .arg(PIXELS_PER_PT.to_string());
    super::run_renderer(render, &cards_data(&meta, &pocs)).await?;
    progress.send_replace(30);
    let mut list = String::from("ffconcat version 1.0\n");
    for i in 0..pages {
        let name = format!("card-{i:05}.png");
        anyhow::ensure!(
            dir.join(&name).exists(),
            "media-render left out {name} ({pages} cards expected)"
        );
        let secs = if i == 0 {
            INTRO_SECS
        } else if i + 1 == pages {
            OUTRO_SECS
        } else {
            CARD_SECS
        };
        list.push_str(&format!("file '{name}'\nduration {secs}\n"));
    }
    // The concat demuxer ends at the last file's start unless it is listed once more.
    list.push_str(&format!("file 'card-{:05}.png'\n", pages - 1));
    tokio::fs::write(dir.join("cards.ffconcat"), list).await?;
    progress.send_replace(35);

    let total = duration_secs(count);
    let mp4 = dir.join("video.mp4");
    let mut child = ffmpeg(config)
        .current_dir(dir)
        // Safe mode: the list may name only plain relative files, i.e. this job's cards.
        .args(["-f", "concat", "-safe", "1", "-i", "cards.ffconcat"])
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
