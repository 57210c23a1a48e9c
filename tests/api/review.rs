//! Regression tests for the defects an outside review found (docs/reliability.md,
//! "Outside review"): each failed on the code before its fix.

use std::time::Duration;

use chatprefs::config::{AuthFailureLimit, ServeSettings};
use reqwest::Method;
use serde_json::{json, Value};

use crate::audit::audit;
use crate::helpers::{
    assert_error, chatprefs_command, ok_result, run_blocking, server_url, Sent, TestApp,
    TestDatabase,
};
use crate::process::{create_app, Server};
use crate::security::Role;

async fn sql(url: &str, statement: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.query(statement, &[]).await.unwrap()
}

async fn history(url: &str) -> Vec<(i32, String)> {
    sql(
        url,
        "SELECT version, name FROM refinery_schema_history ORDER BY version",
    )
    .await
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

fn runtime_role(db: TestDatabase) -> (Role, String) {
    let name = format!(
        "chatprefs_rv_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let url = format!(
        "{}/{}",
        server_url().replace("postgres@", &format!("{name}@")),
        db.name
    );
    (Role { name, db: Some(db) }, url)
}

/// The version of the newest migration this binary carries (`migrations/V<n>__*.sql`).
fn newest_migration() -> u32 {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().ok()?;
            name.strip_prefix('V')?.split("__").next()?.parse().ok()
        })
        .max()
        .expect("migrations")
}

/// A newer release migrated the database (V99, unknown here): this binary still serves,
/// migrates nothing and audits, as an older instance must mid-deploy or after a rollback;
/// but it refuses to rebuild or verify, which would fold the log without what only the
/// newer release knows.
#[tokio::test]
async fn an_older_binary_serves_a_newer_additive_schema_but_will_not_rebuild_it() {
    let db = TestDatabase::new();
    let keys = create_app(&db.url, "shop");
    sql(
        &db.url,
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (99, 'from_the_future', '2026-11-26T00:00:00Z', '42')",
    )
    .await;
    sql(&db.url, "ALTER TABLE clients ADD COLUMN locale text").await;
    let before = history(&db.url).await;

    db.cli(["migrate", "--runtime-role", "chatprefs_never_made"])
        .await
        .assert_success()
        .assert_stdout_contains("newer than this binary")
        .assert_stdout_contains("V99__from_the_future")
        .assert_stdout_contains("nothing was changed");
    assert_eq!(history(&db.url).await, before);
    let role = sql(
        &format!("{}/postgres", server_url()),
        "SELECT 1 FROM pg_roles WHERE rolname = 'chatprefs_never_made'",
    )
    .await;
    assert!(
        role.is_empty(),
        "a newer database gets no grants from an older binary"
    );

    let server = Server::start(&db.url, &[]);
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", server.base()))
        .sent()
        .await
        .assert_ok();
    assert_eq!(ready["schemaVersion"], 99);
    assert_eq!(ready["binarySchemaVersion"], newest_migration());
    http.post(format!("{}/admin/clients", server.base()))
        .header("IM-API-KEY", &keys.api_key)
        .json(&json!({ "_id": "u1", "issueAccessToken": true }))
        .sent()
        .await
        .assert_ok();
    http.post(format!("{}/rooms", server.base()))
        .header("IM-API-KEY", &keys.api_key)
        .json(&json!({ "_id": "r1" }))
        .sent()
        .await
        .assert_ok();
    http.post(format!("{}/admin/clients/u1/mute/r1", server.base()))
        .header("IM-API-KEY", &keys.api_key)
        .sent()
        .await
        .assert_ok();
    drop(server);

    db.cli(["audit", "--app", "shop"]).await.assert_success();
    let mutes = "SELECT count(*) FROM room_mutes WHERE room_id = 'r1'";
    assert_eq!(sql(&db.url, mutes).await[0].get::<_, i64>(0), 1);
    db.cli(["rebuild"])
        .await
        .assert_exit_code(1)
        .assert_stderr_contains("newer than this binary")
        .assert_stderr_contains("V99__from_the_future")
        .assert_stderr_contains("run rebuild with the newest release");
    db.cli(["rebuild", "--verify"])
        .await
        .assert_exit_code(2)
        .assert_stderr_contains("run verify with the newest release");
    assert_eq!(
        sql(&db.url, mutes).await[0].get::<_, i64>(0),
        1,
        "a refused rebuild leaves the read model as it was"
    );
    assert_eq!(history(&db.url).await, before);
}

