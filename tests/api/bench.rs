use chatprefs::bench::{self, BenchConfig, Stop};
use std::process::Command;

use crate::helpers::TestApp;

fn config(app: &TestApp, stop: Stop, mix: &str) -> BenchConfig {
    BenchConfig {
        url: app.base.parse().unwrap(),
        client_key: app.app.client_key.clone(),
        api_key: app.app.api_key.clone(),
        users: 3,
        rooms: 2,
        connections: 4,
        stop,
        mix: mix.parse().unwrap(),
        prefix: "b".into(),
        progress: false,
        flood: None,
    }
}

#[tokio::test]
async fn bench_counts_every_request_and_sets_up_idempotently() {
    let app = TestApp::spawn().await;
    let config = config(&app, Stop::Requests(200), "mute=50,unmute=50");

    bench::setup(&config).await.unwrap();
    let fixture = bench::setup(&config).await.unwrap();
    let report = bench::run(&config, fixture).await.unwrap();

    assert_eq!(report.requests, 200);
    assert_eq!(report.by_operation.values().sum::<u64>(), 200);
    assert!(report.by_operation["mute"] > 0 && report.by_operation["unmute"] > 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.latency.p50_ms <= report.latency.p99_ms);
    assert!(report.latency.p99_ms <= report.latency.max_ms);
    let users: i64 = app.sql("SELECT count(*) FROM clients").await.unwrap()[0].get(0);
    let rooms: i64 = app.sql("SELECT count(*) FROM rooms").await.unwrap()[0].get(0);
    assert_eq!((users, rooms), (3, 2));
    let events = app.count_events().await;
    assert!(events > 0 && events <= 200, "{events}");
}

#[tokio::test]
async fn bench_reads_only_with_the_me_mix() {
    let app = TestApp::spawn().await;
    let config = config(&app, Stop::Requests(60), "me=1");

    let fixture = bench::setup(&config).await.unwrap();
    let report = bench::run(&config, fixture).await.unwrap();

    assert_eq!(report.by_operation.get("me"), Some(&60));
    assert_eq!(app.count_events().await, 0);
}

#[tokio::test]
async fn bench_reports_failures_by_status_and_code_and_exits_non_zero() {
    // Thirty failed authentications in a row would be rate-limited; this is about reporting.
    let app = TestApp::spawn_with(|s| s.auth_failures.burst = 0).await;
    let output = tokio::task::spawn_blocking({
        let (base, api_key) = (app.base.clone(), app.app.api_key.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_chatprefs"))
                .args([
                    "bench",
                    "--url",
                    &base,
                    "--client-key",
                    "wrong",
                    "--api-key",
                    &api_key,
                ])
                .args([
                    "--users",
                    "1",
                    "--rooms",
                    "1",
                    "--connections",
                    "2",
                    "--requests",
                    "30",
                ])
                .args(["--prefix", "b", "--json"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();

    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["requests"], 30);
    assert_eq!(report["errors"]["403 INVALID_CLIENT_KEY"], 30);
}

/// The flood sends every key once, each from its own address: the limiter answers each
/// 403 (never 429: no key or address fails twice), and the load beside it is unaffected.
#[tokio::test]
async fn bench_floods_the_limiter_with_distinct_keys_and_addresses() {
    let app = TestApp::spawn_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.auth_failures = chatprefs::config::AuthFailureLimit {
            burst: 1,
            window: std::time::Duration::from_secs(60),
        };
    })
    .await;
    let mut config = config(
        &app,
        Stop::After(std::time::Duration::from_secs(30)),
        "me=1",
    );
    config.flood = Some(bench::Flood {
        connections: 4,
        keys: 300,
    });

    let fixture = bench::setup(&config).await.unwrap();
    let report = bench::run(&config, fixture).await.unwrap();

    let flood = report.flood.expect("a flood report");
    assert_eq!(flood.keys, 300);
    assert_eq!(
        flood.answers,
        [("403 INVALID_CLIENT_KEY".to_owned(), 300)].into()
    );
    assert!(report.requests > 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.seconds < 30.0, "the load stops with the flood");
}
