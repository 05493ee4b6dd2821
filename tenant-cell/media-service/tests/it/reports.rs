//! The dashboard and report jobs: PDF (checked with poppler), CSV, JSON; visibility; links.

use serde_json::json;

use crate::harness::{Cell, run_around, run_on};

/// Three PoCs of the admin (one private) and two of a member.
async fn seeded() -> (Cell, crate::harness::User, crate::harness::User) {
    let cell = Cell::start().await;
    let admin = cell.poc.admin().await;
    let ada = cell.poc.member(&admin, "ada@acme.test").await;
    cell.poc
        .create_poc(
            &admin,
            "Ledger Sync",
            json!({ "language": "Rust", "tags": ["payments", "sync"] }),
        )
        .await;
    cell.poc
        .create_poc(
            &admin,
            "Search Spike",
            json!({ "language": "Go", "tags": ["search"] }),
        )
        .await;
    cell.poc
        .create_poc(
            &admin,
            "Secret Plan",
            json!({ "language": "Rust", "tags": ["payments"], "visibility": "private" }),
        )
        .await;
    cell.poc
        .create_poc(
            &ada,
            "Chart Kit",
            json!({ "language": "TypeScript", "tags": ["ui"] }),
        )
        .await;
    cell.poc
        .create_poc(
            &ada,
            "=cmd|' /C calc'!A0",
            json!({ "language": "Python", "tags": ["ui", "payments"] }),
        )
        .await;
    (cell, admin, ada)
}

