//! Media through the real platform: `mrbill` onboards a tenant, the cell supervisor runs the
//! real `media-service` binary (with real ffmpeg), clients go through `mrbill-router`. A
//! yearly video's worker is killed with SIGKILL mid-render: the supervisor restarts the
//! service, which takes its job back and completes it; its ffmpeg did not outlive it. A video
//! in flight when its tenant moves to another placement is finished by the target, once.

use std::time::{Duration, Instant};

use e2e_tests::platform::{Platform, cell_services, kill, pid_alive, processes_with};
use serde_json::json;

#[tokio::test]
async fn a_video_render_survives_a_kill_9_of_media_service() {
    let platform = Platform::up();
    let acme = platform.create_tenant("acme");
    let token = platform.admin_token(&acme).await;
    let cell = acme["cell"]["cell_id"]
        .as_str()
        .expect("cell id")
        .to_owned();
    let api = platform.api("acme").with_token(&token);
    for i in 0..40 {
        api.post(
            "/v1/pocs",
            &json!({
                "name": format!("PoC number {i}"), "language": "rust", "tags": ["e2e"],
                "repository_url": format!("https://github.com/acme/poc-{i}"),
            }),
        )
        .await
        .assert_status(201);
    }
    api.get("/media/openapi.json").await.assert_status(200);
    let dashboard = api
        .get("/v1/reports/dashboard")
        .await
        .assert_status(200)
        .clone();
    assert_eq!(dashboard["total"], 40);

    let year = time::OffsetDateTime::now_utc().year();
    let queued = api.post("/v1/videos", &json!({ "year": year })).await;
    let job = queued.assert_status(202).clone();
    let location = queued.headers["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(
        location,
        format!("/t/acme/v1/videos/{}", job["id"].as_str().expect("id")),
        "links carry the path prefix the client used"
    );
    let path = location.trim_start_matches("/t/acme").to_owned();

    // Kill the service while its ffmpeg is encoding.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ffmpeg = loop {
        if let Some(pid) = processes_with(&["ffmpeg", &cell]).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the render never reached ffmpeg");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let media_pid = cell_services(&cell)
        .into_iter()
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().ends_with("media-service"))
        })
        .expect("the cell runs media-service");
    kill(media_pid, "KILL");
    // Its ffmpeg dies with it rather than rendering on for a job that will be redone.
    let gone = Instant::now() + Duration::from_secs(2);
    while pid_alive(ffmpeg) {
        assert!(
            Instant::now() < gone,
            "ffmpeg {ffmpeg} outlived media-service"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The supervisor restarts it; the job is taken back and completes (the whole render again,
    // in a debug build on two busy cores: minutes, not seconds).
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let res = api.get(&path).await;
        if res.status == 200 && res.body["state"] == "completed" {
            break res.body.clone();
        }
        if res.status == 200 {
            assert!(
                ["pending", "processing"].contains(&res.body["state"].as_str().unwrap_or("")),
                "{}",
                res.text
            );
        }
        assert!(
            Instant::now() < deadline,
            "the video never completed: {}",
            res.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(done["attempts"].as_u64().unwrap_or(0) >= 2, "{done}");
    assert_eq!(done["cards"], 40);

    let url = done["download"]["url"].as_str().expect("url");
    assert!(url.starts_with("/t/acme/v1/media/files/"), "{url}");
    let res = reqwest::get(format!("{}{url}", platform.router_url()))
        .await
        .expect("download");
    assert_eq!(res.status(), 200);
    let mp4 = res.bytes().await.expect("body");
    let file = std::env::temp_dir().join(format!("e2e-{}.mp4", std::process::id()));
    std::fs::write(&file, &mp4).expect("write");
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .expect("ffprobe");
    let _ = std::fs::remove_file(&file);
    let duration: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .expect("duration");
    assert!(
        (duration - 86.0).abs() < 0.1,
        "6 s + 40 × 2 s, got {duration}"
    );
    assert!(
        processes_with(&["ffmpeg", &cell]).is_empty(),
        "no render left running"
    );
}

/// A video whose render is under way when the source is fenced: the source's media-service
/// hands the job back as it stops, the hand-back replicates, and the target renders it — once
/// (one job, completed, a second attempt), downloadable through the router. The source's
/// ffmpeg is held (SIGSTOP) once it runs, so the render is certainly in flight at the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_rendering_at_the_fence_is_finished_by_the_target() {
    let platform = Platform::up_with(&[
        ("MRBILL_PLACEMENTS", "local=20,edge=20"),
        ("MRBILL_MIGRATE_GRACE_SECS", "1"),
    ]);
    let tenant = platform.create_tenant("acme");
    let cell = tenant["cell"]["cell_id"].as_str().expect("cell").to_owned();
    let token = platform.admin_token(&tenant).await;
    let api = platform.api("acme").with_token(&token);
    for i in 0..4 {
        let body = json!({ "name": format!("PoC {i}"), "language": "rust", "tags": ["e2e"],
            "repository_url": format!("https://github.com/acme/poc-{i}") });
        api.post("/v1/pocs", &body).await.assert_status(201);
    }
    let year = time::OffsetDateTime::now_utc().year();
    let job = api.post("/v1/videos", &json!({ "year": year })).await;
    let path = format!(
        "/v1/videos/{}",
        job.assert_status(202)["id"].as_str().expect("id")
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let ffmpeg = loop {
        if let Some(pid) = processes_with(&["ffmpeg", &cell]).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the render never reached ffmpeg");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    kill(ffmpeg, "STOP");

    let moved = platform.mrbill(&["cell", "migrate", "acme", "--to", "edge"]);
    assert_eq!(moved.code, 0, "{}", moved.stderr);
    assert_eq!(platform.tenant("acme")["cell"]["placement"], "edge");
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let res = api.get(&path).await;
        assert_eq!(res.status, 200, "{}", res.text);
        if res.body["state"] == "completed" {
            break res.body.clone();
        }
        assert!(
            ["pending", "processing"].contains(&res.body["state"].as_str().unwrap_or("")),
            "{}",
            res.text
        );
        assert!(Instant::now() < deadline, "never completed: {}", res.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        done["attempts"], 2,
        "begun on the source, finished on the target: {done}"
    );
    assert_eq!(done["cards"], 4);
    let videos = api.get("/v1/videos").await.assert_status(200).clone();
    assert_eq!(
        videos["items"].as_array().map(Vec::len),
        Some(1),
        "{videos}"
    );
    let url = done["download"]["url"].as_str().expect("url");
    let mp4 = reqwest::get(format!("{}{url}", platform.router_url()))
        .await
        .expect("download");
    assert_eq!(mp4.status(), 200);
    let bytes = mp4.bytes().await.expect("bytes");
    assert_eq!(bytes.get(4..8), Some(&b"ftyp"[..]), "an MP4");
    assert!(
        processes_with(&["ffmpeg", &cell]).is_empty(),
        "no render is left behind"
    );
}