/// A schema older than the binary needs is still refused to the runtime role, which may
/// not migrate it; and a database whose known migration was changed is refused to all.
#[tokio::test]
async fn an_older_schema_or_a_changed_migration_still_refuses_to_serve() {
    let (role, role_url) = runtime_role(TestDatabase::new());
    let db = role.db.as_ref().unwrap();
    let owner_url = db.url.clone();
    db.cli(["migrate", "--runtime-role", &role.name])
        .await
        .assert_success();

    sql(
        &owner_url,
        "DELETE FROM refinery_schema_history WHERE version = 3",
    )
    .await;
    let mut serve = chatprefs_command(["serve", "--bind", "127.0.0.1:0"]);
    serve.env("DATABASE_URL", &role_url);
    let refused = run_blocking(serve).await;
    assert!(!refused.status.success());
    refused
        .assert_stderr_contains("schema is behind")
        .assert_stderr_contains("V3__");

    sql(
        &owner_url,
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (3, 'something_else', '2026-11-26T00:00:00Z', '42')",
    )
    .await;
    let refused = db.cli(["migrate"]).await;
    assert!(!refused.status.success());
    refused.assert_stderr_contains("differs from this binary's");
}

/// Instances creating the same new database at once (`migrate` with its runtime role, and
/// `serve`): PostgreSQL reports the loser as 23505 on `pg_database_datname_index`, which
/// is "exists already", not a failure.
#[test]
fn instances_starting_together_on_a_new_database_all_succeed() {
    for round in 0..4 {
        let db = TestDatabase::new();
        let (role, _) = runtime_role(db);
        let db = role.db.as_ref().unwrap();
        let children: Vec<_> = (0..3)
            .map(|_| {
                db.command(["migrate", "--runtime-role", &role.name])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "round {round}: {output:?}");
        }
    }
    for round in 0..2 {
        let db = TestDatabase::new();
        let servers: Vec<_> = (0..2)
            .map(|_| {
                let url = db.url.clone();
                std::thread::spawn(move || Server::start(&url, &[]))
            })
            .collect();
        for server in servers {
            let server = server.join();
            assert!(server.is_ok(), "round {round}: a serve did not start");
        }
    }
}

fn behind_a_trusted_proxy(burst: u32) -> impl FnOnce(&mut ServeSettings) {
    move |s| {
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.auth_failures = AuthFailureLimit {
            burst,
            window: Duration::from_secs(60),
        };
    }
}

/// Entries a trusted proxy writes with a port are addresses; one that is not an address
/// ends the walk, so the caller's own entries to its left are never believed.
#[tokio::test]
async fn the_audit_trail_records_the_address_the_trusted_proxy_saw() {
    let app = TestApp::spawn_with(behind_a_trusted_proxy(100)).await;
    let token = app.user("u1").await;
    app.room("r1").await;
    let cases = [
        ("6.6.6.6, 198.51.100.7:5678", "198.51.100.7", json!(5678)),
        ("6.6.6.6, [2001:db8::1]:443", "2001:db8::1", json!(443)),
        ("6.6.6.6, unknown", "127.0.0.1", json!("peer")),
        ("6.6.6.6, unknown, 127.0.0.1", "127.0.0.1", json!(null)),
    ];
    for (i, (header, _, _)) in cases.iter().enumerate() {
        let method = if i % 2 == 0 {
            Method::POST
        } else {
            Method::DELETE
        };
        let request = app
            .client(&app.app, &token, method, "/me/mute/r1")
            .header("X-Forwarded-For", *header);
        request.sent().await.assert_ok();
    }
    let page = audit(&app, "").await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), cases.len());
    for (entry, (header, address, port)) in entries.iter().zip(cases) {
        assert_eq!(entry["address"], address, "{header}");
        match port {
            Value::String(_) => assert!(entry["port"].as_u64().is_some(), "{header}: {entry}"),
            port => assert_eq!(entry["port"], port, "{header}"),
        }
    }
}

