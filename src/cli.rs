//! Command line: `serve`, `migrate`, `app create`, `audit`, `rebuild`.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::audit::{self, output::Format, AuditParams};
use crate::config::{ServeSettings, DEFAULT_DATABASE_URL};
use crate::domain::{AppId, ClientId};
use crate::provision::{self, AppCredentials, Demo, ProvisionError};
use crate::rebuild;
use crate::startup::Application;
use crate::store::{self, PoolSettings};

#[derive(Debug, Parser)]
#[command(
    name = "chatprefs",
    version,
    about = "IMKIT-compatible notification preferences on an append-only PostgreSQL event log"
)]
pub struct Cli {
    /// PostgreSQL connection URL; the database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (migrates the database first).
    Serve(ServeArgs),
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Manage apps (tenants).
    #[command(subcommand)]
    App(AppCommand),
    /// Support: an app's event history with provenance, or a user's mutes at an instant.
    Audit(AuditArgs),
    /// Replay the log into a fresh read model and swap it in; safe while `serve` runs.
    Rebuild {
        /// Only compare the read model with the log: print every difference, change
        /// nothing, exit 1 on drift.
        #[arg(long)]
        verify: bool,
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
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CHATPREFS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Make sure a demo app, user and room exist and print their keys, a fresh token and a
    /// ready `curl` command.
    #[arg(long)]
    pub demo: bool,

    /// Most database connections held open.
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
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(cli.database_url, args).await,
        Command::Migrate => {
            store::ensure_database(&cli.database_url).await?;
            store::migrate(&cli.database_url).await?;
            println!("database is migrated");
            Ok(ExitCode::SUCCESS)
        }
        Command::App(AppCommand::Create { app_id, json }) => {
            create_app(&cli.database_url, &app_id, json).await
        }
        Command::Audit(args) => run_audit(&cli.database_url, args).await,
        Command::Rebuild { verify } => run_rebuild(&cli.database_url, verify).await,
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
        let as_of = audit::muted_as_of(&pool, &app, &client, at).await?;
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

async fn run_rebuild(database_url: &str, verify: bool) -> anyhow::Result<ExitCode> {
    store::migrate(database_url).await?;
    let pool = store::connect_pool(database_url, &pool_settings(2, 5000))?;
    if verify {
        let report = rebuild::verify(&pool).await?;
        for difference in &report.differences {
            println!("{difference}");
        }
        println!(
            "verified the read model against {} events: {} difference(s)",
            report.events,
            report.differences.len()
        );
        return Ok(if report.differences.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let report = rebuild::rebuild(&pool).await?;
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "rebuilt the read model from {} events in {seconds:.2} s ({:.0} events/s): \
         {} streams, {} muted rooms; {} catch-up round(s), writers held for {} ms; \
         checkpoint at position {}",
        report.events,
        report.events as f64 / seconds.max(1e-3),
        report.streams,
        report.muted_rooms,
        report.catch_up_rounds,
        report.locked.as_millis(),
        report.checkpoint.position,
    );
    Ok(ExitCode::SUCCESS)
}

fn pool_settings(size: usize, timeout_ms: u64) -> PoolSettings {
    PoolSettings {
        max_size: size,
        timeout: Duration::from_millis(timeout_ms),
    }
}

async fn serve(database_url: String, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = ServeSettings {
        database_url,
        bind: args.bind,
        pool: pool_settings(args.pool_size, args.pool_timeout_ms),
        workers: args.workers,
        trusted_proxies: args.trusted_proxies,
        shutdown_timeout_secs: args.shutdown_timeout_secs,
    };
    let app = Application::build(&settings).await?;
    if args.demo {
        let demo = provision::ensure_demo(app.pool()).await?;
        print_demo(&demo, &settings.bind, app.port());
    }
    tracing::info!(bind = %settings.bind, port = app.port(), "chatprefs is listening");
    app.run_until_stopped().await?;
    tracing::info!("chatprefs stopped");
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

async fn create_app(database_url: &str, app_id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let app = AppId::parse(app_id)?;
    store::ensure_database(database_url).await?;
    store::migrate(database_url).await?;
    let pool = store::connect_pool(database_url, &pool_settings(1, 5000))?;
    match provision::create_app(&pool, &app).await {
        Ok(credentials) => {
            print_credentials(&credentials, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(err @ ProvisionError::AppExists(_)) => {
            eprintln!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
        Err(err) => Err(err.into()),
    }
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
