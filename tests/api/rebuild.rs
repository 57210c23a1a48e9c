//! Rebuilding the read model from the log while the service takes writes, and verifying it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatprefs::rebuild;
use chatprefs::store::{connect_pool, PoolSettings};
use serde_json::Value;

use crate::helpers::{
    chatprefs_command, mutes, ok_result, open_transaction_elsewhere, run_blocking, TestApp,
};

const ROOMS: [&str; 5] = ["r0", "r1", "r2", "r3", "r4"];

/// The read model as the log says it must be, computed in SQL independently of the Rust
/// fold: a room is muted when its latest event is a `RoomMuted` (the service never appends
/// a mute of a muted room), ordered by that event.
async fn folded_in_sql(app: &TestApp) -> Vec<(String, String, i64)> {
    app.sql(
        "SELECT stream_id, room, position FROM (
             SELECT DISTINCT ON (stream_id, data->>'room') stream_id, data->>'room' AS room, event_type, position
             FROM events ORDER BY stream_id, data->>'room', position DESC) latest
         WHERE event_type = 'RoomMuted' ORDER BY stream_id, position",
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn read_model(app: &TestApp) -> Vec<(String, String, i64)> {
    app.sql("SELECT client_id, room_id, position FROM room_mutes ORDER BY client_id, position")
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Who is paused, as the log says in SQL (their latest pause event is a pause, with its
/// position) and as `notification_pauses` holds it.
async fn paused_in_log(app: &TestApp) -> Vec<(String, i64)> {
    app.sql(
        "SELECT stream_id, position FROM (
             SELECT DISTINCT ON (stream_id) stream_id, event_type, position FROM events
             WHERE event_type IN ('NotificationsPaused', 'NotificationsResumed')
             ORDER BY stream_id, position DESC) latest
         WHERE event_type = 'NotificationsPaused' ORDER BY stream_id",
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn paused_in_model(app: &TestApp) -> Vec<(String, i64)> {
    app.sql("SELECT client_id, position FROM notification_pauses ORDER BY client_id")
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn versions_match_the_log(app: &TestApp) -> bool {
    app.sql(
        "SELECT count(*) = 0 FROM (
             SELECT stream_id, max(stream_version) AS version FROM events GROUP BY stream_id) log
         FULL JOIN (SELECT stream_id, version FROM stream_versions WHERE version > 0) model
         USING (stream_id, version)
         WHERE log.version IS NULL OR model.version IS NULL",
    )
    .await
    .unwrap()[0]
        .get(0)
}

/// Writers keep writing, a transaction stays open in another database of the server the
/// whole time (which must hold back nothing), and verifies run over and over meanwhile:
/// a verify that met a swap halfway would report drift that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_under_writes_and_a_long_transaction_elsewhere_fails_nothing_and_verify_never_lies()
{
    let app = TestApp::spawn().await;
    let (_elsewhere, _driver) = open_transaction_elsewhere().await;
    for room in ROOMS {
        app.room(room).await;
    }
    let mut tokens = Vec::new();
    for user in ["w0", "w1", "w2", "w3"] {
        tokens.push(app.user(user).await);
    }
    // One more writer pauses and resumes, so the swap also meets writers of the pause table.
    let pauser = app.user("w4").await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers: Vec<_> = tokens
        .iter()
        .map(|token| app.spawn_room_flipper(token, &ROOMS, usize::MAX, stop.clone(), done.clone()))
        .collect();
    writers.push(app.spawn_flipper(
        &pauser,
        vec!["/me/dnd".into()],
        usize::MAX,
        stop.clone(),
        done.clone(),
    ));

    let pool = connect_pool(
        app.database_url(),
        &PoolSettings {
            max_size: 4,
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let wait_for = |more: usize| {
        let done = done.clone();
        async move {
            let target = done.load(Ordering::Relaxed) + more;
            while done.load(Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let verifier = {
        let pool = connect_pool(
            app.database_url(),
            &PoolSettings {
                max_size: 1,
                timeout: Duration::from_secs(5),
            },
        )
        .unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let report = rebuild::verify(&pool).await.expect("verify");
                assert_eq!(
                    report.differences,
                    [],
                    "verify reported drift that is not there"
                );
                runs += 1;
            }
            runs
        })
    };
    wait_for(40).await;
    let mut swapped = 0;
    for _ in 0..5 {
        let report = rebuild::rebuild(&pool).await.expect("rebuild");
        assert!(report.events > 0);
        eprintln!(
            "rebuild of {} events held writers for {:?} after {} catch-up round(s)",
            report.events, report.locked, report.catch_up_rounds
        );
        swapped += 1;
        wait_for(20).await;
    }
    // Writes after the last swap run on statements prepared before it.
    wait_for(40).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for writer in writers {
        failures.extend(writer.await.unwrap());
    }
    let verifies = verifier.await.unwrap();
    assert!(verifies > 0, "verifies ran alongside the rebuilds");

    assert_eq!(swapped, 5);
    assert_eq!(failures, Vec::<String>::new(), "no request may fail");
    assert_eq!(read_model(&app).await, folded_in_sql(&app).await);
    assert_eq!(paused_in_model(&app).await, paused_in_log(&app).await);
    assert!(versions_match_the_log(&app).await);
    let verified = rebuild::verify(&pool).await.unwrap();
    assert!(
        verified.differences.is_empty(),
        "{:?}",
        verified.differences
    );
    for (user, token) in ["w0", "w1", "w2", "w3"].iter().zip(&tokens) {
        let expected: Vec<String> = folded_in_sql(&app)
            .await
            .into_iter()
            .filter(|(u, _, _)| u == user)
            .map(|(_, room, _)| room)
            .collect();
        assert_eq!(mutes(&app.me(token).await), expected);
    }
    let checkpoint: i64 = app
        .sql("SELECT position FROM projection_checkpoints WHERE projection = 'room_mutes'")
        .await
        .unwrap()[0]
        .get(0);
    assert!(checkpoint > 0);
}

/// The read-model tables' indexes and constraints, by name and definition.
async fn read_model_schema(app: &TestApp) -> Vec<String> {
    app.sql(
        "SELECT indexname || ': ' || indexdef FROM pg_indexes
         WHERE tablename IN ('room_mutes', 'stream_versions')
         UNION ALL
         SELECT conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid IN ('room_mutes'::regclass, 'stream_versions'::regclass)
         ORDER BY 1",
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn verify_reports_drift_and_rebuild_repairs_it() {
    let app = TestApp::spawn().await;
    let u1 = app.user("u1").await;
    let u2 = app.user("u2").await;
    for room in ["r1", "r2"] {
        app.room(room).await;
    }
    for (token, room) in [(&u1, "r1"), (&u1, "r2"), (&u2, "r1")] {
        ok_result(app.mute(token, room).await).await;
    }
    let clean = app.cli(["rebuild", "--verify"]).await;
    assert!(clean.status.success(), "{clean:?}");
    let mut nowhere = chatprefs_command(["rebuild", "--verify"]);
    nowhere
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")
        .env("RUST_LOG", "off");
    let unreachable = run_blocking(nowhere).await;
    assert_eq!(
        unreachable.status.code(),
        Some(2),
        "no verdict is not drift: {unreachable:?}"
    );
    let before = read_model(&app).await;
    let schema_before = read_model_schema(&app).await;

    app.sql("DELETE FROM room_mutes WHERE client_id = 'u1' AND room_id = 'r1'")
        .await
        .unwrap();
    app.sql("INSERT INTO room_mutes VALUES ('app-a', 'u2', 'bogus', now(), 999)")
        .await
        .unwrap();

    let drift = app.cli(["rebuild", "--verify"]).await;
    assert_eq!(drift.status.code(), Some(1), "{drift:?}");
    let report = drift.stdout.clone();
    let lines: Vec<&str> = report.lines().collect();
    assert!(
        lines[0].starts_with("missing  app=app-a client=u1 room=r1:"),
        "{report}"
    );
    assert!(
        lines[1].starts_with("extra    app=app-a client=u2 room=bogus:"),
        "{report}"
    );
    assert!(lines[2].contains("2 difference(s)"), "{report}");
    assert_eq!(
        read_model(&app).await.len(),
        before.len(),
        "verify changes nothing"
    );

    let rebuilt = app.cli(["rebuild"]).await;
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert!(rebuilt.stdout.contains("from 3 events"));
    assert_eq!(read_model(&app).await, before);
    assert_eq!(
        read_model_schema(&app).await,
        schema_before,
        "same keys and indexes"
    );

    let again = app.cli(["rebuild", "--verify"]).await;
    assert!(again.status.success(), "{again:?}");
    assert!(again.stdout.contains("0 difference(s)"));
    // The service keeps working on the swapped-in tables.
    let user: Value = app.me(&u1).await;
    assert_eq!(mutes(&user), ["r1", "r2"]);
    ok_result(app.unmute(&u1, "r1").await).await;
    assert_eq!(mutes(&app.me(&u1).await), ["r2"]);
}

#[tokio::test]
async fn an_event_the_fold_cannot_read_stops_the_rebuild_before_any_swap() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();
    app.sql(
        "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version, event_type, data, metadata)
         VALUES (gen_random_uuid(), 'app-a', 'user_preferences', 'u1', 2, 'RoomArchived', '{\"room\": \"r1\"}', '{}')",
    )
    .await
    .unwrap();

    let failed = app.cli(["rebuild"]).await;
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    let stderr = failed.stderr;
    assert!(stderr.contains("RoomArchived"), "{stderr}");
    assert_eq!(mutes(&u1.me().await), ["r1"], "the live model is untouched");
    let shadows: i64 = app
        .sql("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%_rebuild'")
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(shadows, 0);
}

#[tokio::test]
async fn a_second_rebuild_at_the_same_time_is_refused() {
    let app = TestApp::spawn().await;
    let held = app.pool.get().await.unwrap();
    held.query_one("SELECT pg_advisory_lock($1)", &[&0x6368_6174_7265_6275_i64])
        .await
        .unwrap();

    let busy = app.cli(["rebuild"]).await;
    assert_eq!(busy.status.code(), Some(1));
    assert!(busy.stderr.contains("another rebuild is running"));

    held.query_one(
        "SELECT pg_advisory_unlock($1)",
        &[&0x6368_6174_7265_6275_i64],
    )
    .await
    .unwrap();
    assert!(app.cli(["rebuild"]).await.status.success());
}

async fn privileges(app: &TestApp, role: &str) -> (bool, bool, bool) {
    let row = &app
        .sql(&format!(
            "SELECT has_table_privilege('{role}', 'room_mutes', 'DELETE'),
                    has_table_privilege('{role}', 'stream_versions', 'UPDATE'),
                    has_table_privilege('{role}', 'stream_versions', 'DELETE')"
        ))
        .await
        .unwrap()[0];
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn the_swapped_in_tables_keep_the_grants_of_the_live_ones() {
    let app = TestApp::spawn().await;
    let role = format!(
        "chatprefs_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    for sql in [
        format!("CREATE ROLE {role} NOLOGIN"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON room_mutes TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE ON stream_versions TO {role}"),
    ] {
        app.sql(&sql).await.unwrap();
    }
    assert_eq!(privileges(&app, &role).await, (true, true, false));

    let rebuilt = app.cli(["rebuild"]).await;

    let after = privileges(&app, &role).await;
    for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
        app.sql(&sql).await.unwrap();
    }
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert_eq!(after, (true, true, false));
}

/// The swap renames the live tables away and drops them after the lock; a view on one of
/// them would follow the rename and silently read the old rows, so the swap refuses.
#[tokio::test]
async fn a_view_on_the_read_model_stops_the_swap_and_the_retired_tables_are_gone_after_one() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();
    assert!(app.cli(["rebuild"]).await.status.success());
    let leftovers: i64 = app
        .sql("SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_retired%' OR relname LIKE '%\\_rebuild%'")
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(leftovers, 0, "no retired or shadow table or index is left");

    app.sql("CREATE VIEW mutes_report AS SELECT client_id, room_id FROM room_mutes")
        .await
        .unwrap();
    let refused = app.cli(["rebuild"]).await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        refused.stderr.contains("depends on room_mutes"),
        "{refused:?}"
    );
    let report = app
        .sql("SELECT client_id, room_id FROM mutes_report")
        .await
        .unwrap();
    assert_eq!(report.len(), 1, "the view still reads the live table");
    assert_eq!(mutes(&u1.me().await), ["r1"]);
}
