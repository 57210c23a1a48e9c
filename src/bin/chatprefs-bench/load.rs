//! The load itself: set up users and rooms, drive the requests, tally the answers.
//!
//! Each connection is one keep-alive HTTP/1.1 connection with one request in flight, so
//! `--connections` is the concurrency the server sees.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1, header, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpStream;

/// What share of requests each operation gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub mute: u32,
    pub unmute: u32,
    pub me: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            mute: 50,
            unmute: 50,
            me: 0,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `mute=50,unmute=50,me=0`; operations left out get 0.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = Mix {
            mute: 0,
            unmute: 0,
            me: 0,
        };
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once(['=', ':'])
                .ok_or_else(|| format!("expected op=weight, got {part:?}"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {name} must be a whole number"))?;
            match name.trim() {
                "mute" => mix.mute = weight,
                "unmute" => mix.unmute = weight,
                "me" => mix.me = weight,
                other => return Err(format!("unknown operation {other:?} (mute, unmute, me)")),
            }
        }
        if mix.mute + mix.unmute + mix.me == 0 {
            return Err("the mix must give some operation a weight above 0".into());
        }
        Ok(mix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Mute,
    Unmute,
    Me,
}

impl Mix {
    fn pick(&self, rng: &mut impl Rng) -> Op {
        let roll = rng.gen_range(0..self.mute + self.unmute + self.me);
        if roll < self.mute {
            Op::Mute
        } else if roll < self.mute + self.unmute {
            Op::Unmute
        } else {
            Op::Me
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub url: Uri,
    pub client_key: String,
    pub api_key: String,
    pub users: usize,
    pub rooms: usize,
    pub connections: usize,
    pub stop: Stop,
    pub mix: Mix,
    /// Names the bench's users and rooms (`{prefix}-user-1`), so runs reuse them.
    pub prefix: String,
    pub progress: bool,
    /// Failing authentications sent alongside the load, if any.
    pub flood: Option<Flood>,
}

/// An attack on the failed-authentication limiter: `keys` requests, each with a client key
/// never seen before, from an address never seen before (`X-Forwarded-For`, so the server
/// must trust the bench's address as a proxy), over `connections` connections at full
/// speed. The measured load stops when the flood has sent all its keys.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    pub connections: usize,
    pub keys: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    pub keys: u64,
    pub seconds: f64,
    pub keys_per_second: f64,
    /// Answers keyed `"<status> <error.code>"`, as the load's errors are.
    pub answers: BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--url must look like http://host:port, got {0}")]
    Url(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP error talking to the server: {0}")]
    Http(#[from] hyper::Error),
    #[error("setup request {0} failed with {1}: {2}")]
    Setup(String, StatusCode, String),
    #[error("cannot save the fixture: {0}")]
    Fixture(std::io::Error),
}

/// One keep-alive connection to the server.
struct Connection {
    authority: String,
    base: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Connection {
    async fn open(url: &Uri) -> Result<Self, BenchError> {
        let host = url.host().ok_or_else(|| BenchError::Url(url.to_string()))?;
        let port = url.port_u16().unwrap_or(80);
        let authority = format!("{host}:{port}");
        let stream = TcpStream::connect(&authority)
            .await
            .map_err(|e| BenchError::Connect(authority.clone(), e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| BenchError::Connect(authority.clone(), e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Connection {
            authority,
            base: url.path().trim_end_matches('/').to_owned(),
            sender,
        })
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Answer, hyper::Error> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::HOST, &self.authority);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(json))
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(request.body(body).expect("valid request parts"))
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body })
    }
}

/// The users' tokens and the rooms the load runs over, with what they were set up for, so
/// a saved fixture is reused only by a run that asks for the same ones.
#[derive(Serialize, serde::Deserialize)]
pub struct Fixture {
    prefix: String,
    users: usize,
    rooms: Vec<String>,
    tokens: Vec<(String, String)>,
}

impl Fixture {
    fn fits(&self, config: &BenchConfig) -> bool {
        self.prefix == config.prefix
            && self.users == config.users
            && self.rooms.len() == config.rooms
            && self.tokens.len() == config.users
    }
}

/// The fixture saved in `path` by an earlier run for the same users, rooms and prefix;
/// otherwise a fresh [`setup`], saved there (readable by the owner only: it holds tokens).
/// Issuing 100,000 tokens takes longer than most runs, and each issue grows the tokens
/// table, so runs that alternate with a yardstick reuse one fixture.
pub async fn setup_or_reuse(
    config: &BenchConfig,
    path: &std::path::Path,
) -> Result<Fixture, BenchError> {
    if let Ok(saved) = std::fs::read(path) {
        match serde_json::from_slice::<Fixture>(&saved) {
            Ok(fixture) if fixture.fits(config) => return Ok(fixture),
            _ => eprintln!(
                "{} was set up for other users, rooms or prefix; setting up anew",
                path.display()
            ),
        }
    }
    let fixture = setup(config).await?;
    let json = serde_json::to_vec(&fixture).expect("a fixture serializes");
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    std::io::Write::write_all(&mut file.open(path).map_err(BenchError::Fixture)?, &json)
        .map_err(BenchError::Fixture)?;
    Ok(fixture)
}

fn user_id(prefix: &str, i: usize) -> String {
    format!("{prefix}-user-{i}")
}

fn room_id(prefix: &str, i: usize) -> String {
    format!("{prefix}-room-{i}")
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

/// Creates (or updates) the bench's rooms and users through the platform API, issuing
/// each user a fresh token. Safe to repeat: ids are fixed by the prefix.
pub async fn setup(config: &BenchConfig) -> Result<Fixture, BenchError> {
    let workers = config.connections.clamp(1, 16);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&config.url).await?;
            let api_key = [("IM-API-KEY", config.api_key.as_str())];
            let mut rooms = Vec::new();
            for i in (worker..config.rooms).step_by(workers) {
                let id = room_id(&config.prefix, i);
                let body = serde_json::json!({ "_id": id, "name": format!("Bench room {i}") });
                let answer = conn
                    .send(Method::POST, "/rooms", &api_key, Some(body.to_string()))
                    .await?;
                if answer.status != StatusCode::OK {
                    return Err(setup_failed("POST /rooms", answer));
                }
                rooms.push(id);
            }
            let mut tokens = Vec::new();
            for i in (worker..config.users).step_by(workers) {
                let id = user_id(&config.prefix, i);
                let body = serde_json::json!({
                    "_id": id, "nickname": format!("Bench user {i}"),
                    "issueAccessToken": true, "expirationDays": 1,
                });
                let answer = conn
                    .send(
                        Method::POST,
                        "/admin/clients",
                        &api_key,
                        Some(body.to_string()),
                    )
                    .await?;
                if answer.status != StatusCode::OK {
                    return Err(setup_failed("POST /admin/clients", answer));
                }
                let result: serde_json::Value =
                    serde_json::from_slice(&answer.body).unwrap_or_default();
                let token = result["result"]["token"].as_str().unwrap_or_default();
                tokens.push((id, token.to_owned()));
            }
            Ok((rooms, tokens))
        }));
    }
    let mut fixture = Fixture {
        prefix: config.prefix.clone(),
        users: config.users,
        rooms: Vec::new(),
        tokens: Vec::new(),
    };
    for task in tasks {
        let (rooms, tokens) = task.await.expect("setup task panicked")?;
        fixture.rooms.extend(rooms);
        fixture.tokens.extend(tokens);
    }
    Ok(fixture)
}

