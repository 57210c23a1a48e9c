//! Issue 16, item 1: API keys with roles. A `support` key reads and is refused every write,
//! route by route from the route table itself; keys are listed without their secret, and a
//! revocation reaches another instance within a second.

use std::time::{Duration, Instant};

use chatprefs::http::routes::{Caller, ROUTES};
use chatprefs::provision::AppCredentials;
use reqwest::Method;
use serde_json::{json, Value};

use crate::auth_cache::Instance;
use crate::helpers::{Sent, TestApp, TestResponse};

/// Adds a key to the test's app through the real CLI; answers the credentials with it.
async fn key(app: &TestApp, role: &str, name: &str) -> AppCredentials {
    let out = app
        .cli([
            "app", "key", "create", "--app", "app-a", "--role", role, "--name", name, "--json",
        ])
        .await;
    out.assert_success();
    let issued = out.json();
    assert_eq!(issued["role"], role);
    assert_eq!(issued["name"], name);
    AppCredentials {
        api_key: issued["apiKey"]
            .as_str()
            .expect("the key is printed")
            .to_owned(),
        ..app.app.clone()
    }
}

/// The route's path with the test's user and room, and a body a platform key would have
/// accepted. A route added to the table without a case here fails the test.
fn request_for(method: &str, path: &str) -> (String, Option<Value>) {
    let concrete = path.replace("{uid}", "u1").replace("{room:[^/]*}", "r1");
    let body = match (method, path) {
        ("GET" | "DELETE", _) => None,
        ("POST", "/admin/clients") => Some(json!({ "_id": "u2", "issueAccessToken": true })),
        ("POST", "/rooms" | "/rooms/") => Some(json!({ "_id": "r2" })),
        ("POST", p) if p.ends_with("/mutes/check") => Some(json!({ "clients": ["u1"] })),
        ("POST", p) if p.starts_with("/admin/clients/{uid}/mute/") => None,
        ("POST", "/admin/clients/{uid}/dnd" | "/admin/clients/{uid}/erase") => None,
        _ => panic!("no sample request for {method} {path}: add one to keys::request_for"),
    };
    (concrete, body)
}

async fn call(app: &TestApp, key: &AppCredentials, method: &str, path: &str) -> TestResponse {
    let (path, body) = request_for(method, path);
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let request = app.admin(key, method, &path);
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
    .sent()
    .await
}

#[tokio::test]
async fn a_support_key_reads_every_support_route_and_is_refused_every_other_api_key_route() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    app.signed_in("u1").await.mute("r1").await.assert_ok();
    let support = key(&app, "support", "alice").await;
    let events = app.count_events().await;
    let tokens = app.sql("SELECT count(*) FROM tokens").await.unwrap()[0].get::<_, i64>(0);

    let api_key_routes: Vec<_> = ROUTES
        .iter()
        .filter(|r| matches!(r.caller, Caller::Support | Caller::Platform))
        .collect();
    assert!(
        api_key_routes.len() >= 12,
        "the table lists the API-key routes"
    );
    for route in &api_key_routes {
        let answer = call(&app, &support, route.method.as_str(), route.path).await;
        match route.caller {
            Caller::Support => {
                answer.assert_ok();
            }
            _ => {
                let body = answer.assert_error(403, "INSUFFICIENT_ROLE");
                assert!(body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("support"));
            }
        }
        eprintln!(
            "{} {} with a support key: {}",
            route.method, route.path, answer.status
        );
    }
    assert_eq!(
        app.count_events().await,
        events,
        "a support key wrote no event"
    );
    let after = app.sql("SELECT count(*) FROM tokens").await.unwrap()[0].get::<_, i64>(0);
    assert_eq!(after, tokens, "a support key issued no token");

    // The same table with the app's original key: every route is routed and answers.
    for route in &api_key_routes {
        call(&app, &app.app, route.method.as_str(), route.path)
            .await
            .assert_ok();
    }
}

#[tokio::test]
async fn a_support_key_sees_a_users_profile_and_an_added_platform_key_writes() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    app.signed_in("u1").await.mute("r1").await.assert_ok();
    let support = key(&app, "support", "s").await;
    let profile = app
        .admin(&support, Method::GET, "/admin/clients/u1")
        .sent()
        .await
        .assert_ok();
    assert_eq!(profile["_id"], "u1");
    assert_eq!(profile["nickname"], "Nick u1");
    assert_eq!(profile["mute"], json!(["r1"]));
    app.admin(&support, Method::GET, "/admin/clients/nobody")
        .sent()
        .await
        .assert_error(404, "CLIENT_NOT_FOUND");

    let platform = key(&app, "platform", "backend-2").await;
    app.admin(&platform, Method::DELETE, "/admin/clients/u1/mute/r1")
        .sent()
        .await
        .assert_ok();
}

#[tokio::test]
async fn keys_are_listed_without_their_secret_with_their_last_use() {
    let app = TestApp::spawn().await;
    let support = key(&app, "support", "alice").await;
    app.cli([
        "app", "key", "create", "--app", "app-a", "--role", "support", "--name", "alice",
    ])
    .await
    .assert_exit_code(1)
    .assert_stderr_contains("has a live key named \"alice\" already");
    app.cli(["app", "key", "create", "--app", "nope", "--role", "support"])
        .await
        .assert_exit_code(1)
        .assert_stderr_contains("there is no app nope");

    app.admin(&support, Method::GET, "/admin/audit")
        .sent()
        .await
        .assert_ok();
    app.key_usage.flush(&app.pool).await.unwrap();
    let listed = app
        .cli(["app", "key", "list", "--app", "app-a", "--json"])
        .await;
    listed.assert_success();
    assert!(!listed.stdout.contains(&support.api_key));
    assert!(!listed.stdout.contains(&app.app.api_key));
    let keys = listed.json();
    assert_eq!(keys[0]["name"], "default");
    assert_eq!(keys[0]["role"], "platform");
    assert_eq!(keys[1]["name"], "alice");
    assert_eq!(keys[1]["role"], "support");
    assert!(keys[1]["lastUsedAt"].is_string(), "{keys}");
    assert!(keys[1]["revokedAt"].is_null());

    app.cli(["app", "key", "revoke", "--app", "app-a", "--name", "alice"])
        .await
        .assert_success();
    app.cli([
        "app", "key", "revoke", "--app", "app-a", "--name", "default",
    ])
    .await
    .assert_exit_code(1)
    .assert_stderr_contains("no live key named \"default\"");
    let table = app.cli(["app", "key", "list", "--app", "app-a"]).await;
    table.assert_success().assert_stdout_contains("LAST USED");
    let alice = table
        .stdout
        .lines()
        .find(|l| l.starts_with("alice"))
        .unwrap();
    assert!(!alice.ends_with('-'), "revoked shows when: {alice}");
    // A revoked key's name may be given to a new key.
    key(&app, "platform", "alice").await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_another_instance_within_a_second() {
    let app = TestApp::spawn().await;
    let support = key(&app, "support", "alice").await;
    let other = Instance::beside(&app).await;
    let audit = || async {
        other
            .http
            .get(format!("{}/admin/audit", other.base))
            .header("IM-API-KEY", &support.api_key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Twice, so the second answer comes from the other instance's cache.
    assert_eq!(audit().await, 200);
    assert_eq!(audit().await, 200);

    app.cli(["app", "key", "revoke", "--app", "app-a", "--name", "alice"])
        .await
        .assert_success();
    let revoked = Instant::now();
    let status = loop {
        let status = audit().await;
        if status == 403 || revoked.elapsed() >= Duration::from_secs(1) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 403, "refused within a second of the revocation");
}
