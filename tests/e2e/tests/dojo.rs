//! The dojo through the real platform: `mrbill` onboards a tenant, the cell supervisor runs the
//! real `dojo-service` binary, and y-websocket clients (tokio-tungstenite + yrs) edit through
//! `mrbill-router`. Then dojo-service is killed with SIGKILL mid-session: the supervisor
//! restarts it, clients reconnect, and nothing acknowledged is lost.

use std::time::{Duration, Instant};

use e2e_tests::platform::{Platform, cell_services, kill, pid_alive, wait_until};
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

/// A cell created before dojo-service existed (made so here: dojo taken out of its `cell.json`
/// while control plane and supervisor are down) is given the service by the control plane —
/// database, ports, a supervisor reload — and the router serves it.
#[tokio::test]
// The restarted control plane runs on until the platform's `mrbill down` stops it.
#[allow(clippy::zombie_processes)]
async fn a_cell_made_before_a_service_existed_gets_it_added() {
    let platform = Platform::up();
    let acme = platform.create_tenant("acme");
    let token = platform.admin_token(&acme).await;
    let cell = acme["cell"]["cell_id"]
        .as_str()
        .expect("cell id")
        .to_owned();
    let dir = platform.cell_dir(&cell);

    let cp = platform.control_plane_pid().expect("control plane");
    kill(cp, "TERM");
    wait_until(Duration::from_secs(30), "the control plane to stop", || {
        !pid_alive(cp)
    });
    let config_path = dir.join("cell.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("cell.json")).expect("json");
    config["services"]
        .as_array_mut()
        .expect("services")
        .retain(|s| s["name"] != "dojo");
    std::fs::write(&config_path, config.to_string()).expect("write cell.json");
    let supervisor: u32 = std::fs::read_to_string(dir.join("supervisor.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    kill(supervisor, "TERM");
    wait_until(Duration::from_secs(30), "the supervisor to stop", || {
        !pid_alive(supervisor) && cell_services(&cell).is_empty()
    });

    // The control plane restarts the supervisor (poc only), then adds dojo.
    let _cp = platform.start_control_plane(&["serve"]);
    let api = platform.api("acme").with_token(&token);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if api.get("/v1/dojos").await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "dojo-service was never added");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        cell_services(&cell).len(),
        3,
        "poc-, dojo- and media-service"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).expect("cell.json")).expect("json");
    assert_eq!(config["services"].as_array().map(Vec::len), Some(3));
}
