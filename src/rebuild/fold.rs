//! The read models as the log says they should be, folded one stream at a time with
//! `room_mutes`' and `notification_pauses`' own folds, and the differences between that
//! and what the tables hold.
//! No I/O.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::{Event, RoomId};
use crate::projections::notification_pauses::{Paused, UserPause};
use crate::projections::room_mutes::{Mute, MuteRow, UserMutes};
use crate::store::audit::format_instant;
use crate::store::log_reader::StoredEvent;

/// One user's stream folded so far: the rows it must have and the version they reflect.
#[derive(Debug, Default)]
pub struct StreamFold {
    mutes: UserMutes,
    pause: UserPause,
    version: i32,
}

impl StreamFold {
    /// A stream as the read models hold it at `version`: its mute rows, in mute order (by
    /// position), and its pause row. Folding the stream's later events onto it gives what
    /// folding the whole stream would.
    pub fn resume(
        version: i32,
        rows: Vec<MuteRow>,
        pause: Option<Paused>,
    ) -> Result<Self, UnreadableRow> {
        let mutes = rows
            .into_iter()
            .map(|row| {
                Ok(Mute {
                    room: RoomId::parse(row.room).map_err(|err| UnreadableRow(err.to_string()))?,
                    muted_at: row.muted_at,
                    position: row.position,
                    until: row.until,
                })
            })
            .collect::<Result<Vec<_>, UnreadableRow>>()?;
        Ok(StreamFold {
            mutes: UserMutes::from_mutes(mutes),
            pause: UserPause::from_row(pause),
            version,
        })
    }

    /// Folds one stored event of this stream. An event this version cannot decode stops
    /// the fold: a read model built by skipping it would be silently wrong.
    pub fn apply(&mut self, stored: &StoredEvent) -> Result<(), UnreadableEvent> {
        let event = Event::from_stored(&stored.event_type, stored.schema_version, &stored.data)
            .ok_or_else(|| UnreadableEvent {
                position: stored.key.position,
                event_type: stored.event_type.clone(),
            })?;
        self.mutes
            .apply(&event, stored.key.position, stored.recorded_at);
        self.pause
            .apply(&event, stored.key.position, stored.recorded_at);
        self.version = stored.stream_version;
        Ok(())
    }

    pub fn version(&self) -> i32 {
        self.version
    }

    /// The rows, oldest mute first.
    pub fn mutes(&self) -> &UserMutes {
        &self.mutes
    }

    pub fn muted_rooms(&self) -> usize {
        self.mutes.mutes().len()
    }

    /// The pause row.
    pub fn pause(&self) -> &UserPause {
        &self.pause
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "event at position {position} ({event_type}) is not a preference event this version can read"
)]
pub struct UnreadableEvent {
    pub position: i64,
    pub event_type: String,
}

/// A read-model row this version cannot read (a room id that is not one).
#[derive(Debug, thiserror::Error)]
#[error("a read-model row cannot be read: {0}")]
pub struct UnreadableRow(pub String);

/// `(app, user)`: which stream.
pub type StreamKey = (String, String);

/// A stream folded to its last event.
#[derive(Debug)]
pub struct FoldedStream {
    pub key: StreamKey,
    pub fold: StreamFold,
}

/// Folds a read in stream order one stream at a time: memory holds one user's fold,
/// however many users and events there are.
#[derive(Debug, Default)]
pub struct StreamFolder {
    current: Option<FoldedStream>,
}

impl StreamFolder {
    /// Folds `event`; when it is the first of another stream, answers the previous stream,
    /// which is then complete.
    pub fn push(&mut self, event: &StoredEvent) -> Result<Option<FoldedStream>, UnreadableEvent> {
        let same = self
            .current
            .as_ref()
            .is_some_and(|c| c.key.0 == event.app_id && c.key.1 == event.stream_id);
        let done = if same {
            None
        } else {
            self.current.replace(FoldedStream {
                key: (event.app_id.clone(), event.stream_id.clone()),
                fold: StreamFold::default(),
            })
        };
        self.current
            .as_mut()
            .expect("a current stream")
            .fold
            .apply(event)?;
        Ok(done)
    }

