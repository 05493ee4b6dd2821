//! The dojo through the real platform: `mrbill` onboards a tenant, the cell supervisor runs the
//! real `dojo-service` binary, and y-websocket clients (tokio-tungstenite + yrs) edit through
//! `mrbill-router`. Then dojo-service is killed with SIGKILL mid-session: the supervisor
//! restarts it, clients reconnect, and nothing acknowledged is lost.

use std::time::{Duration, Instant};

use e2e_tests::platform::{Platform, cell_services, kill};
use serde_json::json;
use test_support::live::Live;

#[tokio::test]
async fn a_dojo_session_through_the_router_survives_a_kill_9_of_the_service() {
    let platform = Platform::up();
    let acme = platform.create_tenant("acme");
    let token = platform.admin_token(&acme).await;
    let cell = acme["cell"]["cell_id"]
        .as_str()
        .expect("cell id")
        .to_owned();
    let api = platform.api("acme").with_token(&token);
    let dojo = api
        .post(
            "/v1/dojos",
            &json!({ "name": "e2e kata", "language": "rust", "initial_code": "" }),
        )
        .await
        .assert_status(201)["id"]
        .as_str()
        .expect("dojo id")
        .to_owned();
    api.get("/dojo/openapi.json").await.assert_status(200);
    let url = format!(
        "{}/t/acme/v1/dojos/{dojo}/live?token={token}&acks=true",
        platform.router_url().replacen("http", "ws", 1)
    );
    let mut a = Live::connect(&url, None).await;
    let mut b = Live::connect(&url, None).await;
    a.settled(1).await;
    b.settled(1).await;
    for i in 0..10 {
        a.insert(0, &format!("line {i}\n")).await;
    }
    a.until("10 acknowledged updates", |l| {
        l.got.acks.iter().any(|ack| ack["updates"] == 10)
    })
    .await;
    let acknowledged = a.code();
    b.until("b to converge", |l| l.code() == acknowledged).await;

    let dojo_pid = cell_services(&cell)
        .into_iter()
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().ends_with("dojo-service"))
        })
        .expect("the cell runs dojo-service");
    kill(dojo_pid, "KILL");
    a.closed_with().await;
    b.closed_with().await;

    // The supervisor restarts it; a client reconnects as y-websocket would, and resyncs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut back = loop {
        if let Some(mut live) = Live::try_connect(&url, None).await {
            live.pump(Duration::from_millis(300)).await;
            if live.got.closed.is_none() && !live.got.room.is_empty() {
                break live;
            }
        }
        assert!(Instant::now() < deadline, "dojo-service did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    back.until("the acknowledged document", |l| l.code() == acknowledged)
        .await;
    // The clients' own copies merge back without loss or duplication.
    back.insert(0, "after restart\n").await;
    back.until("its own edit", |l| l.code().starts_with("after restart\n"))
        .await;
    assert_eq!(back.code(), format!("after restart\n{acknowledged}"));
}
