//! The public IMKIT SDKs, replayed request by request against the real server: method, path
//! and its encoding, header names in the case and order each SDK (and the HTTP library under
//! it) writes them, the body or its absence, and the CORS preflight a browser sends first.
//! Each test asserts the fields that SDK reads, and names the SDK file and line it
//! reproduces. Requests go out as raw bytes, so no HTTP library of ours normalises them.
//!
//! SDK versions read (GitHub):
//! - `imkit/imkit-js-lib` 501a61f (npm `imkit-js-api-v3` 3.0.27, axios 0.18.1 inside).
//!   Its bundles are webpack `eval` modules: one bundle line per source module, so a
//!   citation is "bundle line N, module line M".
//! - `imkit/imkit-web-sdk` dee863d (ships the same JS SDK as `demo/imkit-js-api-v3.min.js`).
//! - `FUNTEKco/imkit-vue-sdk-nuxt` 2b3922c (`dist/imkit-vue-sdk.js`, axios 1.x inside).
//! - `imkit/imkit-flutter-sdk` 2687df9 (Dio 4, dart:io, which writes header names lower-case).
//! - `imkit/api-doc` 4160c43.

use chatprefs::domain::AppId;
use chatprefs::provision;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::hostile::{port_of, send_raw, Raw};

const ORIGIN: &str = "https://shop.example.com";
const BROWSER_AGENT: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
/// A room id that needs percent-encoding: a space, a slash and a non-ASCII letter.
const ODD_ROOM: &str = "lobby 1/ü";

/// One request as an SDK sends it: header names exactly as written, in order.
struct Replay {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<&'static str>,
}

