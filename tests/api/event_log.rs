use chatprefs::domain::{Actor, ActorKind, AppId, ClientId, Event, EventMetadata, RoomId};
use std::time::Duration;

use chatprefs::projections::UserPreferences;
use chatprefs::store::{self, stream, PoolSettings, StoreError, Unit};
use serde_json::Value;

use crate::helpers::{ok_result, TestApp};

#[tokio::test]
async fn the_log_refuses_update_delete_and_truncate() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    app.room("r1").await;
    ok_result(app.mute(&token, "r1").await).await;

    for sql in [
        "UPDATE events SET event_type = 'RoomUnmuted'",
        "DELETE FROM events",
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
    ] {
        let err = app.sql(sql).await.expect_err(sql);
        let message = err
            .as_db_error()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    assert_eq!(app.count_events().await, 1);
}

#[tokio::test]
async fn every_event_records_who_when_and_from_where() {
    let app = TestApp::spawn().await;
    app.mute_as_client_then_unmute_as_admin().await;

    let rows = app
        .sql(
            "SELECT event_type,
                    metadata || (SELECT jsonb_build_object('address', p.address, 'port', p.port,
                                                           'userAgent', p.user_agent)
                                 FROM event_personal_data p WHERE p.position = events.position),
                    stream_id, app_id, data, recorded_at IS NOT NULL,
                    metadata ?| ARRAY['address', 'port', 'userAgent']
             FROM events ORDER BY position",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let expected = [
        ("RoomMuted", "client", "u1", "req-client", "MobileSDK/3.2"),
        ("RoomUnmuted", "admin", "app-a", "req-admin", "backend/1.0"),
    ];
    for (row, (event_type, kind, actor, request_id, agent)) in rows.iter().zip(expected) {
        let metadata: Value = row.get(1);
        assert_eq!(row.get::<_, String>(0), event_type);
        assert_eq!(metadata["actor"]["kind"], kind);
        assert_eq!(metadata["actor"]["id"], actor);
        assert_eq!(metadata["requestId"], request_id);
        assert_eq!(metadata["address"], "127.0.0.1");
        assert!(metadata["port"].as_u64().is_some_and(|p| p > 0));
        assert_eq!(metadata["userAgent"], agent);
        assert_eq!(row.get::<_, String>(2), "u1");
        assert_eq!(row.get::<_, String>(3), "app-a");
        assert_eq!(row.get::<_, Value>(4)["room"], "r1");
        assert!(row.get::<_, bool>(5));
        assert!(
            !row.get::<_, bool>(6),
            "personal data is kept beside the log, not in it"
        );
    }
}

fn mute(room: &str) -> Event {
    Event::RoomMuted {
        room: RoomId::parse(room).unwrap(),
        until: None,
    }
}

fn unmute(room: &str) -> Event {
    Event::RoomUnmuted {
        room: RoomId::parse(room).unwrap(),
    }
}

/// Appends straight through the store, as a command would after deciding.
#[tokio::test]
async fn stale_appends_are_conflicts_and_leave_log_and_read_model_alone() {
    let app = TestApp::spawn().await;
    for room in ["r1", "r2", "r3", "r4"] {
        app.room(room).await;
    }
    let (a, u) = (
        AppId::parse("app-a").unwrap(),
        ClientId::parse("u1").unwrap(),
    );
    let metadata = EventMetadata {
        actor: Actor {
            kind: ActorKind::System,
            id: "test".into(),
        },
        request_id: "r".into(),
        address: None,
        port: None,
        user_agent: None,
    };
    let unit = Unit::new(app.pool.get().await.unwrap());
    let read_model = || async {
        let rows = app
            .sql("SELECT room_id FROM room_mutes ORDER BY position")
            .await
            .unwrap();
        let version: i32 = app
            .sql("SELECT version FROM stream_versions")
            .await
            .unwrap()[0]
            .get(0);
        let rooms: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        (rooms, version)
    };

    let first =
        stream::append::<UserPreferences>(&unit, &a, &u, 0, None, &[mute("r1")], &metadata).await;
    assert_eq!(first.unwrap()[0].stream_version, 1);

    let stale =
        stream::append::<UserPreferences>(&unit, &a, &u, 0, None, &[mute("r2")], &metadata).await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
    assert_eq!(read_model().await, (vec!["r1".to_owned()], 1));

    // Several events go in one transaction, applied in order.
    let two = stream::append::<UserPreferences>(
        &unit,
        &a,
        &u,
        1,
        None,
        &[mute("r2"), unmute("r1")],
        &metadata,
    )
    .await;
    let versions: Vec<i32> = two.unwrap().iter().map(|r| r.stream_version).collect();
    assert_eq!(versions, [2, 3]);
    assert_eq!(read_model().await, (vec!["r2".to_owned()], 3));

    // What a failed append of several events must leave: its transaction ended, nothing
    // of it in the log or the read model.
    let left_at_three = || async {
        assert!(!unit.is_open(), "the failed transaction was ended");
        assert_eq!(read_model().await, (vec!["r2".to_owned()], 3));
        assert_eq!(app.count_events().await, 3);
    };
    let stale_two = stream::append::<UserPreferences>(
        &unit,
        &a,
        &u,
        1,
        None,
        &[mute("r3"), mute("r4")],
        &metadata,
    )
    .await;
    assert!(
        matches!(stale_two, Err(StoreError::Conflict)),
        "{stale_two:?}"
    );
    left_at_three().await;

    // An event naming a room the app does not have fails its whole append: the event
    // before it is not kept either (and no later one could leave a gap).
    let missing = stream::append::<UserPreferences>(
        &unit,
        &a,
        &u,
        3,
        None,
        &[mute("r3"), mute("nowhere"), mute("r4")],
        &metadata,
    )
    .await;
    assert!(
        matches!(missing, Err(StoreError::NotAppended)),
        "{missing:?}"
    );
    left_at_three().await;
}

#[tokio::test]
async fn an_abandoned_unit_rolls_back_before_its_connection_is_reused() {
    let app = TestApp::spawn().await;
    let settings = PoolSettings {
        max_size: 1,
        timeout: Duration::from_secs(5),
    };
    let pool = store::connect_pool(app.database_url(), &settings).unwrap();

    let unit = Unit::new(pool.get().await.unwrap());
    unit.begin().await.unwrap();
    unit.client()
        .execute("INSERT INTO stream_versions VALUES ('a', 't', 's', 7)", &[])
        .await
        .unwrap();
    drop(unit);

    // The pool has one connection: this waits until the abandoned one is back.
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT count(*), pg_current_xact_id_if_assigned() IS NULL FROM stream_versions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "the insert was rolled back");
    assert!(row.get::<_, bool>(1), "no transaction was left open");
}
