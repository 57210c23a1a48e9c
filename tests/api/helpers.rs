use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chatprefs::config::{AuthFailureLimit, HttpLimits, ServeSettings};
use chatprefs::domain::AppId;
use chatprefs::feed::live::LiveLimits;
use chatprefs::private_cluster::{self, PrivateCluster};
use chatprefs::provision::{self, AppCredentials};
use chatprefs::startup::Application;
use chatprefs::store::{Pool, PoolSettings};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// The server the tests create their databases on: `TEST_DATABASE_SERVER`, else the one at
/// 127.0.0.1:5432 (trust auth as superuser), else, on a machine with PostgreSQL's binaries
/// and no server running, a private one (the same `serve --demo` starts), started once per
/// test run and stopped when the run ends.
pub fn server_url() -> String {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("TEST_DATABASE_SERVER") {
                return url;
            }
            let shared = "postgres://postgres@127.0.0.1:5432";
            if private_cluster::answers_at(shared) {
                return shared.to_owned();
            }
            let binaries = private_cluster::find_binaries().expect(
                "nothing answers at 127.0.0.1:5432 and no PostgreSQL binaries were found to \
                 start a server: install PostgreSQL, or set TEST_DATABASE_SERVER",
            );
            let dir = std::env::temp_dir().join("chatprefs-tests-pg");
            let cluster = PrivateCluster::start(&binaries, &dir).expect("private PostgreSQL");
            eprintln!("tests use the private PostgreSQL in {}", dir.display());
            let url = cluster.server_url();
            // Kept for the whole run: its server stops when this process ends.
            std::mem::forget(cluster);
            url
        })
        .clone()
}

pub fn test_settings(database_url: String) -> ServeSettings {
    ServeSettings {
        database_url,
        read_database_url: None,
        bind: "127.0.0.1:0".into(),
        pool: PoolSettings {
            max_size: 8,
            timeout: Duration::from_secs(5),
        },
        workers: Some(2),
        trusted_proxies: Vec::new(),
        shutdown_timeout_secs: 1,
        cors_origins: Vec::new(),
        limits: HttpLimits::default(),
        auth_failures: AuthFailureLimit::default(),
        live_streams: LiveLimits::default(),
        feed_poll_interval: Duration::from_millis(100),
        feed_max_wait: Duration::from_secs(30),
        auth_cache: chatprefs::config::AuthCacheSettings::default(),
        request_deadline: None,
    }
}