impl Replay {
    fn new(method: &'static str, path: impl Into<String>) -> Self {
        Replay {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: &'static str) -> Self {
        self.body = Some(body);
        self
    }

    async fn send(&self, app: &TestApp) -> Raw {
        let port = port_of(app);
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = self.body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str(&format!(
            "Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        ));
        head.push_str(self.body.unwrap_or_default());
        send_raw(port, head.into_bytes()).await.expect("an answer")
    }

    /// The CORS preflight a browser sends before this request when a page on [`ORIGIN`]
    /// makes it: the non-safelisted request header names, lower-cased and sorted.
    fn preflight(&self) -> Replay {
        let safelisted = |name: &str, value: &str| match name {
            "accept" => true,
            "content-type" => [
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "text/plain",
            ]
            .iter()
            .any(|simple| value.starts_with(simple)),
            _ => false,
        };
        let mut asked: Vec<String> = self
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .filter(|(name, value)| {
                name != "origin" && name != "user-agent" && !safelisted(name, value)
            })
            .map(|(name, _)| name)
            .collect();
        asked.sort();
        Replay::new("OPTIONS", self.path.clone())
            .header("Origin", ORIGIN)
            .header("Access-Control-Request-Method", self.method)
            .header("Access-Control-Request-Headers", asked.join(","))
            .header("User-Agent", BROWSER_AGENT)
    }

    /// What the browser does: the preflight, checked as the Fetch standard checks it, then
    /// the request itself with `Origin`, whose answer the page may read only if allowed.
    async fn send_from_browser(self, app: &TestApp) -> Raw {
        let preflight = self.preflight();
        let answer = preflight.send(app).await;
        assert_browser_allows(&answer, &preflight);
        let actual = self.header("Origin", ORIGIN).send(app).await;
        assert_eq!(actual.header("access-control-allow-origin"), Some(ORIGIN));
        actual
    }
}

/// The Fetch standard's CORS-preflight check: an ok status, the origin allowed, the method
/// allowed (or safelisted), and every asked header name allowed.
fn assert_browser_allows(answer: &Raw, preflight: &Replay) {
    let asked = |name: &str| {
        preflight
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(
        (200..300).contains(&answer.status),
        "preflight {} for {}: {}",
        answer.status,
        asked("access-control-request-headers"),
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("access-control-allow-origin"), Some(ORIGIN));
    let list = |name: &str| -> Vec<String> {
        answer
            .header(name)
            .unwrap_or_default()
            .split(',')
            .map(|item| item.trim().to_ascii_lowercase())
            .collect()
    };
    let method = asked("access-control-request-method");
    assert!(
        ["GET", "HEAD", "POST"].contains(&method.as_str())
            || list("access-control-allow-methods").contains(&method.to_ascii_lowercase()),
        "{method} not allowed"
    );
    let allowed = list("access-control-allow-headers");
    for name in asked("access-control-request-headers")
        .split(',')
        .filter(|n| !n.is_empty())
    {
        assert!(
            allowed.contains(&name.to_owned()),
            "{name} not in {allowed:?}"
        );
    }
}

fn envelope(raw: &Raw) -> Value {
    serde_json::from_slice(&raw.body).unwrap_or_else(|_| {
        panic!(
            "{}: not JSON: {}",
            raw.status,
            String::from_utf8_lossy(&raw.body)
        )
    })
}

/// The JS SDK's success test, `res.status >= 200 && res.status < 300 && res.data.RC === 0`
/// (imkit-js-lib `src/api/me/index.js` lines 53, 195, 221), and the `result` it resolves.
fn js_result(raw: &Raw) -> Value {
    let body = envelope(raw);
    assert!(
        (200..300).contains(&raw.status) && body["RC"] == 0,
        "{body}"
    );
    body["result"].clone()
}

/// What a failed call hands the JS SDK's `onAjaxError`: the body when it has `RC`
/// (imkit-js-lib `src/api/index.js`, module lines 80–91).
fn js_error(raw: &Raw) -> Value {
    let body = envelope(raw);
    assert_eq!(body["RC"], raw.status, "{body}");
    assert!(body["RM"].is_string(), "{body}");
    body
}

/// JavaScript's `encodeURIComponent`, which the JS SDK applies to room ids.
fn encode_uri_component(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What a browser's URL parser makes of a raw id put into a path (imkit-vue-sdk does not
/// encode): spaces, controls and non-ASCII are percent-encoded; `/` stays a separator.
fn browser_path_encoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b' ' | b'"' | b'<' | b'>' | b'`' | b'#' | b'?' | b'{' | b'}' => format!("%{b:02X}"),
            0x21..=0x7e => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn expire_tokens(app: &TestApp) {
    app.sql("UPDATE tokens SET expires_at = now() - interval '1 second'")
        .await
        .unwrap();
}

/// A fresh token from the app's backend, as an SDK's token-expired callback would get it.
async fn new_token_from_backend(app: &TestApp, uid: &str) -> String {
    let response = app
        .admin(&app.app, Method::POST, "/admin/clients")
        .json(&json!({ "_id": uid, "issueAccessToken": true }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["result"]["token"].as_str().unwrap().to_owned()
}

/// imkit-js-lib's request headers (`getHeader`, `lib/imkit-js-api-v3.node.js` line 1974,
/// module `src/api/index.js` lines 58–73: `IM-Authorization` then `CLIENT_KEY`), after
/// axios 0.18.1's own (`Accept`; in Node also `User-Agent: axios/0.18.1`).
fn js_node(method: &'static str, path: String, app: &TestApp, token: &str) -> Replay {
    Replay::new(method, path)
        .header("Accept", "application/json, text/plain, */*")
        .header("IM-Authorization", token)
        .header("CLIENT_KEY", app.app.client_key.clone())
        .header("User-Agent", "axios/0.18.1")
}

/// imkit-js-lib, Node build: `me.getInfo`, `me.muteRoom`, `me.unMuteRoom`
/// (`lib/imkit-js-api-v3.node.js` line 1986, module `src/api/me/index.js` lines 42–61,
/// 185–203 and 210–229): `GET /me` (axios drops the empty `params`), then `POST` and
/// `DELETE /me/mute/${encodeURIComponent(roomId)}`, each with body `{}`, which axios sends
/// as JSON.
#[tokio::test]
async fn imkit_js_lib_node_gets_info_mutes_and_unmutes() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    app.room(ODD_ROOM).await;
    let path = format!("/me/mute/{}", encode_uri_component(ODD_ROOM));
    assert_eq!(path, "/me/mute/lobby%201%2F%C3%BC");
    let with_json = |replay: Replay| {
        replay
            .header("Content-Type", "application/json;charset=utf-8")
            .body("{}")
    };

    let info = js_result(&js_node("GET", "/me".into(), &app, &token).send(&app).await);
    assert_eq!(info["_id"], "u1");
    assert_eq!(info["mute"], json!([]));

    let muted = with_json(js_node("POST", path.clone(), &app, &token));
    let muted = js_result(&muted.send(&app).await);
    assert_eq!(muted["mute"], json!([ODD_ROOM]));
    assert_eq!(muted["_id"], "u1");
    assert_eq!(muted["userAgent"], "axios/0.18.1");

    let unmuted = with_json(js_node("DELETE", path, &app, &token));
    assert_eq!(js_result(&unmuted.send(&app).await)["mute"], json!([]));
    assert_eq!(app.count_events().await, 2);
}

/// imkit-js-lib with an expired token: axios rejects the 401 and `onError` hands
/// `error.response.data` to `onAjaxError` because it has `RC` (`lib/imkit-js-api-v3.node.js`
/// line 1974, module `src/api/index.js` lines 80–91).
#[tokio::test]
async fn imkit_js_lib_sees_an_expired_token_as_401_with_rc() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    expire_tokens(&app).await;

    let raw = js_node("GET", "/me".into(), &app, &token).send(&app).await;

    assert_eq!(raw.status, 401);
    assert_eq!(js_error(&raw)["error"]["code"], "INVALID_TOKEN");
}

/// imkit-js-lib, web build (`lib/imkit-js-api-v3.web.js` lines 1726 and 1738: the same
/// `src/api/index.js` and `src/api/me/index.js` modules as the Node build, and the same code
/// minified in imkit-web-sdk `demo/imkit-js-api-v3.min.js` line 8), run by a page on an
/// allowed origin: each call is preceded by a preflight asking for `client_key` and
/// `im-authorization` (and `content-type` when there is a body).
#[tokio::test]
async fn imkit_js_lib_web_build_passes_the_preflight_and_mutes_from_a_browser() {
    let app = TestApp::spawn_with(|s| s.cors_origins = vec![ORIGIN.into()]).await;
    let token = app.user("u1").await;
    app.room(ODD_ROOM).await;
    let path = format!("/me/mute/{}", encode_uri_component(ODD_ROOM));
    let xhr = |method: &'static str, path: String| {
        Replay::new(method, path)
            .header("Accept", "application/json, text/plain, */*")
            .header("IM-Authorization", token.clone())
            .header("CLIENT_KEY", app.app.client_key.clone())
            .header("User-Agent", BROWSER_AGENT)
    };
    let with_json = |replay: Replay| {
        replay
            .header("Content-Type", "application/json;charset=utf-8")
            .body("{}")
    };

    let info = xhr("GET", "/me".into()).send_from_browser(&app).await;
    assert_eq!(js_result(&info)["_id"], "u1");
    let muted = with_json(xhr("POST", path.clone()))
        .send_from_browser(&app)
        .await;
    assert_eq!(js_result(&muted)["mute"], json!([ODD_ROOM]));
    let unmuted = with_json(xhr("DELETE", path)).send_from_browser(&app).await;
    assert_eq!(js_result(&unmuted)["mute"], json!([]));
}

/// imkit-vue-sdk (`dist/imkit-vue-sdk.js`): every request carries `IM-Authorization`,
/// `IM-Client-Key`, `x-timezone` and `accept-language` (lines 26923–26928), and
/// `toggleNotification` posts or deletes `/me/mute/${id}` with the raw id and no body
/// (lines 28101–28106), reading nothing but a 2xx status. In the browser, axios 1.x adds
/// `Accept`; the preflight asks for the four headers, lower-cased.
#[tokio::test]
async fn imkit_vue_sdk_passes_the_preflight_and_toggles_a_mute_with_a_raw_room_id() {
    let app = TestApp::spawn_with(|s| s.cors_origins = vec![ORIGIN.into()]).await;
    let token = app.user("u1").await;
    let room = "café lounge";
    app.room(room).await;
    let path = format!("/me/mute/{}", browser_path_encoding(room));
    assert_eq!(path, "/me/mute/caf%C3%A9%20lounge");
    let vue = |method: &'static str| {
        Replay::new(method, path.clone())
            .header("Accept", "application/json, text/plain, */*")
            .header("IM-Authorization", token.clone())
            .header("IM-Client-Key", app.app.client_key.clone())
            .header("x-timezone", "Asia/Taipei")
            .header("accept-language", "zh-TW")
            .header("User-Agent", BROWSER_AGENT)
    };

    let muted = vue("POST").send_from_browser(&app).await;
    assert_eq!(muted.status, 200);
    assert_eq!(app.me(&token).await["mute"], json!([room]));
    let unmuted = vue("DELETE").send_from_browser(&app).await;
    assert_eq!(unmuted.status, 200);
    assert_eq!(app.me(&token).await["mute"], json!([]));
}

/// imkit-vue-sdk on an expired token: its response interceptor looks only at
/// `e.response?.status === 401`, signs the user in again and repeats the request with the
/// new headers (`dist/imkit-vue-sdk.js` lines 26934–26937).
#[tokio::test]
async fn imkit_vue_sdk_gets_401_on_an_expired_token_and_its_retry_succeeds() {
    let app = TestApp::spawn_with(|s| s.cors_origins = vec![ORIGIN.into()]).await;
    let token = app.user("u1").await;
    app.room("r1").await;
    expire_tokens(&app).await;
    let vue = |token: &str| {
        Replay::new("POST", "/me/mute/r1")
            .header("Accept", "application/json, text/plain, */*")
            .header("IM-Authorization", token)
            .header("IM-Client-Key", app.app.client_key.clone())
            .header("x-timezone", "Europe/Paris")
            .header("accept-language", "fr-FR")
    };

    let refused = vue(&token).send_from_browser(&app).await;
    assert_eq!(refused.status, 401);
    let fresh = new_token_from_backend(&app, "u1").await;
    let retried = vue(&fresh).send_from_browser(&app).await;
    assert_eq!(retried.status, 200);
    assert_eq!(envelope(&retried)["result"]["mute"], json!(["r1"]));
}

/// imkit-flutter-sdk's headers: `IM-CLIENT-KEY`, `IM-Authorization`, then `IM-CLIENT-ID`
/// (`lib/models/im_state.dart` lines 65–76, set on every request by
/// `lib/services/network/api/interceptors/im_api_token_interceptor.dart` lines 13–16) and
/// Dio's `contentType` (`lib/services/network/api/im_api_dio.dart` line 17); dart:io writes
/// the names lower-case.
fn flutter(method: &'static str, path: &str, app: &TestApp, token: &str, uid: &str) -> Replay {
    Replay::new(method, path.to_owned())
        .header("user-agent", "Dart/2.19 (dart:io)")
        .header("content-type", "application/json; charset=utf-8")
        .header("accept-encoding", "gzip")
        .header("im-client-key", app.app.client_key.clone())
        .header("im-authorization", token)
        .header("im-client-id", uid)
}

/// What the Flutter SDK reads of a user: `result` (unwrapped by
/// `lib/services/network/api/interceptors/im_api_interceptor.dart` lines 5–24), then
/// `_id` and `lastLoginTimeMS` as an int (`lib/models/im_user.g.dart` lines 9–15).
fn flutter_user(raw: &Raw) -> Value {
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    let user = envelope(raw)["result"].clone();
    assert!(user["_id"].is_string(), "{user}");
    assert!(user["lastLoginTimeMS"].is_i64(), "{user}");
    user
}

/// imkit-flutter-sdk `fetchMe` (`lib/services/network/api/requests/im_user_request.g.dart`
/// lines 20–40): `GET /me`; Dio 4 sends no body on GET.
#[tokio::test]
async fn imkit_flutter_sdk_fetches_me_with_lower_case_headers() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;

    let raw = flutter("GET", "/me", &app, &token, "u1").send(&app).await;

    let user = flutter_user(&raw);
    assert_eq!(user["_id"], "u1");
    assert_eq!(user["nickname"], "Nick u1");
}

/// imkit-flutter-sdk on an expired token: on 401 the interceptor asks the app's
/// `tokenExpired` callback for a new token and repeats the request with it
/// (`lib/services/network/api/interceptors/im_api_token_interceptor.dart` lines 19–38 and
/// 41–64; `lib/sdk/internal/imkit_internal.dart` lines 47–62).
#[tokio::test]
async fn imkit_flutter_sdk_retries_with_a_new_token_after_401() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    expire_tokens(&app).await;

    let refused = flutter("GET", "/me", &app, &token, "u1").send(&app).await;
    assert_eq!(refused.status, 401);
    assert_eq!(envelope(&refused)["error"]["code"], "INVALID_TOKEN");

    let fresh = new_token_from_backend(&app, "u1").await;
    let retried = flutter("GET", "/me", &app, &fresh, "u1").send(&app).await;
    assert_eq!(flutter_user(&retried)["_id"], "u1");
}

/// imkit-flutter-sdk `login(uid)` without a token (`lib/sdk/internal/imkit_internal.dart`
/// lines 31–45) calls `fetchToken` (`lib/services/network/api/requests/im_auth_request.g.dart`
/// lines 20–40): `POST /auths/sign/v2 {"id": uid}`, sent before the SDK has a token or a
/// uid, so `im-authorization` and `im-client-id` are empty. It reads `result.id` and
/// `result.token` as strings (`lib/models/im_client.g.dart` lines 9–14).
fn flutter_sign_in(app: &TestApp, uid: &'static str) -> Replay {
    let body = match uid {
        "u1" => r#"{"id":"u1"}"#,
        _ => r#"{"id":"new-user"}"#,
    };
    flutter("POST", "/auths/sign/v2", app, "", "").body(body)
}

/// imkit-js-lib `auth.sign({id})` (`lib/imkit-js-api-v3.web.js` line 1702, module
/// `src/api/auth/index.js` lines 44–63), as imkit-web-sdk's demo calls it and reads
/// `data.result.token` (`demo/index.html` lines 170–179): the SDK has no token yet, and
/// XHR sends the `undefined` header value as the text `undefined`.
fn js_sign_in(app: &TestApp) -> Replay {
    Replay::new("POST", "/auths/sign/v2")
        .header("Accept", "application/json, text/plain, */*")
        .header("Content-Type", "application/json;charset=utf-8")
        .header("IM-Authorization", "undefined")
        .header("CLIENT_KEY", app.app.client_key.clone())
        .body(r#"{"id":"u1"}"#)
}

/// Client sign-in is off unless the app's operator turned it on: both SDKs' sign-in gets
/// an envelope saying where tokens come from, and no token is issued.
#[tokio::test]
async fn sdk_sign_in_is_refused_in_the_envelope_while_the_app_has_not_allowed_it() {
    let app = TestApp::spawn().await;

    for replay in [flutter_sign_in(&app, "u1"), js_sign_in(&app)] {
        let raw = replay.send(&app).await;
        assert_eq!(raw.status, 403);
        let body = js_error(&raw);
        assert_eq!(body["error"]["code"], "CLIENT_SIGN_IN_DISABLED");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("POST /admin/clients"), "{message}");
    }
    let tokens: i64 = app.sql("SELECT count(*) FROM tokens").await.unwrap()[0].get(0);
    assert_eq!(tokens, 0);
}

/// With client sign-in allowed, the Flutter and JS SDK logins get a token, for a known or a
/// new user, and go on to `GET /me` with it; each token is recorded as a sign-in.
#[tokio::test]
async fn sdk_sign_in_issues_a_working_token_when_the_app_allows_it() {
    let app = TestApp::spawn().await;
    app.user("u1").await;
    let app_id = AppId::parse("app-a").unwrap();
    provision::set_client_sign_in(&app.pool, &app_id, true)
        .await
        .unwrap();

    for (replay, uid) in [
        (flutter_sign_in(&app, "u1"), "u1"),
        (flutter_sign_in(&app, "new-user"), "new-user"),
        (js_sign_in(&app), "u1"),
    ] {
        let raw = replay.send(&app).await;
        let result = js_result(&raw);
        assert_eq!(result["id"], uid, "{result}");
        let token = result["token"].as_str().expect("token is a string");
        assert!(result["expirationDate"].is_i64(), "{result}");
        let me = flutter("GET", "/me", &app, token, uid).send(&app).await;
        assert_eq!(flutter_user(&me)["_id"], uid);
    }
    let signed_in: i64 = app
        .sql("SELECT count(*) FROM tokens WHERE issued_by = 'client_sign_in'")
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(signed_in, 3);
    // The sign-in kept the profile the platform set.
    assert_eq!(
        app.me(&new_token_from_backend(&app, "u1").await).await["nickname"],
        "Nick u1"
    );
}

/// api-doc's examples (`pages/en/room/room-preference/mute-room-notification.md` lines
/// 38–40 for curl and 46–55 for axios with a `null` body; `unmute-room-notification.md`
/// lines 38–40 and 46–54): no body at all. They read the documented user fields
/// (`mute-room-notification.md` lines 74–93, the example response).
#[tokio::test]
async fn api_doc_examples_mute_and_unmute_with_no_body() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    app.room("demo-room").await;
    let curl = |method: &'static str| {
        Replay::new(method, "/me/mute/demo-room")
            .header("User-Agent", "curl/8.5.0")
            .header("Accept", "*/*")
            .header("IM-CLIENT-KEY", app.app.client_key.clone())
            .header("IM-Authorization", token.clone())
    };
    let axios = |method: &'static str| {
        Replay::new(method, "/me/mute/demo-room")
            .header("Accept", "application/json, text/plain, */*")
            .header("IM-CLIENT-KEY", app.app.client_key.clone())
            .header("IM-Authorization", token.clone())
            .header("User-Agent", "axios/1.7.9")
    };

    for (mute, unmute) in [
        (curl("POST"), curl("DELETE")),
        (axios("POST"), axios("DELETE")),
    ] {
        let muted = js_result(&mute.send(&app).await);
        assert_eq!(muted["mute"], json!(["demo-room"]));
        for field in [
            "_id",
            "email",
            "nickname",
            "appID",
            "avatarUrl",
            "userAgent",
        ] {
            assert!(muted[field].is_string(), "{field} in {muted}");
        }
        assert!(muted["lastLoginTimeMS"].is_i64(), "{muted}");
        assert!(muted["address"]["port"].is_u64(), "{muted}");
        assert_eq!(muted["address"]["family"], "IPv4");
        assert_eq!(js_result(&unmute.send(&app).await)["mute"], json!([]));
    }

    expire_tokens(&app).await;
    let expired = curl("POST").send(&app).await;
    assert_eq!(expired.status, 401);
    assert_eq!(js_error(&expired)["error"]["code"], "INVALID_TOKEN");
}

