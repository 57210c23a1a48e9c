//! Issue 15: appends of different users' remembered streams made at the same time commit
//! together, and a member the append's checks refuse fails alone.

use std::sync::Arc;

use chatprefs::domain::{Actor, ActorKind, AppId, ClientId, Event, EventMetadata, RoomId};
use std::time::{Duration, Instant};

use chatprefs::service::group_commit::{GroupCommit, Queued};
use chatprefs::service::turns::{Turn, UserTurns};
use chatprefs::store::{Pool, PoolSettings, RequestWaits, StoreError, WorkerPools};

use crate::helpers::{mutes, TestApp};

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];

/// Users u0…u3 who each muted r1 (stream version 1), and room r2.
async fn users_at_version_1() -> TestApp {
    let app = TestApp::spawn().await;
    app.room("r1").await;
    app.room("r2").await;
    for user in USERS {
        app.signed_in(user).await.mute("r1").await.assert_ok();
    }
    app
}

/// A worker's group commit, and the read model its appends are decided on.
struct Committer {
    group: Arc<GroupCommit>,
    turns: Arc<UserTurns>,
    app: AppId,
    read_model: u32,
}

impl Committer {
    async fn of(app: &TestApp) -> Committer {
        Self::on(app, app.pool.clone()).await
    }

    async fn on(app: &TestApp, pool: Pool) -> Committer {
        Self::queueing(app, pool, Duration::from_secs(10)).await
    }

    /// Appends wait at most `wait` for a committer to take them.
    async fn queueing(app: &TestApp, pool: Pool, wait: Duration) -> Committer {
        let read_model = app
            .sql("SELECT to_regclass('stream_versions')::oid")
            .await
            .unwrap()[0]
            .get(0);
        Committer {
            group: GroupCommit::new(pool, wait),
            turns: Arc::new(UserTurns::new(Duration::from_millis(100))),
            app: AppId::parse(app.app.app_id.clone()).unwrap(),
            read_model,
        }
    }

    /// The user's turn, if it is free within 100 ms.
    async fn turn_of(&self, user: &str) -> Option<Turn> {
        self.turns
            .take(&self.app, &ClientId::parse(user).unwrap())
            .await
    }

    /// `user` mutes `room` as version `version` of their stream. Nothing is awaited before
    /// the append is queued.
    async fn mute(&self, user: &str, version: i32, room: &str) -> Result<i32, StoreError> {
        let metadata = EventMetadata {
            actor: Actor {
                kind: ActorKind::Client,
                id: user.into(),
            },
            request_id: format!("req-{user}"),
            address: None,
            port: None,
            user_agent: None,
        };
        let event = Event::RoomMuted {
            room: RoomId::parse(room).unwrap(),
            until: None,
        };
        let client = ClientId::parse(user).unwrap();
        let turn = Arc::new(self.turns.take(&self.app, &client).await.expect("free"));
        self.group
            .append(Queued {
                app: &self.app,
                client: &client,
                version,
                read_model: self.read_model,
                event,
                metadata: &metadata,
                turn,
            })
            .await
            .map(|recorded| recorded.stream_version)
    }
}

/// How many events the log holds for `user`.
async fn events_of(app: &TestApp, user: &str) -> i64 {
    app.sql(&format!(
        "SELECT count(*) FROM events WHERE stream_id = '{user}'"
    ))
    .await
    .unwrap()[0]
        .get(0)
}

/// How many transactions the log's events for room r2 were committed in.
async fn transactions_of_r2(app: &TestApp) -> i64 {
    app.sql("SELECT count(DISTINCT transaction_id) FROM events WHERE data->>'room' = 'r2'")
        .await
        .unwrap()[0]
        .get(0)
}

