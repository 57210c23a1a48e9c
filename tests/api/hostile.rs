//! Hostile input: random bytes where paths, headers and bodies go, sent raw over TCP (no
//! HTTP client would send most of them), and the limits on size, time and connections.
//!
//! Every answer the application makes must be the IMKIT envelope with `RC` equal to the
//! status, never a 5xx; the only other answers allowed are the ones actix's HTTP/1 parser
//! gives before any application code runs (an empty 400 for a request that is not HTTP, an
//! empty 431 for a head over its 128 KiB buffer, 408 for a head that does not arrive; see
//! docs/reliability.md).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is on a new connection and reads one answer. Writing goes on beside
/// reading, so an answer given before the whole request was taken (a body over the limit)
/// is still read; a write the server stopped taking is not an error.
pub async fn send_raw(port: u16, request: Vec<u8>) -> std::io::Result<Raw> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Duration::from_secs(20);
    let answer = tokio::time::timeout(deadline, async {
        loop {
            if let Some(raw) = parse(&buffer) {
                return Ok(raw);
            }
            match reader.read(&mut chunk).await {
                Ok(0) => return parse(&buffer).ok_or_else(|| closed(&buffer)),
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(err) => return parse(&buffer).ok_or(err),
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 20 s"))?;
    writing.abort();
    answer
}

fn closed(buffer: &[u8]) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("closed after {:?}", String::from_utf8_lossy(buffer)),
    )
}

/// One complete answer (with `Content-Length`, as every answer of this server has), if
/// the buffer holds it.
fn parse(buffer: &[u8]) -> Option<Raw> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buffer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    let body = buffer.get(end + 4..end + 4 + length)?.to_vec();
    Some(Raw {
        status,
        headers,
        body,
    })
}

/// Fails unless `raw` is an answer this service may give to anything.
pub fn assert_well_formed(raw: &Raw, request: &[u8]) {
    let shown = || String::from_utf8_lossy(&request[..request.len().min(300)]).into_owned();
    assert!(raw.status < 500, "{} for {}", raw.status, shown());
    // Successes are the endpoints' own (the metrics are text); the rest of the suite
    // checks their content.
    let parser_refusal = matches!(raw.status, 400 | 408 | 431) && raw.body.is_empty();
    if raw.status == 200 || parser_refusal {
        return;
    }
    let body: Value = serde_json::from_slice(&raw.body)
        .unwrap_or_else(|_| panic!("{} without the envelope for {}", raw.status, shown()));
    assert_eq!(body["RC"], raw.status, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(raw.header("x-request-id").is_some(), "{:?}", raw.headers);
}

/// The endpoints, with `{}` where a hostile path segment goes.
const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/me"),
    ("POST", "/me/mute/{}"),
    ("DELETE", "/me/mute/{}"),
    ("POST", "/auths/sign/v2"),
    ("POST", "/admin/clients"),
    ("DELETE", "/admin/clients/{}/token"),
    ("POST", "/admin/clients/{}/mute/{}"),
    ("DELETE", "/admin/clients/{}/mute/{}"),
    ("POST", "/rooms"),
    ("POST", "/rooms/"),
    ("POST", "/admin/rooms/{}/mutes/check"),
    ("GET", "/admin/rooms/{}/mutes?limit={}&after={}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("PUT", "/{}"),
    ("GET", "/{}/{}"),
];

fn percent_encoded(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .flat_map(|b| format!("%{b:02X}").into_bytes())
        .collect()
}

fn segment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Percent-encoded arbitrary bytes: invalid UTF-8, NUL, controls, slashes.
        4 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| percent_encoded(&b)),
        // Raw bytes straight into the request line (mostly refused by the HTTP parser).
        1 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => Just(b"..".to_vec()),
        1 => Just(b"%2e%2e".to_vec()),
        2 => Just(b"r1".to_vec()),
        1 => Just(b"%00".to_vec()),
        1 => Just(vec![b'a'; 10 * 1024]),
        1 => Just("caf\u{e9}".as_bytes().to_vec()),
    ]
}

/// Header value bytes: mostly ones HTTP allows (printable ASCII and, obsolete but legal,
/// bytes over 0x7F: non-ASCII and invalid UTF-8), sometimes any byte but CR and LF.
fn header_value(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let legal = any::<u8>().prop_filter("legal in a header value", |b| {
        *b == b'\t' || (0x20..0x7f).contains(b) || *b >= 0x80
    });
    let any_but_line_break =
        any::<u8>().prop_filter("no line break", |b| *b != b'\r' && *b != b'\n');
    prop_oneof![
        4 => proptest::collection::vec(legal, 0..max),
        1 => proptest::collection::vec(any_but_line_break, 0..max),
    ]
}

