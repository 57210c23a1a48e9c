//! A private PostgreSQL cluster owned by one test, so that it can be crashed, restarted,
//! replicated and promoted without touching the shared server. Removed when dropped.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::LazyLock;

/// The machine's PostgreSQL binaries, found as `serve --demo` finds them.
static BIN: LazyLock<PathBuf> = LazyLock::new(|| {
    chatprefs::private_cluster::find_binaries().expect("PostgreSQL binaries on this machine")
});

pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
    /// Server settings given at every start (`-c name=value …`), so that they stay this
    /// server's own: a standby copies the primary's configuration files, not these.
    settings: String,
}

/// PostgreSQL refuses to run as root; as root (CI), run its tools as `postgres`.
fn as_owner(tool: &str) -> Command {
    let path = BIN.join(tool);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&path);
        command
    } else {
        Command::new(path)
    }
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("PostgreSQL tool runs");
    assert!(output.status.success(), "{command:?}: {output:?}");
    output
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh temporary directory the cluster's OS user owns.
fn owned_temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatprefs-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        run({
            let mut c = Command::new("chown");
            c.args(["postgres:postgres"]).arg(&dir);
            c
        });
    }
    dir
}

impl Cluster {
    /// initdb (trust auth, no fsync at init) and start on a free loopback port.
    pub fn start() -> Cluster {
        Self::start_with("")
    }

    /// A primary that waits for the standby named `standby` to flush every commit before
    /// acknowledging it (synchronous replication), so that no acknowledged write is lost
    /// when it crashes.
    pub fn start_synchronous_primary(standby: &str) -> Cluster {
        Self::start_with(&format!("-c synchronous_standby_names={standby}"))
    }

    fn start_with(settings: &str) -> Cluster {
        let cluster = Cluster {
            dir: owned_temp_dir(),
            port: free_port(),
            settings: settings.to_owned(),
        };
        let mut initdb = as_owner("initdb");
        initdb
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
                "-D",
            ])
            .arg(cluster.data());
        run(initdb);
        cluster.up();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A hot standby of this server, streaming from it under the replication name `name`
    /// (what `synchronous_standby_names` refers to), started and caught up.
    pub fn standby(&self, name: &str) -> Cluster {
        let standby = Cluster {
            dir: owned_temp_dir(),
            port: free_port(),
            settings: String::new(),
        };
        let mut backup = as_owner("pg_basebackup");
        backup
            .args([
                "--no-sync",
                "--checkpoint=fast",
                "--wal-method=stream",
                "-R",
            ])
            .args([
                "-d",
                &format!(
                    "host=127.0.0.1 port={} user=postgres application_name={name}",
                    self.port
                ),
            ])
            .arg("-D")
            .arg(standby.data());
        run(backup);
        standby.up();
        standby
    }

    /// Makes this standby a primary and waits until it accepts writes.
    pub fn promote(&self) {
        let mut promote = as_owner("pg_ctl");
        promote
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .arg("promote");
        run(promote);
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} {}",
            self.port,
            self.dir.display(),
            self.settings
        );
        let mut start = as_owner("pg_ctl");
        start
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.data())
            .arg("start");
        run(start);
    }

    /// Kills the server the way a crash would: no checkpoint, no goodbye to clients.
    pub fn crash(&self) {
        let mut stop = as_owner("pg_ctl");
        stop.args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop");
        run(stop);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = as_owner("pg_ctl");
        stop.args(["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop");
        let _ = stop.output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
