//! The read model as the log says it should be, folded with the live projection's own
//! `evolve`, and the differences between that and what the tables hold. No I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::{evolve, Event, MuteState, RoomId};
use crate::store::audit::format_instant;
use crate::store::log_reader::StoredEvent;
use crate::store::read_model::ReadModelRow;

/// When and by which event a room became muted: `room_mutes.muted_at` and `.position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub muted_at: DateTime<Utc>,
    pub position: i64,
}

/// One user's stream folded so far.
#[derive(Debug, Default)]
pub struct StreamFold {
    state: MuteState,
    /// The stamp of each muted room, in the order of `state.muted()`: a vector beside the
    /// state rather than a map keyed by room keeps the fold of millions of mutes small.
    stamps: Vec<Stamp>,
    version: i32,
}

impl StreamFold {
    fn apply(&mut self, event: &Event, stamp: Stamp, version: i32) {
        let room = event.room();
        let index_of = |state: &MuteState| state.muted().iter().position(|r| r == room);
        let before = index_of(&self.state);
        self.state = evolve(std::mem::take(&mut self.state), event);
        // The stamp is the event that made the room muted; a repeated mute changes nothing,
        // exactly as `evolve` keeps the room where it was in the order.
        match (before, index_of(&self.state)) {
            (None, Some(at)) => self.stamps.insert(at, stamp),
            (Some(at), None) => {
                self.stamps.remove(at);
            }
            _ => {}
        }
        self.version = version;
    }

    pub fn version(&self) -> i32 {
        self.version
    }

