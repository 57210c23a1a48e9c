//! What the service offers the tools around it: the OpenAPI document, probes, metrics,
//! CORS for browsers, and request logs for pipelines.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use chatprefs::startup::Application;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::Killed;
use crate::helpers::{assert_error, ok_result, test_settings, Sent, TestApp, TestDatabase};
use crate::process::issue_token;

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served = response.text().await.unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();

    assert!(
        served == committed,
        "docs/openapi.json differs from the served document; regenerate it with\n  \
         cargo run -q -- openapi > docs/openapi.json"
    );
    let document: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/me/mute/{room}",
        "/admin/rooms/{room}/mutes/check",
        "/rooms/",
    ] {
        assert!(
            document["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
}

#[tokio::test]
async fn readyz_needs_a_current_schema_and_healthz_does_not() {
    let app = TestApp::spawn().await;
    let alive = app
        .request(Method::GET, "/healthz")
        .sent()
        .await
        .assert_ok();
    assert_eq!(alive["status"], "alive");
    let ready = app.request(Method::GET, "/readyz").sent().await.assert_ok();
    assert_eq!(ready["status"], "ready");
    let latest = ready["schemaVersion"].as_i64().unwrap();
    assert!(latest >= 3);

    app.sql(&format!(
        "DELETE FROM refinery_schema_history WHERE version = {latest}"
    ))
    .await
    .unwrap();

    let behind = app.request(Method::GET, "/readyz").sent().await;
    assert_eq!(behind.header("retry-after"), Some("1"));
    behind.assert_error(503, "SERVICE_UNAVAILABLE");
    app.request(Method::GET, "/healthz")
        .sent()
        .await
        .assert_ok();
}

#[tokio::test]
async fn readyz_is_503_while_the_database_is_unreachable() {
    let mut settings = test_settings("postgres://postgres@127.0.0.1:1/none".into());
    settings.pool.timeout = Duration::from_millis(500);
    let application = Application::start(&settings).expect("starts without a database");
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let http = reqwest::Client::new();

    http.get(format!("{base}/readyz"))
        .sent()
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    let alive = http.get(format!("{base}/healthz")).sent().await;
    assert_eq!(alive.assert_ok()["status"], "alive");
}

/// The value of one series in a Prometheus text exposition (0 when absent).
pub fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let response = app.request(Method::GET, "/metrics").sent().await;
    response.assert_status(200);
    assert!(response
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    response.text
}

// The registry is process-wide and tests run in parallel, so counters are compared before
// and after rather than to absolute values.
#[tokio::test]
async fn metrics_count_requests_by_route_events_by_type_and_show_the_pool() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    let token = app.user("u1").await;
    let requests =
        r#"chatprefs_http_requests_total{method="POST",route="/me/mute/{room}",status="200"}"#;
    let not_found = r#"chatprefs_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    let latency =
        r#"chatprefs_http_request_duration_seconds_count{method="POST",route="/me/mute/{room}"}"#;
    let muted = r#"chatprefs_events_appended_total{event_type="RoomMuted"}"#;
    let before = scrape(&app).await;

    app.mute(&token, "r1").await;
    app.mute(&token, "r1").await; // idempotent: no second event
    app.request(Method::GET, "/no/such/path/r1")
        .send()
        .await
        .unwrap();
    let after = scrape(&app).await;

    assert!(sample(&after, requests) - sample(&before, requests) >= 2.0);
    assert!(sample(&after, latency) - sample(&before, latency) >= 2.0);
    assert!(sample(&after, not_found) - sample(&before, not_found) >= 1.0);
    assert!(sample(&after, muted) - sample(&before, muted) >= 1.0);
    assert!(
        !after.contains("route=\"/no/such"),
        "raw paths must not be labels"
    );
    assert_eq!(sample(&after, "chatprefs_db_pool_max_connections"), 8.0);
    assert!(after.contains(r#"chatprefs_db_pool_connections{state="idle"}"#));
    assert!(after.contains("chatprefs_db_pool_waiting "));
}

#[tokio::test]
async fn conflicting_appends_are_counted_as_retried() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    let token = app.user("u1").await;
    // An event the read model does not know about: every append at the version the read
    // model holds now collides with it.
    app.sql(
        "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version,
                             event_type, data, metadata)
         VALUES (gen_random_uuid(), 'app-a', 'user_preferences', 'u1', 1,
                 'RoomMuted', '{\"room\":\"r1\"}', '{}')",
    )
    .await
    .unwrap();
    let series = "chatprefs_command_conflicts_retried_total";
    let before = sample(&scrape(&app).await, series);

    assert_error(app.mute(&token, "r1").await, 409, "CONFLICT").await;

    assert!(sample(&scrape(&app).await, series) - before >= 5.0);
}

const ORIGIN: &str = "https://chat.example.com";

async fn cors_app() -> TestApp {
    TestApp::spawn_with(|s| s.cors_origins = vec![ORIGIN.into()]).await
}

fn preflight(app: &TestApp, origin: &str) -> reqwest::RequestBuilder {
    app.request(Method::OPTIONS, "/me/mute/r1")
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", SDK_HEADERS.join(","))
}

/// Every request header the IMKIT SDKs send from a browser, and the `Last-Event-ID` a page
/// resuming `GET /me/events` with `fetch` sends, as a preflight lists them.
const SDK_HEADERS: [&str; 10] = [
    "accept-language",
    "authorization",
    "client_key",
    "content-type",
    "im-authorization",
    "im-client-id",
    "im-client-key",
    "last-event-id",
    "x-request-id",
    "x-timezone",
];

#[tokio::test]
async fn cors_preflight_from_an_allowed_origin_allows_the_imkit_headers() {
    let app = cors_app().await;

    let response = preflight(&app, ORIGIN).send().await.unwrap();

    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    let allowed: Vec<&str> = allowed.split(',').map(str::trim).collect();
    for header in SDK_HEADERS {
        assert!(allowed.contains(&header), "{header} not in {allowed:?}");
    }
    assert!(
        !allowed.contains(&"im-api-key"),
        "the server-to-server key must not be offered to browsers"
    );
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));

    let token = app.user("u1").await;
    let actual = app
        .client(&app.app, &token, Method::GET, "/me")
        .header("Origin", ORIGIN)
        .sent()
        .await;
    assert_eq!(actual.header("access-control-allow-origin"), Some(ORIGIN));
    let exposed = actual
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    actual.assert_ok();
}

