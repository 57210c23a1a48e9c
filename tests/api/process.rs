//! `chatprefs serve` as a separate process: for faults that need one (kill it, signal it,
//! run two).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{chatprefs_command, Sent};
use chatprefs::provision::AppCredentials;

/// A running `serve`, killed when dropped. Its JSON log lines arrive on `log`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: Receiver<Value>,
}

impl Server {
    /// Starts `serve` on a free loopback port and waits for its "listening" line.
    pub fn start(database_url: &str, extra: &[&str]) -> Server {
        let mut child =
            chatprefs_command(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
                .args(extra)
                .env("DATABASE_URL", database_url)
                .env("RUST_LOG", "info,tracing_actix_web=error")
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("serve starts");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let entry = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(entry).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let entry = log
                .recv_timeout(left)
                .expect("serve logs that it is listening within 30 s");
            if entry["fields"]["message"] == "chatprefs is listening" {
                break entry["fields"]["port"].as_u64().expect("a port") as u16;
            }
        };
        Server { child, port, log }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with the pid of a child we own and have not reaped yet.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chatprefs app create` through the binary, as an operator would.
pub fn create_app(database_url: &str, app: &str) -> AppCredentials {
    let output = chatprefs_command(["app", "create", app, "--json"])
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let keys: Value = serde_json::from_slice(&output.stdout).unwrap();
    AppCredentials {
        app_id: app.to_owned(),
        client_key: keys["clientKey"].as_str().unwrap().to_owned(),
        api_key: keys["apiKey"].as_str().unwrap().to_owned(),
    }
}

/// Creates (or updates) user `id` through the platform API at `base` and answers a fresh
/// token.
pub async fn issue_token(base: &str, api_key: &str, id: &str) -> String {
    reqwest::Client::new()
        .post(format!("{base}/admin/clients"))
        .header("IM-API-KEY", api_key)
        .json(&serde_json::json!({ "_id": id, "issueAccessToken": true }))
        .sent()
        .await
        .assert_ok()["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

/// Users (each with a token) and rooms, set up through the platform API at `base`.
pub async fn populate(
    base: &str,
    app: &AppCredentials,
    users: usize,
    rooms: usize,
) -> (Vec<(String, String)>, Vec<String>) {
    let http = reqwest::Client::new();
    let mut issued = Vec::new();
    for i in 0..users {
        let id = format!("user-{i}");
        let token = issue_token(base, &app.api_key, &id).await;
        issued.push((id, token));
    }
    let mut names = Vec::new();
    for i in 0..rooms {
        let id = format!("room-{i}");
        http.post(format!("{base}/rooms"))
            .header("IM-API-KEY", &app.api_key)
            .json(&serde_json::json!({ "_id": id }))
            .sent()
            .await
            .assert_ok();
        names.push(id);
    }
    (issued, names)
}
