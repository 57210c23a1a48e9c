//! Issue 15, items 1 and 2: authentications cached per instance yet revoked on every
//! instance within a second, and a request deadline that sheds load with 503.

use std::time::{Duration, Instant};

use chatprefs::startup::Application;
use reqwest::{Method, Response};
use serde_json::json;

use crate::helpers::{assert_error, ok_result, test_settings, TestApp};

/// The most a change may take to reach another instance's cache.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Another instance of the service on the same database as `app`.
pub struct Instance {
    pub base: String,
    pub http: reqwest::Client,
}

impl Instance {
    pub async fn beside(app: &TestApp) -> Instance {
        let settings = test_settings(app.database_url().to_owned());
        let application = Application::build(&settings).await.expect("server builds");
        let base = format!("http://127.0.0.1:{}", application.port());
        tokio::spawn(application.run_until_stopped());
        Instance {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn me(&self, app: &TestApp, token: &str) -> Response {
        self.http
            .get(format!("{}/me", self.base))
            .header("IM-CLIENT-KEY", &app.app.client_key)
            .header("IM-Authorization", token)
            .send()
            .await
            .unwrap()
    }

    /// Asks until the token is refused, for at most [`PROPAGATION`]; answers the last status.
    async fn refused_within_propagation(&self, app: &TestApp, token: &str) -> u16 {
        let start = Instant::now();
        loop {
            let status = self.me(app, token).await.status().as_u16();
            if status == 401 || start.elapsed() >= PROPAGATION {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn me_response(app: &TestApp, token: &str) -> Response {
    app.client(&app.app, token, Method::GET, "/me")
        .send()
        .await
        .unwrap()
}

async fn revoke(app: &TestApp, uid: &str) {
    let response = app
        .admin(
            &app.app,
            Method::DELETE,
            &format!("/admin/clients/{uid}/token"),
        )
        .send()
        .await
        .unwrap();
    ok_result(response).await;
}

/// Whether the instance authenticates `token` without reading `tokens`: the table is renamed
/// away for a moment, so only a cached authentication can succeed.
async fn served_from_cache(app: &TestApp, other: &Instance, token: &str) -> bool {
    app.with_table_away("tokens", async {
        let start = Instant::now();
        let mut served = false;
        // A heartbeat late on a loaded machine pauses the cache: give it a few tries.
        while !served && start.elapsed() < Duration::from_secs(3) {
            served = other.me(app, token).await.status() == 200;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    })
    .await
}

#[tokio::test]
async fn a_token_revoked_on_one_instance_is_refused_by_another_within_a_second() {
    let app = TestApp::spawn().await;
    let other = Instance::beside(&app).await;
    let token = app.user("u1").await;
    assert_eq!(other.me(&app, &token).await.status(), 200);
    assert!(
        served_from_cache(&app, &other, &token).await,
        "the other instance authenticates from its cache"
    );

    revoke(&app, "u1").await;

    assert_error(me_response(&app, &token).await, 401, "INVALID_TOKEN").await;
    assert_eq!(other.refused_within_propagation(&app, &token).await, 401);
}

#[tokio::test]
async fn a_revocation_while_the_listener_is_down_is_never_served_past_a_second() {
    let app = TestApp::spawn().await;
    let other = Instance::beside(&app).await;
    let token = app.user("u1").await;
    assert_eq!(other.me(&app, &token).await.status(), 200);
    assert!(served_from_cache(&app, &other, &token).await);

    let terminated = app
        .sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'chatprefs-auth-listener'",
        )
        .await
        .unwrap();
    assert_eq!(terminated.len(), 2, "one listener per instance");
    // Out of band, as an operator would: no instance made this change.
    app.sql("UPDATE tokens SET revoked_at = now()")
        .await
        .unwrap();

    assert_eq!(other.refused_within_propagation(&app, &token).await, 401);
    // And never again, through the listener's reconnection (refused as a token, or, once
    // those failures add up, by the failed-authentication limiter).
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(1500) {
        let status = other.me(&app, &token).await.status();
        assert!([401, 429].contains(&status.as_u16()), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cached_token_is_refused_once_it_expires() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    app.sql("UPDATE tokens SET expires_at = now() + interval '2 seconds'")
        .await
        .unwrap();
    // Cached now (the notice of the update came first), with the expiry just set; nothing
    // announces the moment it passes.
    for _ in 0..2 {
        me_response(&app, &token).await;
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;

    assert_error(me_response(&app, &token).await, 401, "INVALID_TOKEN").await;
}

#[tokio::test]
async fn a_replaced_api_key_is_refused_by_another_instance_within_a_second() {
    let app = TestApp::spawn().await;
    let other = Instance::beside(&app).await;
    let on_other = |key: &str| {
        other
            .http
            .post(format!("{}/rooms", other.base))
            .header("IM-API-KEY", key.to_owned())
            .json(&json!({ "_id": "r1" }))
            .send()
    };
    assert_eq!(on_other(&app.app.api_key).await.unwrap().status(), 200);

    app.sql("UPDATE apps SET api_key_sha256 = sha256('replaced')")
        .await
        .unwrap();

    let start = Instant::now();
    let mut status = 200;
    while status != 403 && start.elapsed() < PROPAGATION {
        status = on_other(&app.app.api_key).await.unwrap().status().as_u16();
    }
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_request_that_cannot_get_a_connection_by_its_deadline_is_503_with_retry_after() {
    let deadline = Duration::from_millis(300);
    let app = TestApp::spawn_with(|s| {
        s.workers = Some(1);
        s.pool.max_size = 1;
        s.request_deadline = Some(deadline);
    })
    .await;
    let token = app.user("u1").await;
    app.room("r1").await;
    assert_eq!(app.me(&token).await["mute"], json!([]));

    // Holds the service's only connection: its mute waits for this lock.
    let locker = app
        .holding("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await;
    let held = tokio::spawn({
        let request = app.client(&app.app, &token, Method::POST, "/me/mute/r1");
        async move { request.send().await.unwrap().status() }
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    while locker
        .query_one(waiting, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let start = Instant::now();
    let shed = me_response(&app, &token).await;
    let waited = start.elapsed();
    let retry_after = shed.headers().get("retry-after").cloned();
    assert_error(shed, 503, "SERVICE_UNAVAILABLE").await;
    assert_eq!(retry_after.expect("Retry-After").to_str().unwrap(), "1");
    assert!(
        waited < Duration::from_secs(4),
        "answered by the deadline, not the pool's 5 s timeout: {waited:?}"
    );

    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(app.me(&token).await["mute"], json!(["r1"]));
}