// One thread: every append below is queued before the committer first runs.
#[tokio::test(flavor = "current_thread")]
async fn appends_of_several_users_made_at_once_share_one_transaction() {
    let app = users_at_version_1().await;
    let committer = Committer::of(&app).await;

    let appended =
        futures_util::future::join_all(USERS.map(|user| committer.mute(user, 2, "r2"))).await;

    assert!(appended.iter().all(|a| matches!(a, Ok(2))), "{appended:?}");
    assert_eq!(transactions_of_r2(&app).await, 1);
    for user in USERS {
        assert_eq!(mutes(&app.signed_in(user).await.me().await), ["r1", "r2"]);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_member_its_checks_refuse_fails_alone_and_the_rest_of_its_group_is_appended() {
    let app = users_at_version_1().await;
    let committer = Committer::of(&app).await;

    let (u0, u1, gap, no_room) = tokio::join!(
        committer.mute("u0", 2, "r2"),
        committer.mute("u1", 2, "r2"),
        committer.mute("u2", 5, "r2"),
        committer.mute("u3", 2, "nowhere"),
    );

    assert!(matches!((u0, u1), (Ok(2), Ok(2))));
    assert!(matches!(gap, Err(StoreError::NotAppended)), "{gap:?}");
    assert!(
        matches!(no_room, Err(StoreError::NotAppended)),
        "{no_room:?}"
    );
    let versions = app
        .sql("SELECT stream_id, max(stream_version) FROM events GROUP BY 1 ORDER BY 1")
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i32>(1)))
        .collect::<Vec<_>>();
    let expected = [("u0", 2), ("u1", 2), ("u2", 1), ("u3", 1)]
        .map(|(user, version)| (user.to_owned(), version));
    assert_eq!(versions, expected);
}

/// A pool whose connections wait at most `lock_timeout` for a lock, as the service's do.
fn pool_waiting_at_most(app: &TestApp, lock_timeout: Duration) -> Pool {
    let settings = PoolSettings {
        max_size: 1,
        timeout: Duration::from_secs(5),
    };
    let waits = RequestWaits {
        queue: None,
        lock: Some(lock_timeout),
    };
    WorkerPools::new(app.database_url(), &settings, 1, waits)
        .unwrap()
        .for_worker()
}

#[tokio::test(flavor = "current_thread")]
async fn a_member_whose_stream_is_locked_elsewhere_does_not_hold_up_the_rest_of_its_group() {
    let app = users_at_version_1().await;
    let lock_timeout = Duration::from_millis(500);
    let committer = Committer::on(&app, pool_waiting_at_most(&app, lock_timeout)).await;
    let _locker = app
        .holding("SELECT 1 FROM stream_versions WHERE stream_id = 'u1' FOR UPDATE")
        .await;

    let start = Instant::now();
    let timed = |user: &'static str| {
        let committer = &committer;
        async move { (committer.mute(user, 2, "r2").await, start.elapsed()) }
    };
    let (u0, u1, u2, u3) = tokio::join!(timed("u0"), timed("u1"), timed("u2"), timed("u3"));

    assert!(matches!(u1.0, Err(StoreError::Unavailable(_))), "{u1:?}");
    for (answer, waited) in [u0, u2, u3] {
        assert!(matches!(answer, Ok(2)), "{answer:?}");
        assert!(
            waited < lock_timeout * 3 / 2,
            "waited one lock timeout, not two: {waited:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_table_locked_past_the_lock_timeout_answers_the_whole_group_503_within_two() {
    let app = users_at_version_1().await;
    let lock_timeout = Duration::from_millis(500);
    let committer = Committer::on(&app, pool_waiting_at_most(&app, lock_timeout)).await;
    // The connection's statements are prepared before the table is locked.
    assert!(matches!(committer.mute("u0", 2, "r2").await, Ok(2)));
    let _locker = app
        .holding("LOCK TABLE stream_versions IN ACCESS EXCLUSIVE MODE")
        .await;

    let start = Instant::now();
    let answers = futures_util::future::join_all(
        ["u1", "u2", "u3"].map(|user| committer.mute(user, 2, "r2")),
    )
    .await;

    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Err(StoreError::Unavailable(_)))),
        "{answers:?}"
    );
    assert!(start.elapsed() < lock_timeout * 3, "{:?}", start.elapsed());
}

