//! Builds the HTTP server from settings: the one place that wires pool, routes and middleware.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{
    dev::Server,
    http::KeepAlive,
    middleware::{from_fn, ErrorHandlers},
    web, App, HttpServer,
};
use tracing_actix_web::TracingLogger;

use tokio::sync::watch;

use crate::auth_cache::AuthCache;
use crate::config::ServeSettings;
use crate::feed::live::{LiveContext, LiveStreams};
use crate::feed::watcher::LogWatcher;
use crate::http::{self, CorsOrigins, MaxHeaderBytes, RequestSpan, SignInLimiter, TrustedProxies};
use crate::key_usage::{self, KeyUsage};
use crate::ratelimit::FailureLimiter;
use crate::service::{privacy, stream_cache::StreamCache, sweep, turns::UserTurns, Service};
use crate::store::{self, Pool, PoolSettings, ReadPool, ReplicaHealth, RequestWaits, WorkerPools};

pub struct Application {
    port: u16,
    server: Server,
    pool: Pool,
    auth_cache: Option<Arc<AuthCache>>,
    key_usage: Arc<KeyUsage>,
    /// Tells live streams to end, so that a stopping server is not held open by them.
    shutdown: watch::Sender<bool>,
}

impl Application {
    /// Creates the database if needed, migrates it, binds and returns a server ready to run.
    pub async fn build(settings: &ServeSettings) -> anyhow::Result<Self> {
        store::ensure_database(&settings.database_url).await?;
        store::migrate(&settings.database_url).await?;
        Self::start(settings)
    }

