//! One test per row of docs/design.md §1's error table, and the edges around it.

use std::time::Duration;

use chatprefs::startup::Application;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_error, test_settings, Sent, TestApp};

#[tokio::test]
async fn a_missing_or_unknown_client_key_is_403() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;

    app.request(Method::GET, "/me")
        .header("IM-Authorization", &u1.token)
        .sent()
        .await
        .assert_error(403, "INVALID_CLIENT_KEY");

    app.request(Method::POST, "/me/mute/r1")
        .header("IM-CLIENT-KEY", "not-a-key")
        .header("IM-Authorization", &u1.token)
        .sent()
        .await
        .assert_error(403, "INVALID_CLIENT_KEY");
}

#[tokio::test]
async fn a_missing_or_unknown_api_key_is_403() {
    let app = TestApp::spawn().await;

    app.request(Method::POST, "/rooms")
        .json(&json!({ "_id": "r" }))
        .sent()
        .await
        .assert_error(403, "INVALID_API_KEY");

    app.request(Method::POST, "/admin/clients")
        .header("IM-API-KEY", "guess")
        .json(&json!({ "_id": "u" }))
        .sent()
        .await
        .assert_error(403, "INVALID_API_KEY");
}

#[tokio::test]
async fn a_missing_or_unknown_token_is_401() {
    let app = TestApp::spawn().await;

    app.request(Method::GET, "/me")
        .header("IM-CLIENT-KEY", &app.app.client_key)
        .sent()
        .await
        .assert_error(401, "INVALID_TOKEN");

    app.client(&app.app, "f00d", Method::GET, "/me")
        .sent()
        .await
        .assert_error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.sql("UPDATE tokens SET expires_at = now() - interval '1 second'")
        .await
        .unwrap();

    app.client_get(&u1.token, "/me")
        .await
        .assert_error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn a_revoked_token_is_401_at_once() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    assert_eq!(u1.me().await["_id"], "u1");

    let revoked = app
        .admin(&app.app, Method::DELETE, "/admin/clients/u1/token")
        .send()
        .await
        .unwrap();
    assert_eq!(crate::helpers::ok_result(revoked).await["revokedTokens"], 1);

    app.client_get(&u1.token, "/me")
        .await
        .assert_error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn a_token_of_another_app_is_401() {
    let app = TestApp::spawn().await;
    let other = app.create_app("app-b").await;
    let token_of_a = app.user("u1").await;
    app.user_of(&other, "u1").await;

    app.client(&other, &token_of_a, Method::GET, "/me")
        .sent()
        .await
        .assert_error(401, "INVALID_TOKEN");
}

#[tokio::test]
async fn a_room_of_another_app_or_no_app_is_404() {
    let app = TestApp::spawn().await;
    let other = app.create_app("app-b").await;
    app.room_of(&other, "b-room").await;
    let u1 = app.signed_in("u1").await;

    u1.mute("b-room").await.assert_error(404, "ROOM_NOT_FOUND");
    u1.mute("nowhere").await.assert_error(404, "ROOM_NOT_FOUND");
    u1.unmute("nowhere")
        .await
        .assert_error(404, "ROOM_NOT_FOUND");
    assert_eq!(app.count_events().await, 0);
}

#[tokio::test]
async fn a_user_not_in_the_app_is_404_on_the_platform_api() {
    let app = TestApp::spawn().await;
    let other = app.create_app("app-b").await;
    app.user_of(&other, "b-user").await;
    app.room("r1").await;

    for (method, path) in [
        (Method::POST, "/admin/clients/b-user/mute/r1"),
        (Method::DELETE, "/admin/clients/nobody/mute/r1"),
        (Method::DELETE, "/admin/clients/nobody/token"),
    ] {
        app.admin(&app.app, method, path)
            .sent()
            .await
            .assert_error(404, "CLIENT_NOT_FOUND");
    }
}

#[tokio::test]
async fn malformed_room_ids_are_400() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    let too_long = "a".repeat(256);
    let max = "a".repeat(255);
    app.room(&max).await;

    for bad in [
        too_long.as_str(),
        "",
        "a%00b",
        "line%0Abreak",
        "tab%09",
        "%7F",
    ] {
        u1.mute(bad).await.assert_error(400, "INVALID_PARAMETERS");
        u1.unmute(bad).await.assert_error(400, "INVALID_PARAMETERS");
        app.admin(
            &app.app,
            Method::POST,
            &format!("/admin/clients/u1/mute/{bad}"),
        )
        .sent()
        .await
        .assert_error(400, "INVALID_PARAMETERS");
    }
    for undecodable in ["%FF%FE", "caf%E9", "%ZZ", "50%"] {
        let response = app.mute(&u1.token, undecodable).await;
        assert_error(response, 400, "INVALID_PARAMETERS").await;
    }
    u1.mute(&max).await.assert_ok();
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let app = TestApp::spawn().await;

    for body in [
        "{not json",
        r#"{"nickname": "no id"}"#,
        r#"{"_id": 42}"#,
        r#"{"_id": "u", "issueAccessToken": "yes"}"#,
        r#"{"_id": "u", "expirationDays": 0}"#,
        r#"{"_id": "u", "expirationDays": -1}"#,
        r#"{"_id": ""}"#,
        "[]",
    ] {
        app.admin(&app.app, Method::POST, "/admin/clients")
            .header("Content-Type", "application/json")
            .body(body)
            .sent()
            .await
            .assert_error(400, "INVALID_PARAMETERS");
    }
    app.admin_post("/rooms", &json!({ "_id": "r", "members": "everyone" }))
        .await
        .assert_error(400, "INVALID_PARAMETERS");
}

#[tokio::test]
async fn a_body_too_large_is_413() {
    let app = TestApp::spawn().await;
    let huge = json!({ "_id": "u1", "nickname": "x".repeat(100 * 1024) });

    app.admin(&app.app, Method::POST, "/admin/clients")
        .json(&huge)
        .sent()
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after() {
    // Nothing listens on port 1: every connection attempt is refused.
    let mut settings = test_settings("postgres://postgres@127.0.0.1:1/none".into());
    settings.pool.timeout = Duration::from_millis(500);
    let application = Application::start(&settings).expect("starts without a database");
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());

    let response = reqwest::Client::new()
        .get(format!("{base}/me"))
        .header("IM-CLIENT-KEY", "k")
        .header("IM-Authorization", "t")
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()["retry-after"], "1");
    assert_error(response, 503, "SERVICE_UNAVAILABLE").await;
}

#[tokio::test]
async fn anything_else_is_500_without_internals() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.sql("ALTER TABLE rooms RENAME TO rooms_elsewhere")
        .await
        .unwrap();

    let response = app
        .client(&app.app, &u1.token, Method::POST, "/me/mute/r1")
        .header("X-Request-Id", "trace-me")
        .send()
        .await
        .unwrap();

    assert_eq!(response.headers()["x-request-id"], "trace-me");
    let body = assert_error(response, 500, "INTERNAL_ERROR").await;
    let text = body.to_string();
    assert!(!text.contains("rooms"), "{text}");
    assert!(!text.contains("relation"), "{text}");
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_in_the_envelope() {
    let app = TestApp::spawn().await;

    app.request(Method::GET, "/admin/nothing")
        .sent()
        .await
        .assert_error(404, "NOT_FOUND");
    app.request(Method::PUT, "/me/mute/r1")
        .sent()
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
}
