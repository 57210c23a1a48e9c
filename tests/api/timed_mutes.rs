//! Timed mutes through the server: the optional body, expiry with no writer, and old
//! (schema version 1) mutes read as forever everywhere.

use std::time::Duration;

use chatprefs::rebuild;
use chatprefs::service::sweep;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{mutes, Sent, TestApp, TestResponse};

async fn mute_with(app: &TestApp, token: &str, room: &str, body: &Value) -> TestResponse {
    app.client(&app.app, token, Method::POST, &format!("/me/mute/{room}"))
        .json(body)
        .sent()
        .await
}

async fn muted_in_check(app: &TestApp, room: &str, clients: &[&str]) -> Value {
    app.admin_post(
        &format!("/admin/rooms/{room}/mutes/check"),
        &json!({ "clients": clients }),
    )
    .await
    .assert_ok()["muted"]
        .clone()
}

async fn muters(app: &TestApp, room: &str) -> Vec<String> {
    let page = app
        .admin_get(&format!("/admin/rooms/{room}/mutes"))
        .await
        .assert_ok();
    page["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of muters: {page}"))
        .iter()
        .map(|m| {
            m["_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{m}"))
                .to_owned()
        })
        .collect()
}

async fn as_of(app: &TestApp, user: &str, at: Option<i64>) -> Value {
    let query = at.map(|ms| format!("?asOf={ms}")).unwrap_or_default();
    app.admin_get(&format!("/admin/clients/{user}/mute{query}"))
        .await
        .assert_ok()["mute"]
        .clone()
}

async fn rebuilt(app: &TestApp) {
    let rebuilt = app.cli(["rebuild"]).await;
    assert!(rebuilt.status.success(), "{}", rebuilt.stderr);
}

async fn assert_no_drift(app: &TestApp) {
    let report = rebuild::verify(&app.pool).await.expect("verify");
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

#[tokio::test]
async fn a_two_second_mute_is_in_force_at_once_and_ends_on_its_own() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    let u2 = app.signed_in("u2").await;
    app.room("r1").await;
    u2.mute("r1").await.assert_ok();

    let user = mute_with(&app, &u1.token, "r1", &json!({ "durationSeconds": 2 }))
        .await
        .assert_ok();
    assert_eq!(mutes(&user), ["r1"]);
    let details = &user["muteDetails"][0];
    assert_eq!(details["room"], "r1");
    let since = details["since"].as_i64().unwrap();
    let until = details["until"].as_i64().unwrap();
    // The end counts from the load's clock, the start is the append's, a little later.
    assert!((1500..=2000).contains(&(until - since)), "{details}");
    assert_eq!(mutes(&u1.me().await), ["r1"]);
    assert_eq!(
        muted_in_check(&app, "r1", &["u1", "u2"]).await,
        json!(["u1", "u2"])
    );
    assert_eq!(muters(&app, "r1").await, ["u1", "u2"]);
    assert_eq!(as_of(&app, "u1", None).await, json!(["r1"]));
    let entry = &app.admin_get("/admin/audit?client=u1").await.assert_ok()["entries"][0];
    assert_eq!(entry["untilMS"], until, "{entry}");
    assert!(entry["until"].is_string(), "{entry}");
    let feed = app.admin_get("/admin/events").await.assert_ok();
    assert_eq!(feed["entries"][1]["untilMS"], until, "{feed}");
    assert_eq!(feed["entries"][0]["untilMS"], Value::Null, "{feed}");
    assert_no_drift(&app).await;

    tokio::time::sleep(Duration::from_millis(2300)).await;

    let me = u1.me().await;
    assert_eq!(mutes(&me), Vec::<String>::new());
    assert_eq!(me["muteDetails"], json!([]));
    assert_eq!(
        muted_in_check(&app, "r1", &["u1", "u2"]).await,
        json!(["u2"])
    );
    assert_eq!(muters(&app, "r1").await, ["u2"]);
    assert_eq!(as_of(&app, "u1", None).await, json!([]));
    assert_eq!(as_of(&app, "u1", Some(until - 1)).await, json!(["r1"]));
    assert_eq!(as_of(&app, "u1", Some(until)).await, json!([]));
    assert_no_drift(&app).await;

    // Unmuting an expired mute changes nothing; the sweep removes the row, not the event.
    let events = app.count_events().await;
    u1.unmute("r1").await.assert_ok();
    assert_eq!(app.count_events().await, events);
    assert_eq!(sweep::sweep(&app.pool).await.unwrap(), 1);
    assert_eq!(app.count_events().await, events);
    assert_no_drift(&app).await;
    rebuilt(&app).await;
    assert_no_drift(&app).await;
    assert_eq!(
        muted_in_check(&app, "r1", &["u1", "u2"]).await,
        json!(["u2"])
    );

    // Muting again after the end is a new mute.
    let user = u1.mute("r1").await.assert_ok();
    assert_eq!(user["muteDetails"][0]["until"], Value::Null);
    assert_eq!(app.count_events().await, events + 1);
}

