//! Issue 16, item 2: the support console over HTTP (no browser): sign-in and its cookie,
//! the CSP on every answer, escaping of user-controlled data, the timeline and its CSV
//! against the audit API, sessions that end with their key or their time.

use reqwest::{header, redirect, Method, StatusCode};
use serde_json::json;

use crate::helpers::{Sent, TestApp, TestResponse};

/// Strings a user or a client controls, that must come out as text.
pub const HOSTILE_ID: &str = "\"><img src=x onerror=alert(1)>";
pub const SCRIPT_NICK: &str = "<script>alert('nick')</script>";
pub const SCRIPT_AGENT: &str = "Mozilla <script>alert('ua')</script>";
pub const RTL_ROOM: &str = "room\u{202E}gpj.exe";

/// A browser-like caller of the console: same-origin `Origin` on POSTs, no redirects
/// followed (so the sign-in's cookie is seen), its session cookie sent by hand.
pub struct Console<'a> {
    pub app: &'a TestApp,
    http: reqwest::Client,
    pub cookie: Option<String>,
}

impl<'a> Console<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        let http = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .unwrap();
        Console {
            app,
            http,
            cookie: None,
        }
    }

    fn origin(&self) -> String {
        self.app.base.clone()
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.app.base));
        match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path).sent().await
    }

    /// Signs in with `key`; answers the sign-in's response and keeps the session cookie.
    pub async fn sign_in(&mut self, key: &str) -> TestResponse {
        let answer = self
            .request(Method::POST, "/console/sign-in")
            .header(header::ORIGIN, self.origin())
            .form(&[("key", key)])
            .sent()
            .await;
        if let Some(set) = answer.header("set-cookie") {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        answer
    }
}

async fn support_key(app: &TestApp, name: &str) -> String {
    let out = app
        .cli([
            "app", "key", "create", "--app", "app-a", "--role", "support", "--name", name, "--json",
        ])
        .await;
    out.assert_success();
    out.json()["apiKey"].as_str().unwrap().to_owned()
}

/// A user with hostile strings everywhere: id, nickname, user agent, room id.
pub async fn hostile_user(app: &TestApp) {
    app.admin_post(
        "/admin/clients",
        &json!({ "_id": HOSTILE_ID, "nickname": SCRIPT_NICK }),
    )
    .await
    .assert_ok();
    app.admin_post("/rooms", &json!({ "_id": RTL_ROOM }))
        .await
        .assert_ok();
    let path = format!(
        "/admin/clients/{}/mute/{}",
        urlencode(HOSTILE_ID),
        urlencode(RTL_ROOM)
    );
    app.admin(&app.app, Method::POST, &path)
        .header(header::USER_AGENT, SCRIPT_AGENT)
        .sent()
        .await
        .assert_ok();
}