    /// The last stream, complete.
    pub fn finish(self) -> Option<FoldedStream> {
        self.current
    }
}

/// One stream as the read-model tables hold it.
#[derive(Debug, Default)]
pub struct Found {
    pub version: i32,
    /// By room.
    pub mutes: HashMap<String, MuteRow>,
    pub pause: Option<Paused>,
}

/// A way the read model differs from the fold of the log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Difference {
    Missing {
        app: String,
        client: String,
        room: String,
        expected: (i64, String),
    },
    Extra {
        app: String,
        client: String,
        room: String,
        found: (i64, String),
    },
    WrongOrder {
        app: String,
        client: String,
        room: String,
        found: i64,
        expected: i64,
    },
    WrongTime {
        app: String,
        client: String,
        room: String,
        found: String,
        expected: String,
    },
    WrongEnd {
        app: String,
        client: String,
        room: String,
        found: String,
        expected: String,
    },
    WrongVersion {
        app: String,
        client: String,
        found: i32,
        expected: i32,
    },
    PauseMissing {
        app: String,
        client: String,
        expected: String,
    },
    PauseExtra {
        app: String,
        client: String,
        found: String,
    },
    PauseWrong {
        app: String,
        client: String,
        found: String,
        expected: String,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing { app, client, room, expected: (position, at) } => write!(
                f,
                "missing  app={app} client={client} room={room}: the log has it muted (position {position}, muted_at {at})"
            ),
            Difference::Extra { app, client, room, found: (position, at) } => write!(
                f,
                "extra    app={app} client={client} room={room}: muted in the read model (position {position}, muted_at {at}), not in the log"
            ),
            Difference::WrongOrder { app, client, room, found, expected } => write!(
                f,
                "order    app={app} client={client} room={room}: position {found}, the log says {expected}"
            ),
            Difference::WrongTime { app, client, room, found, expected } => write!(
                f,
                "time     app={app} client={client} room={room}: muted_at {found}, the log says {expected}"
            ),
            Difference::WrongEnd { app, client, room, found, expected } => write!(
                f,
                "end      app={app} client={client} room={room}: until {found}, the log says {expected}"
            ),
            Difference::WrongVersion { app, client, found, expected } => write!(
                f,
                "version  app={app} client={client}: stream version {found}, the log says {expected}"
            ),
            Difference::PauseMissing { app, client, expected } => write!(
                f,
                "missing  app={app} client={client} pause: the log has notifications paused ({expected})"
            ),
            Difference::PauseExtra { app, client, found } => write!(
                f,
                "extra    app={app} client={client} pause: paused in the read model ({found}), not in the log"
            ),
            Difference::PauseWrong { app, client, found, expected } => write!(
                f,
                "pause    app={app} client={client}: {found}, the log says {expected}"
            ),
        }
    }
}

fn described(position: i64, muted_at: &DateTime<Utc>) -> (i64, String) {
    (position, format_instant(muted_at))
}

fn described_pause(pause: &Paused) -> String {
    format!(
        "position {}, paused_at {}, until {}",
        pause.position,
        format_instant(&pause.paused_at),
        described_end(&pause.until)
    )
}

fn described_end(until: &Option<DateTime<Utc>>) -> String {
    until
        .as_ref()
        .map_or_else(|| "never".into(), format_instant)
}

