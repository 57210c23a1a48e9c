//! `room_mutes`' live SQL and its Rust fold agree. Generated event sequences for several
//! users — repeated mutes with the same or other ends (forever, past, future), unmutes of
//! rooms never muted, many rooms, several events in one append — go through the store's
//! real append statement, which the decider would never be asked to (it decides no repeated
//! mute with the same end); the rows it leaves must be the rows `UserMutes` folds from the
//! same events: same rooms, `muted_at`, `position`, `until` and order.

use std::sync::atomic::{AtomicUsize, Ordering};

use chatprefs::domain::{Actor, ActorKind, AppId, ClientId, Event, EventMetadata, RoomId};
use chatprefs::projections::room_mutes::{self, RoomMutes, UserMutes};
use chatprefs::store::{self, stream, Pool, Unit};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::TestApp;

const USERS: usize = 3;
const ROOMS: [&str; 6] = ["r0", "r1", "r2", "général", "r 4", "r5"];

/// A mute's possible ends, in milliseconds since the epoch: forever, long past, and two
/// far ahead (the live SQL stores whatever the event says).
const ENDS: [Option<i64>; 4] = [
    None,
    Some(1_000),
    Some(4_102_444_800_000),
    Some(4_102_444_800_250),
];

/// One event: a mute (with which end) or an unmute, of which room.
type Generated = (Option<usize>, usize);

/// One append: several events of one user, in one transaction when more than one.
#[derive(Debug, Clone)]
struct Append {
    user: usize,
    events: Vec<Generated>,
}

fn appends() -> impl Strategy<Value = Vec<Append>> {
    let event = (proptest::option::of(0..ENDS.len()), 0..ROOMS.len());
    let append = (0..USERS, proptest::collection::vec(event, 1..4))
        .prop_map(|(user, events)| Append { user, events });
    proptest::collection::vec(append, 0..30)
}

fn event((mute, room): Generated) -> Event {
    let room = RoomId::parse(ROOMS[room]).unwrap();
    match mute {
        Some(end) => Event::RoomMuted {
            room,
            until: ENDS[end].and_then(DateTime::<Utc>::from_timestamp_millis),
        },
        None => Event::RoomUnmuted { room },
    }
}

fn user(i: usize) -> ClientId {
    ClientId::parse(format!("u{i}")).unwrap()
}

/// A user's rows as `(room, muted_at, position, until)`, oldest mute first.
type Rows = Vec<(String, String, i64, Option<String>)>;

/// Appends `appends` under the app `app` through the live SQL, folds the same events, and
/// answers both sides' rows per user.
async fn live_and_folded(pool: &Pool, app: &AppId, appends: &[Append]) -> (Vec<Rows>, Vec<Rows>) {
    let metadata = EventMetadata {
        actor: Actor {
            kind: ActorKind::System,
            id: "proptest".into(),
        },
        request_id: "r".into(),
        address: None,
        port: None,
        user_agent: None,
    };
    let mut folds = vec![UserMutes::default(); USERS];
    let mut versions = [0; USERS];
    for append in appends {
        let events: Vec<Event> = append.events.iter().copied().map(event).collect();
        let unit = Unit::new(pool.get().await.unwrap());
        let recorded = stream::append::<RoomMutes>(
            &unit,
            app,
            &user(append.user),
            versions[append.user],
            &events,
            &metadata,
        )
        .await
        .expect("append");
        versions[append.user] += events.len() as i32;
        for (event, recorded) in events.iter().zip(recorded) {
            folds[append.user].apply(event, recorded.position, recorded.recorded_at);
        }
    }
    let folded = folds
        .iter()
        .map(|fold| {
            fold.mutes()
                .iter()
                .map(|m| {
                    (
                        m.room.as_str().to_owned(),
                        m.muted_at.to_rfc3339(),
                        m.position,
                        m.until.map(|u| u.to_rfc3339()),
                    )
                })
                .collect()
        })
        .collect();

    let mut conn = pool.get().await.unwrap();
    let reading = store::begin_repeatable_read(&mut conn).await.unwrap();
    let mut scan = room_mutes::scan_by_user(&reading, 100).await.unwrap();
    let mut live = vec![Rows::new(); USERS];
    while let Some(row) = scan.next().await.unwrap() {
        assert_eq!(
            row.app,
            app.as_str(),
            "the table was reset before this case"
        );
        let i: usize = row.client[1..].parse().unwrap();
        live[i].push((
            row.room,
            row.muted_at.to_rfc3339(),
            row.position,
            row.until.map(|u| u.to_rfc3339()),
        ));
    }
    // The read model's order is by position.
    for rows in &mut live {
        rows.sort_by_key(|(_, _, position, _)| *position);
    }
    (live, folded)
}

#[test]
fn the_live_sql_and_the_fold_give_the_same_rows() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn());
    let cases = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&appends(), |appends| {
            // Each case (shrinking included) starts from an empty read model and streams of
            // its own: the log cannot be emptied, so each case appends under a new app id.
            let case =
                AppId::parse(format!("case-{}", cases.fetch_add(1, Ordering::SeqCst))).unwrap();
            let (live, folded) = runtime.block_on(async {
                app.sql("TRUNCATE room_mutes, stream_versions")
                    .await
                    .unwrap();
                live_and_folded(&app.pool, &case, &appends).await
            });
            prop_assert_eq!(live, folded);
            Ok(())
        })
        .unwrap();
}
