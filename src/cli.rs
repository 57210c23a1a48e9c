//! Command line: `serve`, `migrate`, `app create`, `app client-sign-in`, `openapi`, `bench`,
//! `audit`, `tail`, `rebuild`.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::{self, output::Format, output::TailFormat, AuditParams};
use crate::bench::{self, BenchConfig, Stop};
use crate::config::{
    AuthCacheSettings, AuthFailureLimit, HttpLimits, ServeSettings, DEFAULT_DATABASE_URL,
};
use crate::domain::{AppId, ClientId};
use crate::feed::live::LiveLimits;
use crate::feed::{self, FeedCursor};
use crate::private_cluster::{self, Fallback};
use crate::provision::{self, AppCredentials, Demo, ProvisionError};
use crate::rebuild;
use crate::startup::Application;
use crate::store::{self, Pool, PoolSettings};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "chatprefs",
    version,
    about = "IMKIT-compatible notification preferences on an append-only PostgreSQL event log"
)]
pub struct Cli {
    /// PostgreSQL connection URL; the database is created if it does not exist. Several
    /// hosts (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`) make the
    /// service follow a failover. Unset: postgres://postgres@127.0.0.1:5432/chatprefs if
    /// anything answers there, else the private PostgreSQL `serve --demo` starts.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Log line format on stderr: `pretty` for people, `json` (one object per line) for log
    /// pipelines. Which lines are written is set by `RUST_LOG` (default
    /// `info,tracing_actix_web=error`).
    #[arg(long, env = "CHATPREFS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (migrates the database first).
    Serve(ServeArgs),
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate(MigrateArgs),
    /// Manage apps (tenants).
    #[command(subcommand)]
    App(AppCommand),
    /// Support: an app's event history with provenance, or a user's mutes at an instant.
    Audit(AuditArgs),
    /// Operators: follow an app's change feed, printing each event as it commits, until
    /// interrupted (then print the cursor to resume from).
    Tail(TailArgs),
    /// Replay the log into a fresh read model and swap it in; safe while `serve` runs.
    Rebuild {
        /// Only compare the read model with the log: print every difference, change
        /// nothing; exit 1 on drift (and only then), 2 if the comparison could not be made.
        /// Waits for a rebuild's swap in progress.
        #[arg(long)]
        verify: bool,
    },
    /// Print the OpenAPI 3.1 document (as served at /openapi.json); regenerate the committed
    /// copy with `chatprefs openapi > docs/openapi.json`.
    Openapi,
    /// Load-test a running server (like pgbench, for this API): set up users and rooms
    /// through the platform API, then drive mute/unmute/GET /me over keep-alive connections.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The app whose events to show (an app only ever sees its own).
    #[arg(long)]
    pub app: String,
    /// Only this user's events.
    #[arg(long)]
    pub client: Option<String>,
    /// Only this room's events.
    #[arg(long)]
    pub room: Option<String>,
    /// From this instant on (RFC 3339 or ms since the epoch), inclusive.
    #[arg(long)]
    pub since: Option<String>,
    /// Before this instant (RFC 3339 or ms since the epoch), exclusive.
    #[arg(long)]
    pub until: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    #[arg(long)]
    pub limit: Option<String>,
    /// Continue after this position (the cursor the previous page printed).
    #[arg(long)]
    pub after: Option<String>,
    /// Instead of events: the user's muted rooms at this instant (needs --client).
    #[arg(long, requires = "client", conflicts_with_all = ["room", "since", "until", "limit", "after"])]
    pub as_of: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The app whose events to follow.
    #[arg(long)]
    pub app: String,
    /// Resume after this cursor (printed when a previous `tail` stopped, or a feed `next`).
    #[arg(long, conflicts_with = "from_now")]
    pub after: Option<String>,
    /// Only events committed from now on (default: the whole log first).
    #[arg(long)]
    pub from_now: bool,
    #[arg(long, value_enum, default_value_t = TailFormat::Table)]
    pub format: TailFormat,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base URL of the running server.
    #[arg(long, env = "CHATPREFS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: hyper::Uri,

    /// The app's client key (`IM-CLIENT-KEY`).
    #[arg(long, env = "CHATPREFS_CLIENT_KEY", hide_env_values = true)]
    pub client_key: String,

