//! A one-line progress report for people watching a long replay; silent for scripts.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(250);

pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Instant,
    total: u64,
}

impl Progress {
    /// Shown on stderr when it is a terminal, so piped and logged runs stay quiet.
    pub fn new(total: u64) -> Self {
        let now = Instant::now();
        Progress {
            enabled: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            total,
        }
    }

    pub fn update(&mut self, done: u64) {
        if !self.enabled || self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = done as f64 / seconds.max(1e-3);
        // Positions count aborted appends too, so the total is an estimate from above.
        let total = self.total.max(done);
        let eta = (total - done) as f64 / rate.max(1.0);
        eprint!(
            "\r\x1b[2Kreplaying the log: {done} / ~{total} events, {rate:.0} events/s, ETA {eta:.0} s"
        );
        let _ = std::io::stderr().flush();
    }

    pub fn finish(&self, what: &str) {
        if self.enabled {
            eprintln!("\r\x1b[2K{what}");
        }
    }
}