fn setup_failed(what: &str, answer: Answer) -> BenchError {
    BenchError::Setup(what.into(), answer.status, error_code(&answer.body))
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub connections: usize,
    pub mix: Mix,
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub latency: Latency,
    pub by_operation: BTreeMap<String, u64>,
    /// Every answer that was not a 200, keyed `"<status> <error.code>"`; connection
    /// failures are keyed `"connection"`.
    pub errors: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodReport>,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct Tally {
    latency_us: Histogram<u64>,
    by_operation: BTreeMap<Op, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            by_operation: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us.add(&other.latency_us).expect("same bounds");
        for (op, n) in other.by_operation {
            *self.by_operation.entry(op).or_default() += n;
        }
        for (key, n) in other.errors {
            *self.errors.entry(key).or_default() += n;
        }
    }
}

struct Shared {
    issued: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    stopping: AtomicBool,
}

/// Runs the load until the configured stop and reports what happened.
pub async fn run(config: &BenchConfig, fixture: Fixture) -> Result<Report, BenchError> {
    let fixture = Arc::new(fixture);
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });
    let mut connections = Vec::new();
    for _ in 0..config.connections {
        connections.push(Connection::open(&config.url).await?);
    }
    let started = Instant::now();
    let progress = config
        .progress
        .then(|| tokio::spawn(show_progress(shared.clone(), started)));
    if let Stop::After(duration) = config.stop {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            shared.stopping.store(true, Ordering::Relaxed);
        });
    }
    let flood = match config.flood {
        Some(flood) => Some(start_flood(&config.url, flood, shared.clone()).await?),
        None => None,
    };
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|conn| tokio::spawn(drive(conn, config.clone(), fixture.clone(), shared.clone())))
        .collect();
    let flood = match flood {
        Some(flood) => Some(flood.await.expect("flood task panicked")),
        None => None,
    };
    let mut tally = Tally::new();
    for task in tasks {
        tally.merge(task.await.expect("load task panicked"));
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    let requests = tally.latency_us.len();
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Report {
        connections: config.connections,
        mix: config.mix,
        requests,
        seconds,
        requests_per_second: requests as f64 / seconds,
        latency: Latency {
            mean_ms: tally.latency_us.mean() / 1000.0,
            p50_ms: ms(tally.latency_us.value_at_quantile(0.50)),
            p90_ms: ms(tally.latency_us.value_at_quantile(0.90)),
            p99_ms: ms(tally.latency_us.value_at_quantile(0.99)),
            max_ms: ms(tally.latency_us.max()),
        },
        by_operation: tally
            .by_operation
            .into_iter()
            .map(|(op, n)| {
                (
                    serde_json::to_value(op)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    n,
                )
            })
            .collect(),
        errors: tally.errors,
        flood,
    })
}