/// Sign-ins are limited per client address (the failed-authentication numbers, in a table
/// of their own, so the address's other requests are not held up) and recorded.
#[tokio::test]
async fn client_sign_in_is_limited_per_address_and_recorded() {
    let app = TestApp::spawn_with(|s| {
        s.auth_failures.burst = 2;
        s.auth_failures.window = std::time::Duration::from_secs(60);
    })
    .await;
    let token = app.user("u1").await;
    let app_id = AppId::parse("app-a").unwrap();
    provision::set_client_sign_in(&app.pool, &app_id, true)
        .await
        .unwrap();

    for _ in 0..2 {
        assert_eq!(flutter_sign_in(&app, "u1").send(&app).await.status, 200);
    }
    let refused = flutter_sign_in(&app, "u1").send(&app).await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("retry-after"),
        Some("30"),
        "60 s / 2 sign-ins"
    );
    assert_eq!(js_error(&refused)["error"]["code"], "RATE_LIMITED");
    // The same address still gets its answers, and its tokens still work.
    assert_eq!(
        flutter("GET", "/me", &app, &token, "u1")
            .send(&app)
            .await
            .status,
        200
    );

    let issued: Vec<String> = app
        .sql("SELECT issued_by FROM tokens WHERE client_id = 'u1' ORDER BY issued_at")
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(issued, ["platform", "client_sign_in", "client_sign_in"]);
}

