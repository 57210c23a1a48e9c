//! Issue 13: personal data beside the immutable log. Erasing a user leaves none of their
//! data in the database while every fact stays; retention expires old personal data; the
//! migration moves what the log held before, recorded as the one exception to immutability.

use reqwest::Method;
use serde_json::{json, Value};

use crate::audit::audit;
use crate::helpers::{Sent, TestApp, TestDatabase};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// What a `pg_dump --data-only` of the whole database prints: every row of every table.
fn dump(url: &str) -> String {
    let output = std::process::Command::new("pg_dump")
        .args(["--data-only", "--dbname", url])
        .output()
        .expect("pg_dump runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("a text dump")
}

/// Creates `id` with a profile that names them, and acts as them from `address` with
/// `agent`: mute r1, mute r2, unmute r1. Answers their token.
async fn active_user(app: &TestApp, id: &str, address: &str, agent: &str) -> String {
    let token = app
        .admin_post(
            "/admin/clients",
            &json!({ "_id": id, "nickname": format!("Nick of {id}"),
                     "email": format!("{id}@mail.example"), "avatarUrl": format!("https://img.example/{id}.png"),
                     "issueAccessToken": true }),
        )
        .await
        .assert_ok()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, room) in [
        (Method::POST, "r1"),
        (Method::POST, "r2"),
        (Method::DELETE, "r1"),
    ] {
        app.client(&app.app, &token, method, &format!("/me/mute/{room}"))
            .header("X-Forwarded-For", address)
            .header("User-Agent", agent)
            .sent()
            .await
            .assert_ok();
    }
    token
}

fn entries(page: &Value) -> &Vec<Value> {
    page["entries"].as_array().expect("entries")
}

#[tokio::test]
async fn an_erased_user_leaves_no_personal_data_in_a_dump_and_every_fact_stays() {
    let app = TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    app.room("r1").await;
    app.room("r2").await;
    let zelda = active_user(&app, "zelda", "203.0.113.77", "ZeldaPhone/9.9").await;
    active_user(&app, "link", "198.51.100.22", "LinkTablet/1.0").await;
    let before = audit(&app, "?client=zelda").await;
    assert_eq!(entries(&before).len(), 3);
    assert_eq!(entries(&before)[0]["address"], "203.0.113.77");
    assert!(dump(app.database_url()).contains("ZeldaPhone/9.9"));

    let erased = app
        .admin(&app.app, Method::POST, "/admin/clients/zelda/erase")
        .header("X-Request-Id", "req-erase")
        .sent()
        .await
        .assert_ok();
    assert_eq!(erased["_id"], "zelda");
    assert_eq!(erased["eventsErased"], 3);
    assert_eq!(erased["profileCleared"], true);
    assert_eq!(erased["tokensRevoked"], 1);
    assert!(erased["eventId"].is_string(), "{erased}");

    let dumped = dump(app.database_url());
    for zeldas in [
        "203.0.113.77",
        "ZeldaPhone/9.9",
        "Nick of zelda",
        "zelda@mail.example",
        "img.example/zelda.png",
    ] {
        assert!(!dumped.contains(zeldas), "{zeldas} is still in the dump");
    }
    for links in [
        "198.51.100.22",
        "LinkTablet/1.0",
        "Nick of link",
        "link@mail.example",
    ] {
        assert!(dumped.contains(links), "{links} was lost");
    }

    // The facts: every event still listed with its time and actor, the provenance null
    // and marked erased; the erasure itself audited as the admin's, with its request id.
    let after = audit(&app, "?client=zelda").await;
    let listed = entries(&after);
    assert_eq!(listed.len(), 4, "{after}");
    for (entry, before) in listed.iter().zip(entries(&before)) {
        assert_eq!(entry["type"], before["type"]);
        assert_eq!(entry["room"], before["room"]);
        assert_eq!(entry["recordedAt"], before["recordedAt"]);
        assert_eq!(entry["actor"], json!({ "kind": "client", "id": "zelda" }));
        assert_eq!(entry["requestId"], before["requestId"]);
        assert!(entry["address"].is_null() && entry["port"].is_null());
        assert!(entry["userAgent"].is_null());
        assert_eq!(entry["personalData"], "erased");
    }
    let erasure = &listed[3];
    assert_eq!(erasure["type"], "PersonalDataErased");
    assert_eq!(erasure["eventId"], erased["eventId"]);
    assert_eq!(
        erasure["actor"],
        json!({ "kind": "admin", "id": app.app.app_id })
    );
    assert_eq!(erasure["requestId"], "req-erase");
    let link = audit(&app, "?client=link").await;
    assert_eq!(entries(&link)[0]["address"], "198.51.100.22");
    assert!(entries(&link)[0]["personalData"].is_null());

    // The mutes are untouched, the token is dead (through the authentication cache too).
    let as_of = app.admin_get("/admin/clients/zelda/mute").await.assert_ok();
    assert_eq!(as_of["mute"], json!(["r2"]), "{as_of}");
    app.client_get(&zelda, "/me").await.assert_status(401);
    let verify = app.cli(["rebuild", "--verify"]).await;
    verify
        .assert_success()
        .assert_stdout_contains("0 difference(s)");
    app.cli(["rebuild"]).await.assert_success();

    // Again: nothing left, nothing appended.
    let again = app
        .admin(&app.app, Method::POST, "/admin/clients/zelda/erase")
        .json(&json!({}))
        .sent()
        .await
        .assert_ok();
    assert_eq!(again["eventsErased"], 0);
    assert_eq!(again["profileCleared"], false);
    assert_eq!(again["tokensRevoked"], 0);
    assert!(again["eventId"].is_null());
    assert_eq!(entries(&audit(&app, "?client=zelda").await).len(), 4);

    app.admin(&app.app, Method::POST, "/admin/clients/ganon/erase")
        .sent()
        .await
        .assert_error(404, "CLIENT_NOT_FOUND");
}

