//! Regression tests for the defects an outside review found (docs/reliability.md,
//! "Outside review"): each failed on the code before its fix.

use std::process::Output;
use std::time::Duration;

use chatprefs::config::{AuthFailureLimit, ServeSettings};
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::chatprefs;
use crate::helpers::{assert_error, ok_result, server_url, TestApp, TestDatabase};
use crate::process::{create_app, Server};
use crate::security::Role;

fn run(db: &TestDatabase, args: &[&str]) -> Output {
    chatprefs(db).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

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

/// A newer release migrated the database (V99, unknown here): this binary still serves,
/// migrates nothing, rebuilds and audits, as an older instance must mid-deploy or after a
/// rollback.
#[tokio::test]
async fn an_older_binary_runs_on_a_newer_additive_schema() {
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

    let migrated = run(&db, &["migrate", "--runtime-role", "chatprefs_never_made"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let said = stdout(&migrated);
    assert!(
        said.contains("newer than this binary") && said.contains("V99__from_the_future"),
        "{said}"
    );
    assert!(said.contains("nothing was changed"), "{said}");
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
    let ready = ok_result(
        http.get(format!("{}/readyz", server.base()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready["schemaVersion"], 99);
    assert_eq!(ready["binarySchemaVersion"], 3);
    let issued = http
        .post(format!("{}/admin/clients", server.base()))
        .header("IM-API-KEY", &keys.api_key)
        .json(&json!({ "_id": "u1", "issueAccessToken": true }))
        .send()
        .await
        .unwrap();
    ok_result(issued).await;
    drop(server);

    let verified = run(&db, &["rebuild", "--verify"]);
    assert!(verified.status.success(), "{verified:?}");
    let audited = run(&db, &["audit", "--app", "shop"]);
    assert!(audited.status.success(), "{audited:?}");
    let rebuilt = run(&db, &["rebuild"]);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert_eq!(history(&db.url).await, before);
}

/// A schema older than the binary needs is still refused to the runtime role, which may
/// not migrate it; and a database whose known migration was changed is refused to all.
#[tokio::test]
async fn an_older_schema_or_a_changed_migration_still_refuses_to_serve() {
    let (role, role_url) = runtime_role(TestDatabase::new());
    let db = role.db.as_ref().unwrap();
    let owner_url = db.url.clone();
    let migrated = run(db, &["migrate", "--runtime-role", &role.name]);
    assert!(migrated.status.success(), "{migrated:?}");

    sql(
        &owner_url,
        "DELETE FROM refinery_schema_history WHERE version = 3",
    )
    .await;
    let refused = chatprefs(db)
        .env("DATABASE_URL", &role_url)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("schema is behind") && said.contains("V3__"),
        "{said}"
    );

    sql(
        &owner_url,
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (3, 'something_else', '2026-11-26T00:00:00Z', '42')",
    )
    .await;
    let refused = run(db, &["migrate"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("differs from this binary's"), "{said}");
}

/// Two instances creating the same new database at once: PostgreSQL reports the loser as
/// 23505 on `pg_database_datname_index`, which is "exists already", not a failure.
#[test]
fn instances_starting_together_on_a_new_database_all_succeed() {
    for round in 0..4 {
        let db = TestDatabase::new();
        let (role, _) = runtime_role(db);
        let db = role.db.as_ref().unwrap();
        let children: Vec<_> = (0..3)
            .map(|_| {
                chatprefs(db)
                    .args(["migrate", "--runtime-role", &role.name])
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
        ok_result(request.send().await.unwrap()).await;
    }
    let page = ok_result(
        app.admin(&app.app, Method::GET, "/admin/audit")
            .send()
            .await
            .unwrap(),
    )
    .await;
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
    let blocked = guess("8.8.8.8, 198.51.100.7:9999").send().await.unwrap();
    assert_error(blocked, 429, "RATE_LIMITED").await;
    for header in ["8.8.8.8, [2001:db8::1]:443", "6.6.6.6, unknown"] {
        let response = guess(header).send().await.unwrap();
        assert_error(response, 403, "INVALID_CLIENT_KEY").await;
    }
    let victim = guess("6.6.6.6").send().await.unwrap();
    assert_error(victim, 403, "INVALID_CLIENT_KEY").await;
}
