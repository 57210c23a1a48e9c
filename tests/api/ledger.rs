//! The client-side ledger of fault tests: every request that got a 200, checked afterwards
//! against the log and the read model.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Mute,
    Unmute,
}

/// One answered 200: what was asked and the `mute` list the service answered.
#[derive(Debug, Clone)]
pub struct Entry {
    pub user: String,
    pub room: String,
    pub op: Op,
    pub request_id: String,
    pub mute: Vec<String>,
}

/// Everything that was not a 200, by kind.
#[derive(Debug, Default, Clone)]
pub struct Outcomes {
    pub ok: usize,
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After`.
    pub unavailable: usize,
    pub slowest_unavailable: Duration,
    /// The connection was refused or broken (the process was gone).
    pub connection_errors: usize,
    /// Anything else: a 5xx other than that 503, a 503 without `Retry-After`, a timeout.
    pub unexpected: Vec<String>,
}

#[derive(Default)]
pub struct Ledger {
    pub entries: Mutex<Vec<Entry>>,
    pub outcomes: Mutex<Outcomes>,
}

/// The load: workers muting and unmuting random rooms of random users, spread over the
/// targets (base URLs, which a test may swap while it runs).
pub struct Load {
    pub targets: Arc<RwLock<Vec<String>>>,
    pub users: Vec<(String, String)>,
    pub rooms: Vec<String>,
    pub client_key: String,
    pub ledger: Arc<Ledger>,
    pub stop: Arc<AtomicBool>,
}

impl Load {
    /// Runs `workers` loops of at most `requests` requests each, until `stop` or `limit`.
    pub async fn run(self: Arc<Self>, workers: usize, requests: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let tasks = (0..workers).map(|worker| {
            let load = Arc::clone(&self);
            tokio::spawn(async move { load.worker(worker, requests, deadline).await })
        });
        for task in futures::future::join_all(tasks).await {
            task.expect("worker finished");
        }
    }

    async fn worker(&self, worker: usize, requests: usize, deadline: Instant) {
        // A hang would show as this timeout, counted as unexpected.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        for i in 0..requests {
            if self.stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            let (user, token, room, op) = {
                let mut rng = rand::thread_rng();
                let (user, token) = &self.users[rng.gen_range(0..self.users.len())];
                let room = &self.rooms[rng.gen_range(0..self.rooms.len())];
                let op = if rng.gen_bool(0.5) {
                    Op::Mute
                } else {
                    Op::Unmute
                };
                (user.clone(), token.clone(), room.clone(), op)
            };
            let base = {
                let targets = self.targets.read().unwrap();
                targets[(worker + i) % targets.len()].clone()
            };
            let request_id = uuid::Uuid::new_v4().to_string();
            let method = match op {
                Op::Mute => reqwest::Method::POST,
                Op::Unmute => reqwest::Method::DELETE,
            };
            let started = Instant::now();
            let sent = http
                .request(method, format!("{base}/me/mute/{room}"))
                .header("IM-CLIENT-KEY", &self.client_key)
                .header("IM-Authorization", &token)
                .header("X-Request-Id", &request_id)
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(err) => {
                    {
                        let mut outcomes = self.ledger.outcomes.lock().unwrap();
                        if err.is_timeout() {
                            outcomes.unexpected.push(format!("timed out: {err}"));
                        } else {
                            outcomes.connection_errors += 1;
                        }
                    }
                    // The process is gone: do not spin while it is restarted.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Value = match response.json().await {
                Ok(body) => body,
                Err(_) => {
                    // The answer was cut: the process died mid-response.
                    self.ledger.outcomes.lock().unwrap().connection_errors += 1;
                    continue;
                }
            };
            let elapsed = started.elapsed();
            if status == 503 {
                // Back off a little (less than Retry-After, to keep probing the outage), so
                // an outage does not turn the test into a busy loop on a shared machine.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut outcomes = self.ledger.outcomes.lock().unwrap();
            match status {
                200 => {
                    outcomes.ok += 1;
                    let mute = body["result"]["mute"]
                        .as_array()
                        .expect("mute list")
                        .iter()
                        .map(|r| r.as_str().unwrap().to_owned())
                        .collect();
                    self.ledger.entries.lock().unwrap().push(Entry {
                        user,
                        room,
                        op,
                        request_id,
                        mute,
                    });
                }
                503 if retry_after && body["error"]["code"] == "SERVICE_UNAVAILABLE" => {
                    outcomes.unavailable += 1;
                    outcomes.slowest_unavailable = outcomes.slowest_unavailable.max(elapsed);
                }
                _ => outcomes
                    .unexpected
                    .push(format!("{status} after {elapsed:?}: {body}")),
            }
        }
    }
}

/// What the log holds, checked.
#[derive(Debug)]
pub struct Verified {
    pub events: usize,
    pub answered: usize,
}

/// Checks the log and read model of `app` against every 200 in the ledger:
/// - each stream's versions are 1..n, and its version row says n;
/// - the log's reading order, `(transaction_id, position)`, which feeds and audits page
///   by, meets each stream's events in version order, and their `recorded_at` never goes
///   back;
/// - every event changes the state (no duplicate mute or unmute), and no request id
///   appears twice;
/// - the read model (`room_mutes`, in mute order) equals the fold of the log;
/// - every 200 answered a state the log really had: the one right after its own event if
///   it appended one (of its kind and room), else one at some version, with its room
///   muted or not as asked.
pub async fn verify(database_url: &str, app: &str, ledger: &Ledger) -> Verified {
    let (db, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .expect("connect to verify");
    tokio::spawn(conn);
    let rows = db
        .query(
            "SELECT stream_id, stream_version, event_type, data->>'room',
                    metadata->>'requestId'
             FROM events WHERE app_id = $1 ORDER BY stream_id, stream_version",
            &[&app],
        )
        .await
        .unwrap();
    // Per user: the states after each version (index 0: before any event).
    let mut states: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    let mut by_request: HashMap<String, (String, i32, String, String)> = HashMap::new();
    for row in &rows {
        let (user, version, kind, room, request): (String, i32, String, String, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let history = states.entry(user.clone()).or_insert_with(|| vec![vec![]]);
        assert_eq!(
            version as usize,
            history.len(),
            "stream {user} is not contiguous at version {version}"
        );
        let mut state = history.last().unwrap().clone();
        match kind.as_str() {
            "RoomMuted" => {
                assert!(!state.contains(&room), "{user} muted {room} twice in a row");
                state.push(room.clone());
            }
            "RoomUnmuted" => {
                assert!(
                    state.contains(&room),
                    "{user} unmuted {room} while not muted"
                );
                state.retain(|r| *r != room);
            }
            other => panic!("unknown event type {other}"),
        }
        history.push(state);
        if let Some(request) = request {
            let previous = by_request.insert(request.clone(), (user, version, kind, room));
            assert!(previous.is_none(), "request {request} appended twice");
        }
    }
    for (user, history) in &states {
        let head: i32 = db
            .query_one(
                "SELECT version FROM stream_versions
                 WHERE app_id = $1 AND stream_type = 'user_preferences' AND stream_id = $2",
                &[&app, user],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(head as usize, history.len() - 1, "version row of {user}");
        let model: Vec<String> = db
            .query(
                "SELECT room_id FROM room_mutes WHERE app_id = $1 AND client_id = $2
                 ORDER BY position",
                &[&app, user],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(&model, history.last().unwrap(), "read model of {user}");
    }
    let out_of_order: i64 = db
        .query_one(
            "SELECT count(*) FROM (
                 SELECT stream_version, recorded_at,
                        lag(stream_version) OVER reading AS version_before,
                        lag(recorded_at) OVER reading AS recorded_before
                 FROM events WHERE app_id = $1
                 WINDOW reading AS (PARTITION BY stream_id ORDER BY transaction_id, position)
             ) e
             WHERE stream_version <> version_before + 1 OR recorded_at < recorded_before",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        out_of_order, 0,
        "events whose reading order is not their stream's order"
    );
    let orphans: i64 = db
        .query_one(
            "SELECT count(*) FROM room_mutes m WHERE app_id = $1 AND NOT EXISTS (
                 SELECT 1 FROM events e WHERE e.app_id = m.app_id AND e.stream_id = m.client_id)",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0, "read-model rows without events");

    let entries = ledger.entries.lock().unwrap();
    let empty = vec![vec![]];
    for entry in entries.iter() {
        let history = states.get(&entry.user).unwrap_or(&empty);
        let wanted = entry.op == Op::Mute;
        assert_eq!(
            entry.mute.contains(&entry.room),
            wanted,
            "200 for {entry:?} answered the wrong state"
        );
        match by_request.get(&entry.request_id) {
            Some((user, version, kind, room)) => {
                let expected_kind = if wanted { "RoomMuted" } else { "RoomUnmuted" };
                assert_eq!(
                    (user, kind.as_str(), room),
                    (&entry.user, expected_kind, &entry.room),
                    "{entry:?}"
                );
                assert_eq!(&history[*version as usize], &entry.mute, "{entry:?}");
            }
            None => assert!(
                history.contains(&entry.mute),
                "200 for {entry:?} answered a state the log never had"
            ),
        }
    }
    Verified {
        events: rows.len(),
        answered: entries.len(),
    }
}
