use reqwest::Method;
use serde_json::json;

use crate::helpers::{ok_result, Sent, TestApp};

#[tokio::test]
async fn creating_a_client_issues_a_token_that_expires_as_asked() {
    let app = TestApp::spawn().await;

    let result = app.admin_post("/admin/clients", &json!({ "_id": "u1", "nickname": "Ann", "issueAccessToken": true, "expirationDays": 2 })).await.assert_ok();

    assert_eq!(result["_id"], "u1");
    assert_eq!(result["nickname"], "Ann");
    assert_eq!(result["email"], serde_json::Value::Null);
    let token = result["token"].as_str().unwrap();
    assert!(token.len() >= 64);
    let now = chrono::Utc::now().timestamp_millis();
    let expires = result["expirationDate"].as_i64().unwrap();
    let two_days = 2 * 24 * 3600 * 1000;
    assert!((expires - now - two_days).abs() < 60_000, "{expires}");
    assert_eq!(
        result["lastLoginTimeMS"]
            .as_i64()
            .map(|t| (t - now).abs() < 60_000),
        Some(true)
    );
    assert_eq!(app.me(token).await["nickname"], "Ann");
}

#[tokio::test]
async fn updating_a_client_keeps_fields_not_sent_and_issues_no_token_unless_asked() {
    let app = TestApp::spawn().await;
    app.user("u1").await;

    let result = app
        .admin_post(
            "/admin/clients",
            &json!({ "_id": "u1", "nickname": "Renamed" }),
        )
        .await
        .assert_ok();

    assert_eq!(result["nickname"], "Renamed");
    assert_eq!(result["email"], "u1@example.com");
    assert!(result.get("token").is_none());
}

#[tokio::test]
async fn revoking_one_token_leaves_the_others() {
    let app = TestApp::spawn().await;
    let first = app.user("u1").await;
    let second = app.user("u1").await;

    let result = app
        .admin(&app.app, Method::DELETE, "/admin/clients/u1/token")
        .json(&json!({ "token": first }))
        .sent()
        .await
        .assert_ok();
    assert_eq!(result["revokedTokens"], 1);

    app.client_get(&first, "/me")
        .await
        .assert_error(401, "INVALID_TOKEN");
    assert_eq!(app.me(&second).await["_id"], "u1");
}

#[tokio::test]
async fn a_malformed_revoke_body_revokes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;

    app.admin(&app.app, Method::DELETE, "/admin/clients/u1/token")
        .body("{not json")
        .sent()
        .await
        .assert_error(400, "INVALID_PARAMETERS");
    assert_eq!(app.me(&token).await["_id"], "u1");
}

#[tokio::test]
async fn rooms_are_created_at_both_imkit_paths_and_get_an_id_when_none_is_sent() {
    let app = TestApp::spawn().await;

    let named = app.admin_post("/rooms/", &json!({ "_id": "lobby", "name": "Lobby", "roomType": "group", "members": ["u1", "u2"] })).await.assert_ok();
    assert_eq!(named["_id"], "lobby");
    assert_eq!(named["members"], json!(["u1", "u2"]));

    let generated = app
        .admin_post("/rooms", &json!({ "name": "Anonymous" }))
        .await
        .assert_ok();
    let id = generated["_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);

    let token = app.user("u1").await;
    ok_result(app.mute(&token, id).await).await;
}
