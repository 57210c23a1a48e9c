//! A newcomer's machine: `DATABASE_URL` unset and nothing listening at the default address.
//! Each run happens in a network namespace of its own (`unshare -n`, which needs root, as
//! CI has), so the shared server at 127.0.0.1:5432 is out of sight without being touched.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::cli::Killed;
use crate::helpers::chatprefs_command;

const BIN: &str = env!("CARGO_BIN_EXE_chatprefs");
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/chatprefs";

/// A network namespace of its own needs root (CI has it); elsewhere the test says it was
/// skipped.
fn can_hide_the_shared_server() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    if !root {
        eprintln!("skipped: a network namespace of its own needs root");
    }
    root
}

/// A data home of the test's own, removed afterwards with the private cluster in it.
struct Home(PathBuf);

impl Home {
    fn new() -> Home {
        let dir =
            std::env::temp_dir().join(format!("chatprefs-home-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        Home(dir)
    }

    fn cluster(&self) -> PathBuf {
        self.0.join("chatprefs/pg")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `chatprefs <args>` with no `DATABASE_URL`, in a fresh network namespace.
fn newcomer(home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args([
            "-n",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$0" "$@""#,
            BIN,
        ])
        .args(args)
        .env_remove("DATABASE_URL")
        .env("XDG_DATA_HOME", home)
        .env("RUST_LOG", "warn");
    command
}

/// Lines of stdout and stderr as they come.
fn lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Every line up to and including the first containing `wanted`.
fn until(lines: &Receiver<String>, wanted: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {wanted:?} in {seen:#?}"));
        let found = line.contains(wanted);
        seen.push(line);
        if found {
            return seen;
        }
    }
}

fn serve_demo(home: &Home) -> (Killed, Receiver<String>) {
    let mut child = newcomer(
        &home.0,
        &["serve", "--demo", "--bind", "127.0.0.1:0", "--workers", "1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let output = lines(&mut child);
    (Killed(child), output)
}

fn client_key(seen: &[String]) -> String {
    seen.iter()
        .find_map(|l| l.trim().strip_prefix("client key:"))
        .expect("the demo prints its client key")
        .trim()
        .to_owned()
}

fn stop(server: &mut Killed) -> std::process::ExitStatus {
    // actix installs its signal handlers just after the demo is printed; a SIGTERM before
    // that ends the process by the default action (the server then goes by PDEATHSIG).
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own, unreaped child.
    unsafe { libc::kill(server.0.id() as libc::pid_t, libc::SIGTERM) };
    server.0.wait().unwrap()
}

fn postmaster_running(home: &Home) -> bool {
    home.cluster().join("data/postmaster.pid").exists()
}

#[test]
fn serve_demo_starts_a_private_postgres_reuses_it_and_stops_it_on_exit() {
    if !can_hide_the_shared_server() {
        return;
    }
    let started = Instant::now();
    let home = Home::new();

    let (mut first, output) = serve_demo(&home);
    let seen = until(&output, "curl -X POST");
    let said = seen.join("\n");
    assert!(
        said.contains(&format!("No PostgreSQL answers at {DEFAULT_URL}")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "made a private PostgreSQL in {}",
            home.cluster().display()
        )),
        "{said}"
    );
    let key = client_key(&seen);
    assert!(postmaster_running(&home));
    let status = stop(&mut first);
    assert!(
        status.success(),
        "{status:?}: {:?}",
        output.try_iter().collect::<Vec<_>>()
    );
    assert!(!postmaster_running(&home), "stopped with chatprefs");
    let first_run = started.elapsed();

    // The next run finds the same cluster (the demo app, with its client key, is still
    // there), and other commands use it while it runs.
    let (second, output) = serve_demo(&home);
    let seen = until(&output, "curl -X POST");
    let said = seen.join("\n");
    assert!(
        said.contains(&format!(
            "started the private PostgreSQL in {}",
            home.cluster().display()
        )),
        "{said}"
    );
    assert_eq!(client_key(&seen), key);
    let created = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", second.0.id()))
        .args([BIN, "app", "create", "shop", "--json"])
        .env_remove("DATABASE_URL")
        .env("XDG_DATA_HOME", &home.0)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    assert!(String::from_utf8_lossy(&created.stderr)
        .contains("using the private PostgreSQL running in"));
    let keys: serde_json::Value =
        serde_json::from_slice(&created.stdout).expect("only JSON on stdout");
    assert_eq!(keys["appID"], "shop");

    // Killed outright, it still takes its server down with it.
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(30);
    while postmaster_running(&home) {
        assert!(
            Instant::now() < deadline,
            "the private server outlived a SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "first run (initdb included) to stopped: {first_run:?}; whole test {:?}",
        started.elapsed()
    );
}

#[test]
fn without_binaries_or_demo_the_error_names_the_url_and_the_ways_out() {
    if !can_hide_the_shared_server() {
        return;
    }
    let home = Home::new();
    let empty = home.0.join("no-binaries");
    std::fs::create_dir(&empty).unwrap();

    let demo = newcomer(&home.0, &["serve", "--demo", "--bind", "127.0.0.1:0"])
        .env("CHATPREFS_POSTGRES_BIN", &empty)
        .output()
        .unwrap();
    assert_eq!(demo.status.code(), Some(1));
    let said = String::from_utf8_lossy(&demo.stderr);
    for expected in [
        DEFAULT_URL,
        "set DATABASE_URL",
        "no PostgreSQL binaries",
        "apt install postgresql",
    ] {
        assert!(said.contains(expected), "{expected:?} in {said}");
    }
    assert!(!home.cluster().join("data").exists());

    let plain = newcomer(&home.0, &["migrate"]).output().unwrap();
    assert_eq!(plain.status.code(), Some(1));
    let said = String::from_utf8_lossy(&plain.stderr);
    for expected in [DEFAULT_URL, "set DATABASE_URL", "chatprefs serve --demo"] {
        assert!(said.contains(expected), "{expected:?} in {said}");
    }
}

#[test]
fn a_connection_error_names_host_and_database_but_not_the_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgres://ann:s3cret@127.0.0.1:{port},localhost:{port}/prefs");
    let out = chatprefs_command(["migrate"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}, localhost:{port} (database"
        )),
        "{said}"
    );
    assert!(said.contains("user ann"), "{said}");
    assert!(!said.contains("s3cret"), "{said}");
}
