//! Placements through the admin API (see `common`): added, listed, cordoned (admission refused,
//! nothing created), removed only when empty; tenants admitted by region to the roomiest open
//! placement there. Bad input answers stable 4xx codes.

mod common;

use common::Plane;
use reqwest::Method;
use serde_json::{Value, json};

fn tenant(slug: &str, extra: Value) -> Value {
    let mut body = json!({
        "slug": slug,
        "display_name": "Acme",
        "admin_email": format!("admin@{slug}.example"),
    });
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

async fn add(plane: &Plane, name: &str, region: &str, capacity: u32) -> (u16, Value) {
    plane
        .call(
            Method::POST,
            "/v1/placements",
            Some(json!({ "name": name, "region": region, "capacity": capacity })),
        )
        .await
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_are_added_cordoned_and_removed_only_when_empty() {
    let mut plane = Plane::start().await;
    let (status, list) = plane.call(Method::GET, "/v1/placements", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["placements"][0]["name"], "local");

    let (status, sao) = add(&plane, "sao", "sa-east-1", 4).await;
    assert_eq!(status, 201, "{sao}");
    assert_eq!(
        (sao["region"].as_str(), sao["cordoned"].as_bool()),
        (Some("sa-east-1"), Some(false))
    );
    let (status, again) = add(&plane, "sao", "sa-east-1", 4).await;
    assert_eq!((status, code(&again)), (409, "conflict"));
    let (status, bad) = add(&plane, "X", "Sa East", 20_000).await;
    assert_eq!((status, code(&bad)), (422, "validation_failed"));
    let fields: Vec<&str> = bad["details"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["name", "region", "capacity"]);

    // Cordoned: the admission is refused and nothing of the tenant exists.
    let (status, cordoned) = plane
        .call(Method::POST, "/v1/placements/sao/cordon", None)
        .await;
    assert_eq!((status, cordoned["cordoned"].as_bool()), (200, Some(true)));
    let (status, refused) = plane
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant("acme", json!({ "placement": "sao" }))),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (409, "placement_cordoned"),
        "{refused}"
    );
    assert_eq!(plane.tenant("acme").await.0, 404);
    assert!(plane.route("acme").await.is_none());

    plane
        .call(Method::POST, "/v1/placements/sao/uncordon", None)
        .await;
    let (status, _) = plane
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant("acme", json!({ "placement": "sao" }))),
        )
        .await;
    assert_eq!(status, 202);
    let acme = plane.settled("acme", "Ready").await;
    assert_eq!(acme["cell"]["placement"], "sao");

    let (status, in_use) = plane.call(Method::DELETE, "/v1/placements/sao", None).await;
    assert_eq!((status, code(&in_use)), (409, "placement_in_use"));
    assert_eq!(in_use["details"]["cells"], 1);
    let (status, missing) = plane
        .call(Method::DELETE, "/v1/placements/nowhere", None)
        .await;
    assert_eq!((status, code(&missing)), (404, "not_found"));

    plane.call(Method::DELETE, "/v1/tenants/acme", None).await;
    plane
        .until("acme", "the tenant to be gone", |status, _| status == 404)
        .await;
    let (status, removed) = plane.call(Method::DELETE, "/v1/placements/sao", None).await;
    assert_eq!((status, removed["name"].as_str()), (200, Some("sao")));
    let (_, list) = plane.call(Method::GET, "/v1/placements", None).await;
    assert_eq!(list["placements"].as_array().map(Vec::len), Some(1));
    plane.halt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_admits_to_its_roomiest_open_placement() {
    let mut plane = Plane::start().await;
    add(&plane, "sa-small", "sa-east-1", 2).await;
    add(&plane, "sa-big", "sa-east-1", 4).await;
    add(&plane, "us-one", "us-east-1", 8).await;

    let create = |slug: &'static str, extra: Value| {
        let plane = &plane;
        async move {
            plane
                .call(Method::POST, "/v1/tenants", Some(tenant(slug, extra)))
                .await
        }
    };
    let (status, _) = create("first", json!({ "region": "sa-east-1" })).await;
    assert_eq!(status, 202);
    assert_eq!(plane.tenant("first").await.1["cell"]["placement"], "sa-big");

    plane
        .call(Method::POST, "/v1/placements/sa-big/cordon", None)
        .await;
    create("second", json!({ "region": "sa-east-1" })).await;
    assert_eq!(
        plane.tenant("second").await.1["cell"]["placement"],
        "sa-small"
    );

    // sa-small (2 units) has 1 left: a standard cell (2 units) does not fit anywhere open.
    let (status, full) = create(
        "third",
        json!({ "region": "sa-east-1", "tier": "standard" }),
    )
    .await;
    assert_eq!((status, code(&full)), (409, "capacity_exhausted"), "{full}");

    let (status, unknown) = create("fourth", json!({ "region": "eu-west-1" })).await;
    assert_eq!((status, code(&unknown)), (422, "validation_failed"));
    assert_eq!(unknown["details"]["fields"][0]["code"], "unknown_region");

    let (status, both) = create(
        "fifth",
        json!({ "region": "us-east-1", "placement": "us-one" }),
    )
    .await;
    assert_eq!(
        (status, both["details"]["fields"][0]["code"].as_str()),
        (422, Some("conflicting"))
    );
    for slug in ["third", "fourth", "fifth"] {
        assert_eq!(plane.tenant(slug).await.0, 404, "{slug} was not admitted");
    }
    plane.halt().await;
}

/// Region admissions at once never pick the same full placement: admissions are serialized
/// (the route writer's lock is held from the choice to the commit), so four tenants fill four
/// one-unit placements of the region, one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_region_admissions_fill_the_region_one_placement_each() {
    let mut plane = Plane::start().await;
    for name in ["sa-a", "sa-b", "sa-c", "sa-d"] {
        assert_eq!(add(&plane, name, "sa-east-1", 1).await.0, 201);
    }
    let slugs = ["ana", "bia", "cris", "duda"];
    let answers = futures_util::future::join_all(slugs.iter().map(|slug| {
        plane.call(
            Method::POST,
            "/v1/tenants",
            Some(tenant(slug, json!({ "region": "sa-east-1" }))),
        )
    }))
    .await;
    for (slug, (status, body)) in slugs.iter().zip(&answers) {
        assert_eq!(*status, 202, "{slug}: {body}");
    }
    let mut placed = Vec::new();
    for slug in slugs {
        placed.push(
            plane.tenant(slug).await.1["cell"]["placement"]
                .as_str()
                .map(str::to_owned),
        );
    }
    placed.sort();
    assert_eq!(
        placed,
        ["sa-a", "sa-b", "sa-c", "sa-d"].map(|p| Some(p.to_owned()))
    );
    let (status, full) = plane
        .call(
            Method::POST,
            "/v1/tenants",
            Some(tenant("eva", json!({ "region": "sa-east-1" }))),
        )
        .await;
    assert_eq!((status, code(&full)), (409, "capacity_exhausted"));
    plane.halt().await;
}
