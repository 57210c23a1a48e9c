//! `chatprefs-bench`: a load generator for a running chatprefs, like pgbench for this API.
//!
//! A tool, not the service: it is its own binary behind the `bench` feature, so the
//! service's library and binary neither compile nor link it or its HTTP client
//! (`cargo run --release --features bench --bin chatprefs-bench -- --help`).

mod load;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use load::{BenchConfig, Stop};

/// Load-test a running server (like pgbench, for this API): set up users and rooms
/// through the platform API, then drive mute/unmute/GET /me over keep-alive connections.
#[derive(Debug, Parser)]
#[command(name = "chatprefs-bench", version)]
struct BenchArgs {
    /// Base URL of the running server.
    #[arg(long, env = "CHATPREFS_URL", default_value = "http://127.0.0.1:8080")]
    url: hyper::Uri,

    /// The app's client key (`IM-CLIENT-KEY`).
    #[arg(long, env = "CHATPREFS_CLIENT_KEY", hide_env_values = true)]
    client_key: String,

    /// The app's API key (`IM-API-KEY`), to set up users and rooms.
    #[arg(long, env = "CHATPREFS_API_KEY", hide_env_values = true)]
    api_key: String,

    /// Users to set up and spread requests over (each gets a fresh token).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    users: u32,

    /// Rooms to set up and spread requests over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    rooms: u32,

    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    connections: u32,

    /// How long to run the load (e.g. 20s, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, conflicts_with = "requests")]
    duration: Duration,

    /// Stop after this many requests instead of after --duration.
    #[arg(long)]
    requests: Option<u64>,

    /// Weights of the operations, e.g. `mute=50,unmute=50,me=0`.
    #[arg(long, default_value = "mute=50,unmute=50,me=0")]
    mix: load::Mix,

    /// Prefix of the bench's user and room ids, so runs reuse them.
    #[arg(long, default_value = "bench")]
    prefix: String,

    /// Save the users' tokens here after setting them up, and skip the setup when the file
    /// holds tokens for the same users, rooms and prefix (they last a day).
    #[arg(long)]
    fixture: Option<std::path::PathBuf>,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// Also attack the failed-authentication limiter: send this many requests, each with a
    /// client key and an `X-Forwarded-For` address never seen before, at full speed; the
    /// load stops when they are sent. The server must trust the bench as a proxy
    /// (`serve --trusted-proxy 127.0.0.1`), or it blocks the bench's one address instead.
    #[arg(long, default_value_t = 0)]
    flood_keys: u64,

    /// Connections the flood uses (besides --connections).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    flood_connections: u32,
}

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
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
        progress: load::progress_wanted(),
        flood: (args.flood_keys > 0).then_some(load::Flood {
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
    let fixture = match &args.fixture {
        Some(path) => load::setup_or_reuse(&config, path).await?,
        None => load::setup(&config).await?,
    };
    let report = load::run(&config, fixture).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        load::print_report(&report);
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::BenchArgs::command().debug_assert();
    }
}