/// The limiter counts the address the trusted proxy saw, whatever the caller writes to
/// the left of it: rotating that part neither dodges the limit nor blames someone else.
#[tokio::test]
async fn the_failure_limiter_cannot_be_dodged_or_aimed_through_x_forwarded_for() {
    let app = TestApp::spawn_with(behind_a_trusted_proxy(2)).await;
    // A new key each time: the limiter also counts failures per presented key.
    let guesses = std::sync::atomic::AtomicU32::new(0);
    let guess = |header: &str| {
        let n = guesses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        app.request(Method::GET, "/me")
            .header("IM-CLIENT-KEY", format!("guess-{n}"))
            .header("X-Forwarded-For", header)
    };
    for spoofed in ["6.6.6.6", "7.7.7.7"] {
        let response = guess(&format!("{spoofed}, 198.51.100.7:5678")).send().await;
        assert_error(response.unwrap(), 403, "INVALID_CLIENT_KEY").await;
    }
    guess("8.8.8.8, 198.51.100.7:9999")
        .sent()
        .await
        .assert_error(429, "RATE_LIMITED");
    for header in ["8.8.8.8, [2001:db8::1]:443", "6.6.6.6, unknown"] {
        guess(header)
            .sent()
            .await
            .assert_error(403, "INVALID_CLIENT_KEY");
    }
    guess("6.6.6.6")
        .sent()
        .await
        .assert_error(403, "INVALID_CLIENT_KEY");
}

/// The database's clock runs an hour ahead of the application server's (simulated with a
/// `clock_timestamp()` that search_path finds before pg_catalog's): a mute it recorded a
/// moment ago is part of "now" in an as-of question without `asOf`.
#[tokio::test]
async fn as_of_without_an_instant_means_now_by_the_database_clock() {
    let app = TestApp::spawn().await;
    let db_name = app.database_url().rsplit('/').next().unwrap().to_owned();
    sql(
        app.database_url(),
        "CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql
         AS $$ SELECT pg_catalog.clock_timestamp() + interval '1 hour' $$",
    )
    .await;
    sql(
        app.database_url(),
        &format!("ALTER DATABASE \"{db_name}\" SET search_path = public, pg_catalog"),
    )
    .await;
    let token = app.user("u1").await;
    app.room("r1").await;
    app.room("r2").await;
    ok_result(app.mute(&token, "r2").await).await;
    sql(
        app.database_url(),
        "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                             event_type, data, metadata, recorded_at)
         VALUES (gen_random_uuid(), 'app-a', 'user_preferences', 'u1', 2, 'RoomMuted',
                 '{\"room\": \"r1\"}', '{}', clock_timestamp())",
    )
    .await;

    let answer = app.admin_get("/admin/clients/u1/mute").await.assert_ok();
    assert_eq!(answer["mute"], json!(["r2", "r1"]), "{answer}");
    let ahead = answer["asOfMS"].as_i64().unwrap() - chrono::Utc::now().timestamp_millis();
    assert!(
        ahead > 50 * 60 * 1000,
        "asOf is the database's now: {answer}"
    );
}

/// Writers racing on one stream, many through the locked retry: `recorded_at` follows
/// `stream_version`.
#[tokio::test]
async fn recorded_at_never_goes_back_within_a_stream_under_contention() {
    let app = TestApp::spawn_with(|s| s.pool.max_size = 16).await;
    let token = app.user("u1").await;
    for w in 0..16 {
        app.room(&format!("r{w}")).await;
    }
    // Each writer toggles its own room, so every command appends to the one stream.
    let writers = (0..16).map(|w| {
        let (app, token) = (&app, &token);
        async move {
            let room = format!("r{w}");
            for i in 0..12 {
                let response = if i % 2 == 0 {
                    app.mute(token, &room).await
                } else {
                    app.unmute(token, &room).await
                };
                ok_result(response).await;
            }
        }
    });
    futures::future::join_all(writers).await;

    let rows = app
        .sql(
            "SELECT stream_version, recorded_at FROM events
             WHERE stream_id = 'u1' ORDER BY stream_version",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 16 * 12);
    let times: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|r| r.get(1)).collect();
    for (i, pair) in times.windows(2).enumerate() {
        assert!(
            pair[0] <= pair[1],
            "version {} recorded at {} after version {} at {}",
            i + 2,
            pair[1],
            i + 1,
            pair[0]
        );
    }
}

