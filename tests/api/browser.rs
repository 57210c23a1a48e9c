//! Issue 16, item 3: the console in a real browser, headless Chromium driven over
//! WebDriver (chromedriver on a free port): sign in, find a user, the timeline against the
//! audit API, as-of, the CSV, hostile strings shown as text, live rows, no write reachable.
//! With `CHATPREFS_SCREENSHOT=1` it saves the timeline to `docs/console-timeline.png`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{header, Method};
use serde_json::{json, Value};

use crate::console::{hostile_user, urlencode, HOSTILE_ID, RTL_ROOM, SCRIPT_AGENT, SCRIPT_NICK};
use crate::helpers::{Sent, TestApp};

/// A chromedriver this test started, stopped (by its own pid) when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn binary() -> Option<PathBuf> {
        let named = std::env::var_os("CHROMEDRIVER").map(PathBuf::from);
        let found = named.into_iter().chain(
            std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join("chromedriver"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
        found.into_iter().find(|p| p.is_file())
    }

    fn start(binary: &PathBuf) -> Chromedriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Chromedriver { child, port }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

async fn browser(driver: &Chromedriver, chromium: &PathBuf) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1500,1000", "--lang=en-US"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// Runs `script` in the page and answers what it passed to its callback.
async fn run_async(client: &Client, script: &str) -> Value {
    client
        .execute_async(script, vec![])
        .await
        .expect("the script runs")
}

/// The elements' texts as WebDriver renders them. The live refresh may swap the table
/// between finding the elements and reading them: then they are found again.
async fn texts(client: &Client, css: &str) -> Vec<String> {
    for _ in 0..10 {
        match read_texts(client, css).await {
            Err(CmdError::Standard(e)) if e.error == ErrorStatus::StaleElementReference => {}
            read => return read.unwrap(),
        }
    }
    panic!("{css} went stale ten times in a row")
}

async fn read_texts(client: &Client, css: &str) -> Result<Vec<String>, CmdError> {
    let mut out = Vec::new();
    for element in client.find_all(Locator::Css(css)).await? {
        out.push(element.text().await?);
    }
    Ok(out)
}

/// The timeline's rows by position, read in one script: the live refresh may swap the
/// table between two WebDriver commands.
async fn positions(client: &Client) -> Vec<i64> {
    let read = client
        .execute(
            "return Array.from(document.querySelectorAll('#timeline tbody tr'), r => Number(r.dataset.position))",
            vec![],
        )
        .await
        .expect("the script runs");
    serde_json::from_value(read).unwrap()
}

#[tokio::test]
async fn the_console_works_in_headless_chromium() {
    let (Some(driver_binary), Some(chromium)) = (Chromedriver::binary(), chromium()) else {
        eprintln!(
            "\n=====================================================================\n\
             SKIPPED: no chromium — the console's browser test did not run.\n\
             Install Debian's `chromium` and `chromium-driver` (.ci/run does).\n\
             =====================================================================\n"
        );
        return;
    };
    let app = TestApp::spawn().await;
    hostile_user(&app).await;
    for room in ["general", "random", "launch"] {
        app.room(room).await;
    }
    let user = app.signed_in("u1").await;
    for room in ["general", "random", "launch", "random"] {
        user.mute(room).await.assert_ok();
    }
    user.unmute("random").await.assert_ok();
    let key = app
        .cli([
            "app", "key", "create", "--app", "app-a", "--role", "support", "--name", "alice",
            "--json",
        ])
        .await;
    key.assert_success();
    let key = key.json()["apiKey"].as_str().unwrap().to_owned();

    let driver = Chromedriver::start(&driver_binary);
    let client = browser(&driver, &chromium).await;
    let result = drive(&app, &client, &key).await;
    if result.is_err() {
        let url = client.current_url().await.map(|u| u.to_string());
        let source = client.source().await.unwrap_or_default();
        eprintln!("the browser was at {url:?} showing:\n{source}");
    }
    let _ = client.close().await;
    result.expect("the browser session");
}

async fn drive(app: &TestApp, c: &Client, key: &str) -> Result<(), fantoccini::error::CmdError> {
    let base = &app.base;
    // Sign in with the keyboard: the label names the field, Enter submits the form.
    c.goto(&format!("{base}/console")).await?;
    let field = c.find(Locator::Css("label[for=key] + input#key")).await?;
    field.send_keys(&format!("{key}\u{E007}")).await?;
    c.wait()
        .for_element(Locator::Css("header form[action='/console/sign-out']"))
        .await?;
    assert!(c.source().await?.contains("support key"));
    assert!(
        !c.current_url().await?.as_str().contains(key),
        "the key is never in a URL"
    );
    let cookie = c.get_named_cookie("chatprefs_console").await?;
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.path(), Some("/console"));
    let stored = run_async(
        c,
        "arguments[0]([document.cookie, JSON.stringify(localStorage)])",
    )
    .await;
    assert_eq!(
        stored,
        json!(["", "{}"]),
        "no script can read the session, nothing stored"
    );

    // Find a user: the timeline is the audit API's page for that user.
    c.find(Locator::Id("user-id"))
        .await?
        .send_keys("u1")
        .await?;
    c.find(Locator::Css("form[action='/console/user'] button"))
        .await?
        .click()
        .await?;
    c.wait()
        .for_element(Locator::Css("#timeline tbody tr"))
        .await?;
    let audit = app.admin_get("/admin/audit?client=u1").await.assert_ok();
    let expected: Vec<i64> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions(c).await, expected);
    let first = &audit["entries"][0];
    let cells = texts(c, "#timeline tbody tr:first-child td").await;
    assert_eq!(cells[1], "RoomMuted");
    assert_eq!(cells[2], "general");
    assert_eq!(cells[4], first["actor"]["kind"].as_str().unwrap());
    assert_eq!(cells[5], first["actor"]["id"].as_str().unwrap());
    assert_eq!(cells[8], first["requestId"].as_str().unwrap());
    assert_eq!(texts(c, "#mutes li a").await, ["general", "launch"]);

    if std::env::var_os("CHATPREFS_SCREENSHOT").is_some() {
        let png = c.screenshot().await?;
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console-timeline.png");
        std::fs::write(&path, png).expect("screenshot written");
        eprintln!("saved {}", path.display());
    }

    // The CSV link downloads exactly the rows shown.
    let href = c
        .find(Locator::Id("csv"))
        .await?
        .attr("href")
        .await?
        .unwrap();
    let csv = app
        .request(Method::GET, &href)
        .header(
            header::COOKIE,
            format!("chatprefs_console={}", cookie.value()),
        )
        .sent()
        .await;
    csv.assert_status(200);
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    let rows: Vec<i64> = reader
        .records()
        .map(|r| r.unwrap()[0].parse().unwrap())
        .collect();
    assert_eq!(rows, expected);

    // Live: a new event appears on the open timeline without a reload.
    let marker = run_async(c, "window.__same_page = 1; arguments[0](1)").await;
    assert_eq!(marker, json!(1));
    user_mutes(app, "u1", "random").await;
    let newest = app.admin_get("/admin/audit?client=u1").await.assert_ok()["next"]
        .as_i64()
        .unwrap();
    let started = Instant::now();
    while !positions(c).await.contains(&newest) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the new event did not appear"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let same = run_async(c, "arguments[0](window.__same_page === 1)").await;
    assert_eq!(same, json!(true), "the page was not reloaded");

    // As-of: the mutes at the instant of the third event, the deciding ones highlighted.
    let third = audit["entries"][2]["recordedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    c.find(Locator::LinkText("Mutes at an instant…"))
        .await?
        .click()
        .await?;
    let at = c.wait().for_element(Locator::Id("at")).await?;
    at.clear().await?;
    at.send_keys(&format!("{third}\u{E007}")).await?;
    c.wait().for_element(Locator::Css("tr.led-here")).await?;
    assert_eq!(
        texts(c, "#asof-set li").await,
        ["general", "random", "launch"]
    );
    assert_eq!(c.find_all(Locator::Css("tr.led-here")).await?.len(), 3);

    // Hostile strings are text: no element made of them, no script run.
    c.goto(&format!("{base}/console/user?id={}", urlencode(HOSTILE_ID)))
        .await?;
    c.wait()
        .for_element(Locator::Css("#timeline tbody tr"))
        .await?;
    assert!(c.find_all(Locator::Css("main img")).await?.is_empty());
    assert_eq!(texts(c, "h2 bdi.id").await[0], HOSTILE_ID);
    assert_eq!(texts(c, "dd").await[0], SCRIPT_NICK);
    let cells = texts(c, "#timeline tbody tr:first-child td").await;
    assert_eq!(cells[2], RTL_ROOM);
    assert_eq!(cells[7], SCRIPT_AGENT);
    let alerted = run_async(c, "arguments[0](typeof window.__xss)").await;
    assert_eq!(alerted, json!("undefined"));

    // The session reaches no write: the cookie is no API credential.
    let write = run_async(
        c,
        r#"const done = arguments[0];
           fetch('/admin/clients', {method: 'POST', headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({_id: 'u9', issueAccessToken: true})})
             .then(r => r.json().then(b => done([r.status, b.error.code])));"#,
    )
    .await;
    assert_eq!(write, json!([403, "INVALID_API_KEY"]));
    let write = run_async(
        c,
        "const done = arguments[0]; fetch('/admin/clients/u1/mute/general', {method: 'POST'}).then(r => done(r.status));",
    )
    .await;
    assert_eq!(write, json!(403));

    // Sign out with the keyboard-reachable button.
    c.find(Locator::Css("header form button"))
        .await?
        .click()
        .await?;
    c.wait().for_element(Locator::Id("key")).await?;
    c.goto(&format!("{base}/console/user?id=u1")).await?;
    c.wait().for_element(Locator::Id("sign-in")).await?;
    Ok(())
}

async fn user_mutes(app: &TestApp, uid: &str, room: &str) {
    app.admin(
        &app.app,
        Method::POST,
        &format!("/admin/clients/{uid}/mute/{room}"),
    )
    .sent()
    .await
    .assert_ok();
}
