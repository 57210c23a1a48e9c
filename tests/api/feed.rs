//! The change feed (`GET /admin/events`, `chatprefs tail`) and users' live streams
//! (`GET /me/events`, Server-Sent Events).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatprefs::provision::AppCredentials;
use reqwest::{Method, Response};
use serde_json::Value;

use crate::helpers::{assert_error, ok_result, open_transaction_elsewhere, Sent, TestApp};
use crate::process::Server;

async fn feed_of(app: &TestApp, creds: &AppCredentials, query: &str) -> Value {
    app.admin(creds, Method::GET, &format!("/admin/events{query}"))
        .sent()
        .await
        .assert_ok()
}

async fn feed(app: &TestApp, query: &str) -> Value {
    feed_of(app, &app.app.clone(), query).await
}

fn entries(page: &Value) -> &Vec<Value> {
    page["entries"].as_array().expect("entries")
}

fn next(page: &Value) -> String {
    page["next"].as_str().expect("a next cursor").to_owned()
}

fn rooms_and_types(page: &Value) -> Vec<(String, String)> {
    entries(page)
        .iter()
        .map(|e| {
            (
                e["room"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_transaction_open_in_another_database_holds_back_nothing_in_the_feed() {
    let app = TestApp::spawn().await;
    let (_elsewhere, _driver) = open_transaction_elsewhere().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();

    let first = feed(&app, "").await;
    assert_eq!(rooms_and_types(&first), [("r1".into(), "RoomMuted".into())]);
    assert_eq!(entries(&first)[0]["client"], "u1");
    let quiet = feed(&app, &format!("?after={}", next(&first))).await;
    assert!(entries(&quiet).is_empty(), "{quiet}");

    u1.unmute("r1").await.assert_ok();
    let then = feed(&app, &format!("?after={}", next(&quiet))).await;
    assert_eq!(
        rooms_and_types(&then),
        [("r1".into(), "RoomUnmuted".into())]
    );
}

/// An event appended by hand in a transaction of its own, so that it can take its position
/// now and commit later.
async fn held_append(url: &str, stream: &str) -> (tokio_postgres::Client, i64) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute("BEGIN").await.unwrap();
    let position = client
        .query_one(
            "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version, event_type, data, metadata)
             VALUES (gen_random_uuid(), 'app-a', 'user_preferences', $1, 1, 'RoomMuted', '{\"room\": \"r0\"}',
                     '{\"actor\": {\"kind\": \"system\", \"id\": \"test\"}}')
             RETURNING position",
            &[&stream],
        )
        .await
        .unwrap()
        .get(0);
    (client, position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_late_commits_reach_the_feed_exactly_once() {
    let app = TestApp::spawn().await;
    const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
    for room in ROOMS {
        app.room(room).await;
    }
    let mut tokens = Vec::new();
    for user in ["w0", "w1", "w2", "w3"] {
        tokens.push(app.user(user).await);
    }
    let appended = Arc::new(AtomicUsize::new(0));
    let writers_done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = tokens
        .iter()
        .map(|token| {
            let stop = Arc::new(AtomicBool::new(false));
            app.spawn_room_flipper(token, &ROOMS, 30, stop, appended.clone())
        })
        .collect();
    // Writers that take a low position and commit only after later events have committed.
    let held: Vec<_> = (0..6)
        .map(|k| {
            let url = app.database_url().to_owned();
            let appended = appended.clone();
            tokio::spawn(async move {
                let (client, position) = held_append(&url, &format!("held-{k}")).await;
                let until = appended.load(Ordering::SeqCst) + 8;
                while appended.load(Ordering::SeqCst) < until {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                client.batch_execute("COMMIT").await.unwrap();
                position
            })
        })
        .collect();

    let reader = {
        let (http, base, key) = (app.http.clone(), app.base.clone(), app.app.api_key.clone());
        let writers_done = writers_done.clone();
        tokio::spawn(async move {
            let mut cursor = String::new();
            let mut seen = Vec::new();
            loop {
                // Read once more after the writers finished: that read sees all.
                let last_round = writers_done.load(Ordering::SeqCst);
                let query = if cursor.is_empty() {
                    "?limit=7".to_owned()
                } else {
                    format!("?limit=7&after={cursor}")
                };
                let page = http
                    .get(format!("{base}/admin/events{query}"))
                    .header("IM-API-KEY", &key)
                    .sent()
                    .await
                    .assert_ok();
                cursor = next(&page);
                let got = entries(&page);
                for entry in got {
                    seen.push((
                        entry["eventId"].as_str().unwrap().to_owned(),
                        entry["position"].as_i64().unwrap(),
                    ));
                }
                if last_round && got.is_empty() {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for writer in writers {
        assert_eq!(writer.await.unwrap(), Vec::<String>::new());
    }
    for held in held {
        held.await.unwrap();
    }
    writers_done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();

    let ids: Vec<&String> = seen.iter().map(|(id, _)| id).collect();
    let unique: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an event was delivered twice");
    let logged: HashSet<String> = app
        .sql("SELECT event_id::text FROM events WHERE app_id = 'app-a'")
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(logged.len(), 4 * 30 + 6);
    assert_eq!(
        unique,
        logged.iter().collect::<HashSet<_>>(),
        "the feed delivered exactly the log"
    );
    let inverted = seen.windows(2).any(|pair| pair[1].1 < pair[0].1);
    assert!(
        inverted,
        "some event with a lower position was delivered after a higher one (it committed later)"
    );
}

#[tokio::test]
async fn a_waiting_feed_request_answers_with_the_next_commit() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    let start = feed(&app, "?wait=0").await;
    assert!(entries(&start).is_empty());

    let waiting = {
        let request = app.admin(
            &app.app,
            Method::GET,
            &format!("/admin/events?wait=20&after={}", next(&start)),
        );
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    u1.mute("r1").await.assert_ok();
    let page = ok_result(waiting.await.unwrap()).await;
    assert_eq!(
        rooms_and_types(&page),
        [("r1".into(), "RoomMuted".into())],
        "the waiting request was woken by the commit"
    );
}

#[tokio::test]
async fn pages_of_a_large_window_follow_each_other_without_gaps() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    for i in 0..5 {
        app.room(&format!("r{i}")).await;
        u1.mute(&format!("r{i}")).await.assert_ok();
        u1.unmute(&format!("r{i}")).await.assert_ok();
    }
    let mut cursor = None;
    let mut positions = Vec::new();
    loop {
        let query = match &cursor {
            None => "?limit=3".to_owned(),
            Some(after) => format!("?limit=3&after={after}"),
        };
        let page = feed(&app, &query).await;
        if entries(&page).is_empty() {
            break;
        }
        assert!(entries(&page).len() <= 3);
        positions.extend(
            entries(&page)
                .iter()
                .map(|e| e["position"].as_i64().unwrap()),
        );
        cursor = Some(next(&page));
    }
    let logged: Vec<i64> = app
        .sql("SELECT position FROM events ORDER BY transaction_id, position")
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(positions, logged);
}

#[tokio::test]
async fn bad_cursors_and_parameters_are_400_never_500() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();
    let other = app.create_app("app-b").await;
    let theirs = next(&feed_of(&app, &other, "").await);
    let ours = next(&feed(&app, "?limit=1").await);
    let mut flipped = ours.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let queries = [
        format!("?after={theirs}"),
        format!("?after={}", &ours[..ours.len() - 2]),
        format!("?after={flipped}"),
        "?after=".to_owned(),
        "?after=42".to_owned(),
        "?after=%00%FF".to_owned(),
        format!("?after={}", "A".repeat(5000)),
        "?limit=0".to_owned(),
        "?limit=1001".to_owned(),
        "?wait=31".to_owned(),
        "?wait=-1".to_owned(),
        "?wait=soon".to_owned(),
        "?since=yesterday".to_owned(),
    ];
    for query in queries {
        app.admin_get(&format!("/admin/events{query}"))
            .await
            .assert_error(400, "INVALID_PARAMETERS");
    }
    app.request(Method::GET, "/admin/events")
        .sent()
        .await
        .assert_error(403, "INVALID_API_KEY");
}

#[tokio::test]
async fn tail_prints_each_event_and_the_cursor_to_resume_from() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();

    let mut tail = app
        .command(["tail", "--app", "app-a", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let line = |what: &str| {
        let text = received
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("tail printed {what}"));
        serde_json::from_str::<Value>(&text).unwrap()
    };
    assert_eq!(line("the existing event")["type"], "RoomMuted");
    u1.unmute("r1").await.assert_ok();
    assert_eq!(line("the new event")["type"], "RoomUnmuted");

    // SAFETY: kill(2) with the pid of a child we own and have not reaped yet.
    unsafe { libc::kill(tail.id() as libc::pid_t, libc::SIGINT) };
    let output = tail.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let cursor = stderr
        .split("--after ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("tail printed where to resume: {stderr}"));
    let resumed = feed(&app, &format!("?after={cursor}")).await;
    assert!(
        entries(&resumed).is_empty(),
        "nothing was missed: {resumed}"
    );
}

/// Server-Sent Events as a browser's EventSource reads them.
struct Sse {
    response: Response,
    buffer: String,
}

#[derive(Debug, PartialEq)]
struct SseEvent {
    id: String,
    event: String,
    data: Value,
}

impl Sse {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Response {
        let mut request = app.client(&app.app, token, Method::GET, "/me/events");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.send().await.unwrap()
    }

    fn new(response: Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, skipping comments (keep-alives); `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                        .map(str::to_owned)
                };
                let Some(data) = field("data") else { continue };
                return Some(SseEvent {
                    id: field("id").expect("an id"),
                    event: field("event").expect("an event type"),
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("the stream delivers within 20 s");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) => return None,
                Err(err) => panic!("the stream broke instead of ending: {err}"),
            }
        }
    }
}

#[tokio::test]
async fn a_change_reaches_the_users_other_device_and_a_reconnect_misses_nothing() {
    let app = TestApp::spawn().await;
    let phone = app.user("u1").await;
    let laptop = app.user("u1").await;
    for room in ["r1", "r2"] {
        app.room(room).await;
    }
    let mut stream = Sse::new(Sse::open(&app, &laptop, None).await);
    ok_result(app.mute(&phone, "r1").await).await;
    let first = stream.next().await.expect("an event");
    assert_eq!(first.id, "1");
    assert_eq!(first.event, "RoomMuted");
    assert_eq!(first.data["room"], "r1");
    assert_eq!(first.data["actorKind"], "client");
    assert_eq!(first.data["version"], 1);
    drop(stream);

    // While the laptop is away, the phone and the app's backend change things.
    ok_result(app.unmute(&phone, "r1").await).await;
    app.admin(&app.app, Method::POST, "/admin/clients/u1/mute/r2")
        .sent()
        .await
        .assert_ok();
    let mut resumed = Sse::new(Sse::open(&app, &laptop, Some(&first.id)).await);
    let second = resumed.next().await.expect("the missed unmute");
    let third = resumed.next().await.expect("the missed admin mute");
    assert_eq!(
        (
            second.id.as_str(),
            second.event.as_str(),
            &second.data["room"]
        ),
        ("2", "RoomUnmuted", &Value::from("r1"))
    );
    assert_eq!(
        (third.id.as_str(), third.event.as_str(), &third.data["room"]),
        ("3", "RoomMuted", &Value::from("r2"))
    );
    assert_eq!(third.data["actorKind"], "admin");
}

#[tokio::test]
async fn live_streams_refuse_bad_credentials_and_too_many_streams_in_the_envelope() {
    let app = TestApp::spawn_with(|settings| {
        settings.live_streams.per_user = 1;
    })
    .await;
    let u1 = app.signed_in("u1").await;
    app.request(Method::GET, "/me/events")
        .header("IM-CLIENT-KEY", &app.app.client_key)
        .sent()
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.request(Method::GET, "/me/events")
        .header("IM-CLIENT-KEY", "nope")
        .header("IM-Authorization", &u1.token)
        .sent()
        .await
        .assert_error(403, "INVALID_CLIENT_KEY");
    let bad_resume = Sse::open(&app, &u1.token, Some("yesterday")).await;
    assert_error(bad_resume, 400, "INVALID_PARAMETERS").await;

    let _open = Sse::new(Sse::open(&app, &u1.token, None).await);
    let second = Sse::open(&app, &u1.token, None).await;
    assert_error(second, 429, "RATE_LIMITED").await;
}

#[tokio::test]
async fn live_streams_end_cleanly_when_the_server_is_stopped() {
    let app = TestApp::spawn().await;
    let server = Server::start(app.database_url(), &["--shutdown-timeout-secs", "20"]);
    let mut server = server;
    let token = crate::process::issue_token(&server.base(), &app.app.api_key, "u1").await;
    let response = reqwest::Client::new()
        .get(format!("{}/me/events", server.base()))
        .header("IM-CLIENT-KEY", &app.app.client_key)
        .header("IM-Authorization", &token)
        .send()
        .await
        .unwrap();
    let mut stream = Sse::new(response);
    server.signal(libc::SIGTERM);
    assert!(stream.next().await.is_none(), "the stream ended");
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("the server exits well before its 20 s shutdown timeout");
    assert!(status.success(), "{status:?}");
}
