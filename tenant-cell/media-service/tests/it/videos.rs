//! The yearly video, checked with ffprobe and by looking at frames.

use serde_json::json;

use crate::harness::{Cell, run_on};

fn this_year() -> i32 {
    time::OffsetDateTime::now_utc().year()
}

/// The frame at `at` seconds scaled down to 160×90 RGB pixels.
fn small_frame(mp4: &[u8], at: f64) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("media-it-{}.mp4", uuid::Uuid::new_v4()));
    std::fs::write(&path, mp4).expect("write");
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &at.to_string(), "-i"])
        .arg(&path)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=160:90:flags=area",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 160 * 90 * 3);
    out.stdout
}

/// Average colour of a small frame.
fn mean(frame: &[u8]) -> [u32; 3] {
    let n = (frame.len() / 3) as u32;
    let mut sum = [0u32; 3];
    for px in frame.chunks(3) {
        for c in 0..3 {
            sum[c] += u32::from(px[c]);
        }
    }
    sum.map(|s| s / n)
}

fn distance(a: &[u8], b: &[u8]) -> u32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u32::from(x.abs_diff(*y)))
        .sum()
}

#[tokio::test]
async fn a_yearly_video_follows_the_spec() {
    let cell = Cell::start().await;
    let admin = cell.poc.admin().await;
    let ada = cell.poc.member(&admin, "ada@acme.test").await;
    for (name, language) in [
        ("Ledger Sync", "Rust"),
        ("Search Spike", "Go"),
        ("Chart Kit", "TypeScript"),
    ] {
        cell.poc
            .create_poc(
                &ada,
                name,
                json!({ "language": language, "tags": ["demo", "q1"] }),
            )
            .await;
    }
    // Someone else's PoC is not in ada's video.
    cell.poc.create_poc(&admin, "Admin Thing", json!({})).await;

    let queued = cell
        .as_user(&ada)
        .post(
            "/v1/videos",
            &json!({ "year": this_year(), "title": "Ada's year" }),
        )
        .await;
    let job = queued.assert_status(202).clone();
    assert_eq!(job["cards"], 3);
    assert_eq!(job["duration_secs"], 12);
    let path = format!("/v1/videos/{}", job["id"].as_str().expect("id"));
    let done = cell.finished(&ada, &path).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["title"], "Ada's year");

    let (status, mp4, headers) = cell
        .fetch(done["download"]["url"].as_str().expect("url"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "video/mp4");
    let probe: serde_json::Value = serde_json::from_str(&run_on(
        &mp4,
        "mp4",
        "ffprobe",
        &[
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ],
    ))
    .expect("ffprobe json");
    let video = &probe["streams"][0];
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["pix_fmt"], "yuv420p");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(video["r_frame_rate"], "30/1");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!(
        (duration - 12.0).abs() < 0.1,
        "6 s + 2 s × 3 cards, got {duration}"
    );
    // +faststart: the index (moov) comes before the media data (mdat).
    let at = |tag: &[u8]| mp4.windows(4).position(|w| w == tag).expect("box");
    assert!(at(b"moov") < at(b"mdat"), "moov first (+faststart)");

    // Frames: the dark card background everywhere; intro, cards and outro differ.
    let intro = small_frame(&mp4, 1.0);
    let first = small_frame(&mp4, 4.0);
    let second = small_frame(&mp4, 6.0);
    let outro = small_frame(&mp4, 11.0);
    for frame in [&intro, &first, &second, &outro] {
        let [r, g, b] = mean(frame);
        assert!(
            b > r && r < 80 && b < 110,
            "a dark blue card: {:?}",
            [r, g, b]
        );
    }
    assert!(
        distance(&intro, &first) > 200,
        "the first card is not the intro"
    );
    assert!(distance(&first, &second) > 200, "each PoC has its own card");
    assert!(distance(&second, &outro) > 200, "the outro is its own card");

    let (status, jpeg, headers) = cell
        .fetch(done["thumbnail"]["url"].as_str().expect("url"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/jpeg");
    let probe: serde_json::Value = serde_json::from_str(&run_on(
        &jpeg,
        "jpg",
        "ffprobe",
        &["-v", "error", "-print_format", "json", "-show_streams"],
    ))
    .expect("ffprobe json");
    assert_eq!(probe["streams"][0]["codec_name"], "mjpeg");
    assert_eq!(probe["streams"][0]["width"], 640);

    // Download and thumbnail endpoints redirect to fresh signed links.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}{path}/download", cell.media_url))
        .bearer_auth(&ada.token)
        .send()
        .await
        .expect("download");
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().expect("location");
    assert!(location.starts_with(&format!(
        "/v1/media/files/{}/video.mp4?",
        job["id"].as_str().expect("id")
    )));

    // Nobody else gets at it; deleting removes both files.
    cell.as_user(&admin)
        .get(&path)
        .await
        .assert_error(404, "not_found");
    cell.as_user(&admin)
        .get(&format!("{path}/download"))
        .await
        .assert_error(404, "not_found");
    assert_eq!(cell.stored_files().len(), 2);
    // The tenant's usage counts both files' bytes and the video's seconds.
    let stored: u64 = cell
        .stored_files()
        .iter()
        .map(|f| std::fs::metadata(f).expect("file").len())
        .sum();
    let (bytes, seconds) = media_service::store::usage(&cell.pool)
        .await
        .expect("usage");
    assert_eq!((bytes as u64, seconds), (stored, 12.0));
    cell.as_user(&ada).delete(&path).await.assert_status(204);
    assert!(cell.stored_files().is_empty());
    let (bytes, _) = media_service::store::usage(&cell.pool)
        .await
        .expect("usage");
    assert_eq!(bytes, 0, "a deleted video's bytes no longer count");
}

#[tokio::test]
async fn a_year_without_pocs_is_refused_up_front() {
    let cell = Cell::start().await;
    let admin = cell.poc.admin().await;
    cell.poc
        .create_poc(&admin, "Now", json!({ "tags": ["kept"] }))
        .await;
    let user = cell.as_user(&admin);
    let empty = user.post("/v1/videos", &json!({ "year": 2019 })).await;
    empty.assert_error(422, "validation_failed");
    assert_eq!(
        empty.field_errors(),
        [["year".to_owned(), "no_pocs".to_owned()]]
    );
    let filtered = user
        .post(
            "/v1/videos",
            &json!({ "year": this_year(), "exclude_tags": ["kept"] }),
        )
        .await;
    filtered.assert_error(422, "validation_failed");
    let bad = user
        .post("/v1/videos", &json!({ "year": 1999, "title": "" }))
        .await;
    bad.assert_error(422, "validation_failed");
    let fields: Vec<String> = bad.field_errors().into_iter().map(|[f, _]| f).collect();
    assert_eq!(fields, ["year", "title"]);
    user.post("/v1/videos", &json!({ "year": "2024" }))
        .await
        .assert_error(400, "invalid_json");
    user.post("/v1/videos", &json!({ "year": 2024.5 }))
        .await
        .assert_error(400, "invalid_json");
    let listed = user.get("/v1/videos").await.assert_status(200).clone();
    assert_eq!(listed["items"], json!([]), "nothing was queued");
}