/// Both of `committer`'s committers stuck (on a pool of one connection): one on u0's
/// stream, locked elsewhere, the other behind it for the connection, then on u1's. Answers
/// the lock's holder and the two stuck appends, to await.
async fn both_committers_stuck<'a>(
    app: &TestApp,
    committer: &'a Committer,
) -> (tokio_postgres::Client, StuckAppends<'a>) {
    let locker = app
        .holding("SELECT 1 FROM stream_versions WHERE stream_id IN ('u0', 'u1') FOR UPDATE")
        .await;
    let mut u0 = Box::pin(committer.mute("u0", 2, "r2"));
    let mut u1 = Box::pin(committer.mute("u1", 2, "r2"));
    assert!(futures_util::poll!(&mut u0).is_pending());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(futures_util::poll!(&mut u1).is_pending());
    tokio::time::sleep(Duration::from_millis(50)).await;
    (locker, Box::pin(async move { tokio::join!(u0, u1) }))
}

type StuckAppends<'a> =
    futures_util::future::LocalBoxFuture<'a, (Result<i32, StoreError>, Result<i32, StoreError>)>;

/// An append queued for a group commit holds its user's turn until it is resolved, even once
/// its request has gone (a client hanging up), so the user's next command cannot be
/// answered ahead of it and then be overtaken by it; and it is not sent at all if its
/// request went before its group was.
#[tokio::test(flavor = "current_thread")]
async fn an_append_whose_request_went_keeps_the_users_turn_until_resolved_and_is_not_sent() {
    let app = users_at_version_1().await;
    let committer =
        Committer::on(&app, pool_waiting_at_most(&app, Duration::from_millis(500))).await;
    let (_locker, stuck) = both_committers_stuck(&app, &committer).await;

    {
        let gone = committer.mute("u2", 2, "r2");
        tokio::pin!(gone);
        assert!(futures_util::poll!(&mut gone).is_pending(), "queued");
    }
    assert!(
        committer.turn_of("u2").await.is_none(),
        "the queued append still holds u2's turn"
    );

    let (u0, u1) = stuck.await;
    assert!(matches!(u0, Err(StoreError::Unavailable(_))), "{u0:?}");
    assert!(matches!(u1, Err(StoreError::Unavailable(_))), "{u1:?}");
    assert!(
        committer.turn_of("u2").await.is_some(),
        "resolved: free again"
    );
    assert_eq!(
        events_of(&app, "u2").await,
        1,
        "the append whose request went was not sent"
    );
}

#[tokio::test]
async fn request_connections_wait_for_locks_as_long_as_the_flag_says_unless_the_url_does() {
    let app = TestApp::spawn().await;
    let lock_timeout_of = |url: String| async move {
        let settings = PoolSettings {
            max_size: 1,
            timeout: Duration::from_secs(5),
        };
        let waits = RequestWaits {
            queue: None,
            lock: Some(Duration::from_secs(2)),
        };
        let pool = WorkerPools::new(&url, &settings, 1, waits)
            .unwrap()
            .for_worker();
        let conn = pool.get().await.unwrap();
        conn.query_one("SHOW lock_timeout", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(lock_timeout_of(app.database_url().to_owned()).await, "2s");
    let with_options = format!("{}?options=-c%20lock_timeout%3D150", app.database_url());
    assert_eq!(lock_timeout_of(with_options).await, "150ms");
}

#[tokio::test(flavor = "current_thread")]
async fn an_append_no_committer_takes_in_time_is_answered_503_and_never_sent() {
    let app = users_at_version_1().await;
    let pool = pool_waiting_at_most(&app, Duration::from_millis(800));
    let committer = Committer::queueing(&app, pool, Duration::from_millis(200)).await;
    let (_locker, stuck) = both_committers_stuck(&app, &committer).await;

    let start = Instant::now();
    let shed = committer.mute("u2", 2, "r2").await;
    assert!(matches!(shed, Err(StoreError::Unavailable(_))), "{shed:?}");
    assert!(
        start.elapsed() < Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );

    let _ = stuck.await;
    assert_eq!(
        events_of(&app, "u2").await,
        1,
        "the shed append was never sent"
    );
}