#[derive(Debug, Clone)]
enum Credential {
    None,
    Valid,
    Garbage(Vec<u8>),
    Huge,
    Twice,
}

fn credential() -> impl Strategy<Value = Credential> {
    prop_oneof![
        1 => Just(Credential::None),
        3 => Just(Credential::Valid),
        1 => header_value(80).prop_map(Credential::Garbage),
        1 => Just(Credential::Huge),
        1 => Just(Credential::Twice),
    ]
}

fn body() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Some),
        (1usize..20_000).prop_map(|depth| Some(
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        )),
        (1usize..5_000).prop_map(|depth| Some(
            format!("{}1{}", "{\"_id\":".repeat(depth), "}".repeat(depth)).into_bytes()
        )),
        Just(Some(
            br#"{"_id": 42, "clients": "all", "members": {"a": 1}}"#.to_vec()
        )),
        Just(Some(
            br#"{"_id": "u1", "issueAccessToken": true, "expirationDays": 1e309}"#.to_vec()
        )),
        Just(Some(
            br#"{"_id": "x", "clients": [null, 1, "\u0000"], "token": ["a"]}"#.to_vec()
        )),
        Just(Some(b"\xff\xfe{\"_id\":\"\xc3\x28\"}".to_vec())),
        Just(Some(vec![b'a'; 10 * 1024 * 1024])),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    endpoint: usize,
    segments: Vec<Vec<u8>>,
    client_key: Credential,
    token: Credential,
    api_key: Credential,
    extra_header: Option<Vec<u8>>,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..ENDPOINTS.len(),
        proptest::collection::vec(segment(), 3),
        (credential(), credential(), credential()),
        proptest::option::of(header_value(200)),
        proptest::option::of(prop_oneof![
            Just("application/json"),
            Just("text/plain"),
            Just("application/json; charset=\u{ff}")
        ]),
        body(),
    )
        .prop_map(
            |(
                endpoint,
                segments,
                (client_key, token, api_key),
                extra_header,
                content_type,
                body,
            )| Case {
                endpoint,
                segments,
                client_key,
                token,
                api_key,
                extra_header,
                content_type,
                body,
            },
        )
}