/// The differences between one stream's fold and what the read model holds for it,
/// appended to `out` sorted. A stream with no events and a version row of 0 (left by an
/// idempotent command) is no difference.
///
/// Mutes and pauses whose end is at or before `now` (the database's clock of the comparing
/// snapshot) are left out on both sides: every read ignores them already and the sweep deletes them
/// from the table whenever it gets to them, so whether one is still there is no drift.
pub fn stream_differences(
    key: &StreamKey,
    expected: &StreamFold,
    found: &Found,
    now: DateTime<Utc>,
    out: &mut Vec<Difference>,
) {
    let (app, client) = (&key.0, &key.1);
    let first = out.len();
    if expected.version() != found.version {
        out.push(Difference::WrongVersion {
            app: app.clone(),
            client: client.clone(),
            found: found.version,
            expected: expected.version(),
        });
    }
    let expired = |until: &Option<DateTime<Utc>>| until.is_some_and(|until| until <= now);
    for mute in expected.mutes().mutes() {
        if expired(&mute.until) {
            continue;
        }
        let room = mute.room.as_str().to_owned();
        match found.mutes.get(&room) {
            None => out.push(Difference::Missing {
                app: app.clone(),
                client: client.clone(),
                room,
                expected: described(mute.position, &mute.muted_at),
            }),
            Some(actual) if !actual.is_active(now) => out.push(Difference::Missing {
                app: app.clone(),
                client: client.clone(),
                room,
                expected: described(mute.position, &mute.muted_at),
            }),
            Some(actual) => {
                if actual.until != mute.until {
                    out.push(Difference::WrongEnd {
                        app: app.clone(),
                        client: client.clone(),
                        room: room.clone(),
                        found: described_end(&actual.until),
                        expected: described_end(&mute.until),
                    });
                }
                if actual.position != mute.position {
                    out.push(Difference::WrongOrder {
                        app: app.clone(),
                        client: client.clone(),
                        room: room.clone(),
                        found: actual.position,
                        expected: mute.position,
                    });
                }
                if actual.muted_at != mute.muted_at {
                    out.push(Difference::WrongTime {
                        app: app.clone(),
                        client: client.clone(),
                        room,
                        found: format_instant(&actual.muted_at),
                        expected: format_instant(&mute.muted_at),
                    });
                }
            }
        }
    }
    for (room, actual) in &found.mutes {
        let expected_mute = expected.mutes().get(room);
        if actual.is_active(now) && expected_mute.is_none_or(|m| expired(&m.until)) {
            out.push(Difference::Extra {
                app: app.clone(),
                client: client.clone(),
                room: room.clone(),
                found: described(actual.position, &actual.muted_at),
            });
        }
    }
    let expected_pause = expected.pause().pause().filter(|p| p.is_active(now));
    let found_pause = found.pause.as_ref().filter(|p| p.is_active(now));
    match (expected_pause, found_pause) {
        (None, None) => {}
        (Some(expected), None) => out.push(Difference::PauseMissing {
            app: app.clone(),
            client: client.clone(),
            expected: described_pause(expected),
        }),
        (None, Some(found)) => out.push(Difference::PauseExtra {
            app: app.clone(),
            client: client.clone(),
            found: described_pause(found),
        }),
        (Some(expected), Some(found)) if expected != found => out.push(Difference::PauseWrong {
            app: app.clone(),
            client: client.clone(),
            found: described_pause(found),
            expected: described_pause(expected),
        }),
        (Some(_), Some(_)) => {}
    }
    out[first..].sort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log_reader::EventKey;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn stored(
        position: i64,
        client: &str,
        version: i32,
        event_type: &str,
        room: &str,
    ) -> StoredEvent {
        StoredEvent {
            key: EventKey {
                transaction_id: position as u64,
                position,
            },
            app_id: "app".into(),
            stream_id: client.into(),
            stream_version: version,
            event_type: event_type.into(),
            schema_version: 1,
            data: serde_json::json!({ "room": room }),
            recorded_at: at(position * 1000),
        }
    }

    /// A version 2 mute ending at `until`.
    fn stored_until(position: i64, version: i32, room: &str, until: i64) -> StoredEvent {
        StoredEvent {
            schema_version: 2,
            data: serde_json::json!({ "room": room, "until": format_instant(&at(until)) }),
            ..stored(position, "u", version, "RoomMuted", room)
        }
    }

    /// A pause ending at `until` (`None`: until resumed).
    fn stored_pause(position: i64, version: i32, until: Option<i64>) -> StoredEvent {
        StoredEvent {
            event_type: "NotificationsPaused".into(),
            data: serde_json::json!({ "until": until.map(|ms| format_instant(&at(ms))) }),
            ..stored(position, "u", version, "NotificationsPaused", "-")
        }
    }

    /// Events in stream order, folded stream by stream.
    fn fold(events: &[StoredEvent]) -> Vec<FoldedStream> {
        let mut folder = StreamFolder::default();
        let mut streams = Vec::new();
        for event in events {
            streams.extend(folder.push(event).unwrap());
        }
        streams.extend(folder.finish());
        streams
    }

    fn rooms(stream: &FoldedStream) -> Vec<(String, i64)> {
        stream
            .fold
            .mutes()
            .mutes()
            .iter()
            .map(|m| (m.room.as_str().to_owned(), m.position))
            .collect()
    }

    #[test]
    fn a_room_has_the_row_of_its_latest_mute() {
        let streams = fold(&[
            stored(1, "u", 1, "RoomMuted", "a"),
            stored(2, "u", 2, "RoomMuted", "b"),
            stored(3, "u", 3, "RoomMuted", "a"),
            stored(4, "u", 4, "RoomUnmuted", "b"),
            stored(5, "u", 5, "RoomMuted", "b"),
        ]);
        assert_eq!(streams.len(), 1);
        assert_eq!(rooms(&streams[0]), [("a".into(), 3), ("b".into(), 5)]);
        assert_eq!(streams[0].fold.version(), 5);
        assert_eq!(streams[0].fold.muted_rooms(), 2);
    }

    #[test]
    fn each_stream_is_answered_once_it_is_complete() {
        let mut folder = StreamFolder::default();
        assert!(folder
            .push(&stored(1, "u", 1, "RoomMuted", "a"))
            .unwrap()
            .is_none());
        assert!(folder
            .push(&stored(2, "u", 2, "RoomMuted", "b"))
            .unwrap()
            .is_none());
        let u = folder
            .push(&stored(3, "v", 1, "RoomMuted", "a"))
            .unwrap()
            .unwrap();
        assert_eq!(u.key, ("app".to_owned(), "u".to_owned()));
        assert_eq!(u.fold.version(), 2);
        let v = folder.finish().unwrap();
        assert_eq!(rooms(&v), [("a".into(), 3)]);
    }

    #[test]
    fn a_resumed_stream_folds_on_as_the_whole_stream_would() {
        let events = [
            stored(1, "u", 1, "RoomMuted", "a"),
            stored_until(2, 2, "b", 60_000),
            stored(3, "u", 3, "RoomUnmuted", "a"),
            stored_pause(4, 4, Some(900_000)),
            stored(5, "u", 5, "RoomMuted", "a"),
        ];
        let whole = fold(&events).remove(0);
        let first = fold(&events[..2]).remove(0);
        let rows = first
            .fold
            .mutes()
            .mutes()
            .iter()
            .map(|m| MuteRow {
                app: "app".into(),
                client: "u".into(),
                room: m.room.as_str().to_owned(),
                muted_at: m.muted_at,
                position: m.position,
                until: m.until,
            })
            .collect();
        let mut resumed = StreamFold::resume(
            first.fold.version(),
            rows,
            first.fold.pause().pause().copied(),
        )
        .unwrap();
        for event in &events[2..] {
            resumed.apply(event).unwrap();
        }
        assert_eq!(resumed.mutes(), whole.fold.mutes());
        assert_eq!(resumed.pause(), whole.fold.pause());
        assert_eq!(resumed.version(), 5);
    }

    #[test]
    fn an_unknown_event_stops_the_fold() {
        let mut folder = StreamFolder::default();
        let err = folder
            .push(&stored(7, "u", 1, "RoomArchived", "a"))
            .unwrap_err();
        assert_eq!(err.position, 7);
    }

    fn found(version: i32, mutes: &[(&str, i64, i64)]) -> Found {
        found_until(
            version,
            &mutes
                .iter()
                .map(|&(r, p, ms)| (r, p, ms, None))
                .collect::<Vec<_>>(),
        )
    }

    fn found_until(version: i32, mutes: &[(&str, i64, i64, Option<i64>)]) -> Found {
        Found {
            version,
            pause: None,
            mutes: mutes
                .iter()
                .map(|(room, position, ms, until)| {
                    (
                        (*room).to_owned(),
                        MuteRow {
                            app: "app".into(),
                            client: "u".into(),
                            room: (*room).to_owned(),
                            muted_at: at(*ms),
                            position: *position,
                            until: until.map(at),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Compared at 100 s.
    fn differences_of(stream: &FoldedStream, found: &Found) -> Vec<String> {
        let mut out = Vec::new();
        stream_differences(&stream.key, &stream.fold, found, at(100_000), &mut out);
        out.iter()
            .map(|d| {
                d.to_string()
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn a_faithful_read_model_has_no_differences() {
        let streams = fold(&[stored(1, "u", 1, "RoomMuted", "a")]);
        assert_eq!(
            differences_of(&streams[0], &found(1, &[("a", 1, 1000)])),
            Vec::<String>::new()
        );
        let idle = FoldedStream {
            key: ("app".into(), "idle".into()),
            fold: StreamFold::default(),
        };
        assert_eq!(differences_of(&idle, &found(0, &[])), Vec::<String>::new());
    }

    #[test]
    fn every_kind_of_drift_is_reported() {
        let streams = fold(&[
            stored(1, "u", 1, "RoomMuted", "a"),
            stored(2, "u", 2, "RoomMuted", "b"),
            stored(3, "u", 3, "RoomMuted", "c"),
            stored(4, "w", 1, "RoomMuted", "a"),
        ]);
        let u = found(2, &[("b", 9, 2000), ("c", 3, 9999), ("bogus", 5, 5000)]);
        assert_eq!(
            differences_of(&streams[0], &u),
            [
                "missing app=app client=u room=a:",
                "extra app=app client=u room=bogus:",
                "order app=app client=u room=b:",
                "time app=app client=u room=c:",
                "version app=app client=u: stream",
            ]
        );
        assert_eq!(
            differences_of(&streams[1], &Found::default()),
            [
                "missing app=app client=w room=a:",
                "version app=app client=w: stream"
            ]
        );
    }

    #[test]
    fn expired_mutes_are_no_drift_whether_swept_or_not() {
        let streams = fold(&[
            stored_until(1, 1, "gone", 50_000),
            stored_until(2, 2, "kept", 500_000),
        ]);
        let kept = ("kept", 2, 2000, Some(500_000));
        for found in [
            found_until(2, &[kept]),
            found_until(2, &[("gone", 1, 1000, Some(50_000)), kept]),
        ] {
            assert_eq!(differences_of(&streams[0], &found), Vec::<String>::new());
        }
        // A row the log has expired or removed is only drift while it still mutes.
        assert_eq!(
            differences_of(
                &streams[0],
                &found_until(2, &[("gone", 1, 1000, Some(900_000)), kept])
            ),
            ["extra app=app client=u room=gone:"]
        );
    }

    #[test]
    fn a_wrong_end_is_reported() {
        let streams = fold(&[stored_until(1, 1, "a", 500_000)]);
        for until in [None, Some(400_000)] {
            assert_eq!(
                differences_of(&streams[0], &found_until(1, &[("a", 1, 1000, until)])),
                ["end app=app client=u room=a:"]
            );
        }
        assert_eq!(
            differences_of(
                &streams[0],
                &found_until(1, &[("a", 1, 1000, Some(90_000))])
            ),
            ["missing app=app client=u room=a:"]
        );
    }

    fn paused(position: i64, ms: i64, until: Option<i64>) -> Paused {
        Paused {
            paused_at: at(ms),
            position,
            until: until.map(at),
        }
    }

    #[test]
    fn pause_drift_is_reported_and_expired_pauses_are_none() {
        let streams = fold(&[stored_pause(1, 1, Some(500_000))]);
        let with = |pause| Found {
            version: 1,
            pause,
            ..Found::default()
        };
        assert_eq!(
            differences_of(&streams[0], &with(Some(paused(1, 1000, Some(500_000))))),
            Vec::<String>::new()
        );
        assert_eq!(
            differences_of(&streams[0], &with(None)),
            ["missing app=app client=u pause:"]
        );
        assert_eq!(
            differences_of(&streams[0], &with(Some(paused(1, 1000, None)))),
            ["pause app=app client=u: position"]
        );
        let expired = fold(&[stored_pause(1, 1, Some(50_000))]);
        for pause in [None, Some(paused(1, 1000, Some(50_000)))] {
            assert_eq!(
                differences_of(&expired[0], &with(pause)),
                Vec::<String>::new()
            );
        }
        assert_eq!(
            differences_of(&expired[0], &with(Some(paused(1, 1000, None)))),
            ["extra app=app client=u pause:"]
        );
    }
}