#[tokio::test]
async fn the_cli_erases_through_the_same_path() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    let token = app.user("u1").await;
    app.client(&app.app, &token, Method::POST, "/me/mute/r1")
        .header("User-Agent", "CliVictim/2.0")
        .sent()
        .await
        .assert_ok();
    let app_id = app.app.app_id.clone();

    app.cli(["erase", "--app", &app_id, "--client", "u1"])
        .await
        .assert_success()
        .assert_stdout_contains("1 events' personal data")
        .assert_stdout_contains("recorded as PersonalDataErased");
    assert!(!dump(app.database_url()).contains("CliVictim/2.0"));
    let page = audit(&app, "?client=u1").await;
    assert_eq!(entries(&page)[1]["type"], "PersonalDataErased");
    assert_eq!(entries(&page)[1]["actor"]["kind"], "admin");
    assert!(entries(&page)[1]["requestId"]
        .as_str()
        .is_some_and(|id| id.starts_with("cli-")));

    app.cli(["erase", "--app", &app_id, "--client", "u1"])
        .await
        .assert_success()
        .assert_stdout_contains("nothing was left to erase");
    app.cli(["erase", "--app", &app_id, "--client", "nobody"])
        .await
        .assert_exit_code(1)
        .assert_stderr_contains("has no user nobody");
}

#[tokio::test]
async fn prune_expires_personal_data_older_than_the_window_and_keeps_the_rest() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    let user = app.signed_in("u1").await;
    user.mute("r1").await.assert_ok();
    user.unmute("r1").await.assert_ok();
    // The side table's clock is the one retention reads; the log's is immutable.
    app.sql(
        "UPDATE event_personal_data SET recorded_at = now() - interval '91 days'
         WHERE position = (SELECT min(position) FROM event_personal_data)",
    )
    .await
    .unwrap();

    app.cli(["prune", "--personal-data-retention-days", "0"])
        .await
        .assert_success()
        .assert_stdout_contains("nothing to prune");
    app.cli(["prune"])
        .await
        .assert_success()
        .assert_stdout_contains("expired the personal data of 1 events older than 90 days");

    let page = audit(&app, "?client=u1").await;
    let (old, new) = (&entries(&page)[0], &entries(&page)[1]);
    assert_eq!(old["type"], "RoomMuted");
    assert_eq!(old["personalData"], "expired");
    assert!(old["address"].is_null() && old["userAgent"].is_null());
    assert_eq!(new["type"], "RoomUnmuted");
    assert_eq!(new["address"], "127.0.0.1");
    assert!(new["personalData"].is_null());
    app.cli(["prune"])
        .await
        .assert_success()
        .assert_stdout_contains("of 0 events");
}

