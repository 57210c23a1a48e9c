//! `room_mutes`' and `notification_pauses`' live SQL and their Rust folds agree. Generated
//! event sequences for several users — repeated mutes and pauses with the same or other
//! ends (forever, past, future), unmutes of rooms never muted, resumes when not paused,
//! many rooms, several events in one append — go through the store's real append
//! statement, which the decider would never be asked to (it decides no repeated mute with
//! the same end); the rows it leaves must be the rows `UserMutes` and `UserPause` fold from
//! the same events: same rooms, `muted_at`/`paused_at`, `position`, `until` and order.

use std::sync::atomic::{AtomicUsize, Ordering};

use chatprefs::domain::{Actor, ActorKind, AppId, ClientId, Event, EventMetadata, RoomId};
use chatprefs::projections::notification_pauses::{self, UserPause};
use chatprefs::projections::room_mutes::{self, UserMutes};
use chatprefs::projections::UserPreferences;
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

/// One event: a mute (with which end) or an unmute of which room, or a pause (with which
/// end) or a resume.
#[derive(Debug, Clone, Copy)]
enum Generated {
    Mute(usize, usize),
    Unmute(usize),
    Pause(usize),
    Resume,
}

/// One append: several events of one user, in one transaction when more than one.
#[derive(Debug, Clone)]
struct Append {
    user: usize,
    events: Vec<Generated>,
}

fn appends() -> impl Strategy<Value = Vec<Append>> {
    let event = prop_oneof![
        3 => (0..ENDS.len(), 0..ROOMS.len()).prop_map(|(end, room)| Generated::Mute(end, room)),
        2 => (0..ROOMS.len()).prop_map(Generated::Unmute),
        2 => (0..ENDS.len()).prop_map(Generated::Pause),
        1 => Just(Generated::Resume),
    ];
    let append = (0..USERS, proptest::collection::vec(event, 1..4))
        .prop_map(|(user, events)| Append { user, events });
    proptest::collection::vec(append, 0..30)
}

fn event(generated: Generated) -> Event {
    let room = |i: usize| RoomId::parse(ROOMS[i]).unwrap();
    let until = |end: usize| ENDS[end].and_then(DateTime::<Utc>::from_timestamp_millis);
    match generated {
        Generated::Mute(end, i) => Event::RoomMuted {
            room: room(i),
            until: until(end),
        },
        Generated::Unmute(i) => Event::RoomUnmuted { room: room(i) },
        Generated::Pause(end) => Event::NotificationsPaused { until: until(end) },
        Generated::Resume => Event::NotificationsResumed,
    }
}

fn user(i: usize) -> ClientId {
    ClientId::parse(format!("u{i}")).unwrap()
}

/// A user's rows as `(room, muted_at, position, until)`, oldest mute first.
type Rows = Vec<(String, String, i64, Option<String>)>;

/// A user's pause row as `(paused_at, position, until)`.
type PauseRow = Option<(String, i64, Option<String>)>;

/// Both read models' rows, per user.
type Models = (Vec<Rows>, Vec<PauseRow>);

/// Appends `appends` under the app `app` through the live SQL, folds the same events, and
/// answers both sides' rows per user.
async fn live_and_folded(pool: &Pool, app: &AppId, appends: &[Append]) -> (Models, Models) {
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
    let mut pause_folds = [UserPause::default(); USERS];
    let mut versions = [0; USERS];
    for append in appends {
        let events: Vec<Event> = append.events.iter().copied().map(event).collect();
        let unit = Unit::new(pool.get().await.unwrap());
        let recorded = stream::append::<UserPreferences>(
            &unit,
            app,
            &user(append.user),
            versions[append.user],
            None,
            &events,
            &metadata,
        )
        .await
        .expect("append");
        versions[append.user] += events.len() as i32;
        for (event, recorded) in events.iter().zip(recorded) {
            folds[append.user].apply(event, recorded.position, recorded.recorded_at);
            pause_folds[append.user].apply(event, recorded.position, recorded.recorded_at);
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
    drop(scan);
    let pause_row = |paused_at: DateTime<Utc>, position, until: Option<DateTime<Utc>>| {
        Some((
            paused_at.to_rfc3339(),
            position,
            until.map(|u| u.to_rfc3339()),
        ))
    };
    let folded_pauses = pause_folds
        .iter()
        .map(|fold| {
            fold.pause()
                .and_then(|p| pause_row(p.paused_at, p.position, p.until))
        })
        .collect();
    let mut live_pauses = vec![None; USERS];
    let mut scan = notification_pauses::scan_by_user(&reading, 100)
        .await
        .unwrap();
    while let Some(row) = scan.next().await.unwrap() {
        assert_eq!(
            row.app,
            app.as_str(),
            "the table was reset before this case"
        );
        let i: usize = row.client[1..].parse().unwrap();
        let pause = row.pause;
        live_pauses[i] = pause_row(pause.paused_at, pause.position, pause.until);
    }
    ((live, live_pauses), (folded, folded_pauses))
}

/// The case's app with every room of [`ROOMS`]: an append names only rooms its app has.
async fn create_with_rooms(app: &TestApp, case: &AppId) {
    app.create_app(case.as_str()).await;
    let rooms: Vec<String> = ROOMS
        .iter()
        .map(|room| format!("('{case}', '{room}')"))
        .collect();
    app.sql(&format!(
        "INSERT INTO rooms (app_id, room_id) VALUES {}",
        rooms.join(", ")
    ))
    .await
    .unwrap();
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
                app.sql("TRUNCATE room_mutes, notification_pauses, stream_versions")
                    .await
                    .unwrap();
                create_with_rooms(&app, &case).await;
                live_and_folded(&app.pool, &case, &appends).await
            });
            prop_assert_eq!(live, folded);
            Ok(())
        })
        .unwrap();
}
