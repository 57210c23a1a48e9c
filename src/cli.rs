//! The command line's definition: `serve`, `migrate`, `app create`, `app client-sign-in`,
//! `app key create|list|revoke`, `openapi`, `audit`, `tail`, `rebuild`, `erase`, `prune`. What
//! each command does is in `run.rs`.

use std::net::IpAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::output::{Format, TailFormat};
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
    /// Erase a user's personal data (as `POST /admin/clients/{uid}/erase` does): the address,
    /// port and user agent of their events, their nickname, email and avatar, every token.
    /// The facts of their events stay; the erasure is recorded as `PersonalDataErased`.
    Erase {
        /// The user's app.
        #[arg(long)]
        app: String,
        /// The user's id.
        #[arg(long)]
        client: String,
    },
    /// Expire the personal data (address, port, user agent) of events older than the
    /// retention window, in batches, printing progress and a summary; for cron. The facts of
    /// the events stay.
    Prune {
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Print the OpenAPI 3.1 document (as served at /openapi.json); regenerate the committed
    /// copy with `chatprefs openapi > docs/openapi.json`.
    Openapi,
    /// The load generator moved to its own binary, `chatprefs-bench`, so the service does
    /// not link it; this only says how to run that.
    #[command(hide = true, disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    /// Small by default: a database serves most with a few busy connections per core, and
    /// every instance behind a load balancer holds its own (docs/performance.md).
    #[arg(long, env = "CHATPREFS_POOL_SIZE", default_value_t = 8)]
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

    /// Users whose preference stream this process remembers between their requests, so that
    /// a mute or unmute usually costs one database round trip instead of two (a remembered
    /// state that another instance has moved past is caught by the append's version check
    /// and loaded again; see docs/performance.md); 0 turns it off.
    #[arg(
        long,
        env = "CHATPREFS_STREAM_CACHE_CAPACITY",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(0..=10_000_000)
    )]
    pub stream_cache_capacity: u64,

    /// Milliseconds a request may wait for a database connection before it is answered 503
    /// `SERVICE_UNAVAILABLE` with `Retry-After` instead of queueing behind the others; 0
    /// (the default): the pool timeout alone bounds the wait.
    #[arg(long, env = "CHATPREFS_REQUEST_DEADLINE_MS", default_value_t = 0)]
    pub request_deadline_ms: u64,

    /// Milliseconds a request may wait for a lock another database session holds (a
    /// user's stream held by a transaction left open, a table locked by a migration or a
    /// rebuild's swap), and for an earlier request of the same user in this process, before
    /// it is answered 503 `SERVICE_UNAVAILABLE` with `Retry-After`; 0: no bound. A lock
    /// timeout in the database URL's `options` wins over this.
    #[arg(long, env = "CHATPREFS_LOCK_TIMEOUT_MS", default_value_t = 2000)]
    pub lock_timeout_ms: u64,

    // Personal data older than the window is removed every hour by the service, as
    // `chatprefs prune` does.
    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Days an event's address, port and user agent are kept; then they are removed (the
    /// audit shows `personalData: "expired"`). 0 keeps them forever.
    #[arg(
        long,
        env = "CHATPREFS_PERSONAL_DATA_RETENTION_DAYS",
        default_value_t = 90
    )]
    pub personal_data_retention_days: u32,
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
    /// An app's further API keys, each `support` (reads only) or `platform`.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add an API key and print it: it is shown only now (stored as SHA-256).
    Create {
        #[arg(long)]
        app: String,
        /// `support` may read the audit, as-of answers, the change feed, a room's muters
        /// and a user's profile, and sign in to the console; `platform` may also write.
        #[arg(long, value_enum)]
        role: KeyRole,
        /// A name to list and revoke it by (unique among the app's live keys); default: the
        /// role and a random suffix.
        #[arg(long)]
        name: Option<String>,
        /// Print the key as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List the app's keys: name, role, created, last used (to the minute), revoked. Never
    /// the keys themselves. `default` is the key `app create` printed.
    List {
        #[arg(long)]
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by name: refused at once by every instance (within a second), and its
    /// console sessions end.
    Revoke {
        #[arg(long)]
        app: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyRole {
    Support,
    Platform,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