fn render(case: &Case, app: &TestApp, token: &str) -> Vec<u8> {
    let (method, template) = ENDPOINTS[case.endpoint];
    let mut path = Vec::new();
    let mut segments = case.segments.iter();
    for (i, part) in template.split("{}").enumerate() {
        if i > 0 {
            path.extend_from_slice(segments.next().unwrap());
        }
        path.extend_from_slice(part.as_bytes());
    }
    let mut request = format!("{method} ").into_bytes();
    request.extend_from_slice(&path);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let mut header = |name: &str, credential: &Credential, valid: &str| {
        let value: Vec<u8> = match credential {
            Credential::None => return,
            Credential::Valid => valid.as_bytes().to_vec(),
            Credential::Garbage(bytes) => bytes.clone(),
            Credential::Huge => vec![b'k'; 64 * 1024],
            Credential::Twice => {
                request.extend_from_slice(format!("{name}: {valid}\r\n").as_bytes());
                b"second-value".to_vec()
            }
        };
        request.extend_from_slice(format!("{name}: ").as_bytes());
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n");
    };
    header("IM-CLIENT-KEY", &case.client_key, &app.app.client_key);
    header("IM-Authorization", &case.token, token);
    header("IM-API-KEY", &case.api_key, &app.app.api_key);
    if let Some(value) = &case.extra_header {
        request.extend_from_slice(b"X-Request-Id: ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\nUser-Agent: ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    if let Some(content_type) = case.content_type {
        request.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
    }
    match &case.body {
        Some(body) => {
            request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            request.extend_from_slice(body);
        }
        None => request.extend_from_slice(b"\r\n"),
    }
    request
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// Property: whatever arrives, the answer is in the envelope (or one of the parser's empty
/// refusals), never a 5xx, and the server keeps answering.
#[test]
fn hostile_requests_get_4xx_in_the_envelope_and_the_server_stays_up() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The limiter would turn most cases into 429s after a few; it has tests of its own.
    let app = runtime.block_on(TestApp::spawn_with(|s| s.auth_failures.burst = 0));
    let token = runtime.block_on(async {
        app.room("r1").await;
        app.user("u1").await
    });
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let started = Instant::now();
    let tally = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        let request = render(&case, &app, &token);
        let raw = runtime
            .block_on(send_raw(port, request.clone()))
            .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
        assert_well_formed(&raw, &request);
        let code = serde_json::from_slice::<Value>(&raw.body)
            .ok()
            .and_then(|b| b["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *tally
            .lock()
            .unwrap()
            .entry(format!("{} {code}", raw.status))
            .or_default() += 1;
        let alive = runtime
            .block_on(send_raw(
                port,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            ))
            .map_err(|e| TestCaseError::fail(format!("server down: {e}")))?;
        prop_assert_eq!(alive.status, 200);
        Ok(())
    });
    eprintln!(
        "{} hostile cases in {:?}: {:?}",
        cases(),
        started.elapsed(),
        tally.lock().unwrap()
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // The valid user is intact after all of it.
    runtime.block_on(async {
        assert_eq!(app.me(&token).await["_id"], "u1");
    });
}

pub fn port_of(app: &TestApp) -> u16 {
    app.base.rsplit(':').next().unwrap().parse().unwrap()
}

fn with_body(method: &str, path: &str, api_key: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nIM-API-KEY: {api_key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn envelope_of(raw: &Raw) -> Value {
    serde_json::from_slice(&raw.body).expect("an envelope")
}

#[tokio::test]
async fn the_body_limit_is_configurable_and_answered_413_in_the_envelope() {
    let app = TestApp::spawn_with(|s| s.limits.max_body_bytes = 1024).await;
    let port = port_of(&app);
    let fits = format!(r#"{{"_id":"u1","nickname":"{}"}}"#, "n".repeat(900));
    let over = format!(r#"{{"_id":"u1","nickname":"{}"}}"#, "n".repeat(1100));

    let ok = send_raw(
        port,
        with_body("POST", "/admin/clients", &app.app.api_key, fits.as_bytes()),
    )
    .await;
    assert_eq!(ok.unwrap().status, 200);
    for (method, path) in [
        ("POST", "/admin/clients"),
        ("DELETE", "/admin/clients/u1/token"),
        ("POST", "/rooms"),
    ] {
        let request = with_body(method, path, &app.app.api_key, over.as_bytes());
        let refused = send_raw(port, request.clone()).await.unwrap();
        assert_well_formed(&refused, &request);
        assert_eq!(refused.status, 413, "{path}");
        assert_eq!(envelope_of(&refused)["error"]["code"], "PAYLOAD_TOO_LARGE");
    }
    // A body far over the limit is refused without being read whole.
    let huge = vec![b' '; 50 * 1024 * 1024];
    let refused = send_raw(port, with_body("POST", "/rooms", &app.app.api_key, &huge))
        .await
        .unwrap();
    assert_eq!(refused.status, 413);
}

#[tokio::test]
async fn the_header_limit_is_configurable_and_answered_431_in_the_envelope() {
    let app = TestApp::spawn_with(|s| s.limits.max_header_bytes = 4096).await;
    let port = port_of(&app);
    let with_header = |size: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Padding: {}\r\n\r\n",
            "p".repeat(size)
        )
        .into_bytes()
    };

    assert_eq!(send_raw(port, with_header(3000)).await.unwrap().status, 200);
    let refused = send_raw(port, with_header(5000)).await.unwrap();
    assert_eq!(refused.status, 431);
    assert_eq!(envelope_of(&refused)["error"]["code"], "HEADERS_TOO_LARGE");
    // Past actix's own 128 KiB head buffer the parser refuses first, with an empty 431.
    let parser = send_raw(port, with_header(200 * 1024)).await.unwrap();
    assert_eq!((parser.status, parser.body.len()), (431, 0));
    // So does a head with more than the parser's 96 header lines.
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let parser = send_raw(port, many).await.unwrap();
    assert_eq!((parser.status, parser.body.len()), (431, 0));
    assert_eq!(send_raw(port, with_header(10)).await.unwrap().status, 200);
}

/// Reads until the server closes the connection, at most `limit`; answers what it sent.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_dropped() {
    let app =
        TestApp::spawn_with(|s| s.limits.client_request_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(("127.0.0.1", port_of(&app)))
        .await
        .unwrap();
    slow.write_all(b"GET /me HTTP/1.1\r\nHost: x\r\nIM-CLIENT-")
        .await
        .unwrap();

    let received = until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the server hung up on the slow client");
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_keep_alive_time() {
    let app = TestApp::spawn_with(|s| s.limits.keep_alive = Duration::from_secs(1)).await;
    let mut idle = TcpStream::connect(("127.0.0.1", port_of(&app)))
        .await
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let received = until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("the idle connection was closed");
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let app = TestApp::spawn_with(|s| {
        s.workers = Some(1);
        s.limits.max_connections_per_worker = 2;
        s.limits.keep_alive = Duration::from_secs(60);
    })
    .await;
    let port = port_of(&app);
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(chunk[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }

    // The kernel completes the handshake, but the server does not take the connection.
    let third = tokio::spawn(send_raw(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection was served");

    drop(held.pop());
    let answered = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(answered.status, 200);
}