    /// The app's API key (`IM-API-KEY`), to set up users and rooms.
    #[arg(long, env = "CHATPREFS_API_KEY", hide_env_values = true)]
    pub api_key: String,

    /// Users to set up and spread requests over (each gets a fresh token).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,

    /// Rooms to set up and spread requests over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rooms: u32,

    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub connections: u32,

    /// How long to run the load (e.g. 20s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Duration,

    /// Stop after this many requests instead of after --duration.
    #[arg(long)]
    pub requests: Option<u64>,

    /// Weights of the operations, e.g. `mute=50,unmute=50,me=0`.
    #[arg(long, default_value = "mute=50,unmute=50,me=0")]
    pub mix: bench::Mix,

    /// Prefix of the bench's user and room ids, so runs reuse them.
    #[arg(long, default_value = "bench")]
    pub prefix: String,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Also attack the failed-authentication limiter: send this many requests, each with a
    /// client key and an `X-Forwarded-For` address never seen before, at full speed; the
    /// load stops when they are sent. The server must trust the bench as a proxy
    /// (`serve --trusted-proxy 127.0.0.1`), or it blocks the bench's one address instead.
    #[arg(long, default_value_t = 0)]
    pub flood_keys: u64,

    /// Connections the flood uses (besides --connections).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub flood_connections: u32,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CHATPREFS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// A read replica (streaming standby) of the database, for the reads that may trail
    /// the primary by the replication lag: the audit trail, as-of answers and a room's
    /// muters (`GET /admin/rooms/{room}/mutes`). Writes, `GET /me` and `mutes/check` stay on
    /// the primary. When the replica cannot answer, the primary does.
    #[arg(long, env = "CHATPREFS_READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,

    /// Make sure a demo app, user and room exist and print their keys, a fresh token and a
    /// ready `curl` command.
    #[arg(long)]
    pub demo: bool,

    /// Most database connections held open, split evenly over the HTTP workers (each
    /// worker has its own pool, so queries are driven by the thread that awaits them).
    #[arg(long, env = "CHATPREFS_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,