#[tokio::test]
async fn the_dashboard_counts_only_what_the_caller_may_see() {
    let (cell, admin, ada) = seeded().await;
    let mine = cell
        .as_user(&ada)
        .get("/v1/reports/dashboard")
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        mine["total"], 4,
        "the admin's private PoC is not counted: {mine}"
    );
    assert_eq!(mine["languages"], 4);
    let rust = mine["by_language"]
        .as_array()
        .and_then(|l| l.iter().find(|k| k["key"] == "rust"))
        .expect("rust counted");
    assert_eq!(rust["count"], 1);
    let all = cell
        .as_user(&admin)
        .get("/v1/reports/dashboard?tags=payments")
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        all["total"], 3,
        "admins see private PoCs; filtered by tag: {all}"
    );
    assert_eq!(
        all["by_user"].as_array().map(Vec::len),
        Some(2),
        "two contributors"
    );
    let months = all["by_month"].as_array().expect("months");
    assert_eq!(months.len(), 1);

    // Bad parameters: 422 with the fields, or 400 for unknown ones.
    let bad = cell
        .as_user(&ada)
        .get("/v1/reports/dashboard?from=2026-13-01&to=yesterday")
        .await;
    bad.assert_error(422, "validation_failed");
    let fields: Vec<String> = bad.field_errors().into_iter().map(|[f, _]| f).collect();
    assert_eq!(fields, ["from", "to"]);
    cell.as_user(&ada)
        .get("/v1/reports/dashboard?from=2026-05-01&to=2026-04-01")
        .await
        .assert_error(422, "validation_failed");
    cell.as_user(&ada)
        .get("/v1/reports/dashboard?colour=red")
        .await
        .assert_error(400, "invalid_parameter");
    cell.media
        .get("/v1/reports/dashboard")
        .await
        .assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn a_pdf_report_has_the_names_the_totals_a_chart_and_embedded_fonts() {
    let (cell, _admin, ada) = seeded().await;
    let queued = cell
        .as_user(&ada)
        .post(
            "/v1/reports",
            &json!({ "format": "pdf", "group_by": "tag" }),
        )
        .await;
    let job = queued.assert_status(202).clone();
    let location = queued.headers["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(
        location,
        format!("/v1/reports/{}", job["id"].as_str().expect("id"))
    );
    assert_eq!(job["state"], "pending");
    let done = cell.finished(&ada, &location).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    let download = &done["download"];
    assert_eq!(download["content_type"], "application/pdf");
    let (status, pdf, headers) = cell.fetch(download["url"].as_str().expect("url")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(download["bytes"], pdf.len());
    assert!(pdf.starts_with(b"%PDF-"));
    if let Ok(keep) = std::env::var("MEDIA_KEEP_PDF") {
        std::fs::write(keep, &pdf).expect("keep the PDF");
    }

    let text = run_around(&pdf, "pdf", "pdftotext", &["-layout"], &["-"]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for name in ["Ledger Sync", "Search Spike", "Chart Kit"] {
        assert!(text.contains(name), "{name} is in the report:\n{text}");
    }
    assert!(
        !text.contains("Secret Plan"),
        "another user's private PoC is not"
    );
    assert!(text.contains("PoC report"));
    assert!(text.contains("PoCs (4)"), "the total: {text}");
    assert!(
        text.contains("PoCs by tag payments 2"),
        "the chart's labels: {text}"
    );
    assert!(text.contains("PoCs by tag"));
    // Every font is embedded.
    let fonts = run_on(&pdf, "pdf", "pdffonts", &[]);
    let rows: Vec<&str> = fonts.lines().skip(2).collect();
    assert!(!rows.is_empty(), "{fonts}");
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let emb = cols[cols.len() - 5];
        assert_eq!(emb, "yes", "font not embedded: {row}");
    }
    // It renders.
    let dir = std::env::temp_dir().join(format!("media-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let prefix = dir.join("page");
    let pdf_path = dir.join("r.pdf");
    std::fs::write(&pdf_path, &pdf).expect("write");
    let ok = std::process::Command::new("pdftoppm")
        .args(["-png", "-r", "50", "-f", "1", "-l", "1"])
        .arg(&pdf_path)
        .arg(&prefix)
        .status()
        .expect("pdftoppm");
    assert!(ok.success());
    let page = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "png"))
        .expect("a rendered page");
    assert!(
        page.metadata().expect("meta").len() > 5_000,
        "a page with content"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn csv_and_json_reports_hold_the_visible_rows() {
    let (cell, _admin, ada) = seeded().await;
    let csv_job = cell
        .as_user(&ada)
        .post(
            "/v1/reports",
            &json!({ "format": "csv", "tags": ["Payments"] }),
        )
        .await
        .assert_status(202)
        .clone();
    assert_eq!(csv_job["tags"], json!(["payments"]), "tags are normalised");
    let done = cell
        .finished(
            &ada,
            &format!("/v1/reports/{}", csv_job["id"].as_str().expect("id")),
        )
        .await;
    let (status, body, headers) = cell
        .fetch(done["download"]["url"].as_str().expect("url"))
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/csv")
    );
    let mut reader = csv::Reader::from_reader(body.as_slice());
    let names: Vec<String> = reader
        .records()
        .map(|r| r.expect("row")[1].to_owned())
        .collect();
    assert_eq!(
        names,
        ["Ledger Sync", "'=cmd|' /C calc'!A0"],
        "visible PoCs tagged payments, oldest first; a formula is defused"
    );

    let json_job = cell
        .as_user(&ada)
        .post(
            "/v1/reports",
            &json!({ "format": "json", "group_by": "language" }),
        )
        .await
        .assert_status(202)
        .clone();
    let done = cell
        .finished(
            &ada,
            &format!("/v1/reports/{}", json_job["id"].as_str().expect("id")),
        )
        .await;
    let (_, body, _) = cell
        .fetch(done["download"]["url"].as_str().expect("url"))
        .await;
    let report: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(report["totals"]["pocs"], 4);
    assert_eq!(report["pocs"].as_array().map(Vec::len), Some(4));
    assert_eq!(report["groups"].as_array().map(Vec::len), Some(4));

    let list = cell
        .as_user(&ada)
        .get("/v1/reports?limit=1")
        .await
        .assert_status(200)
        .clone();
    assert_eq!(list["items"][0]["id"], json_job["id"], "newest first");
    let next = list["next_cursor"].as_str().expect("a second page");
    let rest = cell
        .as_user(&ada)
        .get(&format!("/v1/reports?limit=1&cursor={next}"))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(rest["items"][0]["id"], csv_job["id"]);
    assert!(rest["next_cursor"].is_null());
}

#[tokio::test]
async fn bad_report_requests_are_refused_with_details() {
    let (cell, _admin, ada) = seeded().await;
    let user = cell.as_user(&ada);
    user.post("/v1/reports", &json!({ "format": "docx" }))
        .await
        .assert_error(400, "invalid_json");
    user.post("/v1/reports", &json!({ "format": "pdf", "colour": "red" }))
        .await
        .assert_error(400, "invalid_json");
    let bad = user
        .post(
            "/v1/reports",
            &json!({ "format": "pdf", "from": "2026-02-30", "tags": ["ok", "no/slash"] }),
        )
        .await;
    bad.assert_error(422, "validation_failed");
    let fields: Vec<String> = bad.field_errors().into_iter().map(|[f, _]| f).collect();
    assert_eq!(
        fields,
        ["from", "tags[1]"],
        "an array's bad item is named by its index"
    );
    user.get("/v1/reports?limit=0")
        .await
        .assert_error(422, "validation_failed");
    user.get("/v1/reports?cursor=nonsense")
        .await
        .assert_error(422, "validation_failed");
    user.get("/v1/reports/not-a-uuid")
        .await
        .assert_error(400, "invalid_parameter");
}

#[tokio::test]
async fn nobody_else_reaches_a_report_and_links_cannot_be_forged_or_stretched() {
    // Links live 2 s here: long enough to be refused for their signature while still live,
    // short enough to see them expire.
    let cell = Cell::start_with(|c| c.link_ttl = std::time::Duration::from_secs(2)).await;
    let admin = cell.poc.admin().await;
    let ada = cell.poc.member(&admin, "ada@acme.test").await;
    cell.poc.create_poc(&ada, "Only Mine", json!({})).await;
    let job = cell
        .as_user(&ada)
        .post("/v1/reports", &json!({ "format": "csv" }))
        .await
        .assert_status(202)
        .clone();
    let path = format!("/v1/reports/{}", job["id"].as_str().expect("id"));
    let done = cell.finished(&ada, &path).await;
    let url = done["download"]["url"].as_str().expect("url").to_owned();

    // A forged signature, another file with this signature, a path escape — on a link that is
    // live (it serves the report), so only the signature check can refuse them.
    assert_eq!(cell.fetch(&url).await.0, 200, "the link is live");
    let forged = url.replace("sig=", "sig=AAAA");
    let another_file = url.replace("report.csv", "report.pdf");
    for refused in [&forged, &another_file] {
        let (status, body, _) = cell.fetch(refused).await;
        let error: serde_json::Value = serde_json::from_slice(&body).expect("error body");
        assert_eq!(
            (status, error["code"].as_str()),
            (403, Some("invalid_link")),
            "{refused}"
        );
    }
    let escaped = url.replace("report.csv", "..%2F..%2Fetc%2Fpasswd");
    assert_eq!(cell.fetch(&escaped).await.0, 404);

    // Another user, even an admin, does not see it.
    for other in [&admin] {
        cell.as_user(other)
            .get(&path)
            .await
            .assert_error(404, "not_found");
        cell.as_user(other)
            .delete(&path)
            .await
            .assert_error(404, "not_found");
        cell.as_user(other)
            .post(&format!("{path}/cancel"), &json!({}))
            .await
            .assert_error(404, "not_found");
    }
    // Another cell's token is not accepted at all.
    let elsewhere = Cell::start().await;
    let stranger = elsewhere.poc.admin().await;
    cell.as_user(&stranger)
        .get(&path)
        .await
        .assert_error(401, "unauthenticated");

    // The link expires (2 s + the rounding second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let expired = loop {
        let (status, body, _) = cell.fetch(&url).await;
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(expired.0, 403);
    let error: serde_json::Value = serde_json::from_slice(&expired.1).expect("error body");
    assert_eq!(error["code"], "link_expired");
    // Asking for the job again gives a fresh link.
    let again = cell
        .as_user(&ada)
        .get(&path)
        .await
        .assert_status(200)
        .clone();
    let (status, _, _) = cell
        .fetch(again["download"]["url"].as_str().expect("url"))
        .await;
    assert_eq!(status, 200);

    // Deleting the report deletes its file; its link then finds nothing.
    assert_eq!(cell.stored_files().len(), 1);
    cell.as_user(&ada).delete(&path).await.assert_status(204);
    assert!(cell.stored_files().is_empty(), "{:?}", cell.stored_files());
    cell.as_user(&ada)
        .get(&path)
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn a_disabled_users_token_stops_working_here_too() {
    let cell = Cell::start_with(|c| c.peer.revocation_cache = std::time::Duration::ZERO).await;
    let admin = cell.poc.admin().await;
    let ada = cell.poc.member(&admin, "ada@acme.test").await;
    cell.as_user(&ada)
        .get("/v1/reports")
        .await
        .assert_status(200);
    cell.poc
        .poc
        .with_token(&admin.token)
        .patch(
            &format!("/v1/users/{}", ada.id),
            &json!({ "disabled": true }),
        )
        .await
        .assert_status(200);
    cell.as_user(&ada)
        .get("/v1/reports")
        .await
        .assert_error(401, "unauthenticated");
    cell.as_user(&ada)
        .post("/v1/videos", &json!({ "year": 2025 }))
        .await
        .assert_error(401, "unauthenticated");
}

/// Artifacts in S3: the same report lifecycle against moto's S3 (PyPI `moto[server]`, an AWS
/// emulator — no real AWS here), objects under the tenant's prefix, deleted with their job.
#[tokio::test]
async fn reports_are_stored_in_s3_when_configured() {
    let moto = test_support::moto::Moto::start();
    let bucket = "cell-acme-media";
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .expect("create bucket");
    assert!(created.status().is_success(), "{}", created.status());
    let endpoint = moto.url.clone();
    let cell = Cell::start_with(|c| {
        c.storage = media_service::config::Storage::S3 {
            bucket: bucket.into(),
            endpoint: Some(endpoint),
            static_credentials: Some(media_service::config::S3Credentials {
                region: "us-east-1".into(),
                access_key_id: "testing".into(),
                secret_access_key: "testing".to_owned().into(),
            }),
        };
    })
    .await;
    let admin = cell.poc.admin().await;
    cell.poc
        .create_poc(&admin, "Stored Remotely", json!({}))
        .await;
    let done = cell
        .completed_report(&admin, json!({ "format": "pdf" }))
        .await;
    let (status, pdf, _) = cell
        .fetch(done["download"]["url"].as_str().expect("url"))
        .await;
    assert_eq!(status, 200);
    assert!(pdf.starts_with(b"%PDF-"));
    let listing = reqwest::get(format!("{}/{bucket}?list-type=2", moto.url))
        .await
        .expect("list")
        .text()
        .await
        .expect("xml");
    let key = format!(
        "tenants/acme/reports/{}/report.pdf",
        done["id"].as_str().expect("id")
    );
    assert!(listing.contains(&key), "{listing}");
    assert!(cell.stored_files().is_empty(), "nothing on local disk");
    let path = format!("/v1/reports/{}", done["id"].as_str().expect("id"));
    cell.as_user(&admin).delete(&path).await.assert_status(204);
    let listing = reqwest::get(format!("{}/{bucket}?list-type=2", moto.url))
        .await
        .expect("list")
        .text()
        .await
        .expect("xml");
    assert!(!listing.contains(&key), "deleted with its job: {listing}");
}
