use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chatprefs::auth_cache::AuthCache;
use chatprefs::config::{AuthFailureLimit, HttpLimits, ServeSettings};
use chatprefs::domain::AppId;
use chatprefs::feed::live::LiveLimits;
use chatprefs::key_usage::KeyUsage;
use chatprefs::private_cluster::{self, PrivateCluster};
use chatprefs::provision::{self, AppCredentials};
use chatprefs::startup::Application;
use chatprefs::store::{Pool, PoolSettings};
use reqwest::header::HeaderMap;
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
        stream_cache_capacity: 100_000,
        request_deadline: None,
        lock_timeout: Some(Duration::from_secs(2)),
        personal_data_retention_days: 0,
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

    /// Runs the real `chatprefs` binary with these arguments against this database.
    pub async fn cli<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_blocking(self.command(args)).await
    }

    /// The real `chatprefs` binary on this database, to spawn and watch (`serve`, `tail`).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = chatprefs_command(args);
        command.env("DATABASE_URL", &self.url);
        command
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
    auth_cache: Option<Arc<AuthCache>>,
    /// The server's record of API keys used, to flush without waiting a minute.
    pub key_usage: Arc<KeyUsage>,
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
        let auth_cache = application.auth_cache();
        let key_usage = application.key_usage();
        tokio::spawn(application.run_until_stopped());
        let app = provision::create_app(&pool, &AppId::parse("app-a").unwrap())
            .await
            .expect("app created");
        TestApp {
            base,
            http: reqwest::Client::new(),
            pool,
            app,
            auth_cache,
            key_usage,
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

    /// The platform API of the default app: `app.admin_get(path).await.assert_error(..)`.
    pub async fn admin_get(&self, path: &str) -> TestResponse {
        self.admin(&self.app, Method::GET, path).sent().await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> TestResponse {
        self.admin(&self.app, Method::POST, path)
            .json(body)
            .sent()
            .await
    }

    pub async fn admin_delete(&self, path: &str) -> TestResponse {
        self.admin(&self.app, Method::DELETE, path).sent().await
    }

    /// The client API as the holder of `token` in the default app.
    pub async fn client_get(&self, token: &str, path: &str) -> TestResponse {
        self.client(&self.app, token, Method::GET, path)
            .sent()
            .await
    }

    /// A user of the default app, created through the platform API, with a fresh token:
    /// `app.signed_in("u1").await.mute("r1").await.assert_ok()`.
    pub async fn signed_in(&self, id: &str) -> TestUser<'_> {
        TestUser {
            app: self,
            token: self.user(id).await,
        }
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
        let paths = rooms
            .iter()
            .map(|room| format!("/me/mute/{room}"))
            .collect();
        self.spawn_flipper(token, paths, requests, stop, done)
    }

    /// Like [`Self::spawn_room_flipper`], but posting to and deleting these paths: `/me/dnd`
    /// alone pauses and resumes, one event per request.
    pub fn spawn_flipper(
        &self,
        token: &str,
        paths: Vec<String>,
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
                let path = &paths[i % paths.len()];
                let method = if (i / paths.len()).is_multiple_of(2) {
                    Method::POST
                } else {
                    Method::DELETE
                };
                let response = http
                    .request(method, format!("{base}{path}"))
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

    /// [`holding`] on this app's database.
    pub async fn holding(&self, sql: &str) -> tokio_postgres::Client {
        holding(self.database_url(), sql).await
    }

    /// Runs SQL directly: for looking at the log and for breaking things on purpose.
    /// Runs SQL as the owner. A credential changed this way reaches the server's
    /// authentication cache by notice, within a second; this waits until it has, so the
    /// next request sees the change as it would after a second in production.
    pub async fn sql(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let conn = self.pool.get().await.expect("connection");
        let rows = conn.query(sql, &[]).await;
        if let Some(cache) = &self.auth_cache {
            cache.settle().await;
        }
        rows
    }

    /// Runs `during` with `table` renamed away, so that whatever still reads it fails, and
    /// puts it back.
    pub async fn with_table_away<T>(&self, table: &str, during: impl Future<Output = T>) -> T {
        self.sql(&format!("ALTER TABLE {table} RENAME TO {table}_away"))
            .await
            .unwrap();
        let result = during.await;
        self.sql(&format!("ALTER TABLE {table}_away RENAME TO {table}"))
            .await
            .unwrap();
        result
    }

    pub async fn count_events(&self) -> i64 {
        self.sql("SELECT count(*) FROM events").await.unwrap()[0].get(0)
    }

    /// Runs the real `chatprefs` binary with these arguments against this test's database.
    pub async fn cli<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.db.cli(args).await
    }

    /// The real `chatprefs` binary on this test's database, to spawn and watch.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.db.command(args)
    }

    /// Runs `chatprefs-bench` against this test's server as the default app, with these
    /// further arguments.
    pub async fn bench<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(bench_binary());
        command
            .args(["--url", &self.base])
            .args(["--client-key", &self.app.client_key])
            .args(["--api-key", &self.app.api_key])
            .args(args)
            .env("RUST_LOG", "warn");
        run_blocking(command).await
    }
}

