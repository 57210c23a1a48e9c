//! Secrets and access: failed-authentication limits, the least-privilege runtime role.

use std::net::IpAddr;
use std::time::Duration;

use chatprefs::config::AuthFailureLimit;
use chatprefs::startup::Application;
use reqwest::{Method, RequestBuilder};
use serde_json::json;

use crate::helpers::{
    assert_error, chatprefs_command, ok_result, run_blocking, server_url, test_settings, Sent,
    TestApp, TestDatabase,
};
use crate::process::{create_app, issue_token};

fn limited(burst: u32, window_secs: u64) -> impl FnOnce(&mut chatprefs::config::ServeSettings) {
    move |s| {
        s.auth_failures = AuthFailureLimit {
            burst,
            window: Duration::from_secs(window_secs),
        };
        // Lets the tests speak for several client addresses through X-Forwarded-For.
        s.trusted_proxies = vec!["127.0.0.1".parse::<IpAddr>().unwrap()];
    }
}

fn from(request: RequestBuilder, address: &str) -> RequestBuilder {
    request.header("X-Forwarded-For", address)
}

/// `GET /me` with `token` and the app's client key, from `address`.
fn me_from(app: &TestApp, token: &str, address: &str) -> RequestBuilder {
    from(app.client(&app.app, token, Method::GET, "/me"), address)
}

#[tokio::test]
async fn failed_authentications_from_one_address_are_429_with_retry_after() {
    let app = TestApp::spawn_with(limited(3, 60)).await;
    let token = app.user("u1").await;
    let wrong_key = |app: &TestApp| {
        from(
            app.request(Method::POST, "/rooms")
                .header("IM-API-KEY", "guess")
                .json(&json!({ "_id": "r1" })),
            "198.51.100.1",
        )
    };

    for _ in 0..3 {
        wrong_key(&app)
            .sent()
            .await
            .assert_error(403, "INVALID_API_KEY");
    }
    let refused = wrong_key(&app).send().await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "20", "60 s / 3 failures");
    assert_error(refused, 429, "RATE_LIMITED").await;

    // While blocked, the address learns nothing, even with valid credentials…
    let valid = me_from(&app, &token, "198.51.100.1");
    valid.sent().await.assert_error(429, "RATE_LIMITED");
    // …and other addresses are not affected.
    let other = me_from(&app, &token, "198.51.100.2");
    other.sent().await.assert_ok();
}

#[tokio::test]
async fn a_presented_key_that_keeps_failing_is_429_from_any_address() {
    let app = TestApp::spawn_with(limited(3, 60)).await;
    let token = app.user("u1").await;
    let stale = |address: &str| me_from(&app, "revoked-or-stale-token", address);
    for i in 1..=3 {
        stale(&format!("203.0.113.{i}"))
            .sent()
            .await
            .assert_error(401, "INVALID_TOKEN");
    }

    stale("203.0.113.9")
        .sent()
        .await
        .assert_error(429, "RATE_LIMITED");
    // The app's client key came with every failure but was not the wrong credential: the
    // app's users are not locked out, from that very address either.
    let valid = me_from(&app, &token, "203.0.113.9");
    valid.sent().await.assert_ok();
}

#[tokio::test]
async fn successful_traffic_is_never_throttled_whatever_its_volume() {
    let app = TestApp::spawn_with(limited(2, 3600)).await;
    app.room("r1").await;
    let token = app.user("u1").await;
    // One failure: below the burst, but it makes the limiter track this address.
    let wrong = me_from(&app, "wrong", "192.0.2.7");
    wrong.sent().await.assert_error(401, "INVALID_TOKEN");

    for i in 0..100 {
        let (method, path) = match i % 3 {
            0 => (Method::POST, "/me/mute/r1"),
            1 => (Method::DELETE, "/me/mute/r1"),
            _ => (Method::GET, "/me"),
        };
        let request = from(app.client(&app.app, &token, method, path), "192.0.2.7");
        request.sent().await.assert_ok();
        let platform = from(
            app.admin(&app.app, Method::POST, "/rooms")
                .json(&json!({ "_id": "r1" })),
            "192.0.2.7",
        );
        platform.sent().await.assert_ok();
    }
}

#[tokio::test]
async fn a_blocked_address_gets_another_try_after_retry_after() {
    let app = TestApp::spawn_with(limited(1, 1)).await;
    let wrong = || from(app.request(Method::GET, "/me"), "192.0.2.8");
    wrong().sent().await.assert_error(403, "INVALID_CLIENT_KEY");
    let refused = wrong().send().await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_error(refused, 429, "RATE_LIMITED").await;

    tokio::time::sleep(Duration::from_millis(1100)).await;

    wrong().sent().await.assert_error(403, "INVALID_CLIENT_KEY");
}

/// A role in the shared cluster, dropped after the database that holds its grants.
pub struct Role {
    pub name: String,
    pub db: Option<TestDatabase>,
}