    /// How long a request waits for a database connection before it is answered 503.
    #[arg(long, env = "CHATPREFS_POOL_TIMEOUT_MS", default_value_t = 5000)]
    pub pool_timeout_ms: u64,

    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "CHATPREFS_WORKERS")]
    pub workers: Option<usize>,

    /// A reverse proxy whose X-Forwarded-For is believed (repeatable, or comma-separated in
    /// the env variable).
    #[arg(
        long = "trusted-proxy",
        env = "CHATPREFS_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpAddr>,

    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "CHATPREFS_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// A browser origin allowed to call the API, e.g. `https://chat.example.com` (repeatable,
    /// or comma-separated in the env variable). None: no CORS headers are sent.
    #[arg(
        long = "cors-origin",
        env = "CHATPREFS_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, env = "CHATPREFS_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Most bytes of header names and values in one request; more is answered 431. (actix
    /// closes a connection whose request head exceeds 128 KiB whatever this says.)
    #[arg(long, env = "CHATPREFS_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,

    /// Milliseconds a client has to send a whole request head before it is answered 408
    /// and disconnected (slow clients); 0: no limit.
    #[arg(
        long,
        env = "CHATPREFS_CLIENT_REQUEST_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub client_request_timeout_ms: u64,

    /// Seconds an idle keep-alive connection is kept open; 0 turns keep-alive off.
    #[arg(long, env = "CHATPREFS_KEEP_ALIVE_SECS", default_value_t = 5)]
    pub keep_alive_secs: u64,

    /// Connections each worker holds at once (the process: workers × this); further
    /// connections wait in the listen backlog until one closes.
    #[arg(long, env = "CHATPREFS_MAX_CONNECTIONS", default_value_t = 25_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Failed authentications allowed at once per client address and per presented key
    /// before answers are 429 `RATE_LIMITED`; 0 turns the limit off.
    #[arg(long, env = "CHATPREFS_AUTH_FAILURE_BURST", default_value_t = 20)]
    pub auth_failure_burst: u32,

    /// Seconds in which a blocked address or key regains its whole burst (it regains one
    /// attempt every window/burst seconds).
    #[arg(long, env = "CHATPREFS_AUTH_FAILURE_WINDOW_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_failure_window_secs: u64,

    /// Live preference streams (`GET /me/events`) this process keeps open at once; more
    /// are answered 429 `RATE_LIMITED`.
    #[arg(long, env = "CHATPREFS_LIVE_STREAMS_MAX", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub live_streams_max: u32,

    /// Live preference streams one user may keep open at once (on this process).
    #[arg(long, env = "CHATPREFS_LIVE_STREAMS_PER_USER", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub live_streams_per_user: u32,

    /// Milliseconds between two looks at the log while feed requests or live streams wait
    /// (one query per process, only while someone waits): the most a waiting reader lags.
    #[arg(long, env = "CHATPREFS_FEED_POLL_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub feed_poll_ms: u64,

    /// Longest a change-feed request waits for the next event (its `wait` is cut to this):
    /// keep it below the idle timeout of any proxy in front of the service.
    #[arg(long, env = "CHATPREFS_FEED_MAX_WAIT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=30))]
    pub feed_max_wait_secs: u64,

    /// Seconds a successful authentication (client key and token, or API key) is remembered
    /// by this process, so that most requests skip the lookup; 0 turns the cache off. A
    /// revocation, expiry or key change reaches every instance's cache within one second
    /// (it listens for them on a connection of its own; see docs/reliability.md).
    #[arg(long, env = "CHATPREFS_AUTH_CACHE_TTL_SECS", default_value_t = 60)]
    pub auth_cache_ttl_secs: u64,

    /// Most credentials the authentication cache remembers, per kind (tokens, API keys).
    #[arg(long, env = "CHATPREFS_AUTH_CACHE_CAPACITY", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub auth_cache_capacity: u64,

    /// Milliseconds a request may wait for a database connection before it is answered 503
    /// `SERVICE_UNAVAILABLE` with `Retry-After` instead of queueing behind the others; 0
    /// (the default): the pool timeout alone bounds the wait.
    #[arg(long, env = "CHATPREFS_REQUEST_DEADLINE_MS", default_value_t = 0)]
    pub request_deadline_ms: u64,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Also create (or update) this least-privilege role for `serve`: it may log in, read
    /// the directory and the read model, append to `events` (SELECT and INSERT only) and
    /// nothing else. Idempotent; run it again after every upgrade. Give it a password with
    /// `ALTER ROLE … PASSWORD` unless your pg_hba.conf authenticates it otherwise.
    #[arg(long, env = "CHATPREFS_RUNTIME_ROLE", value_name = "NAME")]
    pub runtime_role: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app and print its client key and API key. The API key is shown only now.
    Create {
        /// The app's id (IMKIT `appID`).
        app_id: String,
        /// Print the credentials as JSON, for scripts.
        #[arg(long)]
        json: bool,
        /// Let the app's users get a token for any user id with the public client key
        /// alone (`POST /auths/sign/v2`, used by IMKIT SDK logins without a token). Off
        /// unless given; only for apps whose users may be anyone. See docs/clients.md.
        #[arg(long)]
        allow_client_sign_in: bool,
    },
    /// Turn client sign-in (`POST /auths/sign/v2`) on or off for an existing app.
    ClientSignIn {
        /// The app's id.
        app_id: String,
        #[arg(value_enum)]
        state: Switch,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let database = match (&cli.command, cli.database_url) {
        (Command::Openapi | Command::Bench(_), _) => None,
        (_, Some(url)) => Some(Database::Given(url)),
        (command, None) => {
            let may_start = matches!(command, Command::Serve(args) if args.demo);
            let fallback =
                tokio::task::block_in_place(|| private_cluster::resolve_without_url(may_start))?;
            Some(Database::Fallback(fallback))
        }
    };
    if let Some(database) = &database {
        database.announce();
    }
    let database_url = database.as_ref().map(Database::url).unwrap_or_default();
    match cli.command {
        Command::Serve(args) => serve(database_url, args, database).await,
        Command::Migrate(args) => {
            store::ensure_database(&database_url).await?;
            if let store::Migrated::Newer {
                binary,
                database,
                unknown,
            } = store::migrate(&database_url).await?
            {
                // Granting this binary's privileges would revoke what the newer release's
                // tables need: leave the database exactly as the newer release set it up.
                println!(
                    "the database schema (V{database}) is newer than this binary's (V{binary}): \
                     it has {} that this binary does not know; nothing was changed",
                    unknown.join(", ")
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("database is migrated");
            if let Some(role) = args.runtime_role {
                store::grant_runtime_role(&database_url, &role).await?;
                println!("role {role} may now run `chatprefs serve` with least privilege");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::App(AppCommand::Create {
            app_id,
            json,
            allow_client_sign_in,
        }) => create_app(&database_url, &app_id, json, allow_client_sign_in).await,
        Command::App(AppCommand::ClientSignIn { app_id, state }) => {
            switch_client_sign_in(&database_url, &app_id, state).await
        }
        Command::Audit(args) => run_audit(&database_url, args).await,
        Command::Tail(args) => run_tail(&database_url, args).await,
        Command::Rebuild { verify: true } => Ok(run_verify(&database_url).await),
        Command::Rebuild { verify: false } => run_rebuild(&database_url).await,
        Command::Openapi => {
            print!("{}", crate::http::openapi::json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => run_bench(args).await,
    }
}

/// The database a command works on.
enum Database {
    /// `DATABASE_URL` or `--database-url`.
    Given(String),
    Fallback(Fallback),
}

impl Database {
    fn url(&self) -> String {
        match self {
            Database::Given(url) => url.clone(),
            Database::Fallback(fallback) => fallback.url(),
        }
    }

    /// Tells a newcomer which server they got (on stderr: stdout may be JSON for a script).
    fn announce(&self) {
        if let Database::Fallback(Fallback::Private(cluster)) = self {
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
                cluster.url("chatprefs"),
            );
        }
    }

    /// Stops the private server if this process started it.
    fn close(self) {
        if let Database::Fallback(Fallback::Private(cluster)) = self {
            tokio::task::block_in_place(|| cluster.stop());
        }
    }
}

async fn run_audit(database_url: &str, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let app = AppId::parse(args.app)?;
    store::migrate(database_url).await?;
    let pool = store::connect_pool(database_url, &pool_settings(1, 5000))?;
    let mut out = std::io::stdout().lock();
    if let Some(at) = args.as_of {
        let client = ClientId::parse(args.client.unwrap_or_default())?;
        let at = audit::parse_instant("--as-of", &at)?;
        let as_of = audit::muted_as_of(&pool, &app, &client, Some(at)).await?;
        audit::output::write_as_of(&mut out, args.format, &as_of)?;
    } else {
        let params = AuditParams {
            client: args.client,
            room: args.room,
            since: args.since,
            until: args.until,
            limit: args.limit,
            after: args.after,
        };
        let page = audit::page(&pool, &params.into_filter(app)?).await?;
        audit::output::write_page(&mut out, args.format, &page)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `tail` looks for new events while the feed is quiet.
const TAIL_POLL: Duration = Duration::from_millis(500);

async fn run_tail(database_url: &str, args: TailArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;

    let app = AppId::parse(args.app)?;
    store::migrate(database_url).await?;
    let pool = store::connect_pool(database_url, &pool_settings(1, 5000))?;
    let mut cursor = match (&args.after, args.from_now) {
        (Some(text), _) => {
            FeedCursor::decode(&app, text).map_err(|err| anyhow::anyhow!("--after: {err}"))?
        }
        (None, true) => feed::now(&pool).await?,
        (None, false) => FeedCursor::start(),
    };
    let mut out = std::io::stdout().lock();
    audit::output::write_tail_header(&mut out, args.format)?;
    out.flush()?;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let page = tokio::select! {
            page = feed::read(&pool, &app, &cursor, feed::MAX_LIMIT) => page,
            _ = &mut interrupted => break,
        };
        let quiet = match page {
            Ok(page) => {
                for entry in &page.entries {
                    audit::output::write_tail_entry(&mut out, args.format, entry)?;
                }
                out.flush()?;
                cursor = page.next;
                page.entries.is_empty()
            }
            // The database going away for a while is what a follower rides out.
            Err(feed::FeedError::Store(store::StoreError::Unavailable(detail))) => {
                eprintln!("database unavailable ({detail}); retrying");
                true
            }
            Err(err) => return Err(err.into()),
        };
        if quiet {
            tokio::select! {
                () = tokio::time::sleep(TAIL_POLL) => {}
                _ = &mut interrupted => break,
            }
        }
    }
    eprintln!("stopped; resume with --after {}", cursor.encode(&app));
    Ok(ExitCode::SUCCESS)
}

/// Exit 0: no drift; 1: drift, and nothing else; 2: no verdict (an error).
async fn run_verify(database_url: &str) -> ExitCode {
    let verified = async {
        store::migrate(database_url).await?;
        let pool = store::connect_pool(database_url, &pool_settings(1, 5000))?;
        anyhow::Ok(rebuild::verify(&pool).await?)
    }
    .await;
    let report = match verified {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: could not verify the read model: {err:#}");
            return ExitCode::from(2);
        }
    };
    for difference in &report.differences {
        println!("{difference}");
    }
    println!(
        "verified the read model against {} events: {} difference(s)",
        report.events,
        report.differences.len()
    );
    if report.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_rebuild(database_url: &str) -> anyhow::Result<ExitCode> {
    store::migrate(database_url).await?;
    let pool = store::connect_pool(database_url, &pool_settings(3, 5000))?;
    let report = rebuild::rebuild(&pool).await?;
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "rebuilt the read model from {} events in {seconds:.2} s ({:.0} events/s): \
         {} streams, {} muted rooms; {} catch-up round(s), writers held for {} ms; \
         read model reflects the log as of transaction {}",
        report.events,
        report.events as f64 / seconds.max(1e-3),
        report.streams,
        report.muted_rooms,
        report.catch_up_rounds,
        report.locked.as_millis(),
        report.checkpoint.xmax,
    );
    Ok(ExitCode::SUCCESS)
}

fn pool_settings(size: usize, timeout_ms: u64) -> PoolSettings {
    PoolSettings {
        max_size: size,
        timeout: Duration::from_millis(timeout_ms),
    }
}

async fn serve(
    database_url: String,
    args: ServeArgs,
    database: Option<Database>,
) -> anyhow::Result<ExitCode> {
    let settings = ServeSettings {
        database_url,
        read_database_url: args.read_database_url,
        bind: args.bind,
        pool: pool_settings(args.pool_size, args.pool_timeout_ms),
        workers: args.workers,
        trusted_proxies: args.trusted_proxies,
        shutdown_timeout_secs: args.shutdown_timeout_secs,
        cors_origins: args.cors_origins,
        limits: HttpLimits {
            max_body_bytes: args.max_body_bytes,
            max_header_bytes: args.max_header_bytes,
            client_request_timeout: Duration::from_millis(args.client_request_timeout_ms),
            keep_alive: Duration::from_secs(args.keep_alive_secs),
            max_connections_per_worker: args.max_connections as usize,
        },
        auth_failures: AuthFailureLimit {
            burst: args.auth_failure_burst,
            window: Duration::from_secs(args.auth_failure_window_secs),
        },
        live_streams: LiveLimits {
            per_process: args.live_streams_max as usize,
            per_user: args.live_streams_per_user as usize,
        },
        feed_poll_interval: Duration::from_millis(args.feed_poll_ms),
        feed_max_wait: Duration::from_secs(args.feed_max_wait_secs),
        auth_cache: AuthCacheSettings {
            ttl: Duration::from_secs(args.auth_cache_ttl_secs),
            capacity: usize::try_from(args.auth_cache_capacity).unwrap_or(usize::MAX),
        },
        request_deadline: (args.request_deadline_ms > 0)
            .then(|| Duration::from_millis(args.request_deadline_ms)),
    };
    tracing::info!(database = %store::describe(&settings.database_url), "connecting");
    let app = Application::build(&settings).await?;
    if args.demo {
        let demo = provision::ensure_demo(app.pool()).await?;
        print_demo(&demo, &settings.bind, app.port());
    }
    tracing::info!(bind = %settings.bind, port = app.port(), "chatprefs is listening");
    app.run_until_stopped().await?;
    tracing::info!("chatprefs stopped");
    if let Some(database) = database {
        database.close();
    }
    Ok(ExitCode::SUCCESS)
}

/// A URL a person on this machine can paste: wildcard binds are reached via loopback.
fn local_url(bind: &str, port: u16) -> String {
    let host = bind.rsplit_once(':').map_or(bind, |(host, _)| host);
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    format!("http://{host}:{port}")
}

fn print_demo(demo: &Demo, bind: &str, port: u16) {
    let url = local_url(bind, port);
    let c = &demo.credentials;
    println!(
        "\nchatprefs demo is ready (keys are printed here only; the API key and token are new at every start)\n\
         \n  app:         {}\n  client key:  {}\n  API key:     {}\n  user:        {}\n  token:       {}\n  room:        {}\n\
         \nMute the demo room as {}:\n\
         \n  curl -X POST '{url}/me/mute/{}' -H 'IM-CLIENT-KEY: {}' -H 'IM-Authorization: {}'\n\
         \nUnmute it:\n\
         \n  curl -X DELETE '{url}/me/mute/{}' -H 'IM-CLIENT-KEY: {}' -H 'IM-Authorization: {}'\n",
        c.app_id, c.client_key, c.api_key, demo.user, demo.token, demo.room,
        demo.user, demo.room, c.client_key, demo.token,
        demo.room, c.client_key, demo.token,
    );
}

async fn app_pool(database_url: &str) -> anyhow::Result<Pool> {
    store::ensure_database(database_url).await?;
    store::migrate(database_url).await?;
    store::connect_pool(database_url, &pool_settings(1, 5000))
}

/// What the operator did wrong is a message and exit 1, not an error trace.
fn provisioned<T>(
    result: Result<T, ProvisionError>,
    done: impl FnOnce(T) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(value) => {
            done(value)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err @ (ProvisionError::AppExists(_) | ProvisionError::NoSuchApp(_))) => {
            eprintln!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
        Err(err) => Err(err.into()),
    }
}

async fn create_app(
    database_url: &str,
    app_id: &str,
    json: bool,
    client_sign_in: bool,
) -> anyhow::Result<ExitCode> {
    let app = AppId::parse(app_id)?;
    let pool = app_pool(database_url).await?;
    let created = provision::create_app_with(&pool, &app, client_sign_in).await;
    provisioned(created, |credentials| print_credentials(&credentials, json))
}

async fn switch_client_sign_in(
    database_url: &str,
    app_id: &str,
    state: Switch,
) -> anyhow::Result<ExitCode> {
    let app = AppId::parse(app_id)?;
    let pool = app_pool(database_url).await?;
    let enabled = matches!(state, Switch::On);
    let switched = provision::set_client_sign_in(&pool, &app, enabled).await;
    provisioned(switched, |()| {
        let state = if enabled { "on" } else { "off" };
        println!("client sign-in is {state} for app {app}");
        Ok(())
    })
}

async fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = BenchConfig {
        url: args.url,
        client_key: args.client_key,
        api_key: args.api_key,
        users: args.users as usize,
        rooms: args.rooms as usize,
        connections: args.connections as usize,
        stop: args
            .requests
            .map_or(Stop::After(args.duration), Stop::Requests),
        mix: args.mix,
        prefix: args.prefix,
        progress: bench::progress_wanted(),
        flood: (args.flood_keys > 0).then_some(bench::Flood {
            connections: args.flood_connections as usize,
            keys: args.flood_keys,
        }),
    };
    if config.progress {
        eprintln!(
            "setting up {} users and {} rooms…",
            config.users, config.rooms
        );
    }
    let fixture = bench::setup(&config).await?;
    let report = bench::run(&config, fixture).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        bench::print_report(&report);
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_credentials(credentials: &AppCredentials, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(credentials)?);
    } else {
        println!(
            "app:        {}\nclient key: {}\nAPI key:    {}   (shown only now: store it safely)",
            credentials.app_id, credentials.client_key, credentials.api_key
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_reached_via_loopback() {
        assert_eq!(local_url("0.0.0.0:8080", 8080), "http://127.0.0.1:8080");
        assert_eq!(local_url("127.0.0.1:0", 4321), "http://127.0.0.1:4321");
        assert_eq!(local_url("[::]:80", 80), "http://[::1]:80");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
