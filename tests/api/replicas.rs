//! `--read-database-url` against a real streaming replica: the lag-tolerant reads come
//! from it, the rest from the primary, and the primary answers them when it is down.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use chatprefs::domain::AppId;
use chatprefs::provision::{self, AppCredentials};
use chatprefs::startup::Application;

use crate::cluster::Cluster;
use crate::ecosystem::sample;
use crate::helpers::{mutes, test_settings, Sent};
use crate::process::populate;

struct Reader {
    base: String,
    http: reqwest::Client,
    app: AppCredentials,
}

impl Reader {
    async fn get(&self, path: &str) -> Value {
        self.http
            .request(Method::GET, format!("{}{path}", self.base))
            .header("IM-API-KEY", &self.app.api_key)
            .sent()
            .await
            .assert_ok()
    }

    async fn audit_len(&self) -> usize {
        self.get("/admin/audit").await["entries"]
            .as_array()
            .unwrap()
            .len()
    }

    async fn as_of(&self) -> Value {
        self.get("/admin/clients/user-0/mute").await["mute"].clone()
    }

    async fn muters(&self) -> Vec<Value> {
        self.get("/admin/rooms/room-0/mutes").await["clients"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sample(&text, series)
    }
}

async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Waits until the replica has replayed everything the primary has written so far.
async fn caught_up(primary: &tokio_postgres::Client, replica: &tokio_postgres::Client) {
    let target: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replayed: bool = replica
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .await
            .unwrap()
            .get(0);
        if replayed {
            return;
        }
        assert!(Instant::now() < deadline, "replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_reads_come_from_the_replica_writes_and_me_from_the_primary() {
    let started = Instant::now();
    let primary = Cluster::start();
    let replica = tokio::task::block_in_place(|| primary.standby("replica1"));
    let mut settings = test_settings(primary.url("chatprefs_replica"));
    settings.read_database_url = Some(replica.url("chatprefs_replica"));
    let application = Application::build(&settings).await.expect("server builds");
    let base = format!("http://127.0.0.1:{}", application.port());
    let pool = application.pool().clone();
    tokio::spawn(application.run_until_stopped());
    let app = provision::create_app(&pool, &AppId::parse("app-r").unwrap())
        .await
        .unwrap();
    let (users, _) = populate(&base, &app, 1, 1).await;
    let token = &users[0].1;
    let reader = Reader {
        base: base.clone(),
        http: reqwest::Client::new(),
        app: app.clone(),
    };
    let client = |method: Method| {
        reader
            .http
            .request(method, format!("{base}/me/mute/room-0"))
            .header("IM-CLIENT-KEY", &app.client_key)
            .header("IM-Authorization", token)
    };
    let on_primary = sql(&primary.url("chatprefs_replica")).await;
    // Replay position and pausing are the server's, and the database may not have reached
    // the replica yet: ask its `postgres` database.
    let on_replica = sql(&replica.url("postgres")).await;

    client(Method::POST).sent().await.assert_ok();
    caught_up(&on_primary, &on_replica).await;
    assert_eq!(reader.audit_len().await, 1);
    assert_eq!(reader.metric("chatprefs_read_replica_up").await, 1.0);
    assert_eq!(
        reader.metric("chatprefs_read_replica_lag_seconds").await,
        0.0
    );

    // With replay held, the replica stays at "muted" while the primary moves on.
    on_replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let unmuted = client(Method::DELETE).sent().await.assert_ok();
    assert!(mutes(&unmuted).is_empty());
    let me = reader
        .http
        .get(format!("{base}/me"))
        .header("IM-CLIENT-KEY", &app.client_key)
        .header("IM-Authorization", token)
        .sent()
        .await
        .assert_ok();
    assert!(mutes(&me).is_empty(), "GET /me reads its own write");
    let check = reader
        .http
        .post(format!("{base}/admin/rooms/room-0/mutes/check"))
        .header("IM-API-KEY", &app.api_key)
        .json(&serde_json::json!({ "clients": ["user-0"] }))
        .sent()
        .await
        .assert_ok();
    assert_eq!(
        check["muted"],
        serde_json::json!([]),
        "mutes/check is on the primary"
    );
    // Received but not replayed: the replica is behind, and these reads show it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.metric("chatprefs_read_replica_lag_seconds").await == 0.0 {
        assert!(Instant::now() < deadline, "lag never exposed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reader.audit_len().await, 1, "audit reads the replica");
    assert_eq!(reader.as_of().await, serde_json::json!(["room-0"]));
    assert_eq!(reader.muters().await.len(), 1);

    on_replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    caught_up(&on_primary, &on_replica).await;
    assert_eq!(reader.audit_len().await, 2);
    assert_eq!(reader.as_of().await, serde_json::json!([]));
    assert!(reader.muters().await.is_empty());

    // The replica gone: the primary answers its reads, and says so.
    let fallbacks = reader
        .metric("chatprefs_read_replica_fallbacks_total")
        .await;
    tokio::task::block_in_place(|| replica.crash());
    client(Method::POST).sent().await.assert_ok();
    assert_eq!(reader.audit_len().await, 3);
    assert_eq!(reader.as_of().await, serde_json::json!(["room-0"]));
    assert_eq!(reader.muters().await.len(), 1);
    assert_eq!(reader.metric("chatprefs_read_replica_up").await, 0.0);
    assert!(
        reader
            .metric("chatprefs_read_replica_fallbacks_total")
            .await
            >= fallbacks + 3.0
    );
    eprintln!("replica test took {:?}", started.elapsed());
}
