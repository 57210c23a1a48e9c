//! A private PostgreSQL cluster owned by one test, so that it can be crashed and restarted
//! without touching the shared server. Removed when dropped.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
}

/// PostgreSQL refuses to run as root; as root (CI), run its tools as `postgres`.
fn as_owner(tool: &str) -> Command {
    let path = format!("{BIN}/{tool}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", &path]);
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

impl Cluster {
    /// initdb (trust auth, no fsync at init) and start on a free loopback port.
    pub fn start() -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("chatprefs-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            run({
                let mut c = Command::new("chown");
                c.args(["postgres:postgres"]).arg(&dir);
                c
            });
        }
        let cluster = Cluster {
            dir,
            port: free_port(),
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

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.dir.display()
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