pub fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn assert_console_headers(answer: &TestResponse) {
    let csp = answer.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    // no-referrer would make browsers send `Origin: null` on the console's own forms.
    assert_eq!(answer.header("referrer-policy"), Some("same-origin"));
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_every_answer_has_the_csp() {
    let app = TestApp::spawn().await;
    let key = support_key(&app, "alice").await;
    let mut console = Console::new(&app);

    let page = console.get("/console").await;
    page.assert_status(200);
    assert_console_headers(&page);
    assert!(page.text.contains(r#"<label for="key">"#), "{}", page.text);
    assert!(page.text.contains(r#"type="password""#));
    assert!(!page.text.contains("<script>"), "no inline script");

    let wrong = console.sign_in("not-a-key").await;
    wrong.assert_status(401);
    assert!(wrong.header("set-cookie").is_none());

    let signed = console.sign_in(&key).await;
    signed.assert_status(303);
    assert_eq!(signed.header("location"), Some("/console"));
    let cookie = signed.header("set-cookie").unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=28800",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP, no proxy: {cookie}");
    assert!(!cookie.contains(&key), "the cookie is not the key");
    let stored = app
        .sql("SELECT count(*) FROM console_sessions")
        .await
        .unwrap()[0]
        .get::<_, i64>(0);
    assert_eq!(stored, 1);

    let home = console.get("/console").await;
    home.assert_status(200);
    assert!(home.text.contains("support key"), "{}", home.text);
    for path in [
        "/console/console.js",
        "/console/console.css",
        "/console/nowhere",
        "/console/user",
    ] {
        assert_console_headers(&console.get(path).await);
    }
    let script = console.get("/console/console.js").await;
    assert!(script
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
}

#[tokio::test]
async fn the_cookie_is_secure_behind_a_trusted_tls_proxy_only() {
    let app = TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let key = support_key(&app, "alice").await;
    let console = Console::new(&app);
    let signed = console
        .request(Method::POST, "/console/sign-in")
        .header(header::ORIGIN, console.origin())
        .header("x-forwarded-proto", "https")
        .form(&[("key", key.as_str())])
        .sent()
        .await;
    signed.assert_status(303);
    assert!(signed.header("set-cookie").unwrap().contains("Secure"));

    let untrusted = TestApp::spawn().await;
    let key = support_key(&untrusted, "bob").await;
    let console = Console::new(&untrusted);
    let signed = console
        .request(Method::POST, "/console/sign-in")
        .header(header::ORIGIN, console.origin())
        .header("x-forwarded-proto", "https")
        .form(&[("key", key.as_str())])
        .sent()
        .await;
    assert!(!signed.header("set-cookie").unwrap().contains("Secure"));
}

#[tokio::test]
async fn a_post_from_another_origin_or_without_one_is_refused() {
    let app = TestApp::spawn().await;
    let key = support_key(&app, "alice").await;
    let console = Console::new(&app);
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let mut request = console
            .request(Method::POST, "/console/sign-in")
            .form(&[("key", key.as_str())]);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let answer = request.sent().await;
        answer.assert_status(403);
        assert!(answer.header("set-cookie").is_none(), "{origin:?}");
    }
}

#[tokio::test]
async fn hostile_strings_render_as_text() {
    let app = TestApp::spawn().await;
    hostile_user(&app).await;
    let long_id = "é".repeat(127) + "x";
    assert_eq!(long_id.len(), 255);
    app.admin_post("/admin/clients", &json!({ "_id": long_id }))
        .await
        .assert_ok();
    let mut console = Console::new(&app);
    console
        .sign_in(&support_key(&app, "alice").await)
        .await
        .assert_status(303);

    let page = console
        .get(&format!("/console/user?id={}", urlencode(HOSTILE_ID)))
        .await;
    page.assert_status(200);
    for raw in [
        HOSTILE_ID,
        SCRIPT_NICK,
        SCRIPT_AGENT,
        "<img",
        "<script>alert",
    ] {
        assert!(!page.text.contains(raw), "{raw:?} came out unescaped");
    }
    assert!(
        page.text
            .contains("&lt;script&gt;alert(&#39;nick&#39;)&lt;/script&gt;")
            || page
                .text
                .contains("&lt;script&gt;alert('nick')&lt;/script&gt;"),
        "{}",
        page.text
    );
    assert!(page
        .text
        .contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.text.contains("Mozilla &lt;script&gt;"));
    assert!(
        page.text.contains(&format!("<bdi>{RTL_ROOM}</bdi>")),
        "the RTL mark is isolated"
    );

    let room = console
        .get(&format!("/console/room?id={}", urlencode(RTL_ROOM)))
        .await;
    room.assert_status(200);
    assert!(!room.text.contains(HOSTILE_ID));
    assert!(room
        .text
        .contains(&format!("/console/user?id={}", urlencode(HOSTILE_ID))));

    let long = console
        .get(&format!("/console/user?id={}", urlencode(&long_id)))
        .await;
    long.assert_status(200);
    assert!(long.text.contains(&long_id));
    let too_long = console
        .get(&format!("/console/user?id={}x", urlencode(&long_id)))
        .await;
    too_long.assert_status(400);
}

#[tokio::test]
async fn the_timeline_and_its_csv_are_the_audit_page_of_the_same_query() {
    let app = TestApp::spawn().await;
    for room in ["r1", "r2"] {
        app.room(room).await;
    }
    let user = app.signed_in("u1").await;
    for room in ["r1", "r2", "r1"] {
        user.mute(room).await.assert_ok();
        user.unmute(room).await.assert_ok();
    }
    user.mute("r2").await.assert_ok();
    let mut console = Console::new(&app);
    console
        .sign_in(&support_key(&app, "alice").await)
        .await
        .assert_status(303);

    let audit = app
        .admin_get("/admin/audit?client=u1&room=r1&limit=3")
        .await
        .assert_ok();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let page = console.get("/console/user?id=u1&room=r1&limit=3").await;
    page.assert_status(200);
    for entry in entries {
        assert!(page.text.contains(entry["requestId"].as_str().unwrap()));
        assert!(page
            .text
            .contains(&format!("data-position=\"{}\"", entry["position"])));
    }
    assert_eq!(page.text.matches("data-position=").count(), 3);
    assert!(page.text.contains("Next page"), "a fourth r1 event follows");
    assert!(
        page.text.contains(r#"<a href="/console/room?id=r2">"#),
        "r2 is muted now"
    );

    let csv = console.get("/console/user.csv?id=u1&room=r1&limit=3").await;
    csv.assert_status(200);
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    let positions: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    let expected: Vec<String> = entries.iter().map(|e| e["position"].to_string()).collect();
    assert_eq!(positions, expected);

    let as_of = console
        .get(&format!(
            "/console/as-of?id=u1&at={}",
            urlencode(entries[0]["recordedAt"].as_str().unwrap())
        ))
        .await;
    as_of.assert_status(200);
    assert!(as_of.text.contains(r#"class="led-here""#), "{}", as_of.text);
    assert!(as_of
        .text
        .contains(&format!("data-position=\"{}\"", entries[0]["position"])));
}

#[tokio::test]
async fn a_console_session_reaches_no_write_and_ends_with_its_key_or_its_time() {
    let app = TestApp::spawn().await;
    app.signed_in("u1").await;
    let mut console = Console::new(&app);
    console
        .sign_in(&support_key(&app, "alice").await)
        .await
        .assert_status(303);
    let events = app.count_events().await;

    // The session cookie is no credential for the API, and the console has no writes.
    console
        .request(Method::POST, "/admin/clients")
        .json(&json!({ "_id": "u9", "issueAccessToken": true }))
        .sent()
        .await
        .assert_error(403, "INVALID_API_KEY");
    let write = console
        .request(Method::POST, "/console/user?id=u1")
        .header(header::ORIGIN, console.origin())
        .sent()
        .await;
    assert_eq!(write.status, StatusCode::NOT_FOUND.as_u16());
    assert_eq!(app.count_events().await, events);

    console.get("/console/user?id=u1").await.assert_status(200);
    app.sql("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        .await
        .unwrap();
    let expired = console.get("/console/user?id=u1").await;
    expired.assert_status(401);
    assert_console_headers(&expired);
    assert!(expired.text.contains("expired"));
    assert!(
        expired.text.contains(r#"<a id="sign-in" href="/console">"#),
        "{}",
        expired.text
    );

    // A fresh session ends when its key is revoked.
    console
        .sign_in(&support_key(&app, "bob").await)
        .await
        .assert_status(303);
    console.get("/console/user?id=u1").await.assert_status(200);
    app.cli(["app", "key", "revoke", "--app", "app-a", "--name", "bob"])
        .await
        .assert_success();
    console.get("/console/user?id=u1").await.assert_status(401);

    // Signing out deletes the session.
    console.sign_in(&app.app.api_key).await.assert_status(303);
    console.get("/console/user?id=u1").await.assert_status(200);
    let out = console
        .request(Method::POST, "/console/sign-out")
        .header(header::ORIGIN, console.origin())
        .sent()
        .await;
    out.assert_status(303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    console.get("/console/user?id=u1").await.assert_status(401);
}

#[tokio::test]
async fn wrong_keys_at_sign_in_count_as_failed_authentications() {
    let app = TestApp::spawn_with(|s| s.auth_failures.burst = 3).await;
    let mut console = Console::new(&app);
    for _ in 0..3 {
        console.sign_in("not-a-key").await.assert_status(401);
    }
    let blocked = console.sign_in("not-a-key").await;
    blocked.assert_status(429);
    assert_console_headers(&blocked);
    assert!(blocked.header("set-cookie").is_none());
}

/// The console shows what the other preferences and erasure leave in the log: a pause in the
/// timeline and in the as-of answer, and an erased user's address and user agent as
/// "(erased)" rather than as never recorded.
#[tokio::test]
async fn the_timeline_shows_pauses_and_erased_personal_data() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    let user = app.signed_in("u1").await;
    user.mute("r1").await.assert_ok();
    app.admin_post("/admin/clients/u1/dnd", &json!({ "durationSeconds": 3600 }))
        .await
        .assert_ok();
    let mut console = Console::new(&app);
    console
        .sign_in(&support_key(&app, "alice").await)
        .await
        .assert_status(303);

    let before = console.get("/console/user?id=u1").await;
    before.assert_status(200);
    assert!(
        before.text.contains("NotificationsPaused"),
        "{}",
        before.text
    );
    assert!(!before.text.contains("(erased)"));
    let as_of = console.get("/console/as-of?id=u1").await;
    as_of.assert_status(200);
    assert!(as_of.text.contains("All notifications paused until "));

    app.admin_post("/admin/clients/u1/erase", &json!({}))
        .await
        .assert_ok();
    let after = console.get("/console/user?id=u1").await;
    after.assert_status(200);
    assert_eq!(
        after.text.matches("<em>(erased)</em>").count(),
        2 * 2,
        "address and user agent of the mute and the pause: {}",
        after.text
    );
}
