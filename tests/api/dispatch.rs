//! The push dispatcher's queries: which of these users muted the room, who muted it.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_error, ok_result, Sent, TestApp};

async fn check(app: &TestApp, room: &str, body: Value) -> reqwest::Response {
    app.admin(
        &app.app,
        Method::POST,
        &format!("/admin/rooms/{room}/mutes/check"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn page(app: &TestApp, room: &str, query: &str) -> reqwest::Response {
    app.admin(
        &app.app,
        Method::GET,
        &format!("/admin/rooms/{room}/mutes{query}"),
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn check_answers_which_of_the_given_users_muted_the_room() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    app.room("r2").await;
    let (u1, u2, u3) = (
        app.user("u1").await,
        app.user("u2").await,
        app.user("u3").await,
    );
    app.mute(&u1, "r1").await;
    app.mute(&u3, "r1").await;
    app.mute(&u2, "r2").await;
    app.mute(&u2, "r1").await;
    app.unmute(&u2, "r1").await;

    let result = ok_result(
        check(
            &app,
            "r1",
            json!({ "clients": ["u3", "u2", "u1", "nobody", "u1"] }),
        )
        .await,
    )
    .await;

    assert_eq!(
        result,
        json!({ "room": "r1", "muted": ["u1", "u3"], "paused": [] })
    );
}

#[tokio::test]
async fn check_refuses_bad_lists_and_unknown_rooms() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();

    for body in [
        json!({ "clients": [] }),
        json!({ "clients": too_many }),
        json!({ "clients": ["ok", "bad\u{1}id"] }),
        json!({ "clients": [""] }),
        json!({ "users": ["u1"] }),
    ] {
        assert_error(check(&app, "r1", body).await, 400, "INVALID_PARAMETERS").await;
    }
    let thousand: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    ok_result(check(&app, "r1", json!({ "clients": thousand })).await).await;

    assert_error(
        check(&app, "no-such-room", json!({ "clients": ["u1"] })).await,
        404,
        "ROOM_NOT_FOUND",
    )
    .await;
    assert_error(
        check(&app, "%FF", json!({ "clients": ["u1"] })).await,
        400,
        "INVALID_PARAMETERS",
    )
    .await;
    app.request(Method::POST, "/admin/rooms/r1/mutes/check")
        .json(&json!({ "clients": ["u1"] }))
        .sent()
        .await
        .assert_error(403, "INVALID_API_KEY");
}

#[tokio::test]
async fn rooms_of_another_app_are_not_found() {
    let app = TestApp::spawn().await;
    let other = app.create_app("app-b").await;
    app.room_of(&other, "theirs").await;

    assert_error(
        check(&app, "theirs", json!({ "clients": ["u1"] })).await,
        404,
        "ROOM_NOT_FOUND",
    )
    .await;
    assert_error(page(&app, "theirs", "").await, 404, "ROOM_NOT_FOUND").await;
}

#[tokio::test]
async fn the_muters_of_a_room_are_paged_through_in_id_order() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    app.room("r2").await;
    for id in ["e", "c", "a", "d", "b", "x"] {
        let token = app.user(id).await;
        app.mute(&token, if id == "x" { "r2" } else { "r1" }).await;
        if id == "d" {
            app.unmute(&token, "r1").await;
        }
    }

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let result = ok_result(page(&app, "r1", &query).await).await;
        pages += 1;
        assert_eq!(result["room"], "r1");
        for muter in result["clients"].as_array().unwrap() {
            assert!(muter["mutedAt"].as_i64().unwrap() > 1_600_000_000_000);
            seen.push(muter["_id"].as_str().unwrap().to_owned());
        }
        match result["next"].as_str() {
            Some(next) => query = format!("?limit=2&after={next}"),
            None => break,
        }
    }

    assert_eq!(seen, ["a", "b", "c", "e"]);
    assert_eq!(pages, 2, "a full last page must not announce an empty one");
}

#[tokio::test]
async fn a_room_nobody_muted_has_an_empty_page_and_bad_queries_are_400() {
    let app = TestApp::spawn().await;
    app.room("quiet").await;

    let result = ok_result(page(&app, "quiet", "").await).await;
    assert_eq!(
        result,
        json!({ "room": "quiet", "clients": [], "next": null })
    );

    for query in ["?limit=0", "?limit=1001", "?limit=ten", "?after="] {
        assert_error(page(&app, "quiet", query).await, 400, "INVALID_PARAMETERS").await;
    }
    assert_error(page(&app, "nowhere", "").await, 404, "ROOM_NOT_FOUND").await;
}