/// Opens the flood's connections, then floods in the background; stops the load when done.
async fn start_flood(
    url: &Uri,
    flood: Flood,
    shared: Arc<Shared>,
) -> Result<tokio::task::JoinHandle<FloodReport>, BenchError> {
    let mut connections = Vec::new();
    for _ in 0..flood.connections.max(1) {
        connections.push(Connection::open(url).await?);
    }
    let run = rand::random::<u32>();
    let next = Arc::new(AtomicU64::new(0));
    let url = url.clone();
    Ok(tokio::spawn(async move {
        let started = Instant::now();
        let senders: Vec<_> = connections
            .into_iter()
            .map(|conn| tokio::spawn(flood_from(conn, url.clone(), run, flood.keys, next.clone())))
            .collect();
        let mut answers = BTreeMap::new();
        for sender in senders {
            for (key, n) in sender.await.expect("flood sender panicked") {
                *answers.entry(key).or_default() += n;
            }
        }
        shared.stopping.store(true, Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        FloodReport {
            keys: flood.keys,
            seconds,
            keys_per_second: flood.keys as f64 / seconds,
            answers,
        }
    }))
}

async fn flood_from(
    mut conn: Connection,
    url: Uri,
    run: u32,
    keys: u64,
    next: Arc<AtomicU64>,
) -> BTreeMap<String, u64> {
    let mut answers = BTreeMap::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= keys {
            return answers;
        }
        let key = format!("flood-{run:08x}-{i}");
        // A documentation-range IPv6 address per key: 2001:db8:<run>:<i>.
        let address = format!(
            "2001:db8:{:x}:{:x}:{:x}:{:x}::1",
            run >> 16,
            run & 0xffff,
            (i >> 16) & 0xffff,
            i & 0xffff
        );
        let headers = [
            ("IM-CLIENT-KEY", key.as_str()),
            ("X-Forwarded-For", &address),
        ];
        let answer = match conn.send(Method::GET, "/me", &headers, None).await {
            Ok(answer) => format!("{} {}", answer.status.as_u16(), error_code(&answer.body)),
            Err(_) => {
                if let Ok(fresh) = Connection::open(&url).await {
                    conn = fresh;
                }
                "connection".to_owned()
            }
        };
        *answers.entry(answer).or_default() += 1;
    }
}