/// A database that is dropped (with its connections) when this value is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn new() -> Self {
        let name = format!("chatprefs_test_{}", uuid::Uuid::new_v4().simple());
        let url = format!("{}/{}", server_url(), name);
        TestDatabase { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = format!("{}/postgres", server_url());
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread of its
        // own with its own runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client.batch_execute(&sql).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub pool: Pool,
    pub app: AppCredentials,
    /// Its `Drop` removes the database when the test ends.
    db: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server with settings changed from the tests' defaults.
    pub async fn spawn_with(configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        let db = TestDatabase::new();
        let mut settings = test_settings(db.url.clone());
        configure(&mut settings);
        let application = Application::build(&settings).await.expect("server builds");
        let base = format!("http://127.0.0.1:{}", application.port());
        let pool = application.pool().clone();
        tokio::spawn(application.run_until_stopped());
        let app = provision::create_app(&pool, &AppId::parse("app-a").unwrap())
            .await
            .expect("app created");
        TestApp {
            base,
            http: reqwest::Client::new(),
            pool,
            app,
            db,
        }
    }

    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    pub async fn create_app(&self, id: &str) -> AppCredentials {
        provision::create_app(&self.pool, &AppId::parse(id).unwrap())
            .await
            .expect("app created")
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{}", self.base, path))
    }

    pub fn admin(&self, app: &AppCredentials, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path)
            .header("IM-API-KEY", &app.api_key)
    }

    pub fn client(
        &self,
        app: &AppCredentials,
        token: &str,
        method: Method,
        path: &str,
    ) -> RequestBuilder {
        self.request(method, path)
            .header("IM-CLIENT-KEY", &app.client_key)
            .header("IM-Authorization", token)
    }

    /// Creates a user of `app` through the platform API and answers a fresh token.
    pub async fn user_of(&self, app: &AppCredentials, id: &str) -> String {
        let body = self
            .admin(app, Method::POST, "/admin/clients")
            .json(&json!({ "_id": id, "nickname": format!("Nick {id}"), "email": format!("{id}@example.com"), "avatarUrl": "https://example.com/a.png", "issueAccessToken": true }))
            .send()
            .await
            .unwrap();
        let body = ok_result(body).await;
        body["token"].as_str().expect("token issued").to_owned()
    }

    pub async fn user(&self, id: &str) -> String {
        self.user_of(&self.app.clone(), id).await
    }

    pub async fn room_of(&self, app: &AppCredentials, id: &str) {
        let response = self
            .admin(app, Method::POST, "/rooms")
            .json(&json!({ "_id": id, "name": format!("Room {id}") }))
            .send()
            .await
            .unwrap();
        ok_result(response).await;
    }

    pub async fn room(&self, id: &str) {
        self.room_of(&self.app.clone(), id).await
    }

    pub async fn mute(&self, token: &str, room: &str) -> Response {
        self.client(&self.app, token, Method::POST, &format!("/me/mute/{room}"))
            .send()
            .await
            .unwrap()
    }

    pub async fn unmute(&self, token: &str, room: &str) -> Response {
        self.client(
            &self.app,
            token,
            Method::DELETE,
            &format!("/me/mute/{room}"),
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn me(&self, token: &str) -> Value {
        let response = self
            .client(&self.app, token, Method::GET, "/me")
            .send()
            .await
            .unwrap();
        ok_result(response).await
    }

    /// User u1 mutes room r1 from a mobile SDK (request id `req-client`), then the app's
    /// backend unmutes it for them (`req-admin`): two events with distinct provenance.
    pub async fn mute_as_client_then_unmute_as_admin(&self) {
        let token = self.user("u1").await;
        self.room("r1").await;
        let requests = [
            self.client(&self.app, &token, Method::POST, "/me/mute/r1")
                .header("User-Agent", "MobileSDK/3.2")
                .header("X-Request-Id", "req-client"),
            self.admin(&self.app, Method::DELETE, "/admin/clients/u1/mute/r1")
                .header("User-Agent", "backend/1.0")
                .header("X-Request-Id", "req-admin"),
        ];
        for request in requests {
            ok_result(request.send().await.unwrap()).await;
        }
    }

    /// A writer that flips `rooms` for one user through the client API, one request at a
    /// time (mute each, then unmute each, and so on: every request appends one event),
    /// `requests` times or until `stop`. Counts each answer in `done`; answers the ones that
    /// were not 200.
    pub fn spawn_room_flipper(
        &self,
        token: &str,
        rooms: &'static [&'static str],
        requests: usize,
        stop: Arc<AtomicBool>,
        done: Arc<AtomicUsize>,
    ) -> JoinHandle<Vec<String>> {
        let (http, base, key, token) = (
            self.http.clone(),
            self.base.clone(),
            self.app.client_key.clone(),
            token.to_owned(),
        );
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..requests {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let room = rooms[i % rooms.len()];
                let method = if (i / rooms.len()).is_multiple_of(2) {
                    Method::POST
                } else {
                    Method::DELETE
                };
                let response = http
                    .request(method, format!("{base}/me/mute/{room}"))
                    .header("IM-CLIENT-KEY", &key)
                    .header("IM-Authorization", &token)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures.push(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => failures.push(e.to_string()),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            failures
        })
    }

    /// Runs SQL directly: for looking at the log and for breaking things on purpose.
    pub async fn sql(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let conn = self.pool.get().await.expect("connection");
        conn.query(sql, &[]).await
    }

    pub async fn count_events(&self) -> i64 {
        self.sql("SELECT count(*) FROM events").await.unwrap()[0].get(0)
    }
}

/// Holds a transaction that holds a transaction id open on another database of the same
/// server, as a migration or a batch job elsewhere would, until dropped.
pub async fn open_transaction_elsewhere() -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let url = format!("{}/postgres", server_url());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .unwrap();
    (client, driver)
}

/// Asserts the IMKIT success envelope and answers `result`.
pub async fn ok_result(response: Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["RC"], 0, "body: {body}");
    assert_eq!(body["RM"], "OK");
    body["result"].clone()
}

/// Asserts the IMKIT error envelope with this status and code.
pub async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(actual, status, "body: {body}");
    assert_eq!(body["RC"], status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["RM"].is_string() && body["error"]["message"].is_string());
    body
}

pub fn mutes(user: &Value) -> Vec<String> {
    user["mute"]
        .as_array()
        .expect("mute is an array")
        .iter()
        .map(|r| r.as_str().expect("room ids are strings").to_owned())
        .collect()
}
