//! One-time live tickets: a browser opens the live socket with `?ticket=` instead of an access
//! token in the URL. A ticket names one dojo, works once and briefly, only for someone who may
//! see the dojo, and never outlives its user's revocation.

use std::time::Duration;

use serde_json::json;
use wire_types::dojos::close;

use crate::harness::{Cell, Live, User};

async fn ticket(user: &User, dojo: &str) -> String {
    let t = user
        .dojo
        .post(&format!("/v1/dojos/{dojo}/live-ticket"), &json!({}))
        .await;
    t.assert_status(201)["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned()
}

fn id(dojo: &serde_json::Value) -> String {
    dojo["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_ticket_opens_its_dojo_once_and_nothing_else() {
    let cell = Cell::start().await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let bob = cell.member(&admin, "bob@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let other = id(&cell.create_dojo(&admin, json!({})).await);
    let url =
        |dojo: &str, t: &str| format!("ws://{}/v1/dojos/{dojo}/live?ticket={t}", cell.dojo_addr);

    let t = ticket(&ada, &dojo).await;
    let mut live = Live::connect(&url(&dojo, &t), None).await;
    live.until("the document", |l| l.code().contains("fn main"))
        .await;
    let me = cell
        .dojo
        .with_token(&admin.token)
        .get(&format!("/v1/dojos/{dojo}"))
        .await;
    let online: Vec<_> = me.assert_status(200)["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter(|p| p["online"] == true)
        .map(|p| p["user_id"].clone())
        .collect();
    assert_eq!(online, [json!(ada.id)], "the socket is Ada's");

    // Used up.
    let mut again = Live::connect(&url(&dojo, &t), None).await;
    assert_eq!(again.closed_with().await, close::UNAUTHENTICATED);
    // Only for the dojo it names.
    let t = ticket(&ada, &dojo).await;
    let mut elsewhere = Live::connect(&url(&other, &t), None).await;
    assert_eq!(elsewhere.closed_with().await, close::UNAUTHENTICATED);
    // Invented tickets open nothing.
    let mut forged = Live::connect(&url(&dojo, "not-a-ticket"), None).await;
    assert_eq!(forged.closed_with().await, close::UNAUTHENTICATED);
    // An invite-only dojo gives tickets only to its participants (and admins).
    let private = id(&cell.create_dojo(&admin, json!({ "private": true })).await);
    bob.dojo
        .post(&format!("/v1/dojos/{private}/live-ticket"), &json!({}))
        .await
        .assert_error(404, "not_found");
    cell.dojo
        .post(&format!("/v1/dojos/{dojo}/live-ticket"), &json!({}))
        .await
        .assert_error(401, "unauthenticated");
    assert!(live.got.closed.is_none());
}

#[tokio::test]
async fn a_ticket_expires_and_does_not_outlive_a_disabled_user() {
    let cell = Cell::start_full(
        |poc| poc.access_ttl = Duration::from_secs(300),
        |dojo| {
            dojo.live.ticket_ttl = Duration::from_secs(1);
            dojo.peer.revocation_cache = Duration::from_millis(100);
        },
    )
    .await;
    let admin = cell.admin().await;
    let ada = cell.member(&admin, "ada@acme.test").await;
    let dojo = id(&cell.create_dojo(&admin, json!({})).await);
    let url = |t: &str| format!("ws://{}/v1/dojos/{dojo}/live?ticket={t}", cell.dojo_addr);

    let late = ticket(&ada, &dojo).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut expired = Live::connect(&url(&late), None).await;
    assert_eq!(expired.closed_with().await, close::UNAUTHENTICATED);

    let t = ticket(&ada, &dojo).await;
    cell.poc
        .with_token(&admin.token)
        .patch(
            &format!("/v1/users/{}", ada.id),
            &json!({ "disabled": true }),
        )
        .await
        .assert_status(200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut disabled = Live::connect(&url(&t), None).await;
    assert_eq!(disabled.closed_with().await, close::UNAUTHENTICATED);
}
