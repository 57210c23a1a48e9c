//! Pausing all notifications (do not disturb) through the server: the dispatcher's check,
//! `notificationEnabled`, expiry with no writer, the actor in the audit, bodies, and rebuild
//! and verify with pauses.

use std::time::Duration;

use chatprefs::rebuild;
use chatprefs::service::sweep;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{mutes, Sent, TestApp, TestResponse};

async fn pause_with(app: &TestApp, token: &str, body: &Value) -> TestResponse {
    app.client(&app.app, token, Method::POST, "/me/dnd")
        .json(body)
        .sent()
        .await
}

async fn resume(app: &TestApp, token: &str) -> TestResponse {
    app.client(&app.app, token, Method::DELETE, "/me/dnd")
        .sent()
        .await
}

async fn check(app: &TestApp, room: &str, clients: &[&str]) -> Value {
    app.admin_post(
        &format!("/admin/rooms/{room}/mutes/check"),
        &json!({ "clients": clients }),
    )
    .await
    .assert_ok()
}

async fn as_of(app: &TestApp, user: &str, at: Option<i64>) -> Value {
    let query = at.map(|ms| format!("?asOf={ms}")).unwrap_or_default();
    app.admin_get(&format!("/admin/clients/{user}/mute{query}"))
        .await
        .assert_ok()
}

async fn assert_no_drift(app: &TestApp) {
    let report = rebuild::verify(&app.pool).await.expect("verify");
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

#[tokio::test]
async fn a_two_second_pause_silences_every_room_and_ends_on_its_own() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    let u2 = app.signed_in("u2").await;
    app.signed_in("u3").await;
    app.room("r1").await;
    app.room("r2").await;
    u2.mute("r1").await.assert_ok();
    assert_eq!(u1.me().await["notificationEnabled"], true);

    let user = pause_with(&app, &u1.token, &json!({ "durationSeconds": 2 }))
        .await
        .assert_ok();
    assert_eq!(user["notificationEnabled"], false, "{user}");
    let until = user["notificationsPausedUntil"].as_i64().unwrap();
    let me = u1.me().await;
    assert_eq!(me["notificationEnabled"], false);
    assert_eq!(me["notificationsPausedUntil"], until);
    // A pause mutes no room of its own: `mute` is the rooms muted.
    assert_eq!(mutes(&me), Vec::<String>::new());
    let r1 = check(&app, "r1", &["u1", "u2", "u3"]).await;
    assert_eq!(r1["muted"], json!(["u1", "u2"]), "{r1}");
    assert_eq!(r1["paused"], json!(["u1"]), "{r1}");
    let r2 = check(&app, "r2", &["u3", "u1"]).await;
    assert_eq!(r2["muted"], json!(["u1"]), "{r2}");
    assert_eq!(r2["paused"], json!(["u1"]), "{r2}");
    let then = as_of(&app, "u1", None).await;
    assert_eq!(then["notificationEnabled"], false, "{then}");
    assert_eq!(then["notificationsPausedUntil"], until, "{then}");
    let feed = app.admin_get("/admin/events").await.assert_ok();
    let last = &feed["entries"][1];
    assert_eq!(last["type"], "NotificationsPaused", "{feed}");
    assert_eq!(last["room"], Value::Null, "{feed}");
    assert_eq!(last["untilMS"], until, "{feed}");
    assert_no_drift(&app).await;

    tokio::time::sleep(Duration::from_millis(2300)).await;

    let me = u1.me().await;
    assert_eq!(me["notificationEnabled"], true);
    assert_eq!(me["notificationsPausedUntil"], Value::Null);
    let r1 = check(&app, "r1", &["u1", "u2", "u3"]).await;
    assert_eq!(r1["muted"], json!(["u2"]), "{r1}");
    assert_eq!(r1["paused"], json!([]), "{r1}");
    assert_eq!(as_of(&app, "u1", None).await["notificationEnabled"], true);
    assert_eq!(
        as_of(&app, "u1", Some(until - 1)).await["notificationEnabled"],
        false
    );
    assert_eq!(
        as_of(&app, "u1", Some(until)).await["notificationEnabled"],
        true
    );
    assert_no_drift(&app).await;

    // Resuming an expired pause changes nothing; the sweep removes the row, not the event.
    let events = app.count_events().await;
    resume(&app, &u1.token).await.assert_ok();
    assert_eq!(app.count_events().await, events);
    assert_eq!(sweep::sweep(&app.pool).await.unwrap(), 1);
    assert_eq!(app.count_events().await, events);
    assert_no_drift(&app).await;
}