    /// Binds and returns a server without touching the database first: connections are
    /// made on demand, so the service starts (and answers 503) while PostgreSQL is down.
    pub fn start(settings: &ServeSettings) -> anyhow::Result<Self> {
        let workers = settings.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let waits = RequestWaits {
            queue: settings.request_deadline,
            lock: settings.lock_timeout,
        };
        let pools = WorkerPools::new(&settings.database_url, &settings.pool, workers, waits)?;
        let replicas = settings
            .read_database_url
            .as_deref()
            .map(|url| WorkerPools::new(url, &settings.pool, workers, waits))
            .transpose()?;
        // Setup work outside the workers (the demo, tests) gets a small pool of its own.
        let admin = PoolSettings {
            max_size: 2,
            ..settings.pool.clone()
        };
        let pool = store::connect_pool(&settings.database_url, &admin)?;
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let watcher_pool = store::connect_pool(
            &settings.database_url,
            &PoolSettings {
                max_size: 1,
                ..settings.pool.clone()
            },
        )?;
        let watcher = LogWatcher::spawn(watcher_pool, settings.feed_poll_interval);
        let sweeper_pool = store::connect_pool(
            &settings.database_url,
            &PoolSettings {
                max_size: 1,
                ..settings.pool.clone()
            },
        )?;
        sweep::spawn(sweeper_pool.clone(), sweep::INTERVAL);
        privacy::spawn_retention(
            sweeper_pool.clone(),
            settings.personal_data_retention_days,
            privacy::RETENTION_INTERVAL,
        );
        let key_usage = Arc::new(KeyUsage::default());
        Arc::clone(&key_usage).spawn(sweeper_pool, key_usage::INTERVAL);
        let (shutdown, stopping) = watch::channel(false);
        let auth_cache = AuthCache::new(&settings.auth_cache);
        if let Some(cache) = &auth_cache {
            let listening =
                Arc::clone(cache).listen(settings.database_url.clone(), settings.pool.clone());
            tokio::spawn(listening);
        }
        let server = run(
            listener,
            Databases {
                primary: pools,
                replicas,
            },
            workers,
            settings,
            watcher,
            Shared {
                auth_cache: auth_cache.clone(),
                key_usage: Arc::clone(&key_usage),
                streams: Arc::new(StreamCache::new(settings.stream_cache_capacity)),
                turns: Arc::new(UserTurns::new(
                    settings.lock_timeout.unwrap_or(settings.pool.timeout),
                )),
            },
            stopping,
        )?;
        Ok(Self {
            port,
            server,
            pool,
            auth_cache,
            key_usage,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The authentication cache, if on: tests settle it after changing credentials by hand.
    pub fn auth_cache(&self) -> Option<Arc<AuthCache>> {
        self.auth_cache.clone()
    }

    /// The usage recorder, for tests that outlive the application value.
    pub fn key_usage(&self) -> Arc<KeyUsage> {
        Arc::clone(&self.key_usage)
    }

    /// Serves until SIGINT/SIGTERM, then ends live streams and drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.shutdown;
        tokio::spawn(async move {
            stop_signal().await;
            shutdown.send_replace(true);
        });
        self.server.await
    }
}

/// SIGINT or SIGTERM, which actix also hears and answers by stopping the server.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Per-process state every worker shares.
struct Shared {
    auth_cache: Option<Arc<AuthCache>>,
    key_usage: Arc<KeyUsage>,
    streams: Arc<StreamCache>,
    /// Whose command runs in this process: see [`UserTurns`].
    turns: Arc<UserTurns>,
}

/// The primary's pools and, with `--read-database-url`, the replica's: one pool per worker.
struct Databases {
    primary: WorkerPools,
    replicas: Option<WorkerPools>,
}

fn run(
    listener: TcpListener,
    databases: Databases,
    workers: usize,
    settings: &ServeSettings,
    watcher: LogWatcher,
    shared: Shared,
    stopping: watch::Receiver<bool>,
) -> std::io::Result<Server> {
    let Shared {
        auth_cache,
        key_usage,
        streams,
        turns,
    } = shared;
    let key_usage = web::Data::from(key_usage);
    let Databases {
        primary: pools,
        replicas,
    } = databases;
    let auth_cache = auth_cache.map(web::Data::from);
    let trusted = TrustedProxies(settings.trusted_proxies.clone());
    let origins = CorsOrigins(settings.cors_origins.clone());
    let limits = settings.limits.clone();
    let max_headers = MaxHeaderBytes(limits.max_header_bytes);
    // One limiter for all workers: failures on one worker count on every other.
    let limiter = FailureLimiter::new(&settings.auth_failures).map(web::Data::new);
    let live_streams = web::Data::new(LiveStreams::new(settings.live_streams));
    let feed_max_wait = settings.feed_max_wait;
    // An append waits for a committer as long as a request waits for a connection.
    let group_commit_wait = settings
        .request_deadline
        .map_or(settings.pool.timeout, |d| d.min(settings.pool.timeout));
    let replica_health = Arc::new(ReplicaHealth::default());
    let sign_ins = FailureLimiter::new(&settings.auth_failures)
        .map(|limiter| web::Data::new(SignInLimiter(limiter)));
    let server = HttpServer::new(move || {
        let pool = pools.for_worker();
        let reads = ReadPool::new(
            replicas.as_ref().map(WorkerPools::for_worker),
            pool.clone(),
            Arc::clone(&replica_health),
        );
        let service = Service::new(
            pool.clone(),
            reads.clone(),
            watcher.clone(),
            Arc::clone(&streams),
            Arc::clone(&turns),
            group_commit_wait,
        );
        let live = LiveContext {
            pool: pool.clone(),
            watcher: watcher.clone(),
            shutdown: stopping.clone(),
        };
        App::new()
            .wrap(from_fn(http::settle_auth_changes))
            .wrap(from_fn(http::limit_headers))
            .wrap(from_fn(http::cors))
            .wrap(ErrorHandlers::new().default_handler(http::envelope_plain_errors))
            .wrap(TracingLogger::<RequestSpan>::new())
            .wrap(from_fn(http::observe_metrics))
            .wrap(from_fn(http::assign_request_id))
            .app_data(web::Data::new(reads))
            .app_data(web::Data::new(service))
            .app_data(web::Data::new(http::FeedMaxWait(feed_max_wait)))
            .app_data(web::Data::new(live))
            .app_data(live_streams.clone())
            .app_data(key_usage.clone())
            .app_data(web::Data::new(pools.clone()))
            .app_data(trusted.clone())
            .app_data(max_headers)
            .app_data(origins.clone())
            .configure(|cfg| {
                if let Some(limiter) = &limiter {
                    cfg.app_data(limiter.clone());
                }
                if let Some(sign_ins) = &sign_ins {
                    cfg.app_data(sign_ins.clone());
                }
                if let Some(auth_cache) = &auth_cache {
                    cfg.app_data(auth_cache.clone());
                }
                http::configure(cfg, limits.max_body_bytes)
            })
    })
    .workers(workers)
    .shutdown_timeout(settings.shutdown_timeout_secs)
    .client_request_timeout(settings.limits.client_request_timeout)
    .keep_alive(keep_alive(settings.limits.keep_alive))
    .max_connections(settings.limits.max_connections_per_worker);
    Ok(server.listen(listener)?.run())
}

fn keep_alive(idle: Duration) -> KeepAlive {
    if idle.is_zero() {
        KeepAlive::Disabled
    } else {
        KeepAlive::Timeout(idle)
    }
}
