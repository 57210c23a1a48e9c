//! Support staff's audit trail and as-of answers, over HTTP and through the CLI.

use chatprefs::provision::AppCredentials;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{assert_error, ok_result, open_transaction_elsewhere, Sent, TestApp};

async fn audit_of(app: &TestApp, creds: &AppCredentials, query: &str) -> Value {
    app.admin(creds, Method::GET, &format!("/admin/audit{query}"))
        .sent()
        .await
        .assert_ok()
}

pub async fn audit(app: &TestApp, query: &str) -> Value {
    audit_of(app, &app.app.clone(), query).await
}

fn positions(page: &Value) -> Vec<i64> {
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect()
}

fn rooms_and_types(page: &Value) -> Vec<(String, String, String)> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["client"].as_str().unwrap().to_owned(),
                e["room"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Two users, two rooms, five events (in this order):
/// u1 mutes r1, u2 mutes r1, u1 mutes r2, u1 unmutes r1, u2 mutes r2.
async fn five_events(app: &TestApp) {
    let u1 = app.user("u1").await;
    let u2 = app.user("u2").await;
    app.room("r1").await;
    app.room("r2").await;
    ok_result(app.mute(&u1, "r1").await).await;
    ok_result(app.mute(&u2, "r1").await).await;
    ok_result(app.mute(&u1, "r2").await).await;
    ok_result(app.unmute(&u1, "r1").await).await;
    ok_result(app.mute(&u2, "r2").await).await;
}

#[tokio::test]
async fn audit_lists_every_event_with_its_provenance_oldest_first() {
    let app = TestApp::spawn().await;
    app.mute_as_client_then_unmute_as_admin().await;

    let page = audit(&app, "").await;

    let stored = app
        .sql("SELECT position, event_id::text, floor(extract(epoch FROM recorded_at) * 1000)::bigint FROM events ORDER BY position")
        .await
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let expected = [
        ("RoomMuted", "client", "u1", "req-client", "MobileSDK/3.2"),
        ("RoomUnmuted", "admin", "app-a", "req-admin", "backend/1.0"),
    ];
    for ((entry, row), (kind, actor_kind, actor_id, request_id, agent)) in
        entries.iter().zip(&stored).zip(expected)
    {
        assert_eq!(entry["position"], row.get::<_, i64>(0));
        assert_eq!(entry["eventId"], row.get::<_, String>(1));
        assert_eq!(entry["type"], kind);
        assert_eq!(entry["appID"], "app-a");
        assert_eq!(entry["client"], "u1");
        assert_eq!(entry["room"], "r1");
        assert_eq!(entry["actor"]["kind"], actor_kind);
        assert_eq!(entry["actor"]["id"], actor_id);
        assert_eq!(entry["requestId"], request_id);
        assert_eq!(entry["address"], "127.0.0.1");
        assert!(entry["port"].as_u64().is_some_and(|p| p > 0), "{entry}");
        assert_eq!(entry["userAgent"], agent);
        let recorded_at = entry["recordedAt"].as_str().unwrap();
        assert!(recorded_at.ends_with('Z'), "UTC: {recorded_at}");
        let parsed: DateTime<Utc> = recorded_at.parse().unwrap();
        assert_eq!(entry["recordedAtMS"], parsed.timestamp_millis());
        assert_eq!(entry["recordedAtMS"], row.get::<_, i64>(2));
    }
    assert_eq!(page["hasMore"], false);
    assert_eq!(page["next"], entries[1]["position"]);
}

#[tokio::test]
async fn audit_filters_by_client_room_and_time() {
    let app = TestApp::spawn().await;
    five_events(&app).await;
    let all = audit(&app, "").await;
    let entries = all["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 5);

    let s = |c: &str, r: &str, t: &str| (c.to_owned(), r.to_owned(), t.to_owned());
    assert_eq!(
        rooms_and_types(&audit(&app, "?client=u1").await),
        [
            s("u1", "r1", "RoomMuted"),
            s("u1", "r2", "RoomMuted"),
            s("u1", "r1", "RoomUnmuted")
        ]
    );
    assert_eq!(
        rooms_and_types(&audit(&app, "?room=r2").await),
        [s("u1", "r2", "RoomMuted"), s("u2", "r2", "RoomMuted")]
    );
    assert_eq!(
        rooms_and_types(&audit(&app, "?client=u2&room=r1").await),
        [s("u2", "r1", "RoomMuted")]
    );

    // since is inclusive, until exclusive; RFC 3339 and epoch milliseconds both work.
    let second = entries[1]["recordedAt"].as_str().unwrap();
    let fourth = entries[3]["recordedAt"].as_str().unwrap();
    let window = audit(
        &app,
        &format!("?since={}&until={}", urlencode(second), urlencode(fourth)),
    )
    .await;
    assert_eq!(
        positions(&window),
        [
            entries[1]["position"].as_i64().unwrap(),
            entries[2]["position"].as_i64().unwrap()
        ]
    );
    let after_last_ms = entries[4]["recordedAtMS"].as_i64().unwrap() + 1;
    let nothing = audit(&app, &format!("?since={after_last_ms}")).await;
    assert_eq!(nothing["entries"], serde_json::json!([]));
    assert_eq!(nothing["hasMore"], false);
    let until_ms = audit(&app, &format!("?until={after_last_ms}&client=u2")).await;
    assert_eq!(positions(&until_ms).len(), 2);

    let unknown_user = audit(&app, "?client=nobody").await;
    assert_eq!(unknown_user["entries"], serde_json::json!([]));
}

fn urlencode(raw: &str) -> String {
    percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn audit_pages_follow_the_cursor_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    five_events(&app).await;
    let token = app.user("u3").await;
    ok_result(app.mute(&token, "r1").await).await;
    ok_result(app.mute(&token, "r2").await).await;
    let everything = positions(&audit(&app, "?limit=1000").await);
    assert_eq!(everything.len(), 7);

    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    let mut more = Vec::new();
    loop {
        let page = audit(&app, &query).await;
        let got = positions(&page);
        assert!(got.len() <= 3);
        seen.extend(got);
        more.push(page["hasMore"].as_bool().unwrap());
        if !page["hasMore"].as_bool().unwrap() {
            break;
        }
        query = format!("?limit=3&after={}", page["next"]);
    }
    assert_eq!(seen, everything);
    assert_eq!(more, [true, true, false]);

    // A filtered walk uses the same cursor.
    let first = audit(&app, "?client=u1&limit=2").await;
    let rest = audit(&app, &format!("?client=u1&limit=2&after={}", first["next"])).await;
    assert_eq!(positions(&first).len() + positions(&rest).len(), 3);
    assert_eq!(rest["hasMore"], false);
}

#[tokio::test]
async fn an_app_sees_only_its_own_events() {
    let app = TestApp::spawn().await;
    five_events(&app).await;
    let other = app.create_app("app-b").await;
    let stranger = app.user_of(&other, "u1").await;
    app.room_of(&other, "r1").await;
    app.client(&other, &stranger, Method::POST, "/me/mute/r1")
        .sent()
        .await
        .assert_ok();

    let mine = audit(&app, "?client=u1&room=r1").await;
    assert_eq!(positions(&mine).len(), 2);
    assert!(mine["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["appID"] == "app-a"));
    let theirs = audit_of(&app, &other, "").await;
    let their_positions = positions(&theirs);
    assert_eq!(their_positions.len(), 1);
    assert_eq!(theirs["entries"][0]["appID"], "app-b");

    // Another app's position is no cursor for me.
    app.admin(
        &app.app,
        Method::GET,
        &format!("/admin/audit?after={}", their_positions[0]),
    )
    .sent()
    .await
    .assert_error(400, "INVALID_PARAMETERS");
    app.request(Method::GET, "/admin/audit")
        .sent()
        .await
        .assert_error(403, "INVALID_API_KEY");
}

#[tokio::test]
async fn bad_audit_parameters_are_400() {
    let app = TestApp::spawn().await;
    for query in [
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?since=yesterday",
        "?until=2026-13-01T00:00:00Z",
        "?after=abc",
        "?after=0",
        "?clientId=u1",
        "?client=",
        "?room=%01",
    ] {
        let body = app
            .admin_get(&format!("/admin/audit{query}"))
            .await
            .assert_error(400, "INVALID_PARAMETERS");
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{query}"
        );
    }
}

/// The audit's own answer for when the events happened (its recordedAt, exact to the µs).
async fn recorded(app: &TestApp) -> Vec<DateTime<Utc>> {
    app.sql("SELECT recorded_at FROM events ORDER BY position")
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn as_of(app: &TestApp, uid: &str, at: &str) -> reqwest::Response {
    app.admin(
        &app.app,
        Method::GET,
        &format!("/admin/clients/{uid}/mute{at}"),
    )
    .send()
    .await
    .unwrap()
}

fn rooms(answer: &Value) -> Vec<String> {
    serde_json::from_value(answer["mute"].clone()).unwrap()
}

#[tokio::test]
async fn as_of_answers_what_was_muted_at_each_instant() {
    let app = TestApp::spawn().await;
    let u1 = app.signed_in("u1").await;
    for room in ["r1", "r2"] {
        app.room(room).await;
    }
    u1.mute("r2").await.assert_ok(); // t0: r2 muted (stays muted)
    u1.mute("r1").await.assert_ok(); // t1
    u1.unmute("r1").await.assert_ok(); // t2
    u1.mute("r1").await.assert_ok(); // t3
    let t = recorded(&app).await;
    let micro = chrono::Duration::microseconds(1);
    let rfc =
        |at: DateTime<Utc>| urlencode(&at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));

    let cases: [(String, &[&str]); 6] = [
        (format!("?asOf={}", rfc(t[0] - micro)), &[]),
        (format!("?asOf={}", rfc(t[0])), &["r2"]),
        (format!("?asOf={}", rfc(t[1])), &["r2", "r1"]),
        (format!("?asOf={}", rfc(t[2])), &["r2"]),
        (format!("?asOf={}", rfc(t[3])), &["r2", "r1"]),
        (String::new(), &["r2", "r1"]),
    ];
    for (query, expected) in cases {
        let answer = ok_result(as_of(&app, "u1", &query).await).await;
        assert_eq!(rooms(&answer), expected, "{query}");
        assert_eq!(answer["_id"], "u1");
        assert_eq!(answer["appID"], "app-a");
    }
    // Epoch milliseconds: the millisecond after t3 includes it.
    let ms = t[3].timestamp_millis() + 1;
    let answer = ok_result(as_of(&app, "u1", &format!("?asOf={ms}")).await).await;
    assert_eq!(rooms(&answer), ["r2", "r1"]);
    assert_eq!(answer["asOfMS"], ms);

    assert_error(
        as_of(&app, "ghost", "?asOf=0").await,
        404,
        "CLIENT_NOT_FOUND",
    )
    .await;
    assert_error(
        as_of(&app, "u1", "?asOf=soon").await,
        400,
        "INVALID_PARAMETERS",
    )
    .await;
    assert_error(
        as_of(&app, "u%FF", "?asOf=0").await,
        400,
        "INVALID_PARAMETERS",
    )
    .await;
}

#[tokio::test]
async fn cli_audit_prints_tables_json_and_csv_that_parse() {
    let app = TestApp::spawn().await;
    five_events(&app).await;
    let http = audit(&app, "?client=u1").await;

    let json = app
        .cli([
            "audit", "--app", "app-a", "--client", "u1", "--format", "json",
        ])
        .await;
    let parsed = json.assert_success().json();
    assert_eq!(parsed, http);

    let csv = app
        .cli([
            "audit", "--app", "app-a", "--client", "u1", "--format", "csv",
        ])
        .await;
    csv.assert_success();
    let mut reader = csv::Reader::from_reader(csv.stdout.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "position");
    assert_eq!(&header[7], "actorId");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 3);
    for (record, entry) in records.iter().zip(http["entries"].as_array().unwrap()) {
        assert_eq!(record[0], entry["position"].to_string());
        assert_eq!(&record[1], entry["eventId"].as_str().unwrap());
        assert_eq!(&record[2], entry["type"].as_str().unwrap());
        assert_eq!(&record[5], entry["room"].as_str().unwrap());
        assert_eq!(&record[6], "client");
        assert_eq!(&record[12], entry["recordedAt"].as_str().unwrap());
    }

    let table = app.cli(["audit", "--app", "app-a", "--room", "r2"]).await;
    let text = &table.assert_success().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("POSITION"));
    assert!(lines[1].contains("RoomMuted") && lines[1].contains("u1"));

    let nothing = app.cli(["audit", "--app", "app-a", "--room", "r9"]).await;
    assert!(nothing.status.success());
    assert!(nothing.stdout.is_empty());
    nothing.assert_stderr_contains("no events match");

    let other_app = app
        .cli(["audit", "--app", "app-b", "--format", "json"])
        .await;
    let parsed = other_app.json();
    assert_eq!(parsed["entries"], serde_json::json!([]));
}

#[tokio::test]
async fn cli_as_of_answers_like_the_api() {
    let app = TestApp::spawn().await;
    five_events(&app).await;
    let t = recorded(&app).await;
    let at = t[2].to_rfc3339();

    let json = app
        .cli([
            "audit", "--app", "app-a", "--client", "u1", "--as-of", &at, "--format", "json",
        ])
        .await;
    let parsed = json.assert_success().json();
    assert_eq!(rooms(&parsed), ["r1", "r2"]);
    let http = ok_result(as_of(&app, "u1", &format!("?asOf={}", urlencode(&at))).await).await;
    assert_eq!(parsed, http);

    let table = app
        .cli([
            "audit",
            "--app",
            "app-a",
            "--client",
            "u1",
            "--as-of",
            &t[4].timestamp_millis().to_string(),
        ])
        .await;
    let text = table.stdout;
    assert_eq!(
        text.lines().skip(1).map(str::trim).collect::<Vec<_>>(),
        ["r2"]
    );

    let without_client = app.cli(["audit", "--app", "app-a", "--as-of", "0"]).await;
    assert!(!without_client.status.success());
}

#[tokio::test]
async fn a_transaction_open_in_another_database_hides_nothing_from_the_audit() {
    let app = TestApp::spawn().await;
    let (_elsewhere, _driver) = open_transaction_elsewhere().await;
    let u1 = app.signed_in("u1").await;
    app.room("r1").await;
    u1.mute("r1").await.assert_ok();

    let page = audit(&app, "?client=u1").await;
    assert_eq!(
        rooms_and_types(&page),
        [("u1".into(), "r1".into(), "RoomMuted".into())],
        "a mute that got 200 is in the audit at once: {page}"
    );
    let cli = app
        .cli([
            "audit", "--app", "app-a", "--client", "u1", "--format", "json",
        ])
        .await;
    let printed = cli.json();
    assert_eq!(printed["entries"].as_array().unwrap().len(), 1, "{printed}");
    let muted = ok_result(as_of(&app, "u1", "").await).await;
    assert_eq!(rooms(&muted), ["r1"], "as-of and audit agree");
}

#[tokio::test]
async fn an_event_that_commits_late_is_in_the_audit_once_committed() {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    // A write that takes the lower position but commits last (an append by hand, so
    // that it can be held open).
    let mut conn = app.pool.get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    let slow: i64 = tx
        .query_one(
            "INSERT INTO events (event_id, app_id, stream_type, stream_id, stream_version, event_type, data, metadata)
             VALUES (gen_random_uuid(), 'app-a', 'user_preferences', 'late', 1, 'RoomMuted', '{\"room\": \"r1\"}',
                     '{\"actor\": {\"kind\": \"system\", \"id\": \"test\"}, \"requestId\": \"slow\"}')
             RETURNING position",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Meanwhile another user's mute takes a higher position and commits at once.
    let fast_user = app.user("fast").await;
    ok_result(app.mute(&fast_user, "r1").await).await;
    let fast: i64 = app.sql("SELECT max(position) FROM events").await.unwrap()[0].get(0);
    assert!(slow < fast);

    let meanwhile = audit(&app, "").await;
    assert_eq!(positions(&meanwhile), [fast], "committed history, at once");

    tx.commit().await.unwrap();
    drop(conn);
    let mut got = positions(&audit(&app, "").await);
    got.sort();
    assert_eq!(got, [slow, fast]);
}