#[tokio::test]
async fn the_same_end_again_changes_nothing_and_another_end_replaces_the_mute() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    app.room("r2").await;
    u1.mute("r1").await.assert_ok();
    u1.mute("r2").await.assert_ok();

    let now_ms = chrono::Utc::now().timestamp_millis();
    let end = now_ms + 3_600_000;
    let rfc = chrono::DateTime::from_timestamp_millis(end)
        .unwrap()
        .to_rfc3339();
    let user = mute_with(&app, &u1.token, "r1", &json!({ "until": rfc }))
        .await
        .assert_ok();
    assert_eq!(mutes(&user), ["r2", "r1"], "a new mute is the newest");
    assert_eq!(user["muteDetails"][1]["until"], end);
    assert_eq!(app.count_events().await, 3);
    mute_with(&app, &u1.token, "r1", &json!({ "until": end }))
        .await
        .assert_ok();
    assert_eq!(app.count_events().await, 3, "the same end, as epoch ms");

    let user = app
        .admin(&app.app, Method::POST, "/admin/clients/u1/mute/r1")
        .json(&json!({ "until": end + 1000 }))
        .sent()
        .await
        .assert_ok();
    assert_eq!(user["muteDetails"][1]["until"], end + 1000);
    let user = u1.mute("r1").await.assert_ok();
    assert_eq!(user["muteDetails"][1]["until"], Value::Null);
    assert_eq!(app.count_events().await, 5);
    let stored = app
        .sql("SELECT schema_version, data FROM events ORDER BY position")
        .await
        .unwrap();
    assert_eq!(stored[2].get::<_, i16>(0), 2);
    assert_eq!(
        stored[4].get::<_, Value>(1),
        json!({ "room": "r1", "until": null })
    );
    assert_no_drift(&app).await;
}

#[tokio::test]
async fn no_body_an_empty_one_or_an_empty_object_mutes_forever() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    for room in ["r1", "r2", "r3"] {
        app.room(room).await;
    }
    let post = |room: &str| {
        app.client(
            &app.app,
            &u1.token,
            Method::POST,
            &format!("/me/mute/{room}"),
        )
    };

    post("r1").sent().await.assert_ok();
    post("r2")
        .header("Content-Type", "application/json")
        .sent()
        .await
        .assert_ok();
    let user = post("r3").json(&json!({})).sent().await.assert_ok();

    assert_eq!(mutes(&user), ["r1", "r2", "r3"]);
    for details in user["muteDetails"].as_array().unwrap() {
        assert_eq!(details["until"], Value::Null, "{details}");
    }
}

#[tokio::test]
async fn bad_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let bodies = [
        json!({ "until": now_ms - 1000 }),
        json!({ "until": "2001-01-01T00:00:00Z" }),
        json!({ "until": now_ms + 400 * 86_400_000 }),
        json!({ "durationSeconds": 0 }),
        json!({ "durationSeconds": 31_536_001 }),
        json!({ "until": now_ms + 60_000, "durationSeconds": 60 }),
        json!({ "until": "soon" }),
        json!({ "until": true }),
        json!({ "durationSeconds": "60" }),
        json!({ "durationSeconds": 1.5 }),
        json!({ "duration": 60 }),
        json!([]),
    ];
    for body in &bodies {
        mute_with(&app, &u1.token, "r1", body)
            .await
            .assert_error(400, "INVALID_PARAMETERS");
        app.admin(&app.app, Method::POST, "/admin/clients/u1/mute/r1")
            .json(body)
            .sent()
            .await
            .assert_error(400, "INVALID_PARAMETERS");
    }
    app.client(&app.app, &u1.token, Method::POST, "/me/mute/r1")
        .header("Content-Type", "application/json")
        .body("{\"until\":")
        .sent()
        .await
        .assert_error(400, "INVALID_PARAMETERS");
    assert_eq!(app.count_events().await, 0);
}

#[tokio::test]
async fn a_stored_version_1_mute_reads_as_forever_everywhere() {
    let app = TestApp::spawn().await;
    app.signed_in("u1").await;
    app.room("r1").await;
    // What a release before timed mutes wrote: the event without `until`, and its row.
    app.sql(
        "WITH e AS (
             INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                                 event_type, schema_version, data, metadata)
             VALUES (gen_random_uuid(), 'app-a', 'user_preferences', 'u1', 1, 'RoomMuted', 1,
                     '{\"room\": \"r1\"}',
                     '{\"actor\": {\"kind\": \"client\", \"id\": \"u1\"}, \"requestId\": \"old\"}')
             RETURNING position, recorded_at),
         v AS (INSERT INTO stream_versions (app_id, stream_type, stream_id, version)
               VALUES ('app-a', 'user_preferences', 'u1', 1))
         INSERT INTO room_mutes (app_id, client_id, room_id, muted_at, position)
         SELECT 'app-a', 'u1', 'r1', recorded_at, position FROM e",
    )
    .await
    .unwrap();
    let u1 = app.signed_in("u1").await;

    let check = |user: Value| {
        assert_eq!(mutes(&user), ["r1"]);
        assert_eq!(user["muteDetails"][0]["until"], Value::Null, "{user}");
    };
    check(u1.me().await);
    assert_eq!(as_of(&app, "u1", None).await, json!(["r1"]));
    let entry = &app.admin_get("/admin/audit?client=u1").await.assert_ok()["entries"][0];
    assert_eq!(entry["until"], Value::Null, "{entry}");
    assert_eq!(entry["type"], "RoomMuted");
    assert_no_drift(&app).await;
    rebuilt(&app).await;
    assert_no_drift(&app).await;
    check(u1.me().await);
    assert_eq!(muted_in_check(&app, "r1", &["u1"]).await, json!(["u1"]));

    // Forever again is the same mute; a timed one is new.
    check(u1.mute("r1").await.assert_ok());
    assert_eq!(app.count_events().await, 1);
    mute_with(&app, &u1.token, "r1", &json!({ "durationSeconds": 60 }))
        .await
        .assert_ok();
    assert_eq!(app.count_events().await, 2);
    assert_no_drift(&app).await;
}
