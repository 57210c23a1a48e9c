use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_error, ok_result, TestApp};

#[tokio::test]
async fn creating_a_client_issues_a_token_that_expires_as_asked() {
    let app = TestApp::spawn().await;

    let result = ok_result(
        app.admin(&app.app, Method::POST, "/admin/clients")
            .json(&json!({ "_id": "u1", "nickname": "Ann", "issueAccessToken": true, "expirationDays": 2 }))
            .send()
            .await
            .unwrap(),
    )
    .await;

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

    let result = ok_result(
        app.admin(&app.app, Method::POST, "/admin/clients")
            .json(&json!({ "_id": "u1", "nickname": "Renamed" }))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(result["nickname"], "Renamed");
    assert_eq!(result["email"], "u1@example.com");
    assert!(result.get("token").is_none());
}

#[tokio::test]
async fn revoking_one_token_leaves_the_others() {
    let app = TestApp::spawn().await;
    let first = app.user("u1").await;
    let second = app.user("u1").await;

    let result = ok_result(
        app.admin(&app.app, Method::DELETE, "/admin/clients/u1/token")
            .json(&json!({ "token": first }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(result["revokedTokens"], 1);

    let rejected = app
        .client(&app.app, &first, Method::GET, "/me")
        .send()
        .await
        .unwrap();
    assert_error(rejected, 401, "INVALID_TOKEN").await;
    assert_eq!(app.me(&second).await["_id"], "u1");
}

#[tokio::test]
async fn a_malformed_revoke_body_revokes_nothing() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;

    let response = app
        .admin(&app.app, Method::DELETE, "/admin/clients/u1/token")
        .body("{not json")
        .send()
        .await
        .unwrap();

    assert_error(response, 400, "INVALID_PARAMETERS").await;
    assert_eq!(app.me(&token).await["_id"], "u1");
}

#[tokio::test]
async fn rooms_are_created_at_both_imkit_paths_and_get_an_id_when_none_is_sent() {
    let app = TestApp::spawn().await;

    let named = ok_result(
        app.admin(&app.app, Method::POST, "/rooms/")
            .json(&json!({ "_id": "lobby", "name": "Lobby", "roomType": "group", "members": ["u1", "u2"] }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(named["_id"], "lobby");
    assert_eq!(named["members"], json!(["u1", "u2"]));

    let generated = ok_result(
        app.admin(&app.app, Method::POST, "/rooms")
            .json(&json!({ "name": "Anonymous" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = generated["_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);

    let token = app.user("u1").await;
    ok_result(app.mute(&token, id).await).await;
}
