use reqwest::Method;

use crate::helpers::{mutes, ok_result, Sent, TestApp};

#[tokio::test]
async fn mute_answers_the_user_in_the_imkit_shape() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;

    let user = app
        .client(&app.app, &u1.token, Method::POST, "/me/mute/r1")
        .header("User-Agent", "TestAgent/1.0 (iPhone)")
        .sent()
        .await
        .assert_ok();

    assert_eq!(user["_id"], "u1");
    assert_eq!(user["nickname"], "Nick u1");
    assert_eq!(user["email"], "u1@example.com");
    assert_eq!(user["appID"], "app-a");
    assert_eq!(user["avatarUrl"], "https://example.com/a.png");
    assert_eq!(user["address"]["family"], "IPv4");
    assert_eq!(user["address"]["address"], "127.0.0.1");
    assert!(user["address"]["port"].as_u64().is_some_and(|p| p > 0));
    assert_eq!(user["userAgent"], "TestAgent/1.0 (iPhone)");
    assert_eq!(mutes(&user), ["r1"]);
    assert!(user["lastLoginTimeMS"]
        .as_i64()
        .is_some_and(|t| t > 1_600_000_000_000));
    assert_eq!(user["notificationEnabled"], true);
    assert_eq!(app.count_events().await, 1);
}

#[tokio::test]
async fn muting_again_is_a_200_without_a_new_event() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;

    u1.mute("r1").await.assert_ok();
    let again = u1.mute("r1").await.assert_ok();

    assert_eq!(mutes(&again), ["r1"]);
    assert_eq!(app.count_events().await, 1);
}

#[tokio::test]
async fn a_second_room_is_appended_at_the_end_and_unmute_removes_one() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    for room in ["r1", "r2", "r3"] {
        app.room(room).await;
    }

    u1.mute("r2").await.assert_ok();
    let user = u1.mute("r1").await.assert_ok();
    assert_eq!(mutes(&user), ["r2", "r1"]);

    let user = u1.unmute("r2").await.assert_ok();
    assert_eq!(mutes(&user), ["r1"]);

    let user = u1.mute("r2").await.assert_ok();
    assert_eq!(mutes(&user), ["r1", "r2"], "a re-mute is the newest");
    assert_eq!(mutes(&u1.me().await), ["r1", "r2"]);
    assert_eq!(app.count_events().await, 4);
}

#[tokio::test]
async fn unmuting_a_room_that_is_not_muted_is_a_200_without_an_event() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;

    let user = u1.unmute("r1").await.assert_ok();

    assert_eq!(mutes(&user), Vec::<String>::new());
    assert_eq!(app.count_events().await, 0);
}

#[tokio::test]
async fn get_me_agrees_with_the_last_answer() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    app.room("r2").await;
    u1.mute("r1").await.assert_ok();
    let last = u1.mute("r2").await.assert_ok();

    let me = u1.me().await;

    assert_eq!(me["mute"], last["mute"]);
    assert_eq!(me["_id"], "u1");
    assert_eq!(me["lastLoginTimeMS"], last["lastLoginTimeMS"]);
}

#[tokio::test]
async fn mutes_are_personal() {
    let app = TestApp::spawn().await;
    let alice = app.signed_in("alice").await;
    let bob = app.signed_in("bob").await;
    app.room("r1").await;
    app.room("r2").await;
    bob.mute("r2").await.assert_ok();

    alice.mute("r1").await.assert_ok();
    alice.unmute("r2").await.assert_ok();

    assert_eq!(mutes(&alice.me().await), ["r1"]);
    assert_eq!(mutes(&bob.me().await), ["r2"]);
}

#[tokio::test]
async fn a_percent_encoded_utf8_room_id_round_trips_exactly() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    let room = "café 🎉/#?%x";
    app.room(room).await;
    let encoded = "caf%C3%A9%20%F0%9F%8E%89%2F%23%3F%25x";

    let user = u1.mute(encoded).await.assert_ok();
    assert_eq!(mutes(&user), [room]);

    let stored: String = app.sql("SELECT data->>'room' FROM events").await.unwrap()[0].get(0);
    assert_eq!(stored, room);
    let user = u1.unmute(encoded).await.assert_ok();
    assert_eq!(mutes(&user), Vec::<String>::new());
}

#[tokio::test]
async fn the_legacy_authorization_header_is_accepted() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;

    for value in [u1.token.clone(), format!("Bearer {}", u1.token)] {
        let response = app
            .request(Method::GET, "/me")
            .header("IM-CLIENT-KEY", &app.app.client_key)
            .header("Authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(ok_result(response).await["_id"], "u1");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;

    let sent = app
        .client(&app.app, &u1.token, Method::GET, "/me")
        .header("X-Request-Id", "support-ticket-42")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "support-ticket-42");

    let insane = app
        .client(&app.app, &u1.token, Method::GET, "/me")
        .header("X-Request-Id", "no spaces <script>")
        .send()
        .await
        .unwrap();
    let replaced = insane.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");

    for response in [
        app.request(Method::GET, "/nowhere").send().await.unwrap(),
        app.request(Method::GET, "/me").send().await.unwrap(),
    ] {
        assert!(response.headers().contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn admin_mutes_are_seen_by_the_user() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;

    let user = app
        .admin(&app.app, Method::POST, "/admin/clients/u1/mute/r1")
        .sent()
        .await
        .assert_ok();
    assert_eq!(mutes(&user), ["r1"]);
    assert_eq!(mutes(&u1.me().await), ["r1"]);

    app.admin_delete("/admin/clients/u1/mute/r1")
        .await
        .assert_ok();
    assert_eq!(mutes(&u1.me().await), Vec::<String>::new());
}
