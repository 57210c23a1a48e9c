//! Builds the HTTP server from settings: the one place that wires pool, routes and middleware.

use std::net::TcpListener;

use actix_web::{dev::Server, middleware::from_fn, web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::config::ServeSettings;
use crate::http::{self, RequestSpan, TrustedProxies};
use crate::store::{self, Pool};

pub struct Application {
    port: u16,
    server: Server,
    pool: Pool,
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
        let pool = store::connect_pool(&settings.database_url, &settings.pool)?;
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let server = run(listener, pool.clone(), settings)?;
        Ok(Self { port, server, pool })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn run(listener: TcpListener, pool: Pool, settings: &ServeSettings) -> std::io::Result<Server> {
    let pool = web::Data::new(pool);
    let trusted = TrustedProxies(settings.trusted_proxies.clone());
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::<RequestSpan>::new())
            .wrap(from_fn(http::assign_request_id))
            .app_data(pool.clone())
            .app_data(trusted.clone())
            .configure(http::configure)
    })
    .shutdown_timeout(settings.shutdown_timeout_secs);
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    Ok(server.listen(listener)?.run())
}
