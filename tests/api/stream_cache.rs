//! Issue 15: a stream remembered between requests saves the load, and is never acted on
//! once anyone else has moved the stream: two instances on one database take turns on one
//! user, each answering from what it remembers where it can.

use reqwest::{Method, Response};

use crate::auth_cache::Instance;
use crate::helpers::{assert_error, mutes, ok_result, TestApp};

/// A mute (`POST`) or unmute (`DELETE`) of `room` by the holder of `token`, at `base`.
async fn act(app: &TestApp, base: &str, token: &str, method: Method, room: &str) -> Response {
    reqwest::Client::new()
        .request(method, format!("{base}/me/mute/{room}"))
        .header("IM-CLIENT-KEY", &app.app.client_key)
        .header("IM-Authorization", token)
        .send()
        .await
        .unwrap()
}

/// The user's events as the log holds them: stream version and type.
async fn stream_of(app: &TestApp, user: &str) -> Vec<(i32, String)> {
    app.sql(&format!(
        "SELECT stream_version, event_type FROM events
         WHERE stream_type = 'user_preferences' AND stream_id = '{user}' ORDER BY position"
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

/// Runs `during` with `notification_pauses` renamed away: a command that loaded its stream
/// would fail (the load reads it), so a 200 proves it was answered from the remembered
/// state with at most a probe or an append, neither of which reads that table.
async fn without_the_load<T>(app: &TestApp, during: impl std::future::Future<Output = T>) -> T {
    app.with_table_away("notification_pauses", during).await
}

/// User u1, rooms r1 and r2, and r1 muted (so u1's stream is remembered): u1's token.
async fn u1_muting_r1(app: &TestApp) -> String {
    let token = app.user("u1").await;
    app.room("r1").await;
    app.room("r2").await;
    ok_result(app.mute(&token, "r1").await).await;
    token
}

#[tokio::test]
async fn a_remembered_stream_answers_repeats_and_appends_without_a_load() {
    let app = TestApp::spawn().await;
    let token = u1_muting_r1(&app).await;

    let (repeat, second, unmuted) = without_the_load(&app, async {
        (
            app.mute(&token, "r1").await,
            app.mute(&token, "r2").await,
            app.unmute(&token, "r1").await,
        )
    })
    .await;
    assert_eq!(mutes(&ok_result(repeat).await), ["r1"]);
    assert_eq!(mutes(&ok_result(second).await), ["r1", "r2"]);
    assert_eq!(mutes(&ok_result(unmuted).await), ["r2"]);
    assert_eq!(
        stream_of(&app, "u1").await,
        [
            (1, "RoomMuted".into()),
            (2, "RoomMuted".into()),
            (3, "RoomUnmuted".into())
        ]
    );
    assert_eq!(mutes(&app.me(&token).await), ["r2"]);
}

#[tokio::test]
async fn two_instances_taking_turns_on_one_user_lose_and_duplicate_nothing() {
    let app = TestApp::spawn().await;
    let other = Instance::beside(&app).await;
    let token = app.user("u1").await;
    app.room("r1").await;
    let (here, there) = (app.base.as_str(), other.base.as_str());

    // Each instance remembers what it last did; every step below acts on a stale memory.
    ok_result(act(&app, here, &token, Method::POST, "r1").await).await;
    ok_result(act(&app, there, &token, Method::DELETE, "r1").await).await;
    // Here remembers r1 muted: a repeat, were it not for the probe that finds the stream
    // moved on. It loads, and mutes.
    let muted = act(&app, here, &token, Method::POST, "r1").await;
    assert_eq!(mutes(&ok_result(muted).await), ["r1"]);
    // There remembers r1 unmuted and appends a mute at the version here took: refused by
    // the stream-version key, it loads, finds r1 muted and appends nothing.
    let muted = act(&app, there, &token, Method::POST, "r1").await;
    assert_eq!(mutes(&ok_result(muted).await), ["r1"]);
    let unmuted = act(&app, here, &token, Method::DELETE, "r1").await;
    assert_eq!(mutes(&ok_result(unmuted).await), Vec::<String>::new());
    // There now remembers r1 muted: its unmute is refused as stale and decides nothing.
    let unmuted = act(&app, there, &token, Method::DELETE, "r1").await;
    assert_eq!(mutes(&ok_result(unmuted).await), Vec::<String>::new());

    assert_eq!(
        stream_of(&app, "u1").await,
        [
            (1, "RoomMuted".into()),
            (2, "RoomUnmuted".into()),
            (3, "RoomMuted".into()),
            (4, "RoomUnmuted".into())
        ]
    );
    assert_eq!(mutes(&app.me(&token).await), Vec::<String>::new());
}

#[tokio::test]
async fn a_remembered_stream_still_refuses_a_room_the_app_does_not_have() {
    let app = TestApp::spawn().await;
    let token = u1_muting_r1(&app).await;

    // Remembered, u1's stream would take this mute; the append's own room check refuses it
    // (and the load that follows answers why).
    let missing = app.mute(&token, "no-such-room").await;
    assert_error(missing, 404, "ROOM_NOT_FOUND").await;
    let missing = app.unmute(&token, "no-such-room").await;
    assert_error(missing, 404, "ROOM_NOT_FOUND").await;
    assert_eq!(stream_of(&app, "u1").await, [(1, "RoomMuted".into())]);
}

#[tokio::test]
async fn turned_off_every_command_loads() {
    let app = TestApp::spawn_with(|settings| settings.stream_cache_capacity = 0).await;
    let token = app.user("u1").await;
    app.room("r1").await;
    ok_result(app.mute(&token, "r1").await).await;

    let repeat = without_the_load(&app, app.mute(&token, "r1")).await;
    assert_eq!(repeat.status(), 500, "the load reads the renamed table");
    assert_eq!(
        mutes(&ok_result(app.mute(&token, "r1").await).await),
        ["r1"]
    );
}

#[tokio::test]
async fn a_state_remembered_before_a_rebuild_is_not_acted_on_after_it() {
    let app = TestApp::spawn().await;
    let other = Instance::beside(&app).await;
    let token = u1_muting_r1(&app).await;
    // The read model loses r1 (a suspect read model, as operations.md describes), and the
    // other instance reads it so: it remembers u1 with r2 muted and r1 not.
    app.sql("DELETE FROM room_mutes").await.unwrap();
    ok_result(act(&app, &other.base, &token, Method::POST, "r2").await).await;
    app.cli(["rebuild"]).await.assert_success();

    // Remembered, r1 is not muted there; rebuilt, it is. Acting on the memory would append
    // a second mute of a muted room and answer without r1.
    let muted = act(&app, &other.base, &token, Method::POST, "r1").await;
    assert_eq!(mutes(&ok_result(muted).await), ["r1", "r2"]);
    assert_eq!(
        stream_of(&app, "u1").await,
        [(1, "RoomMuted".into()), (2, "RoomMuted".into())]
    );
}

#[tokio::test]
async fn a_version_remembered_past_what_the_database_holds_leaves_no_gap() {
    let app = TestApp::spawn().await;
    let token = u1_muting_r1(&app).await;
    ok_result(app.mute(&token, "r2").await).await;
    // A failover to a replica that had not received the second mute: the database holds
    // version 1 while this instance remembers version 2.
    for lost in [
        "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete",
        "DELETE FROM events WHERE stream_version = 2",
        "ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete",
        "UPDATE stream_versions SET version = 1",
        "DELETE FROM room_mutes WHERE room_id = 'r2'",
    ] {
        app.sql(lost).await.unwrap();
    }

    // Remembered, r2 is muted and the unmute would append version 3 over a gap.
    let unmuted = app.unmute(&token, "r2").await;
    assert_eq!(mutes(&ok_result(unmuted).await), ["r1"]);
    let muted = app.mute(&token, "r2").await;
    assert_eq!(mutes(&ok_result(muted).await), ["r1", "r2"]);
    assert_eq!(
        stream_of(&app, "u1").await,
        [(1, "RoomMuted".into()), (2, "RoomMuted".into())]
    );
}
