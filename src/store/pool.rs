use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Status,
};
use tokio_postgres::config::Host;
use tokio_postgres::{error::SqlState, Config, NoTls};

use super::StoreError;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Key of the advisory lock that keeps two instances from migrating at once.
pub(super) const MIGRATION_LOCK_KEY: i64 = 0x6368_6174_7072_6566; // "chatpref"

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    /// How long a request may wait for a connection before it is answered 503.
    pub timeout: Duration,
}

/// How long data sent to the database may stay unacknowledged before the connection is
/// given up, unless the URL sets `tcp_user_timeout`. Without it, a query sent to a server
/// that vanished without closing its sockets (power loss, a partition) waits for the
/// kernel's retransmissions, about 15 minutes, instead of failing over.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection settings of a pool: the URL's, with this service's defaults where the URL
/// is silent.
pub(super) fn client_config(database_url: &str, settings: &PoolSettings) -> anyhow::Result<Config> {
    let mut config: Config = database_url.parse()?;
    // Per host tried: with several hosts, a dead one costs at most this before the next.
    config.connect_timeout(settings.timeout);
    if config.get_application_name().is_none() {
        config.application_name("chatprefs");
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    Ok(config)
}

/// Where a connection string points, for messages: hosts with ports, database and user,
/// never the password.
pub fn describe(database_url: &str) -> String {
    match database_url.parse::<Config>() {
        Ok(config) => describe_config(&config),
        Err(_) => "an unreadable DATABASE_URL".to_owned(),
    }
}

fn describe_config(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or_else(|| ports.first()).unwrap_or(&5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect::<Vec<_>>();
    let user = config.get_user().unwrap_or("(the OS user)");
    let database = config.get_dbname().unwrap_or(user);
    format!(
        "PostgreSQL at {} (database {database}, user {user})",
        if hosts.is_empty() {
            "(no host)".to_owned()
        } else {
            hosts.join(", ")
        }
    )
}

pub fn connect_pool(database_url: &str, settings: &PoolSettings) -> anyhow::Result<Pool> {
    connect_request_pool(database_url, settings, RequestWaits::default())
}

/// How long a request's database work may wait, beyond what the pool bounds itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestWaits {
    /// For a free connection, when shorter than the pool timeout. Connecting keeps the
    /// whole timeout: a server found slow to connect to is not the overload this sheds.
    pub queue: Option<Duration>,
    /// For a lock another session holds (PostgreSQL's `lock_timeout`), unless the URL sets
    /// one. A request waiting on a lock holds its connection, so without a bound a lock
    /// left held (a transaction open in psql, an instance frozen inside one) ties up
    /// connections for as long as it lasts.
    pub lock: Option<Duration>,
}

/// [`connect_pool`] whose connections' waits are bounded by `waits`.
fn connect_request_pool(
    database_url: &str,
    settings: &PoolSettings,
    waits: RequestWaits,
) -> anyhow::Result<Pool> {
    let config = client_config(database_url, settings)?;
    // Set with SET once connected rather than as a startup `options`: connection poolers
    // (PgBouncer by default) refuse startup parameters they do not track.
    let set_lock_timeout = waits
        .lock
        .filter(|_| {
            // PostgreSQL reads `-c lock-timeout=…` as `lock_timeout` too.
            let options = config.get_options().unwrap_or_default();
            !options.contains("lock_timeout") && !options.contains("lock-timeout")
        })
        .map(|lock| format!("SET lock_timeout = {}", lock.as_millis()));
    let wait = waits
        .queue
        .map_or(settings.timeout, |d| d.min(settings.timeout));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if let Some(set) = set_lock_timeout {
        builder = builder.post_create(Hook::async_fn(move |client, _| {
            let set = set.clone();
            Box::pin(async move { client.batch_execute(&set).await.map_err(HookError::Backend) })
        }));
    }
    Ok(builder
        .max_size(settings.max_size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// One pool per HTTP worker thread. A connection's I/O task runs on the runtime that
/// opened it; with a pool per worker, that is the worker using it, so a query wakes no
/// other thread (a shared pool hands a worker connections driven by another thread,
/// which costs a cross-thread wake-up in each direction of every round trip).
#[derive(Clone)]
pub struct WorkerPools {
    pools: Arc<Vec<Pool>>,
    next: Arc<AtomicUsize>,
}

impl WorkerPools {
    /// Splits `settings.max_size` connections evenly over `workers` pools (at least one each),
    /// whose requests' waits `waits` bounds.
    pub fn new(
        database_url: &str,
        settings: &PoolSettings,
        workers: usize,
        waits: RequestWaits,
    ) -> anyhow::Result<Self> {
        let workers = workers.max(1);
        let each = PoolSettings {
            max_size: settings.max_size.div_ceil(workers),
            ..settings.clone()
        };
        let pools = (0..workers)
            .map(|_| connect_request_pool(database_url, &each, waits))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(WorkerPools {
            pools: Arc::new(pools),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The pool for the worker being started; a restarted worker takes the next one round.
    pub fn for_worker(&self) -> Pool {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.pools.len();
        self.pools[index].clone()
    }

    /// All pools together, for metrics.
    pub fn status(&self) -> Status {
        self.pools.iter().map(Pool::status).fold(
            Status {
                max_size: 0,
                size: 0,
                available: 0,
                waiting: 0,
            },
            |sum, s| Status {
                max_size: sum.max_size + s.max_size,
                size: sum.size + s.size,
                available: sum.available + s.available,
                waiting: sum.waiting + s.waiting,
            },
        )
    }
}

pub(super) async fn connect(config: &Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", describe_config(config)))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "database connection closed");
        }
    });
    Ok(client)
}

/// Creates the database named in `database_url` when it does not exist yet, connecting to
/// the server's `postgres` database to do so.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn ensure_database(database_url: &str) -> anyhow::Result<()> {
    let config: Config = database_url.parse()?;
    let name = config
        .get_dbname()
        .map(str::to_owned)
        .or_else(|| config.get_user().map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?;
    // A role that may connect to its database (the runtime role) needs nothing more.
    if connect(&config).await.is_ok() {
        return Ok(());
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = connect(&admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            Err(err) if created_concurrently(&err, SqlState::DUPLICATE_DATABASE) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// What [`migrate`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The schema is the one this binary was built for; these migrations were applied now.
    Current { applied: Vec<String> },
    /// A newer release migrated the database further. Migrations only expand the schema
    /// (see docs/operations.md), so this binary still runs on it; nothing was changed.
    Newer {
        binary: u32,
        database: u32,
        unknown: Vec<String>,
    },
}

/// Applies pending migrations under an advisory lock, so instances starting together do
/// not race each other. A database that a newer release migrated further is left as it
/// is, so an older binary can still start during a rolling deploy or after a rollback.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn migrate(database_url: &str) -> anyhow::Result<Migrated> {
    let config: Config = database_url.parse()?;
    let mut client = connect(&config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let outcome = migrate_locked(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let outcome = outcome?;
    match &outcome {
        Migrated::Current { applied } => applied
            .iter()
            .for_each(|migration| tracing::info!(%migration, "applied migration")),
        Migrated::Newer {
            binary,
            database,
            unknown,
        } => tracing::warn!(
            binary_schema = binary,
            database_schema = database,
            unknown = unknown.join(", "),
            "the database schema is newer than this binary; running on it unchanged"
        ),
    }
    Ok(outcome)
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> anyhow::Result<Migrated> {
    let runner = embedded::migrations::runner().set_abort_divergent(true);
    let known = runner.get_migrations();
    let applied = applied_migrations(&runner, client).await?;
    let plan = plan(known, &applied)?;
    if let Some(newer) = plan {
        return Ok(newer);
    }
    if may_change_schema(client).await? {
        let report = runner.run_async(client).await?;
        let applied = report.applied_migrations().iter().map(|m| m.to_string());
        return Ok(Migrated::Current {
            applied: applied.collect(),
        });
    }
    // The runtime role cannot migrate, and must not try: it only checks that an owner did.
    if let Some(missing) = known.iter().find(|m| !applied.contains(m)) {
        anyhow::bail!(
            "the database schema is behind (it lacks {missing}) and this role may not \
             migrate it: run `chatprefs migrate` as the schema owner first"
        );
    }
    Ok(Migrated::Current {
        applied: Vec::new(),
    })
}

/// Every migration recorded in the database; none before the first `migrate`.
async fn applied_migrations(
    runner: &refinery::Runner,
    client: &mut tokio_postgres::Client,
) -> anyhow::Result<Vec<refinery::Migration>> {
    let history = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?;
    if !history.get::<_, bool>(0) {
        return Ok(Vec::new());
    }
    Ok(runner.get_applied_migrations_async(client).await?)
}

/// `Some` when the database is ahead of this binary: everything this binary knows is
/// applied, unchanged, and the rest came later. Migrations this binary knows but that were
/// changed, or unknown ones interleaved with known ones, are not a newer release: refuse.
fn plan(
    known: &[refinery::Migration],
    applied: &[refinery::Migration],
) -> anyhow::Result<Option<Migrated>> {
    let binary = known.iter().map(|m| m.version()).max().unwrap_or_default();
    for migration in applied {
        if let Some(ours) = known.iter().find(|k| k.version() == migration.version()) {
            if ours != migration {
                anyhow::bail!(
                    "the database applied {migration}, which differs from this binary's {ours}"
                );
            }
        }
    }
    let unknown: Vec<_> = applied
        .iter()
        .filter(|m| !known.iter().any(|k| k.version() == m.version()))
        .collect();
    if unknown.is_empty() {
        return Ok(None);
    }
    if let Some(foreign) = unknown.iter().find(|m| m.version() < binary) {
        anyhow::bail!(
            "the database applied {foreign}, which this binary does not know although it \
             is older than this binary's latest (V{binary}): not a newer release of chatprefs"
        );
    }
    if let Some(missing) = known.iter().find(|k| !applied.contains(k)) {
        anyhow::bail!(
            "the database has migrations newer than this binary's but lacks {missing}: \
             migrate it with the newest release"
        );
    }
    Ok(Some(Migrated::Newer {
        binary,
        database: unknown.iter().map(|m| m.version()).max().unwrap_or(binary),
        unknown: unknown.iter().map(|m| m.to_string()).collect(),
    }))
}

/// Another session created the object between our check and our CREATE. PostgreSQL says
/// so with the object's own code when it sees the other's committed row, but with 23505
/// (the catalog's unique index) when both CREATEs run at the same time.
pub(super) fn created_concurrently(err: &tokio_postgres::Error, duplicate: SqlState) -> bool {
    err.code()
        .is_some_and(|code| *code == duplicate || *code == SqlState::UNIQUE_VIOLATION)
}

async fn may_change_schema(client: &tokio_postgres::Client) -> anyhow::Result<bool> {
    let row = client
        .query_one("SELECT has_schema_privilege('public', 'CREATE')", &[])
        .await?;
    Ok(row.get(0))
}

/// The schema version the database has, next to the one this binary migrates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// `None` when no migration was ever applied.
    pub applied: Option<u32>,
    pub expected: u32,
}

impl SchemaStatus {
    /// A newer schema counts as current: each migration keeps the previous release working,
    /// and during a rolling deploy the instances not yet replaced must stay in the load
    /// balancer.
    pub fn is_current(&self) -> bool {
        self.applied.is_some_and(|v| v >= self.expected)
    }
}

#[tracing::instrument(skip_all)]
pub async fn schema_status(pool: &Pool) -> Result<SchemaStatus, StoreError> {
    let mut conn = pool.get().await?;
    let runner = embedded::migrations::runner();
    let expected = runner
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or_default();
    let client: &mut tokio_postgres::Client = &mut conn;
    // refinery wraps the driver's error; a failure to read its history table (missing,
    // connection lost) means the same to a caller: the schema is not known to be current.
    let applied = runner
        .get_last_applied_migration_async(client)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?
        .map(|m| m.version());
    Ok(SchemaStatus { applied, expected })
}

impl From<deadpool_postgres::BuildError> for StoreError {
    fn from(err: deadpool_postgres::BuildError) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refinery::Migration;

    fn settings() -> PoolSettings {
        PoolSettings {
            max_size: 1,
            timeout: Duration::from_millis(1500),
        }
    }

    #[test]
    fn a_silent_url_gets_the_services_timeouts_and_name() {
        let config = client_config("postgres://u@h1:5432,h2:5433/db", &settings()).unwrap();
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(
            config.get_connect_timeout(),
            Some(&Duration::from_millis(1500))
        );
        assert_eq!(config.get_application_name(), Some("chatprefs"));
    }

    #[test]
    fn what_the_url_says_wins() {
        let config = client_config(
            "host=h1,h2 port=5432,5433 dbname=db tcp_user_timeout=3 application_name=edge",
            &settings(),
        )
        .unwrap();
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(config.get_application_name(), Some("edge"));
    }

    #[test]
    fn a_description_names_every_host_and_the_database_but_no_password() {
        let url = "postgres://app:s3cret@db1.example:5432,db2.example:5433/prefs?target_session_attrs=read-write";
        let described = describe(url);
        assert_eq!(
            described,
            "PostgreSQL at db1.example:5432, db2.example:5433 (database prefs, user app)"
        );
        assert_eq!(
            describe("host=/run/pg,10.0.0.2 port=5432 user=svc dbname=prefs password=s3cret"),
            "PostgreSQL at /run/pg/.s.PGSQL.5432, 10.0.0.2:5432 (database prefs, user svc)"
        );
        assert!(!describe("postgres://u:s3cret@[::1]:5/d").contains("s3cret"));
        assert_eq!(
            describe("postgres://u:s3cret@[::1]:5/d"),
            "PostgreSQL at [::1]:5 (database d, user u)"
        );
    }

    fn m(name: &str) -> Migration {
        Migration::unapplied(name, "SELECT 1").unwrap()
    }

    #[test]
    fn a_database_ahead_of_the_binary_is_a_newer_release() {
        let known = [m("V1__a"), m("V2__b")];
        let applied = [m("V1__a"), m("V2__b"), m("V3__c"), m("V4__d")];
        assert_eq!(
            plan(&known, &applied).unwrap(),
            Some(Migrated::Newer {
                binary: 2,
                database: 4,
                unknown: vec!["V3__c".into(), "V4__d".into()],
            })
        );
        assert_eq!(plan(&known, &known).unwrap(), None);
        assert_eq!(
            plan(&known, &[m("V1__a")]).unwrap(),
            None,
            "behind: migrate"
        );
    }

    #[test]
    fn anything_else_unknown_is_refused() {
        let known = [m("V1__a"), m("V3__c")];
        let changed = plan(&known, &[m("V1__x"), m("V3__c")]).unwrap_err();
        assert!(changed.to_string().contains("differs"), "{changed}");
        let foreign = plan(&known, &[m("V1__a"), m("V2__b"), m("V3__c")]).unwrap_err();
        assert!(foreign.to_string().contains("V2__b"), "{foreign}");
        let gap = plan(&known, &[m("V1__a"), m("V4__d")]).unwrap_err();
        assert!(gap.to_string().contains("lacks V3__c"), "{gap}");
    }
}
