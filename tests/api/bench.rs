//! `chatprefs-bench` (its own binary, behind the `bench` feature) against a real server.

use crate::helpers::TestApp;

const SMALL: [&str; 8] = [
    "--users",
    "3",
    "--rooms",
    "2",
    "--connections",
    "4",
    "--prefix",
    "b",
];

#[tokio::test]
async fn bench_counts_every_request_and_sets_up_idempotently() {
    let app = TestApp::spawn().await;
    // A first run sets the users and rooms up (and only reads); the second sets them up again.
    app.bench(SMALL.iter().chain(&["--requests", "1", "--mix", "me=1"]))
        .await
        .assert_success();

    let output = app
        .bench(
            SMALL
                .iter()
                .chain(&["--requests", "200", "--mix", "mute=50,unmute=50", "--json"]),
        )
        .await;

    output.assert_success();
    let report = output.json();
    assert_eq!(report["requests"], 200);
    let by_operation = report["by_operation"].as_object().unwrap();
    let total: u64 = by_operation.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(total, 200);
    assert!(report["by_operation"]["mute"].as_u64() > Some(0));
    assert!(report["by_operation"]["unmute"].as_u64() > Some(0));
    assert_eq!(report["errors"], serde_json::json!({}));
    let latency = |q: &str| report["latency"][q].as_f64().unwrap();
    assert!(latency("p50_ms") <= latency("p99_ms"));
    assert!(latency("p99_ms") <= latency("max_ms"));
    let users: i64 = app.sql("SELECT count(*) FROM clients").await.unwrap()[0].get(0);
    let rooms: i64 = app.sql("SELECT count(*) FROM rooms").await.unwrap()[0].get(0);
    assert_eq!((users, rooms), (3, 2));
    let events = app.count_events().await;
    assert!(events > 0 && events <= 200, "{events}");
}

#[tokio::test]
async fn bench_reads_only_with_the_me_mix() {
    let app = TestApp::spawn().await;

    let output = app
        .bench(
            SMALL
                .iter()
                .chain(&["--requests", "60", "--mix", "me=1", "--json"]),
        )
        .await;

    output.assert_success();
    assert_eq!(output.json()["by_operation"]["me"], 60);
    assert_eq!(app.count_events().await, 0);
}

#[tokio::test]
async fn bench_reports_failures_by_status_and_code_and_exits_non_zero() {
    // Thirty failed authentications in a row would be rate-limited; this is about reporting.
    let mut app = TestApp::spawn_with(|s| s.auth_failures.burst = 0).await;
    app.app.client_key = "wrong".into();

    let output = app
        .bench([
            "--users",
            "1",
            "--rooms",
            "1",
            "--connections",
            "2",
            "--requests",
            "30",
            "--prefix",
            "b",
            "--json",
        ])
        .await;

    assert!(!output.status.success());
    let report = output.json();
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

    let output = app
        .bench(SMALL.iter().chain(&[
            "--duration",
            "30s",
            "--mix",
            "me=1",
            "--flood-keys",
            "300",
            "--flood-connections",
            "4",
            "--json",
        ]))
        .await;

    output.assert_success();
    let report = output.json();
    let flood = &report["flood"];
    assert_eq!(flood["keys"], 300);
    assert_eq!(
        flood["answers"],
        serde_json::json!({ "403 INVALID_CLIENT_KEY": 300 })
    );
    assert!(report["requests"].as_u64() > Some(0));
    assert_eq!(report["errors"], serde_json::json!({}));
    assert!(
        report["seconds"].as_f64().unwrap() < 30.0,
        "the load stops with the flood"
    );
}

#[tokio::test]
async fn chatprefs_bench_points_at_the_bench_binary() {
    let output = crate::helpers::run_blocking(crate::helpers::chatprefs_command([
        "bench",
        "--url",
        "http://127.0.0.1:1",
    ]))
    .await;

    output
        .assert_exit_code(2)
        .assert_stderr_contains("cargo run --release --features bench --bin chatprefs-bench");
    assert_eq!(output.stdout, "");
}

#[tokio::test]
async fn a_saved_fixture_is_reused_and_one_for_other_users_is_set_up_anew() {
    let app = TestApp::spawn().await;
    let path =
        std::env::temp_dir().join(format!("chatprefs-fixture-{}.json", uuid::Uuid::new_v4()));
    let fixture = path.to_str().unwrap();
    let tokens =
        || async { app.sql("SELECT count(*) FROM tokens").await.unwrap()[0].get::<_, i64>(0) };
    let run = |users: &'static str| {
        let args = [
            "--users",
            users,
            "--rooms",
            "2",
            "--connections",
            "2",
            "--prefix",
            "f",
            "--requests",
            "20",
            "--mix",
            "mute=1",
            "--fixture",
            fixture,
        ];
        app.bench(args.map(str::to_owned))
    };

    run("3").await.assert_success();
    assert_eq!(tokens().await, 3, "set up once");
    run("3").await.assert_success();
    assert_eq!(tokens().await, 3, "the saved tokens served the second run");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fixture).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "it holds tokens");
    }
    run("4")
        .await
        .assert_success()
        .assert_stderr_contains("setting up anew");
    assert_eq!(tokens().await, 3 + 4);
    std::fs::remove_file(&path).unwrap();
}
