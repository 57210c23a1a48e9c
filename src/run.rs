//! What each command of the command line does: open the database it needs, call the
//! library, print through the module that owns the output, choose the exit code.

use std::process::ExitCode;
use std::time::Duration;

use crate::audit::{self, AuditParams};
use crate::cli::{
    AppCommand, AuditArgs, Cli, Command, KeyCommand, KeyRole, ServeArgs, Switch, TailArgs,
};
use crate::config::{AuthCacheSettings, AuthFailureLimit, HttpLimits, ServeSettings};
use crate::domain::{Actor, ActorKind, AppId, ClientId, EventMetadata};
use crate::feed::live::LiveLimits;
use crate::feed::{self, FeedCursor};
use crate::private_cluster::{self, Fallback};
use crate::provision::{self, ProvisionError};
use crate::rebuild;
use crate::service::{self, ServiceError};
use crate::startup::Application;
use crate::store::{self, keys::Role, Pool, PoolSettings};

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let database = match (&cli.command, cli.database_url) {
        (Command::Openapi | Command::Bench { .. }, _) => None,
        (_, Some(url)) => Some(Database::Given(url)),
        (command, None) => {
            let may_start = matches!(command, Command::Serve(args) if args.demo);
            let fallback =
                tokio::task::block_in_place(|| private_cluster::resolve_without_url(may_start))?;
            Some(Database::Fallback(fallback))
        }
    };
    if let Some(Database::Fallback(fallback)) = &database {
        fallback.announce();
    }
    let database_url = database.as_ref().map(Database::url).unwrap_or_default();
    match cli.command {
        Command::Serve(args) => serve(database_url, args, database).await,
        Command::Migrate(args) => migrate(&database_url, args.runtime_role).await,
        Command::App(AppCommand::Create {
            app_id,
            json,
            allow_client_sign_in,
        }) => create_app(&database_url, &app_id, json, allow_client_sign_in).await,
        Command::App(AppCommand::ClientSignIn { app_id, state }) => {
            switch_client_sign_in(&database_url, &app_id, state).await
        }
        Command::App(AppCommand::Key(command)) => run_key(&database_url, command).await,
        Command::Audit(args) => run_audit(&database_url, args).await,
        Command::Tail(args) => run_tail(&database_url, args).await,
        Command::Erase { app, client } => run_erase(&database_url, app, client).await,
        Command::Prune { retention } => {
            run_prune(&database_url, retention.personal_data_retention_days).await
        }
        Command::Rebuild { verify: true } => Ok(run_verify(&database_url).await),
        Command::Rebuild { verify: false } => run_rebuild(&database_url).await,
        Command::Openapi => {
            print!("{}", crate::http::openapi::json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { .. } => {
            eprintln!(
                "error: the load generator is its own binary now, so the service does not \
                 link it; run it with the same options as\n\n  \
                 cargo run --release --features bench --bin chatprefs-bench -- --help"
            );
            Ok(ExitCode::from(2))
        }
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

    /// Stops the private server if this process started it.
    fn close(self) {
        if let Database::Fallback(Fallback::Private(cluster)) = self {
            tokio::task::block_in_place(|| cluster.stop());
        }
    }
}

async fn migrate(database_url: &str, runtime_role: Option<String>) -> anyhow::Result<ExitCode> {
    store::ensure_database(database_url).await?;
    if let store::Migrated::Newer {
        binary,
        database,
        unknown,
    } = store::migrate(database_url).await?
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
    if let Some(role) = runtime_role {
        store::grant_runtime_role(database_url, &role).await?;
        println!("role {role} may now run `chatprefs serve` with least privilege");
    }
    Ok(ExitCode::SUCCESS)
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

/// Erases through the same service function as `POST /admin/clients/{uid}/erase`; the
/// erasure is recorded as the app's admin, with a request id of its own.
async fn run_erase(database_url: &str, app: String, client: String) -> anyhow::Result<ExitCode> {
    let (app, client) = (AppId::parse(app)?, ClientId::parse(client)?);
    store::migrate(database_url).await?;
    let pool = store::connect_pool(database_url, &pool_settings(1, 5000))?;
    let metadata = EventMetadata {
        actor: Actor {
            kind: ActorKind::Admin,
            id: app.as_str().to_owned(),
        },
        request_id: format!("cli-{}", uuid::Uuid::new_v4()),
        address: None,
        port: None,
        user_agent: None,
    };
    match service::privacy::erase(&pool, &app, &client, &metadata).await {
        Ok(erased) => {
            println!(
                "erased {} of {}: {} events' personal data, profile {}, {} tokens revoked{}",
                client.as_str(),
                app.as_str(),
                erased.events_erased,
                if erased.profile_cleared {
                    "cleared"
                } else {
                    "already empty"
                },
                erased.tokens_revoked,
                match erased.event_id {
                    Some(id) => format!("; recorded as PersonalDataErased {id}"),
                    None => "; nothing was left to erase".to_owned(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ServiceError::ClientNotFound) => {
            eprintln!(
                "error: app {} has no user {}",
                app.as_str(),
                client.as_str()
            );
            Ok(ExitCode::from(1))
        }
        Err(err) => Err(err.into()),
    }
}

async fn run_prune(database_url: &str, retention_days: u32) -> anyhow::Result<ExitCode> {
    if retention_days == 0 {
        println!("personal data retention is 0 days (keep forever): nothing to prune");
        return Ok(ExitCode::SUCCESS);
    }
    store::migrate(database_url).await?;
    let pool = store::connect_pool(database_url, &pool_settings(1, 5000))?;
    let started = std::time::Instant::now();
    let expired = service::privacy::expire(&pool, retention_days, |so_far| {
        if so_far > 0 {
            eprintln!("expired {so_far} events' personal data so far");
        }
    })
    .await?;
    println!(
        "expired the personal data of {expired} events older than {retention_days} days in {:.1} s",
        started.elapsed().as_secs_f64()
    );
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
        refuse_newer_schema(store::migrate(database_url).await?, "verify")?;
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
    rebuild::output::print_verify(&report);
    if report.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_rebuild(database_url: &str) -> anyhow::Result<ExitCode> {
    refuse_newer_schema(store::migrate(database_url).await?, "rebuild")?;
    let pool = store::connect_pool(database_url, &pool_settings(4, 5000))?;
    let report = rebuild::rebuild(&pool).await?;
    rebuild::output::print_rebuild(&report);
    Ok(ExitCode::SUCCESS)
}

/// `serve` and the reads run on a newer release's schema (migrations only expand it), but
/// rebuild and verify fold the whole log with this binary's events and columns: a release
/// that does not know a newer event or column would rebuild without it (a timed mute
/// becomes forever) and verify would call that correct.
fn refuse_newer_schema(migrated: store::Migrated, command: &str) -> anyhow::Result<()> {
    match migrated {
        store::Migrated::Current { .. } => Ok(()),
        store::Migrated::Newer {
            binary,
            database,
            unknown,
        } => anyhow::bail!(
            "the database schema (V{database}) is newer than this binary's (V{binary}): it \
             has {} that this binary does not know, so its {command} would drop what only the \
             newer release knows; run {command} with the newest release; nothing was changed",
            unknown.join(", ")
        ),
    }
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
        stream_cache_capacity: usize::try_from(args.stream_cache_capacity).unwrap_or(usize::MAX),
        request_deadline: (args.request_deadline_ms > 0)
            .then(|| Duration::from_millis(args.request_deadline_ms)),
        lock_timeout: (args.lock_timeout_ms > 0)
            .then(|| Duration::from_millis(args.lock_timeout_ms)),
        personal_data_retention_days: args.retention.personal_data_retention_days,
    };
    tracing::info!(database = %store::describe(&settings.database_url), "connecting");
    let app = Application::build(&settings).await?;
    if args.demo {
        let demo = provision::ensure_demo(app.pool()).await?;
        provision::print_demo(&demo, &settings.bind, app.port());
    }
    tracing::info!(bind = %settings.bind, port = app.port(), "chatprefs is listening");
    app.run_until_stopped().await?;
    tracing::info!("chatprefs stopped");
    if let Some(database) = database {
        database.close();
    }
    Ok(ExitCode::SUCCESS)
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
        Err(
            err @ (ProvisionError::AppExists(_)
            | ProvisionError::NoSuchApp(_)
            | ProvisionError::KeyNameTaken(..)
            | ProvisionError::InvalidKeyName
            | ProvisionError::NoSuchKey(..)),
        ) => {
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
    provisioned(created, |credentials| {
        Ok(provision::print_credentials(&credentials, json)?)
    })
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

async fn run_key(database_url: &str, command: KeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Create {
            app,
            role,
            name,
            json,
        } => {
            let app = AppId::parse(app)?;
            let role = match role {
                KeyRole::Support => Role::Support,
                KeyRole::Platform => Role::Platform,
            };
            let pool = app_pool(database_url).await?;
            let created = provision::create_key(&pool, &app, role, name.as_deref()).await;
            provisioned(created, |key| Ok(provision::print_key(&key, json)?))
        }
        KeyCommand::List { app, json } => {
            let app = AppId::parse(app)?;
            let pool = app_pool(database_url).await?;
            let listed = provision::list_keys(&pool, &app).await;
            provisioned(listed, |keys| Ok(provision::print_keys(&keys, json)?))
        }
        KeyCommand::Revoke { app, name } => {
            let app = AppId::parse(app)?;
            let pool = app_pool(database_url).await?;
            let revoked = provision::revoke_key(&pool, &app, &name).await;
            provisioned(revoked, |()| {
                println!("key {name:?} of app {app} is revoked");
                Ok(())
            })
        }
    }
}