    /// The muted rooms, oldest mute first, with their stamps.
    pub fn mutes(&self) -> impl Iterator<Item = (&RoomId, Stamp)> {
        self.state.muted().iter().zip(self.stamps.iter().copied())
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

/// Every stream folded so far, keyed by app then user (nested, so that looking a stream up
/// for each event allocates nothing).
#[derive(Debug, Default)]
pub struct Fold {
    streams: HashMap<String, HashMap<String, StreamFold>>,
}

impl Fold {
    /// Folds one event into its stream. An event this version cannot decode stops the fold:
    /// a read model built by skipping it would be silently wrong.
    pub fn apply(&mut self, stored: &StoredEvent) -> Result<(), UnreadableEvent> {
        let event = Event::from_stored(&stored.event_type, &stored.data).ok_or_else(|| {
            UnreadableEvent {
                position: stored.key.position,
                event_type: stored.event_type.clone(),
            }
        })?;
        let stamp = Stamp {
            muted_at: stored.recorded_at,
            position: stored.key.position,
        };
        let app = match self.streams.get_mut(&stored.app_id) {
            Some(app) => app,
            None => self.streams.entry(stored.app_id.clone()).or_default(),
        };
        let stream = match app.get_mut(&stored.stream_id) {
            Some(stream) => stream,
            None => app.entry(stored.stream_id.clone()).or_default(),
        };
        stream.apply(&event, stamp, stored.stream_version);
        Ok(())
    }

    pub fn stream(&self, app: &str, client: &str) -> Option<&StreamFold> {
        self.streams.get(app)?.get(client)
    }

    pub fn streams(&self) -> impl Iterator<Item = (&str, &str, &StreamFold)> {
        self.streams.iter().flat_map(|(app, streams)| {
            streams
                .iter()
                .map(move |(client, stream)| (app.as_str(), client.as_str(), stream))
        })
    }

    pub fn muted_rooms(&self) -> usize {
        self.streams().map(|(_, _, s)| s.stamps.len()).sum()
    }
}

/// One stream as the read-model tables hold it.
#[derive(Debug, Default)]
struct Found {
    version: i32,
    mutes: HashMap<String, Stamp>,
}

/// The read-model tables, gathered per stream for comparing.
#[derive(Debug, Default)]
pub struct ReadModel {
    streams: BTreeMap<(String, String), Found>,
}

impl ReadModel {
    pub fn add(&mut self, row: ReadModelRow) {
        match row {
            ReadModelRow::Mute {
                app,
                client,
                room,
                muted_at,
                position,
            } => {
                self.streams
                    .entry((app, client))
                    .or_default()
                    .mutes
                    .insert(room, Stamp { muted_at, position });
            }
            ReadModelRow::Version {
                app,
                client,
                version,
            } => self.streams.entry((app, client)).or_default().version = version,
        }
    }
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
    WrongVersion {
        app: String,
        client: String,
        found: i32,
        expected: i32,
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
            Difference::WrongVersion { app, client, found, expected } => write!(
                f,
                "version  app={app} client={client}: stream version {found}, the log says {expected}"
            ),
        }
    }
}

fn described(stamp: Stamp) -> (i64, String) {
    (stamp.position, format_instant(&stamp.muted_at))
}

/// Every difference between the fold of the log and the read model, sorted. A stream with
/// no events and a version row of 0 (left by an idempotent command) is no difference.
pub fn differences(expected: &Fold, found: &ReadModel) -> Vec<Difference> {
    let mut out = Vec::new();
    let empty = StreamFold::default();
    let mut compare = |app: &str, client: &str, fold: &StreamFold, found: Option<&Found>| {
        let (app_s, client_s) = (app.to_owned(), client.to_owned());
        let found_version = found.map_or(0, |f| f.version);
        if fold.version() != found_version {
            out.push(Difference::WrongVersion {
                app: app_s.clone(),
                client: client_s.clone(),
                found: found_version,
                expected: fold.version(),
            });
        }
        let no_mutes = HashMap::new();
        let found_mutes = found.map_or(&no_mutes, |f| &f.mutes);
        for (room, stamp) in fold.mutes() {
            let room_s = room.as_str().to_owned();
            match found_mutes.get(room.as_str()) {
                None => out.push(Difference::Missing {
                    app: app_s.clone(),
                    client: client_s.clone(),
                    room: room_s,
                    expected: described(stamp),
                }),
                Some(actual) => {
                    if actual.position != stamp.position {
                        out.push(Difference::WrongOrder {
                            app: app_s.clone(),
                            client: client_s.clone(),
                            room: room_s.clone(),
                            found: actual.position,
                            expected: stamp.position,
                        });
                    }
                    if actual.muted_at != stamp.muted_at {
                        out.push(Difference::WrongTime {
                            app: app_s.clone(),
                            client: client_s.clone(),
                            room: room_s,
                            found: format_instant(&actual.muted_at),
                            expected: format_instant(&stamp.muted_at),
                        });
                    }
                }
            }
        }
        for (room, actual) in found_mutes {
            let in_log = RoomId::parse(room.as_str()).is_ok_and(|r| fold.state.is_muted(&r));
            if !in_log {
                out.push(Difference::Extra {
                    app: app_s.clone(),
                    client: client_s.clone(),
                    room: room.clone(),
                    found: described(*actual),
                });
            }
        }
    };
    for ((app, client), model) in &found.streams {
        let fold = expected.stream(app, client).unwrap_or(&empty);
        compare(app, client, fold, Some(model));
    }
    for (app, client, fold) in expected.streams() {
        if !found
            .streams
            .contains_key(&(app.to_owned(), client.to_owned()))
        {
            compare(app, client, fold, None);
        }
    }
    out.sort();
    out
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
            data: serde_json::json!({ "room": room }),
            recorded_at: at(position * 1000),
        }
    }

    fn fold(events: &[StoredEvent]) -> Fold {
        let mut fold = Fold::default();
        for event in events {
            fold.apply(event).unwrap();
        }
        fold
    }

    fn rooms(fold: &Fold, client: &str) -> Vec<(String, i64)> {
        fold.stream("app", client)
            .unwrap()
            .mutes()
            .map(|(room, stamp)| (room.as_str().to_owned(), stamp.position))
            .collect()
    }

    #[test]
    fn a_room_keeps_the_stamp_of_the_mute_that_muted_it() {
        let fold = fold(&[
            stored(1, "u", 1, "RoomMuted", "a"),
            stored(2, "u", 2, "RoomMuted", "b"),
            stored(3, "u", 3, "RoomMuted", "a"),
            stored(4, "u", 4, "RoomUnmuted", "b"),
            stored(5, "u", 5, "RoomMuted", "b"),
        ]);
        assert_eq!(rooms(&fold, "u"), [("a".into(), 1), ("b".into(), 5)]);
        assert_eq!(fold.stream("app", "u").unwrap().version(), 5);
        assert_eq!(fold.muted_rooms(), 2);
    }

    #[test]
    fn an_unknown_event_stops_the_fold() {
        let mut fold = Fold::default();
        let err = fold
            .apply(&stored(7, "u", 1, "RoomArchived", "a"))
            .unwrap_err();
        assert_eq!(err.position, 7);
    }

    fn mute_row(client: &str, room: &str, position: i64, ms: i64) -> ReadModelRow {
        ReadModelRow::Mute {
            app: "app".into(),
            client: client.into(),
            room: room.into(),
            muted_at: at(ms),
            position,
        }
    }

    fn version_row(client: &str, version: i32) -> ReadModelRow {
        ReadModelRow::Version {
            app: "app".into(),
            client: client.into(),
            version,
        }
    }

    fn model(rows: impl IntoIterator<Item = ReadModelRow>) -> ReadModel {
        let mut model = ReadModel::default();
        for row in rows {
            model.add(row);
        }
        model
    }

    #[test]
    fn a_faithful_read_model_has_no_differences() {
        let fold = fold(&[
            stored(1, "u", 1, "RoomMuted", "a"),
            stored(2, "v", 1, "RoomMuted", "a"),
        ]);
        let model = model([
            mute_row("u", "a", 1, 1000),
            mute_row("v", "a", 2, 2000),
            version_row("u", 1),
            version_row("v", 1),
            version_row("idle", 0),
        ]);
        assert_eq!(differences(&fold, &model), []);
    }

    #[test]
    fn every_kind_of_drift_is_reported() {
        let fold = fold(&[
            stored(1, "u", 1, "RoomMuted", "a"),
            stored(2, "u", 2, "RoomMuted", "b"),
            stored(3, "u", 3, "RoomMuted", "c"),
            stored(4, "w", 1, "RoomMuted", "a"),
        ]);
        let model = model([
            mute_row("u", "b", 9, 2000),
            mute_row("u", "c", 3, 9999),
            mute_row("u", "bogus", 5, 5000),
            version_row("u", 2),
        ]);
        let found: Vec<String> = differences(&fold, &model)
            .iter()
            .map(|d| {
                d.to_string()
                    .split_whitespace()
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            found,
            [
                "missing app=app client=u room=a:",
                "missing app=app client=w room=a:",
                "extra app=app client=u room=bogus:",
                "order app=app client=u room=b:",
                "time app=app client=u room=c:",
                "version app=app client=u: stream",
                "version app=app client=w: stream",
            ]
        );
    }
}