/// api-doc's "Get Current User Information" (`pages/en/user/user-list/get-a-user.md`): the
/// raw request of lines 28–34, the user fields of lines 70–80, and the 401 and 403 bodies
/// of lines 111–119 and 124–132 (`RC`, `RM`, `error.code`).
#[tokio::test]
async fn api_doc_get_current_user_request_and_errors() {
    let app = TestApp::spawn().await;
    let token = app.user("u1").await;
    let me = |token: &str, client_key: &str| {
        Replay::new("GET", "/me")
            .header("IM-Authorization", token)
            .header("IM-CLIENT-KEY", client_key)
    };

    let user = js_result(&me(&token, &app.app.client_key).send(&app).await);
    for field in ["_id", "email", "nickname", "appID", "avatarUrl"] {
        assert!(user[field].is_string(), "{field} in {user}");
    }
    assert!(user["address"].is_object(), "{user}");
    assert!(
        user["userAgent"].is_null(),
        "no User-Agent was sent: {user}"
    );
    assert!(user["lastLoginTimeMS"].is_i64(), "{user}");
    assert_eq!(user["notificationEnabled"], true);

    expire_tokens(&app).await;
    let expired = envelope(&me(&token, &app.app.client_key).send(&app).await);
    assert_eq!(
        (&expired["RC"], &expired["RM"], &expired["error"]["code"]),
        (&json!(401), &json!("Unauthorized"), &json!("INVALID_TOKEN"))
    );
    let wrong_key = envelope(&me(&token, "not-a-key").send(&app).await);
    assert_eq!(
        (
            &wrong_key["RC"],
            &wrong_key["RM"],
            &wrong_key["error"]["code"]
        ),
        (
            &json!(403),
            &json!("Forbidden"),
            &json!("INVALID_CLIENT_KEY")
        )
    );
}
