//! A PostgreSQL server of this service's own, for a first run on a machine where none is set
//! up: made with the machine's PostgreSQL binaries in a directory of its own (kept, and
//! reused by the next run), reachable only through a Unix socket in that directory, so
//! only its OS user can connect; and stopped when the process that started it ends,
//! however it ends.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_postgres::config::Host;

use crate::config::DEFAULT_DATABASE_URL;

/// The socket's port number; only its file name, as the server listens on no TCP port.
const PORT: u16 = 5432;
const DATABASE: &str = "chatprefs";
/// Where the binaries are looked for first, when set.
pub const BINARIES_ENV: &str = "CHATPREFS_POSTGRES_BIN";

/// The directory holding `initdb` and `postgres`: `$CHATPREFS_POSTGRES_BIN` when set (and
/// then only there), else `pg_config --bindir`, else `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian and Ubuntu keep them off `PATH`).
pub fn find_binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(BINARIES_ENV) {
        return Some(PathBuf::from(dir)).filter(|d| has_server_tools(d));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    from_pg_config
        .into_iter()
        .chain(on_path)
        .chain(debian_versions())
        .find(|d| has_server_tools(d))
}

fn has_server_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// `/usr/lib/postgresql/<major>/bin`, newest first.
fn debian_versions() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `$XDG_DATA_HOME/chatprefs/pg`, else `~/.local/share/chatprefs/pg`; for root (whose home
/// the `postgres` user running the server cannot enter) `/var/lib/chatprefs/pg`.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(data).join("chatprefs/pg"));
    }
    if is_root() {
        return Ok(PathBuf::from("/var/lib/chatprefs/pg"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_DATA_HOME nor HOME is set: no place for a private PostgreSQL")?;
    Ok(PathBuf::from(home).join(".local/share/chatprefs/pg"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// PostgreSQL refuses to run as root: root runs it as the `postgres` user.
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    // SAFETY: the name is a valid C string; the answer is read at once, before any other
    // call that could reuse its static buffer.
    let entry = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if entry.is_null() {
        bail!(
            "PostgreSQL refuses to run as root, and there is no `postgres` user to run it as: \
             run chatprefs as an ordinary user, or set DATABASE_URL"
        );
    }
    // SAFETY: non-null, so it points at a valid passwd record.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A private server: the one this process started (stopped when dropped), or one that was
/// already running in the same directory (left alone).
pub struct PrivateCluster {
    dir: PathBuf,
    postmaster: Option<Postmaster>,
    created: bool,
}

struct Postmaster {
    pid: libc::pid_t,
    waiter: JoinHandle<io::Result<ExitStatus>>,
}

impl PrivateCluster {
    /// Starts the server in `dir`, creating it there first if needed; answers once it
    /// accepts connections. A server already running there is used as it is.
    pub fn start(binaries: &Path, dir: &Path) -> anyhow::Result<PrivateCluster> {
        let owner = server_user()?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // The socket lives here: only the owner may reach it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
        let mut cluster = PrivateCluster {
            dir: dir.to_owned(),
            postmaster: None,
            created: false,
        };
        if cluster.answers() {
            return Ok(cluster);
        }
        let data = dir.join("data");
        if !data.join("PG_VERSION").is_file() {
            let mut initdb = tool(binaries, "initdb", owner);
            initdb
                .args([
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "-D",
                ])
                .arg(&data);
            let out = initdb.output().context("cannot run initdb")?;
            if !out.status.success() {
                bail!(
                    "initdb failed in {}: {}",
                    data.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            cluster.created = true;
        }
        let log = dir.join("postgresql.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid))?;
        }
        let mut postgres = tool(binaries, "postgres", owner);
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir)
            .args(["-p", &PORT.to_string(), "-c", "listen_addresses="])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            postgres.pre_exec(|| {
                // Fast shutdown when the thread that started the server ends, which it does
                // only when this process does: a killed chatprefs leaves no server behind.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cluster.postmaster = Some(Postmaster::spawn(postgres)?);
        cluster.wait_ready(&log)?;
        Ok(cluster)
    }

    /// True when this run made the cluster (initdb), false when it found one.
    pub fn created(&self) -> bool {
        self.created
    }

    /// True when this process started the server (and will stop it).
    pub fn started(&self) -> bool {
        self.postmaster.is_some()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A connection URL for `database` (the socket directory, percent-encoded as the host).
    pub fn url(&self, database: &str) -> String {
        format!("{}/{database}", self.server_url())
    }

    /// The URL of the server without a database, to append `/<name>` to.
    pub fn server_url(&self) -> String {
        let dir = self.dir.to_string_lossy();
        let host = percent_encoding::utf8_percent_encode(&dir, percent_encoding::NON_ALPHANUMERIC);
        format!("postgres://postgres@{host}:{PORT}")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join(format!(".s.PGSQL.{PORT}"))
    }

    fn answers(&self) -> bool {
        UnixStream::connect(self.socket()).is_ok()
    }

    /// Up to a minute for crash recovery or a first start; the server says it is ready in
    /// its pid file (as `pg_ctl -w` reads it).
    fn wait_ready(&mut self, log: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid_file = self.dir.join("data/postmaster.pid");
        loop {
            let ready = std::fs::read_to_string(&pid_file)
                .is_ok_and(|pid| pid.lines().nth(7).is_some_and(|s| s.trim() == "ready"));
            if ready && self.answers() {
                return Ok(());
            }
            let exited = self
                .postmaster
                .as_ref()
                .is_some_and(|p| p.waiter.is_finished());
            if exited || Instant::now() > deadline {
                self.postmaster = None;
                bail!(
                    "the private PostgreSQL in {} did not start; its log is {}",
                    self.dir.display(),
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server if this process started it (fast shutdown: clients are cut off,
    /// everything committed stays).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(postmaster) = self.postmaster.take() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped (its
            // waiter thread reaps it only after it exits).
            unsafe { libc::kill(postmaster.pid, libc::SIGINT) };
            let _ = postmaster.waiter.join();
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Postmaster {
    /// Spawns from a thread of its own that lives as long as the server: the parent-death
    /// signal follows the spawning thread, not the process.
    fn spawn(mut command: Command) -> anyhow::Result<Postmaster> {
        let (started, pid) = std::sync::mpsc::channel();
        let waiter = std::thread::Builder::new()
            .name("private-postgres".into())
            .spawn(move || match command.spawn() {
                Ok(mut child) => {
                    let _ = started.send(Ok(child.id()));
                    child.wait()
                }
                Err(err) => {
                    let _ = started.send(Err(err));
                    Err(io::Error::other("postgres did not start"))
                }
            })?;
        let pid = pid
            .recv()
            .context("the postgres launcher thread ended")?
            .context("cannot run postgres")?;
        Ok(Postmaster {
            pid: libc::pid_t::try_from(pid)?,
            waiter,
        })
    }
}

fn tool(binaries: &Path, name: &str, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(binaries.join(name));
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

/// Whether something accepts TCP connections at the first host of `url` (a probe, not a
/// login: a server that refuses us must say why itself).
pub fn answers_at(url: &str) -> bool {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => {
            let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)) else {
                return false;
            };
            addrs
                .collect::<Vec<SocketAddr>>()
                .iter()
                .any(|addr| TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_ok())
        }
        Some(Host::Unix(dir)) => UnixStream::connect(dir.join(format!(".s.PGSQL.{port}"))).is_ok(),
        None => false,
    }
}

/// The database a command uses when `DATABASE_URL` is not set.
pub enum Fallback {
    /// The default address answers.
    Default(String),
    /// The private server in the default directory; started by this call when owned.
    Private(PrivateCluster),
}

/// Without `DATABASE_URL`: the default address if anything answers there, else the private
/// server (started when `may_start`, else only if already running).
pub fn resolve_without_url(may_start: bool) -> anyhow::Result<Fallback> {
    if answers_at(DEFAULT_DATABASE_URL) {
        return Ok(Fallback::Default(DEFAULT_DATABASE_URL.to_owned()));
    }
    let dir = default_dir()?;
    let running = PrivateCluster {
        dir: dir.clone(),
        postmaster: None,
        created: false,
    };
    if running.answers() {
        return Ok(Fallback::Private(running));
    }
    if !may_start {
        bail!(
            "nothing answers at {DEFAULT_DATABASE_URL} (DATABASE_URL is not set). Either set \
             DATABASE_URL to your PostgreSQL server, or run `chatprefs serve --demo`, which \
             starts a private PostgreSQL from the binaries on this machine"
        );
    }
    let Some(binaries) = find_binaries() else {
        bail!(
            "nothing answers at {DEFAULT_DATABASE_URL} (DATABASE_URL is not set), and no \
             PostgreSQL binaries were found (looked in ${BINARIES_ENV}, `pg_config --bindir`, \
             PATH and /usr/lib/postgresql/*/bin). Either set DATABASE_URL to a PostgreSQL \
             server you have, or install PostgreSQL's server binaries (Debian/Ubuntu: \
             `apt install postgresql`; macOS: `brew install postgresql`) and run this again \
             to get a private one"
        );
    };
    Ok(Fallback::Private(PrivateCluster::start(&binaries, &dir)?))
}

impl Fallback {
    pub fn url(&self) -> String {
        match self {
            Fallback::Default(url) => url.clone(),
            Fallback::Private(cluster) => cluster.url(DATABASE),
        }
    }

    /// Tells a newcomer which server they got (on stderr: stdout may be JSON for a script).
    pub fn announce(&self) {
        if let Fallback::Private(cluster) = self {
            let dir = cluster.dir().display();
            let what = match (cluster.created(), cluster.started()) {
                (true, _) => format!(
                    "made a private PostgreSQL in {dir} and started it (kept for the next run; \
                     stopped when chatprefs exits)"
                ),
                (false, true) => format!(
                    "started the private PostgreSQL in {dir} (stopped when chatprefs exits)"
                ),
                (false, false) => format!("using the private PostgreSQL running in {dir}"),
            };
            eprintln!(
                "No PostgreSQL answers at {DEFAULT_DATABASE_URL} and DATABASE_URL is not set: \
                 {what}.\nOther commands use it by themselves while it runs; its URL is {}",
                cluster.url(DATABASE),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_url_names_the_socket_directory_and_parses_back() {
        let cluster = PrivateCluster {
            dir: PathBuf::from("/home/ann/.local/share/chatprefs/pg"),
            postmaster: None,
            created: false,
        };
        let url = cluster.url("chatprefs");
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(
            config.get_hosts(),
            [Host::Unix(PathBuf::from(
                "/home/ann/.local/share/chatprefs/pg"
            ))]
        );
        assert_eq!(config.get_ports(), [PORT]);
        assert_eq!(config.get_dbname(), Some("chatprefs"));
        assert_eq!(config.get_user(), Some("postgres"));
    }

    #[test]
    fn nothing_listening_is_told_apart_from_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(answers_at(&format!("postgres://u@127.0.0.1:{port}/d")));
        drop(listener);
        assert!(!answers_at(&format!("postgres://u@127.0.0.1:{port}/d")));
    }
}