/// A database filled by the previous schema (V7), then migrated: the personal data moved
/// out of the log, the rewrite recorded, the log's guards back on. The previous release,
/// still writing personal data into `metadata`, is kept out of the log by a trigger.
#[tokio::test]
async fn the_migration_moves_existing_personal_data_aside_and_records_the_exception() {
    let db = TestDatabase::new();
    let (admin, conn) = tokio_postgres::connect(
        &format!("{}/postgres", crate::helpers::server_url()),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE \"{}\"", db.name))
        .await
        .unwrap();
    let (mut client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(7))
        .run_async(&mut client)
        .await
        .unwrap();
    // What the V7-era append wrote: provenance in `metadata`, personal fields included.
    const OLD_APPEND: &str = "INSERT INTO events (event_id, app_id, stream_type, stream_id,
                             stream_version, event_type, data, metadata)
         VALUES (gen_random_uuid(), 'shop', 'user_preferences', $1, $2, 'RoomMuted',
                 jsonb_build_object('room', 'r1'), $3::text::jsonb)";
    let with = |agent: &str| {
        json!({ "actor": { "kind": "client", "id": "u1" }, "requestId": "old",
                "address": "192.0.2.5", "port": 40000, "userAgent": agent })
        .to_string()
    };
    let without = json!({ "actor": { "kind": "system", "id": "cli" }, "requestId": "old",
                          "address": null, "port": null, "userAgent": null })
    .to_string();
    for (version, metadata) in [
        (1, with("OldPhone/1")),
        (2, without.clone()),
        (3, with("OldPhone/3")),
    ] {
        client
            .execute(OLD_APPEND, &[&"u1", &version, &metadata])
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO apps (app_id, client_key, api_key_sha256) VALUES ('shop', 'k', '\\x00')",
        )
        .await
        .unwrap();

    db.cli(["migrate"]).await.assert_success();

    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE metadata ?| ARRAY['address', 'port', 'userAgent']",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "no personal field is left in the log");
    let aside: Vec<(i32, String, i32)> = client
        .query(
            "SELECT e.stream_version, p.user_agent, p.port FROM event_personal_data p
             JOIN events e USING (position) WHERE p.address = '192.0.2.5' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        aside,
        [
            (1, "OldPhone/1".to_owned(), 40000),
            (3, "OldPhone/3".to_owned(), 40000)
        ]
    );
    let record = client
        .query_one(
            "SELECT migration, rows_rewritten, reason FROM immutability_exceptions",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(record.get::<_, &str>(0), "V9__personal_data_aside");
    assert_eq!(record.get::<_, i64>(1), 3);
    assert!(record.get::<_, &str>(2).contains("event_personal_data"));
    let refused = client
        .batch_execute("UPDATE events SET event_type = 'RoomUnmuted'")
        .await
        .expect_err("the log is append-only again");
    assert!(
        refused.to_string().contains("append-only")
            || format!("{refused:?}").contains("append-only")
    );

    // The previous release's append, on the new schema.
    client
        .execute(OLD_APPEND, &[&"u1", &4, &with("OldPhone/4")])
        .await
        .unwrap();
    let newest = client
        .query_one(
            "SELECT e.metadata, p.user_agent FROM events e
             JOIN event_personal_data p USING (position) WHERE e.stream_version = 4",
            &[],
        )
        .await
        .unwrap();
    let metadata: Value = newest.get(0);
    assert_eq!(
        metadata,
        json!({ "actor": { "kind": "client", "id": "u1" }, "requestId": "old" })
    );
    assert_eq!(newest.get::<_, &str>(1), "OldPhone/4");

    let audit = db.cli(["audit", "--app", "shop", "--format", "json"]).await;
    audit.assert_success();
    let page = audit.json();
    let agents: Vec<Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["userAgent"].clone())
        .collect();
    assert_eq!(
        agents,
        [
            json!("OldPhone/1"),
            Value::Null,
            json!("OldPhone/3"),
            json!("OldPhone/4")
        ]
    );
}

/// `serve` expires old personal data by itself (its first pass runs at start), with the
/// default window.
#[tokio::test]
async fn serve_expires_old_personal_data_by_itself() {
    let db = TestDatabase::new();
    crate::process::create_app(&db.url, "shop");
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                                 event_type, data, metadata)
             VALUES (gen_random_uuid(), 'shop', 'user_preferences', 'u1', 1, 'RoomMuted',
                     '{\"room\": \"r1\"}',
                     '{\"actor\": {\"kind\": \"client\", \"id\": \"u1\"}, \"requestId\": \"r\",
                       \"address\": \"192.0.2.44\", \"port\": 1, \"userAgent\": \"Aged/1\"}');
             UPDATE event_personal_data SET recorded_at = now() - interval '100 days';",
        )
        .await
        .unwrap();
    let removed = || async {
        client
            .query_one("SELECT removed, address FROM event_personal_data", &[])
            .await
            .unwrap()
    };

    assert_eq!(
        removed().await.get::<_, Option<&str>>(1),
        Some("192.0.2.44")
    );
    let _expiring = crate::process::Server::start(&db.url, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let row = removed().await;
        if row.get::<_, Option<&str>>(0) == Some("expired") {
            assert_eq!(row.get::<_, Option<&str>>(1), None);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not expire the 100-day-old personal data"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
