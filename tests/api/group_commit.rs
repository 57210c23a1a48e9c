//! Issue 15: appends of different users' remembered streams made at the same time commit
//! together, and a member the append's checks refuse fails alone.

use std::sync::Arc;

use chatprefs::domain::{Actor, ActorKind, AppId, ClientId, Event, EventMetadata, RoomId};
use chatprefs::service::group_commit::GroupCommit;
use chatprefs::store::StoreError;

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
    app: AppId,
    read_model: u32,
}

impl Committer {
    async fn of(app: &TestApp) -> Committer {
        let read_model = app
            .sql("SELECT to_regclass('stream_versions')::oid")
            .await
            .unwrap()[0]
            .get(0);
        Committer {
            group: GroupCommit::new(app.pool.clone()),
            app: AppId::parse(app.app.app_id.clone()).unwrap(),
            read_model,
        }
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
        self.group
            .append(
                &self.app,
                &client,
                version,
                self.read_model,
                event,
                &metadata,
            )
            .await
            .map(|recorded| recorded.stream_version)
    }
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