/// The `Access-Control-*` headers of an answer.
pub fn cors_headers(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

/// Outside review (issue 10, item 7): answers to other origins carried
/// `Access-Control-Expose-Headers`; they must carry no CORS header at all.
#[tokio::test]
async fn cors_gives_other_origins_no_cors_header_but_still_answers_in_the_envelope() {
    let app = cors_app().await;
    let token = app.user("u1").await;

    for (credentials, status) in [(None, 403), (Some(&token), 200)] {
        let mut request = app
            .request(Method::GET, "/me")
            .header("Origin", "https://evil.example");
        if let Some(token) = credentials {
            request = request
                .header("IM-CLIENT-KEY", &app.app.client_key)
                .header("IM-Authorization", token);
        }
        let actual = request.send().await.unwrap();
        assert_eq!(actual.status(), status);
        assert_eq!(cors_headers(actual.headers()), Vec::<String>::new());
        assert!(actual.headers().contains_key("x-request-id"));
        assert_eq!(actual.headers()["vary"], "Origin");
    }

    let response = preflight(&app, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cors_headers(response.headers()), Vec::<String>::new());
    assert_error(response, 405, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test]
async fn cors_refuses_a_preflight_that_asks_for_the_api_key() {
    let app = cors_app().await;

    let response = app
        .request(Method::OPTIONS, "/admin/clients")
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,IM-API-KEY")
        .send()
        .await
        .unwrap();

    assert_eq!(cors_headers(response.headers()), Vec::<String>::new());
    assert_error(response, 400, "INVALID_PARAMETERS").await;
}

#[tokio::test]
async fn without_cors_origins_no_cors_headers_are_sent() {
    let app = TestApp::spawn().await;
    let response = preflight(&app, ORIGIN).send().await.unwrap();
    assert!(!response
        .headers()
        .contains_key("access-control-allow-origin"));
    assert_error(response, 405, "METHOD_NOT_ALLOWED").await;
}

/// The operator's view: `serve --log-format json` writes one JSON line per request with
/// its id, route, status, latency, app and client, and never a key or token: not when a
/// token is issued, used, refused or revoked, not at debug level (which includes the
/// database driver's statement parameters).
#[tokio::test]
async fn json_logs_have_one_line_per_request_and_no_secrets() {
    let db = TestDatabase::new();
    let keys = db.cli(["app", "create", "logs", "--json"]).await.json();
    let (client_key, api_key) = (
        keys["clientKey"].as_str().unwrap().to_owned(),
        keys["apiKey"].as_str().unwrap().to_owned(),
    );
    let mut server = Killed(
        db.command(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "debug")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stderr = server.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let port = lines_rx
        .iter()
        .find_map(|line| {
            let entry: Value = serde_json::from_str(&line).ok()?;
            (entry["fields"]["message"] == "chatprefs is listening")
                .then(|| entry["fields"]["port"].as_u64())?
        })
        .expect("a listening line");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let token = issue_token(&base, &api_key, "u1").await;
    http.get(format!("{base}/me"))
        .header("IM-CLIENT-KEY", &client_key)
        .header("IM-Authorization", &token)
        .header("X-Request-Id", "trace-me-42")
        .sent()
        .await
        .assert_ok();
    // Wrong secrets are secrets too (a typo of the real one, another app's): never logged.
    let (wrong_api_key, wrong_token) = (
        chatprefs::secrets::new_secret(),
        chatprefs::secrets::new_secret(),
    );
    http.post(format!("{base}/rooms"))
        .header("IM-API-KEY", &wrong_api_key)
        .json(&json!({ "_id": "r1" }))
        .sent()
        .await
        .assert_error(403, "INVALID_API_KEY");
    http.get(format!("{base}/me"))
        .header("IM-CLIENT-KEY", &client_key)
        .header("Authorization", format!("Bearer {wrong_token}"))
        .sent()
        .await
        .assert_error(401, "INVALID_TOKEN");
    let revoked = http
        .delete(format!("{base}/admin/clients/u1/token"))
        .header("IM-API-KEY", &api_key)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_result(revoked).await["revokedTokens"], 1);
    drop(server);
    let log: Vec<String> = lines_rx.iter().collect();

    let finished: Vec<Value> = log
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).expect("every line is JSON"))
        .filter(|entry| entry["fields"]["message"] == "request finished")
        .collect();
    assert_eq!(finished.len(), 5, "one line per request: {finished:?}");
    let line = finished
        .iter()
        .find(|e| e["span"]["request_id"] == "trace-me-42")
        .expect("the request's line carries its id");
    assert_eq!(line["span"]["route"], "/me");
    assert_eq!(line["span"]["app_id"], "logs");
    assert_eq!(line["span"]["client_id"], "u1");
    assert_eq!(line["fields"]["status"], 200);
    assert!(line["fields"]["latency_us"].is_u64());
    let everything = log.join("\n");
    for secret in [&api_key, &token, &wrong_api_key, &wrong_token] {
        assert!(!everything.contains(secret.as_str()), "a secret was logged");
    }
}
