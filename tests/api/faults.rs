//! Faults injected for real: two instances on one database, PostgreSQL crashed and
//! restarted under load, the service killed with SIGKILL under load, SIGTERM with a
//! request in flight. Each load keeps a ledger of every 200 and checks it against the log
//! and the read model afterwards (see `ledger::verify`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Cluster;
use chatprefs::startup::Application;

use crate::helpers::{
    assert_error, holding, mutes, ok_result, test_settings, Sent, TestApp, TestDatabase,
};
use crate::ledger::{self, Ledger, Load};
use crate::process::{create_app, populate, Server};
use reqwest::Method;

fn load(
    targets: Vec<String>,
    users: Vec<(String, String)>,
    rooms: Vec<String>,
    client_key: &str,
) -> Arc<Load> {
    Arc::new(Load {
        targets: Arc::new(RwLock::new(targets)),
        users,
        rooms,
        client_key: client_key.to_owned(),
        ledger: Arc::new(Ledger::default()),
        stop: Arc::new(AtomicBool::new(false)),
    })
}

/// GET /me at `base` for every user equals the read model's fold check already done:
/// here it must equal what the other instance answers.
async fn me_at(base: &str, client_key: &str, token: &str) -> Vec<String> {
    let response = reqwest::Client::new()
        .get(format!("{base}/me"))
        .header("IM-CLIENT-KEY", client_key)
        .header("IM-Authorization", token)
        .send()
        .await
        .unwrap();
    mutes(&ok_result(response).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_lose_no_update_and_duplicate_no_event() {
    let db = TestDatabase::new();
    let app = create_app(&db.url, "two");
    // Started together, they also race to migrate (the advisory lock serialises them).
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| Server::start(&db.url, &["--workers", "1"]));
        let two = s.spawn(|| Server::start(&db.url, &["--workers", "1"]));
        (one.join().unwrap(), two.join().unwrap())
    });
    let (users, rooms) = populate(&one.base(), &app, 3, 3).await;
    let load = load(
        vec![one.base(), two.base()],
        users.clone(),
        rooms,
        &app.client_key,
    );

    Arc::clone(&load).run(8, 40, Duration::from_secs(60)).await;

    let outcomes = load.ledger.outcomes.lock().unwrap().clone();
    assert!(outcomes.unexpected.is_empty(), "{:?}", outcomes.unexpected);
    assert_eq!(outcomes.connection_errors + outcomes.unavailable, 0);
    let verified = ledger::verify(&db.url, "two", &load.ledger).await;
    assert_eq!(verified.answered, 320);
    assert!(verified.events > 0);
    for (_, token) in &users {
        assert_eq!(
            me_at(&one.base(), &app.client_key, token).await,
            me_at(&two.base(), &app.client_key, token).await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_under_load_answers_503_fast_and_recovers_by_itself() {
    let started = Instant::now();
    let cluster = Cluster::start();
    eprintln!("private cluster up in {:?}", started.elapsed());
    let url = cluster.url("chatprefs_fault");
    let app = create_app(&url, "crash");
    let server = Server::start(&url, &["--workers", "2", "--pool-timeout-ms", "1000"]);
    let (users, rooms) = populate(&server.base(), &app, 4, 3).await;
    let load = load(vec![server.base()], users, rooms, &app.client_key);
    let running = tokio::spawn(Arc::clone(&load).run(4, 100_000, Duration::from_secs(60)));

    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_crash = load.ledger.outcomes.lock().unwrap().ok;
    tokio::task::block_in_place(|| cluster.crash());
    let crashed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = {
        let outcomes = load.ledger.outcomes.lock().unwrap().clone();
        (outcomes.ok, outcomes.unavailable)
    };
    let restarted = Instant::now();
    tokio::task::block_in_place(|| cluster.up());
    let accepting = restarted.elapsed();
    // Recovery: the first 200 after the restart, within a generous deadline.
    let recovered = loop {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "no 200 within 30 s of the restart"
        );
        if load.ledger.outcomes.lock().unwrap().ok > during.0 {
            break restarted.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    load.stop.store(true, Ordering::Relaxed);
    running.await.unwrap();

    let outcomes = load.ledger.outcomes.lock().unwrap().clone();
    eprintln!(
        "down {:?}: {} answered 503, slowest {:?}; PostgreSQL accepting {accepting:?} and first 200 {recovered:?} after the restart began; {} 200s in all",
        restarted - crashed,
        outcomes.unavailable,
        outcomes.slowest_unavailable,
        outcomes.ok
    );
    assert!(before_crash > 0, "load was running before the crash");
    assert!(during.1 > 0, "requests during the outage were answered 503");
    assert!(outcomes.unexpected.is_empty(), "{:?}", outcomes.unexpected);
    assert_eq!(
        outcomes.connection_errors, 0,
        "the service itself stayed up"
    );
    // Bounded by the pool timeout (1 s), plus generous slack for a loaded machine.
    assert!(
        outcomes.slowest_unavailable < Duration::from_secs(5),
        "{:?}",
        outcomes.slowest_unavailable
    );
    ledger::verify(&url, "crash", &load.ledger).await;
}

/// A database that accepts connections and never answers (a hung server, a black-holed
/// network): requests still end, 503 within the configured pool timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_never_answers_is_503_within_the_pool_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        // Hold every connection open without a byte; bounded, the test needs a handful.
        let held: Vec<_> = silent.incoming().take(64).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    let mut settings = test_settings(format!("postgres://postgres@127.0.0.1:{port}/none"));
    settings.pool.timeout = Duration::from_millis(500);
    let application = Application::start(&settings).expect("starts without a database");
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let http = reqwest::Client::new();

    for _ in 0..3 {
        let started = Instant::now();
        let response = http
            .get(format!("{base}/me"))
            .header("IM-CLIENT-KEY", "k")
            .header("IM-Authorization", "t")
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("answered, not hung");
        let took = started.elapsed();
        assert_eq!(response.headers()["retry-after"], "1");
        assert_error(response, 503, "SERVICE_UNAVAILABLE").await;
        eprintln!("503 after {took:?} with a pool timeout of 500 ms");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_then_restart_keeps_every_answered_write() {
    let db = TestDatabase::new();
    let app = create_app(&db.url, "killed");
    let first = Server::start(&db.url, &["--workers", "2"]);
    let (users, rooms) = populate(&first.base(), &app, 4, 3).await;
    let load = load(vec![first.base()], users.clone(), rooms, &app.client_key);
    let running = tokio::spawn(Arc::clone(&load).run(6, 100_000, Duration::from_secs(60)));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(first); // SIGKILL, mid-request
    let killed_at = load.ledger.outcomes.lock().unwrap().ok;
    let second = Server::start(&db.url, &["--workers", "2"]);
    *load.targets.write().unwrap() = vec![second.base()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.ledger.outcomes.lock().unwrap().ok < killed_at + 50 {
        assert!(Instant::now() < deadline, "no progress after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    running.await.unwrap();

    let outcomes = load.ledger.outcomes.lock().unwrap().clone();
    eprintln!(
        "{} 200s, {} connection errors around the kill",
        outcomes.ok, outcomes.connection_errors
    );
    assert!(outcomes.unexpected.is_empty(), "{:?}", outcomes.unexpected);
    ledger::verify(&db.url, "killed", &load.ledger).await;
    // The read model the restarted instance serves is the fold checked above.
    for (_, token) in &users {
        me_at(&second.base(), &app.client_key, token).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_finishes_in_flight_requests_and_exits_0() {
    let db = TestDatabase::new();
    let app = create_app(&db.url, "term");
    // The lock below is held longer than the default lock timeout would let a request wait.
    let mut server = Server::start(
        &db.url,
        &[
            "--workers",
            "1",
            "--shutdown-timeout-secs",
            "10",
            "--lock-timeout-ms",
            "30000",
        ],
    );
    let (users, _) = populate(&server.base(), &app, 1, 2).await;
    let token = users[0].1.clone();
    let http = reqwest::Client::new();
    let mute = |room: &'static str| {
        http.post(format!("{}/me/mute/{room}", server.base()))
            .header("IM-CLIENT-KEY", &app.client_key)
            .header("IM-Authorization", &token)
            .header("Connection", "close")
            .send()
    };
    ok_result(mute("room-0").await.unwrap()).await;

    // Hold the user's stream lock, so the next mute waits inside its transaction.
    let sql = holding(
        &db.url,
        "SELECT version FROM stream_versions WHERE stream_id = 'user-0' FOR UPDATE",
    )
    .await;
    let in_flight = tokio::spawn(mute("room-1"));
    let waiting = Instant::now();
    loop {
        let blocked: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if blocked > 0 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "mute never blocked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    server.signal(libc::SIGTERM);
    let stopping = Instant::now();
    let address = format!("127.0.0.1:{}", server.port);
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "still accepting connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the in-flight request is still held"
    );
    sql.batch_execute("COMMIT").await.unwrap();

    let answered = in_flight
        .await
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(mutes(&ok_result(answered).await), ["room-0", "room-1"]);
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(15)))
        .expect("exits within the shutdown timeout");
    assert_eq!(status.code(), Some(0));
    eprintln!("exited {:?} after SIGTERM", stopping.elapsed());
    let logged: Vec<Value> = server.log.try_iter().collect();
    assert!(logged
        .iter()
        .any(|l| l["fields"]["message"] == "chatprefs stopped"));
    let events: i64 = sql
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 2);
}

/// A transaction left open on one user's stream (in psql, or by an instance frozen inside
/// one) costs that user 503s once the lock timeout passes, and costs no one else anything:
/// the user's piled-up requests wait for their turn without holding the pool's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_on_one_users_stream_answers_them_503_and_leaves_the_others_served() {
    let lock_timeout = Duration::from_secs(2);
    let app = TestApp::spawn_with(|s| {
        s.workers = Some(1);
        s.pool.max_size = 2;
        s.lock_timeout = Some(lock_timeout);
    })
    .await;
    let (stuck, other) = (app.signed_in("stuck").await, app.signed_in("other").await);
    app.room("r1").await;
    app.room("r2").await;
    stuck.mute("r1").await.assert_ok();

    let locker = app
        .holding("SELECT version FROM stream_versions WHERE stream_id = 'stuck' FOR UPDATE")
        .await;
    let piled: Vec<_> = (0..8)
        .map(|_| {
            let request = app.client(&app.app, &stuck.token, Method::POST, "/me/mute/r2");
            tokio::spawn(request.sent())
        })
        .collect();

    for _ in 0..3 {
        let start = Instant::now();
        other.mute("r1").await.assert_ok();
        other.unmute("r1").await.assert_ok();
        assert!(
            start.elapsed() < lock_timeout / 2,
            "another user's requests wait for no lock: {:?}",
            start.elapsed()
        );
    }
    for answer in piled {
        let answer = answer.await.unwrap();
        answer.assert_error(503, "SERVICE_UNAVAILABLE");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }

    locker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(mutes(&stuck.mute("r2").await.assert_ok()), ["r1", "r2"]);
    let appended = app
        .sql("SELECT count(*) FROM events WHERE stream_id = 'stuck'")
        .await
        .unwrap()[0]
        .get::<_, i64>(0);
    assert_eq!(appended, 2, "the refused requests appended nothing");
}
