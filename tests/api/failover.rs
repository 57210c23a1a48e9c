//! Failover with PostgreSQL's own machinery: a primary with a synchronous streaming
//! standby, a multi-host `DATABASE_URL` with `target_session_attrs=read-write`, the primary
//! crashed under load and the standby promoted. The service must follow by itself and
//! lose no acknowledged write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::ledger::{self, Ledger, Load};
use crate::process::{create_app, populate, Server};

/// Waits until `primary` reports `standby` as its synchronous standby.
async fn wait_until_synchronous(primary: &Cluster, standby: &str) {
    let (sql, conn) = tokio_postgres::connect(&primary.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Option<String> = sql
            .query_opt(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                &[&standby],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        if state.as_deref() == Some("sync") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "standby not synchronous: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the ledger counts more 200s than `than`; answers when.
async fn first_200_after(ledger: &Ledger, than: usize, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if ledger.outcomes.lock().unwrap().ok > than {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no 200 within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_crash_and_promotion_lose_no_acknowledged_write_and_need_no_restart() {
    let started = Instant::now();
    let primary = Cluster::start_synchronous_primary("standby1");
    let standby = tokio::task::block_in_place(|| primary.standby("standby1"));
    wait_until_synchronous(&primary, "standby1").await;
    eprintln!(
        "primary and synchronous standby up in {:?}",
        started.elapsed()
    );
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/chatprefs_failover?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let app = create_app(&url, "failover");
    let server = Server::start(&url, &["--workers", "2", "--pool-timeout-ms", "1000"]);
    let (users, rooms) = populate(&server.base(), &app, 4, 3).await;
    let load = Arc::new(Load {
        targets: Arc::new(RwLock::new(vec![server.base()])),
        users,
        rooms,
        client_key: app.client_key.clone(),
        ledger: Arc::new(Ledger::default()),
        stop: Arc::new(AtomicBool::new(false)),
    });
    let running = tokio::spawn(Arc::clone(&load).run(4, 100_000, Duration::from_secs(90)));

    tokio::time::sleep(Duration::from_millis(800)).await;
    tokio::task::block_in_place(|| primary.crash());
    let crashed = Instant::now();
    let ok_at_crash = load.ledger.outcomes.lock().unwrap().ok;
    // A failover manager (pg_auto_failover, Patroni) promotes after noticing the loss; the
    // second here stands in for its detection time and lets requests meet the outage.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let unavailable_before_promotion = load.ledger.outcomes.lock().unwrap().unavailable;
    let promoting = Instant::now();
    tokio::task::block_in_place(|| standby.promote());
    let promoted = Instant::now();
    let first_200 = first_200_after(&load.ledger, ok_at_crash, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    load.stop.store(true, Ordering::Relaxed);
    running.await.unwrap();

    let outcomes = load.ledger.outcomes.lock().unwrap().clone();
    eprintln!(
        "crash to first 200: {:?} (promotion began 1 s after the crash; from then to the \
         first 200: {:?}, pg_ctl promote -w took {:?}); {} answered 503, slowest {:?}; \
         {} 200s in all; test took {:?}",
        first_200 - crashed,
        first_200 - promoting,
        promoted - promoting,
        outcomes.unavailable,
        outcomes.slowest_unavailable,
        outcomes.ok,
        started.elapsed()
    );
    assert!(ok_at_crash > 0, "load was running before the crash");
    assert!(
        unavailable_before_promotion > 0,
        "requests during the outage were answered 503 with Retry-After"
    );
    assert!(outcomes.unexpected.is_empty(), "{:?}", outcomes.unexpected);
    assert_eq!(outcomes.connection_errors, 0, "the service stayed up");
    assert!(
        outcomes.slowest_unavailable < Duration::from_secs(5),
        "{:?}",
        outcomes.slowest_unavailable
    );
    assert!(
        outcomes.ok > ok_at_crash + 10,
        "the service kept serving on the new primary"
    );
    // Every acknowledged write is on the promoted standby, and its read model is the fold.
    ledger::verify(&standby.url("chatprefs_failover"), "failover", &load.ledger).await;
}