impl Drop for Role {
    fn drop(&mut self) {
        drop(self.db.take());
        let admin = format!("{}/postgres", server_url());
        let sql = format!("DROP ROLE IF EXISTS {}", self.name);
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let (client, conn) =
                        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
                    tokio::spawn(conn);
                    client.batch_execute(&sql).await
                })
        })
        .join();
    }
}

#[tokio::test]
async fn the_runtime_role_serves_but_cannot_rewrite_the_log() {
    let db = TestDatabase::new();
    let role = format!(
        "chatprefs_rt_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let owner_url = db.url.clone();
    let role_url = format!(
        "{}/{}",
        server_url().replace("postgres@", &format!("{role}@")),
        db.name
    );
    let _role = Role {
        name: role.clone(),
        db: Some(db),
    };
    let mut migrate = chatprefs_command(["migrate", "--runtime-role", &role]);
    migrate.env("DATABASE_URL", &owner_url);
    run_blocking(migrate).await.assert_success();
    let keys = create_app(&owner_url, "least");

    // The service, connected as the role: it does not try to migrate, and it works.
    let application = Application::build(&test_settings(role_url.clone()))
        .await
        .expect("serve starts as the runtime role");
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let http = reqwest::Client::new();
    let platform = |method: Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .header("IM-API-KEY", &keys.api_key)
    };
    let token = issue_token(&base, &keys.api_key, "u1").await;
    let room = platform(Method::POST, "/rooms").json(&json!({ "_id": "r1" }));
    room.sent().await.assert_ok();
    for method in [Method::POST, Method::DELETE, Method::POST] {
        http.request(method, format!("{base}/me/mute/r1"))
            .header("IM-CLIENT-KEY", &keys.client_key)
            .header("IM-Authorization", &token)
            .sent()
            .await
            .assert_ok();
    }
    let checked = platform(Method::POST, "/admin/rooms/r1/mutes/check")
        .json(&json!({ "clients": ["u1"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_result(checked).await["muted"], json!(["u1"]));
    // Client sign-in, once the owner has allowed it, creates users and issues tokens.
    let mut allow = chatprefs_command(["app", "client-sign-in", "least", "on"]);
    allow.env("DATABASE_URL", &owner_url);
    run_blocking(allow).await.assert_success();
    let signed_in = http
        .post(format!("{base}/auths/sign/v2"))
        .header("IM-CLIENT-KEY", &keys.client_key)
        .json(&json!({ "id": "u2" }))
        .send()
        .await
        .unwrap();
    assert!(ok_result(signed_in).await["token"].is_string());
    http.get(format!("{base}/readyz")).sent().await.assert_ok();
    let revoked = platform(Method::DELETE, "/admin/clients/u1/token")
        .send()
        .await;
    ok_result(revoked.unwrap()).await;

    // The role itself, at the SQL prompt: the log is append-only by privilege.
    let (sql, conn) = tokio_postgres::connect(&role_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let events: i64 = sql
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 3);
    for statement in [
        "DELETE FROM events",
        "UPDATE events SET data = '{}'",
        "TRUNCATE events",
        "DELETE FROM apps",
        "UPDATE apps SET api_key_sha256 = ''",
        "CREATE TABLE mine (x int)",
        "DROP TABLE events",
    ] {
        let refused = sql.batch_execute(statement).await.expect_err(statement);
        let db = refused.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), "42501", "{statement}: {db}");
        assert!(
            db.message().starts_with("permission denied")
                || db.message().starts_with("must be owner"),
            "{statement} refused by privilege, not by the trigger: {}",
            db.message()
        );
    }
}

/// Outside review (issue 10, item 4): `Authorization: bearer <token>` was 401 and counted
/// as a failed authentication. The scheme is case-insensitive (RFC 7235).
#[tokio::test]
async fn a_bearer_scheme_in_any_case_authenticates_and_is_never_counted_as_a_failure() {
    let app = TestApp::spawn_with(limited(2, 60)).await;
    let token = app.user("u1").await;
    app.room("r1").await;

    for (round, scheme) in ["bearer", "BEARER", "Bearer", "bEaReR"].iter().enumerate() {
        let request = |method: Method, path: &str| {
            app.request(method, path)
                .header("IM-CLIENT-KEY", &app.app.client_key)
                .header("Authorization", format!("{scheme} {token}"))
        };
        let me = request(Method::GET, "/me").sent().await.assert_ok();
        assert_eq!(me["_id"], "u1");
        let muted = request(Method::POST, "/me/mute/r1")
            .sent()
            .await
            .assert_ok();
        assert_eq!(muted["mute"], json!(["r1"]), "round {round}");
        let unmuted = request(Method::DELETE, "/me/mute/r1")
            .sent()
            .await
            .assert_ok();
        assert_eq!(unmuted["mute"], json!([]));
    }
    // Twelve requests against a burst of two: none was held against the caller.
    assert_eq!(app.count_events().await, 8);
}