fn claim_request(config: &BenchConfig, shared: &Shared) -> bool {
    match config.stop {
        Stop::After(_) => !shared.stopping.load(Ordering::Relaxed),
        Stop::Requests(limit) => shared.issued.fetch_add(1, Ordering::Relaxed) < limit,
    }
}

async fn drive(
    mut conn: Connection,
    config: BenchConfig,
    fixture: Arc<Fixture>,
    shared: Arc<Shared>,
) -> Tally {
    let mut tally = Tally::new();
    let mut rng = rand::rngs::StdRng::from_entropy();
    while claim_request(&config, &shared) {
        let op = config.mix.pick(&mut rng);
        let (_, token) = &fixture.tokens[rng.gen_range(0..fixture.tokens.len())];
        let room = &fixture.rooms[rng.gen_range(0..fixture.rooms.len())];
        let (method, path) = match op {
            Op::Mute => (Method::POST, format!("/me/mute/{room}")),
            Op::Unmute => (Method::DELETE, format!("/me/mute/{room}")),
            Op::Me => (Method::GET, "/me".to_owned()),
        };
        let headers = [
            ("IM-CLIENT-KEY", config.client_key.as_str()),
            ("IM-Authorization", token.as_str()),
        ];
        let sent = Instant::now();
        let outcome = conn.send(method, &path, &headers, None).await;
        let elapsed = sent.elapsed().as_micros().max(1) as u64;
        tally.latency_us.saturating_record(elapsed);
        *tally.by_operation.entry(op).or_default() += 1;
        let error = match outcome {
            Ok(answer) if answer.status == StatusCode::OK => None,
            Ok(answer) => Some(format!(
                "{} {}",
                answer.status.as_u16(),
                error_code(&answer.body)
            )),
            Err(_) => {
                // The connection is gone; open another so the concurrency stays as asked.
                if let Ok(fresh) = Connection::open(&config.url).await {
                    conn = fresh;
                }
                Some("connection".to_owned())
            }
        };
        if let Some(key) = error {
            *tally.errors.entry(key).or_default() += 1;
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    tally
}

async fn show_progress(shared: Arc<Shared>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        eprint!(
            "\r{:>5.0}s  {done:>9} requests  {:>7} req/s  {} failed   ",
            started.elapsed().as_secs_f64(),
            done - last,
            shared.failed.load(Ordering::Relaxed)
        );
        last = done;
    }
}

/// Progress is for people: shown only when stderr is a terminal.
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal()
}

pub fn print_report(report: &Report) {
    let l = &report.latency;
    println!(
        "connections={} mix=mute:{},unmute:{},me:{}",
        report.connections, report.mix.mute, report.mix.unmute, report.mix.me
    );
    println!(
        "requests={} seconds={:.2} requests_per_s={:.0}",
        report.requests, report.seconds, report.requests_per_second
    );
    println!(
        "latency_ms mean={:.2} p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
    );
    let ops: Vec<String> = report
        .by_operation
        .iter()
        .map(|(op, n)| format!("{op}={n}"))
        .collect();
    println!("operations {}", ops.join(" "));
    if report.errors.is_empty() {
        println!("errors none");
    } else {
        for (key, n) in &report.errors {
            println!("errors {key}: {n}");
        }
    }
    if let Some(flood) = &report.flood {
        println!(
            "flood keys={} seconds={:.2} keys_per_s={:.0}",
            flood.keys, flood.seconds, flood.keys_per_second
        );
        for (key, n) in &flood.answers {
            println!("flood answers {key}: {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_and_defaults_missing_ones_to_zero() {
        assert_eq!(
            "mute=70,me:30".parse::<Mix>(),
            Ok(Mix {
                mute: 70,
                unmute: 0,
                me: 30
            })
        );
        assert!("mute=0".parse::<Mix>().is_err());
        assert!("mute=x".parse::<Mix>().is_err());
        assert!("post=1".parse::<Mix>().is_err());
    }

    #[test]
    fn pick_follows_the_weights() {
        let mix: Mix = "unmute=1".parse().unwrap();
        let mut rng = rand::thread_rng();
        assert!((0..100).all(|_| mix.pick(&mut rng) == Op::Unmute));
    }
}
