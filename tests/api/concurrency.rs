use futures::future::join_all;

use crate::helpers::{mutes, ok_result, TestApp};

#[tokio::test]
async fn sixty_four_concurrent_mutes_of_different_rooms_all_land_in_order() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    let rooms: Vec<String> = (0..64).map(|i| format!("room-{i:02}")).collect();
    for room in &rooms {
        app.room(room).await;
    }

    let responses = join_all(rooms.iter().map(|room| app.mute(&token, room))).await;
    for response in responses {
        ok_result(response).await;
    }

    let mut muted = mutes(&app.me(&token).await);
    muted.sort();
    assert_eq!(muted, rooms);
    let versions: Vec<i32> = app
        .sql("SELECT stream_version FROM events ORDER BY stream_version")
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=64).collect::<Vec<_>>());
    let head: i32 = app
        .sql("SELECT version FROM stream_versions")
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(head, 64);
}

#[tokio::test]
async fn thirty_two_concurrent_mutes_of_one_room_append_exactly_one_event() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    app.room("r1").await;

    let responses = join_all((0..32).map(|_| app.mute(&token, "r1"))).await;
    for response in responses {
        assert_eq!(mutes(&ok_result(response).await), ["r1"]);
    }

    assert_eq!(app.count_events().await, 1);
}

#[tokio::test]
async fn concurrent_mutes_and_unmutes_leave_the_read_model_equal_to_the_log() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    for room in ["a", "b", "c"] {
        app.room(room).await;
    }

    let requests = (0..48).map(|i| {
        let room = ["a", "b", "c"][i % 3];
        let app = &app;
        let token = &token;
        async move {
            if i % 2 == 0 {
                app.mute(token, room).await
            } else {
                app.unmute(token, room).await
            }
        }
    });
    for response in join_all(requests).await {
        ok_result(response).await;
    }

    // Fold the log in SQL: a room is muted when its latest event is a RoomMuted.
    let folded: Vec<String> = app
        .sql(
            "SELECT room FROM (
                 SELECT DISTINCT ON (data->>'room') data->>'room' AS room, event_type, position
                 FROM events ORDER BY data->>'room', position DESC) latest
             WHERE event_type = 'RoomMuted' ORDER BY position",
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(mutes(&app.me(&token).await), folded);
    let alternating: bool = app
        .sql(
            "SELECT coalesce(bool_and(event_type <> previous), true) FROM (
                 SELECT event_type, lag(event_type) OVER (PARTITION BY data->>'room' ORDER BY position) AS previous
                 FROM events) e WHERE previous IS NOT NULL",
        )
        .await
        .unwrap()[0]
        .get(0);
    assert!(
        alternating,
        "no room was muted twice or unmuted twice in a row"
    );
}