#[tokio::test]
async fn pausing_is_idempotent_and_resuming_ends_it() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();

    let user = pause_with(&app, &u1.token, &json!({})).await.assert_ok();
    assert_eq!(user["notificationEnabled"], false);
    assert_eq!(user["notificationsPausedUntil"], Value::Null);
    assert_eq!(mutes(&user), ["r1"]);
    let events = app.count_events().await;
    pause_with(&app, &u1.token, &json!({})).await.assert_ok();
    assert_eq!(app.count_events().await, events, "the same pause again");
    let end = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let user = pause_with(&app, &u1.token, &json!({ "until": end }))
        .await
        .assert_ok();
    assert_eq!(user["notificationsPausedUntil"], end);
    assert_eq!(app.count_events().await, events + 1, "another end");
    let then = as_of(&app, "u1", None).await;
    assert_eq!(then["mute"], json!(["r1"]), "{then}");
    assert_eq!(then["muteDetails"][0]["room"], "r1", "{then}");
    assert_eq!(then["muteDetails"][0]["until"], Value::Null, "{then}");
    assert_eq!(then["notificationEnabled"], false, "{then}");
    assert_eq!(then["notificationsPausedUntil"], end, "{then}");

    let user = resume(&app, &u1.token).await.assert_ok();
    assert_eq!(user["notificationEnabled"], true);
    assert_eq!(mutes(&user), ["r1"]);
    resume(&app, &u1.token).await.assert_ok();
    assert_eq!(app.count_events().await, events + 2, "one resume");
    assert_eq!(check(&app, "r1", &["u1"]).await["paused"], json!([]));
    assert_no_drift(&app).await;
}

#[tokio::test]
async fn the_audit_tells_the_user_from_the_apps_backend() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    pause_with(&app, &u1.token, &json!({ "durationSeconds": 600 }))
        .await
        .assert_ok();
    let user = app
        .admin_post("/admin/clients/u1/dnd", &json!({}))
        .await
        .assert_ok();
    assert_eq!(user["_id"], "u1");
    assert_eq!(user["notificationsPausedUntil"], Value::Null);
    app.admin_delete("/admin/clients/u1/dnd").await.assert_ok();
    app.admin_post("/admin/clients/nobody/dnd", &json!({}))
        .await
        .assert_error(404, "CLIENT_NOT_FOUND");

    let audit = app.admin_get("/admin/audit?client=u1").await.assert_ok();
    let entries = audit["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["actor"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("NotificationsPaused", "client"),
            ("NotificationsPaused", "admin"),
            ("NotificationsResumed", "admin"),
        ],
        "{audit}"
    );
    assert!(entries[0]["untilMS"].is_i64(), "{audit}");
    assert_eq!(entries[1]["untilMS"], Value::Null, "{audit}");
    assert_eq!(entries[2]["room"], Value::Null, "{audit}");
}

#[tokio::test]
async fn bad_bodies_are_refused_and_an_sdks_empty_object_pauses() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    let past = chrono::Utc::now().timestamp_millis() - 1000;
    for body in [
        json!({ "until": past }),
        json!({ "durationSeconds": 0 }),
        json!({ "durationSeconds": 31_536_001 }),
        json!({ "until": "soon" }),
        json!({ "durationSeconds": 60, "until": past + 3_600_000 }),
        json!({ "duration": 60 }),
        json!([]),
    ] {
        pause_with(&app, &u1.token, &body)
            .await
            .assert_error(400, "INVALID_PARAMETERS");
    }
    assert_eq!(app.count_events().await, 0);

    // As imkit-js-lib sends its commands: `CLIENT_KEY`, axios' JSON content type, `{}`.
    let raw = app
        .request(Method::POST, "/me/dnd")
        .header("IM-Authorization", &u1.token)
        .header("CLIENT_KEY", &app.app.client_key)
        .header("Content-Type", "application/json;charset=utf-8")
        .body("{}")
        .sent()
        .await
        .assert_ok();
    assert_eq!(raw["notificationEnabled"], false);
    // No body at all pauses too, and resumes take none.
    app.client(&app.app, &u1.token, Method::POST, "/me/dnd")
        .sent()
        .await
        .assert_ok();
    assert_eq!(app.count_events().await, 1);
}

#[tokio::test]
async fn rebuild_and_verify_fold_pauses() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    let u2 = app.signed_in("u2").await;
    let u3 = app.signed_in("u3").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();
    pause_with(&app, &u1.token, &json!({})).await.assert_ok();
    pause_with(&app, &u2.token, &json!({ "durationSeconds": 3600 }))
        .await
        .assert_ok();
    pause_with(&app, &u3.token, &json!({})).await.assert_ok();
    resume(&app, &u3.token).await.assert_ok();
    assert_no_drift(&app).await;

    // Drift in the pause table is seen.
    app.sql("DELETE FROM notification_pauses WHERE client_id = 'u1'")
        .await
        .unwrap();
    let report = rebuild::verify(&app.pool).await.expect("verify");
    assert_eq!(report.differences.len(), 1, "{:?}", report.differences);
    assert!(report.differences[0].to_string().contains("u1 pause"));

    let rebuilt = app.cli(["rebuild"]).await;
    assert!(rebuilt.status.success(), "{}", rebuilt.stderr);
    assert!(
        rebuilt.stdout.contains("2 paused users"),
        "{}",
        rebuilt.stdout
    );
    assert_no_drift(&app).await;
    let r1 = check(&app, "r1", &["u1", "u2", "u3"]).await;
    assert_eq!(r1["muted"], json!(["u1", "u2"]), "{r1}");
    assert_eq!(r1["paused"], json!(["u1", "u2"]), "{r1}");
    assert_eq!(u1.me().await["notificationEnabled"], false);
    assert_eq!(u3.me().await["notificationEnabled"], true);
}