/// The real `chatprefs` binary with these arguments, for tests that set up its environment
/// themselves (no database, a database of their own, a signal to send).
pub fn chatprefs_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatprefs"));
    command.args(args).env("RUST_LOG", "warn");
    command
}

/// Runs a command to its end off the test's runtime and keeps what it said.
pub async fn run_blocking(mut command: Command) -> CliOutput {
    let output = tokio::task::spawn_blocking(move || command.output().expect("command runs"))
        .await
        .expect("command thread");
    CliOutput {
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// What a command line run printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "{self:?}");
        self
    }

    #[track_caller]
    pub fn assert_exit_code(&self, code: i32) -> &Self {
        assert_eq!(self.status.code(), Some(code), "{self:?}");
        self
    }

    #[track_caller]
    pub fn assert_stdout_contains(&self, text: &str) -> &Self {
        assert!(self.stdout.contains(text), "no {text:?} in {self:?}");
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) -> &Self {
        assert!(self.stderr.contains(text), "no {text:?} in {self:?}");
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| panic!("{err}: {self:?}"))
    }
}

/// `chatprefs-bench`, built once per test run: it is behind the `bench` feature so that the
/// service does not link it, and Cargo has no feature for tests alone, so a plain
/// `cargo test` builds it here (in the same target directory and profile).
pub fn bench_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args(["build", "--features", "bench", "--bin", "chatprefs-bench"])
            .args(["--message-format", "json-render-diagnostics"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        let output = command.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "building chatprefs-bench failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8 cargo messages")
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|message| message["target"]["name"] == "chatprefs-bench")
            .find_map(|message| message["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the chatprefs-bench executable")
    })
}

/// A user of the test's default app and their token, for the client API.
pub struct TestUser<'a> {
    app: &'a TestApp,
    pub token: String,
}

impl TestUser<'_> {
    pub async fn mute(&self, room: &str) -> TestResponse {
        TestResponse::read(self.app.mute(&self.token, room).await).await
    }

    pub async fn unmute(&self, room: &str) -> TestResponse {
        TestResponse::read(self.app.unmute(&self.token, room).await).await
    }

    /// `GET /me`, asserting the success envelope: the user.
    pub async fn me(&self) -> Value {
        self.app.me(&self.token).await
    }
}

/// Runs `sql` in a transaction of its own on another connection to `database_url` and keeps
/// it open (with whatever it locked) until the returned client is dropped or commits, as a
/// psql session would.
pub async fn holding(database_url: &str, sql: &str) -> tokio_postgres::Client {
    let (locker, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute(&format!("BEGIN; {sql}"))
        .await
        .unwrap();
    locker
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

/// Sends a request and reads its answer whole, so that what follows reads as the test's
/// intent: `request.sent().await.assert_ok()`, `.assert_error(404, "ROOM_NOT_FOUND")`.
pub trait Sent {
    fn sent(self) -> impl std::future::Future<Output = TestResponse> + Send;
}

impl Sent for RequestBuilder {
    async fn sent(self) -> TestResponse {
        TestResponse::read(self.send().await.expect("the request is answered")).await
    }
}

/// An answer read whole: status, headers and body.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl TestResponse {
    pub async fn read(response: Response) -> TestResponse {
        TestResponse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("a body"),
        }
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|err| panic!("{err}: {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{self:?}");
        self
    }

    /// Asserts the IMKIT success envelope and answers `result`, as [`ok_result`].
    #[track_caller]
    pub fn assert_ok(&self) -> Value {
        let body = self.json();
        assert_eq!(self.status, 200, "body: {body}");
        assert_eq!(body["RC"], 0, "body: {body}");
        assert_eq!(body["RM"], "OK");
        body["result"].clone()
    }

    /// Asserts the IMKIT error envelope with this status and code, as [`assert_error`].
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        let body = self.json();
        assert_eq!(self.status, status, "body: {body}");
        assert_eq!(body["RC"], status, "body: {body}");
        assert_eq!(body["error"]["code"], code, "body: {body}");
        assert!(body["RM"].is_string() && body["error"]["message"].is_string());
        body
    }
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