/// serde reads a struct from an array of its fields; no endpoint may accept that, or any
/// other JSON that is not an object.
#[tokio::test]
async fn every_json_body_must_be_an_object() {
    let app = TestApp::spawn().await;
    app.user("u1").await;
    app.room("r1").await;
    let endpoints = [
        (
            Method::POST,
            "/admin/clients",
            json!(["c9", "nick", null, null, true, 1]),
        ),
        (
            Method::POST,
            "/rooms",
            json!(["r9", "name", "group", ["u1"]]),
        ),
        (Method::POST, "/rooms/", json!(["r9"])),
        (Method::POST, "/admin/rooms/r1/mutes/check", json!([["u1"]])),
        (
            Method::DELETE,
            "/admin/clients/u1/token",
            json!(["some-token"]),
        ),
    ];
    for (method, path, array) in endpoints {
        for body in [array, json!("text"), json!(7), json!(null)] {
            app.admin(&app.app, method.clone(), path)
                .json(&body)
                .sent()
                .await
                .assert_error(400, "INVALID_PARAMETERS");
        }
    }
    let created = app
        .sql("SELECT count(*) FROM clients WHERE client_id = 'c9'")
        .await
        .unwrap();
    assert_eq!(created[0].get::<_, i64>(0), 0);
    let rooms = app.sql("SELECT count(*) FROM rooms").await.unwrap();
    assert_eq!(rooms[0].get::<_, i64>(0), 1);
    let live = app
        .sql("SELECT count(*) FROM tokens WHERE revoked_at IS NULL")
        .await
        .unwrap();
    assert_eq!(live[0].get::<_, i64>(0), 1, "no token was revoked");
}

/// One rule for every optional field: left out keeps, `null` clears (or, for options of
/// the request, means the default), a value sets.
#[tokio::test]
async fn absent_keeps_null_clears_for_every_optional_field() {
    let app = TestApp::spawn().await;
    app.user("u1").await;
    let upsert = |body: Value| {
        let request = app
            .admin(&app.app, Method::POST, "/admin/clients")
            .json(&body);
        async move { request.sent().await.assert_ok() }
    };

    let kept = upsert(json!({ "_id": "u1" })).await;
    assert_eq!(kept["nickname"], "Nick u1");
    assert_eq!(kept["email"], "u1@example.com");
    assert_eq!(kept["avatarUrl"], "https://example.com/a.png");
    assert!(kept.get("token").is_none());

    let cleared = upsert(json!({ "_id": "u1", "nickname": null, "email": null })).await;
    assert_eq!(cleared["nickname"], Value::Null, "{cleared}");
    assert_eq!(cleared["email"], Value::Null);
    assert_eq!(cleared["avatarUrl"], "https://example.com/a.png");

    let defaults = upsert(json!({
        "_id": "u1", "issueAccessToken": null, "expirationDays": null, "avatarUrl": null
    }))
    .await;
    assert!(defaults.get("token").is_none(), "{defaults}");
    assert_eq!(defaults["avatarUrl"], Value::Null);
    let issued =
        upsert(json!({ "_id": "u1", "issueAccessToken": true, "expirationDays": null })).await;
    let lifetime =
        issued["expirationDate"].as_i64().unwrap() - chrono::Utc::now().timestamp_millis();
    assert!(
        (6 * 86_400_000..=7 * 86_400_000).contains(&lifetime),
        "7 days: {issued}"
    );

    let room = |body: Value| {
        let request = app.admin(&app.app, Method::POST, "/rooms").json(&body);
        async move { request.sent().await.assert_ok() }
    };
    room(json!({ "_id": "r1", "name": "Lobby", "roomType": "group", "members": ["u1"] })).await;
    let kept = room(json!({ "_id": "r1" })).await;
    assert_eq!(
        (&kept["name"], &kept["roomType"], &kept["members"]),
        (&json!("Lobby"), &json!("group"), &json!(["u1"]))
    );
    let cleared = room(json!({ "_id": "r1", "name": null, "members": null })).await;
    assert_eq!(
        (&cleared["name"], &cleared["roomType"], &cleared["members"]),
        (&Value::Null, &json!("group"), &json!([]))
    );
    let generated = room(json!({ "_id": null, "name": "Anonymous" })).await;
    assert_eq!(generated["_id"].as_str().unwrap().len(), 32, "{generated}");
}
