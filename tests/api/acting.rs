//! One mute handler for two actors, and path ids read by name from the route.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{assert_error, mutes, ok_result, TestApp};

/// The audit entries of the app, oldest first.
async fn audit(app: &TestApp) -> Vec<Value> {
    let response = app
        .admin(&app.app, Method::GET, "/admin/audit")
        .send()
        .await
        .unwrap();
    ok_result(response).await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_one_mute_handler_records_the_client_or_the_admin_as_the_actor() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    app.room("r1").await;
    app.room("r2").await;

    ok_result(app.mute(&token, "r1").await).await;
    let by_admin = ok_result(
        app.admin(&app.app, Method::POST, "/admin/clients/u1/mute/r2")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mutes(&by_admin), ["r1", "r2"]);
    assert_eq!(by_admin["_id"], "u1");

    let entries = audit(&app).await;
    let actors: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["room"].as_str().unwrap(),
                e["actor"]["kind"].as_str().unwrap(),
                e["actor"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actors,
        [
            ("r1", "client", "u1"),
            ("r2", "admin", app.app.app_id.as_str())
        ]
    );
}

#[tokio::test]
async fn an_admin_mute_reads_uid_and_room_by_name_whatever_their_encoding() {
    let app = TestApp::spawn().await;
    app.user("a/b é").await;
    app.room("r 1/ü").await;

    let muted = ok_result(
        app.admin(
            &app.app,
            Method::POST,
            "/admin/clients/a%2Fb%20%C3%A9/mute/r%201%2F%C3%BC",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(muted["_id"], "a/b é");
    assert_eq!(mutes(&muted), ["r 1/ü"]);

    let unmuted = ok_result(
        app.admin(
            &app.app,
            Method::DELETE,
            "/admin/clients/a%2Fb%20%C3%A9/mute/r%201%2F%C3%BC",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(mutes(&unmuted), Vec::<String>::new());
}

#[tokio::test]
async fn an_admin_mute_refuses_a_bad_uid_and_a_bad_room_each_as_400() {
    let app = TestApp::spawn().await;
    app.user("u1").await;
    app.room("r1").await;

    for path in [
        "/admin/clients/%FF/mute/r1",
        "/admin/clients/u1/mute/%FF",
        "/admin/clients/%E0%A4/mute/r1",
        "/admin/clients/u1/mute/",
        "/admin/clients/u1/mute/%zz",
    ] {
        let response = app
            .admin(&app.app, Method::POST, path)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "INVALID_PARAMETERS").await;
    }
    let unknown = app
        .admin(&app.app, Method::POST, "/admin/clients/nobody/mute/r1")
        .send()
        .await
        .unwrap();
    assert_error(unknown, 404, "CLIENT_NOT_FOUND").await;
    let no_room = app
        .admin(&app.app, Method::POST, "/admin/clients/u1/mute/nowhere")
        .send()
        .await
        .unwrap();
    assert_error(no_room, 404, "ROOM_NOT_FOUND").await;
}

#[tokio::test]
async fn a_client_credential_does_not_act_on_the_admin_route() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    app.room("r1").await;

    let response = app
        .client(&app.app, &token, Method::POST, "/admin/clients/u1/mute/r1")
        .send()
        .await
        .unwrap();
    assert_error(response, 403, "INVALID_API_KEY").await;
    assert_eq!(app.count_events().await, 0);
}
