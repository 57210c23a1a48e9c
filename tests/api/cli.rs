//! The binary as an operator or a newcomer runs it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::helpers::{chatprefs_command, mutes, Sent, TestDatabase};

#[tokio::test]
async fn app_create_prints_keys_once_and_refuses_a_duplicate() {
    let db = TestDatabase::new();

    let keys = db
        .cli(["app", "create", "shop", "--json"])
        .await
        .assert_success()
        .json();
    assert_eq!(keys["appID"], "shop");
    assert_eq!(keys["apiKey"].as_str().unwrap().len(), 64);
    assert_eq!(keys["clientKey"].as_str().unwrap().len(), 32);

    let again = db.cli(["app", "create", "shop"]).await;
    assert!(!again.status.success());
    again.assert_stderr_contains("exists already");
}

/// Client sign-in is an operator's choice per app: off by default, on with
/// `app create --allow-client-sign-in`, and switched for an existing app.
#[tokio::test]
async fn client_sign_in_is_switched_per_app_from_the_command_line() {
    let db = TestDatabase::new();
    db.cli(["app", "create", "open", "--allow-client-sign-in"])
        .await
        .assert_success();
    db.cli(["app", "create", "closed"]).await.assert_success();
    db.cli(["app", "client-sign-in", "open", "off"])
        .await
        .assert_success()
        .assert_stdout_contains("client sign-in is off");
    db.cli(["app", "client-sign-in", "closed", "on"])
        .await
        .assert_success();
    let missing = db.cli(["app", "client-sign-in", "nobody", "on"]).await;
    assert!(!missing.status.success());
    missing.assert_stderr_contains("there is no app nobody");

    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT app_id, client_sign_in FROM apps ORDER BY app_id",
            &[],
        )
        .await
        .unwrap();
    let states: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        states,
        [("closed".to_owned(), true), ("open".to_owned(), false)]
    );
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's first command: `serve --demo` must print a `curl` that works as printed, and
/// a link to the support console that opens its sign-in page.
#[tokio::test]
async fn serve_demo_prints_a_curl_that_mutes_the_demo_room_and_a_console_link() {
    let db = TestDatabase::new();
    let mut child = Killed(
        chatprefs_command(["serve", "--demo", "--bind", "127.0.0.1:0", "--workers", "1"])
            .env("DATABASE_URL", &db.url)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (found_curl, curl) = tokio::sync::oneshot::channel();
    let (found_console, console) = tokio::sync::oneshot::channel();
    // Keep draining stdout after the lines are found, as a terminal would.
    std::thread::spawn(move || {
        let (mut found_curl, mut found_console) = (Some(found_curl), Some(found_console));
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line = line.trim().to_owned();
            if line.starts_with("curl -X POST") {
                if let Some(found) = found_curl.take() {
                    let _ = found.send(line);
                }
            } else if line.starts_with("http") && line.ends_with("/console") {
                if let Some(found) = found_console.take() {
                    let _ = found.send(line);
                }
            }
        }
    });
    let curl = curl.await.expect("a curl line");

    // Follow the printed command: its URL and its two quoted headers.
    let quoted: Vec<&str> = curl.split('\'').skip(1).step_by(2).collect();
    let [url, client_key, token] = quoted[..] else {
        panic!("unexpected curl line: {curl}");
    };
    let header = |h: &str| h.split_once(": ").unwrap().1.to_owned();
    let user = reqwest::Client::new()
        .post(url)
        .header("IM-CLIENT-KEY", header(client_key))
        .header("IM-Authorization", header(token))
        .sent()
        .await
        .assert_ok();
    assert_eq!(user["_id"], "demo-user");
    assert_eq!(mutes(&user), ["demo-room"]);

    let console = console.await.expect("a console link");
    let page = reqwest::get(&console).await.unwrap();
    assert_eq!(page.status(), 200, "{console}");
    assert!(page.text().await.unwrap().contains("API key"));
    drop(child);
}

#[tokio::test]
async fn migrate_creates_the_database_and_is_repeatable() {
    let db = TestDatabase::new();
    for _ in 0..2 {
        db.cli(["migrate"]).await.assert_success();
    }
}
