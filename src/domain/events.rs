use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::RoomId;

/// The only stream type so far: one stream per user holding their notification preferences.
pub const STREAM_TYPE_USER_PREFERENCES: &str = "user_preferences";

/// A fact about a user's preferences. The variant name is the `event_type` column and the
/// payload is the `data` column, so renaming either is a schema change of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Muted until `until`, or forever when `None`.
    RoomMuted {
        room: RoomId,
        until: Option<DateTime<Utc>>,
    },
    RoomUnmuted {
        room: RoomId,
    },
    /// Every notification paused (do not disturb) until `until`, or until resumed when
    /// `None`. Names no room.
    NotificationsPaused {
        until: Option<DateTime<Utc>>,
    },
    NotificationsResumed,
}

impl Event {
    pub const ROOM_MUTED: &'static str = "RoomMuted";
    pub const ROOM_UNMUTED: &'static str = "RoomUnmuted";
    pub const NOTIFICATIONS_PAUSED: &'static str = "NotificationsPaused";
    pub const NOTIFICATIONS_RESUMED: &'static str = "NotificationsResumed";

    pub fn event_type(&self) -> &'static str {
        match self {
            Event::RoomMuted { .. } => Self::ROOM_MUTED,
            Event::RoomUnmuted { .. } => Self::ROOM_UNMUTED,
            Event::NotificationsPaused { .. } => Self::NOTIFICATIONS_PAUSED,
            Event::NotificationsResumed => Self::NOTIFICATIONS_RESUMED,
        }
    }

    /// The version of the payload this build writes, per event type: a type's version
    /// moves only when its own payload changes. `RoomMuted` is always written as 2 (with
    /// `until`, `null` for forever), so one type has one current shape whatever its value;
    /// 1 is its payload before `until` existed.
    pub fn schema_version(&self) -> i16 {
        match self {
            Event::RoomMuted { .. } => 2,
            Event::RoomUnmuted { .. }
            | Event::NotificationsPaused { .. }
            | Event::NotificationsResumed => 1,
        }
    }

    /// The room the event is about; `None` for the events about all of a user's
    /// notifications.
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            Event::RoomMuted { room, .. } | Event::RoomUnmuted { room } => Some(room),
            Event::NotificationsPaused { .. } | Event::NotificationsResumed => None,
        }
    }

    pub fn data(&self) -> EventData<'_> {
        EventData {
            room: self.room().map(RoomId::as_str),
            until: match self {
                Event::RoomMuted { until, .. } | Event::NotificationsPaused { until } => {
                    Some(until.as_ref().map(format_until))
                }
                Event::RoomUnmuted { .. } | Event::NotificationsResumed => None,
            },
        }
    }

    /// Reads an event back from its stored columns; `None` for a type, version or payload
    /// this version does not know, which readers report rather than silently skip.
    ///
    /// Upcasting lives here and only here: a version 1 `RoomMuted` (before timed mutes)
    /// reads as muted forever.
    pub fn from_stored(
        event_type: &str,
        schema_version: i16,
        data: &serde_json::Value,
    ) -> Option<Event> {
        let room = || RoomId::parse(data.get("room")?.as_str()?).ok();
        let until = || match data.get("until")? {
            serde_json::Value::Null => Some(None),
            value => Some(Some(
                DateTime::parse_from_rfc3339(value.as_str()?)
                    .ok()?
                    .with_timezone(&Utc),
            )),
        };
        match (event_type, schema_version) {
            (Self::ROOM_MUTED, 1) => Some(Event::RoomMuted {
                room: room()?,
                until: None,
            }),
            (Self::ROOM_MUTED, 2) => Some(Event::RoomMuted {
                room: room()?,
                until: until()?,
            }),
            (Self::ROOM_UNMUTED, 1) => Some(Event::RoomUnmuted { room: room()? }),
            (Self::NOTIFICATIONS_PAUSED, 1) => Some(Event::NotificationsPaused { until: until()? }),
            (Self::NOTIFICATIONS_RESUMED, 1) => Some(Event::NotificationsResumed),
            _ => None,
        }
    }
}

/// RFC 3339 in UTC with milliseconds, the precision the API takes an end in.
fn format_until(until: &DateTime<Utc>) -> String {
    until.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The stored payload (the `data` column): the room of a room's event, and for
/// `RoomMuted` and `NotificationsPaused` the end (`null`: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    Client,
    Admin,
    System,
}

/// Who caused an event: the user themself, the app's backend (platform API) or chatprefs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

/// Provenance stored with every event, so support can answer "who, when, from where".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub actor: Actor,
    pub request_id: String,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user_agent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn stored_form_round_trips() {
        let room = RoomId::parse("général").unwrap();
        for event in [
            Event::RoomMuted {
                room: room.clone(),
                until: None,
            },
            Event::RoomMuted {
                room: room.clone(),
                until: Some(at("2026-11-26T17:00:00.250Z")),
            },
            Event::RoomUnmuted { room },
            Event::NotificationsPaused { until: None },
            Event::NotificationsPaused {
                until: Some(at("2026-11-26T17:00:00.250Z")),
            },
            Event::NotificationsResumed,
        ] {
            assert_eq!(
                Event::from_stored(
                    event.event_type(),
                    event.schema_version(),
                    &serde_json::to_value(event.data()).unwrap()
                ),
                Some(event)
            );
        }
    }

    /// Rows as every schema version stored them, read by this build.
    #[test]
    fn stored_rows_of_every_version_are_read() {
        let room = RoomId::parse("r").unwrap();
        let cases = [
            (
                "RoomMuted",
                1,
                serde_json::json!({ "room": "r" }),
                Event::RoomMuted {
                    room: room.clone(),
                    until: None,
                },
            ),
            (
                "RoomMuted",
                2,
                serde_json::json!({ "room": "r", "until": null }),
                Event::RoomMuted {
                    room: room.clone(),
                    until: None,
                },
            ),
            (
                "RoomMuted",
                2,
                serde_json::json!({ "room": "r", "until": "2026-11-26T18:00:00.000+01:00" }),
                Event::RoomMuted {
                    room: room.clone(),
                    until: Some(at("2026-11-26T17:00:00Z")),
                },
            ),
            (
                "RoomUnmuted",
                1,
                serde_json::json!({ "room": "r" }),
                Event::RoomUnmuted { room },
            ),
        ];
        for (event_type, version, data, event) in cases {
            assert_eq!(
                Event::from_stored(event_type, version, &data),
                Some(event),
                "{event_type} v{version} {data}"
            );
        }
    }

    #[test]
    fn written_payloads_have_their_versions_shape() {
        let room = RoomId::parse("r").unwrap();
        let forever = Event::RoomMuted {
            room: room.clone(),
            until: None,
        };
        assert_eq!(forever.schema_version(), 2);
        assert_eq!(
            serde_json::to_value(forever.data()).unwrap(),
            serde_json::json!({ "room": "r", "until": null })
        );
        let timed = Event::RoomMuted {
            room: room.clone(),
            until: Some(at("2026-11-26T17:00:00.250Z")),
        };
        assert_eq!(
            serde_json::to_value(timed.data()).unwrap(),
            serde_json::json!({ "room": "r", "until": "2026-11-26T17:00:00.250Z" })
        );
        let unmuted = Event::RoomUnmuted { room };
        assert_eq!(unmuted.schema_version(), 1);
        assert_eq!(
            serde_json::to_value(unmuted.data()).unwrap(),
            serde_json::json!({ "room": "r" })
        );
    }

    #[test]
    fn pause_payloads_name_no_room() {
        let paused = Event::NotificationsPaused {
            until: Some(at("2026-11-26T17:00:00.250Z")),
        };
        assert_eq!(paused.schema_version(), 1);
        assert_eq!(paused.room(), None);
        assert_eq!(
            serde_json::to_value(paused.data()).unwrap(),
            serde_json::json!({ "until": "2026-11-26T17:00:00.250Z" })
        );
        assert_eq!(
            serde_json::to_value(Event::NotificationsPaused { until: None }.data()).unwrap(),
            serde_json::json!({ "until": null })
        );
        assert_eq!(
            serde_json::to_value(Event::NotificationsResumed.data()).unwrap(),
            serde_json::json!({})
        );
        // A pause says how long it lasts, even when until resumed.
        assert_eq!(
            Event::from_stored("NotificationsPaused", 1, &serde_json::json!({})),
            None
        );
        assert_eq!(
            Event::from_stored("NotificationsResumed", 2, &serde_json::json!({})),
            None
        );
    }

    #[test]
    fn unknown_stored_events_are_not_guessed() {
        let data = serde_json::json!({ "room": "r" });
        assert_eq!(Event::from_stored("RoomArchived", 1, &data), None);
        assert_eq!(Event::from_stored("RoomMuted", 3, &data), None);
        assert_eq!(Event::from_stored("RoomUnmuted", 2, &data), None);
        // A version 2 mute says how long it lasts, even when it is forever.
        assert_eq!(Event::from_stored("RoomMuted", 2, &data), None);
        for until in [serde_json::json!(5), serde_json::json!("tomorrow")] {
            let data = serde_json::json!({ "room": "r", "until": until });
            assert_eq!(Event::from_stored("RoomMuted", 2, &data), None);
        }
        assert_eq!(
            Event::from_stored("RoomMuted", 1, &serde_json::json!({})),
            None
        );
    }

    #[test]
    fn metadata_uses_camel_case_keys() {
        let meta = EventMetadata {
            actor: Actor {
                kind: ActorKind::Admin,
                id: "app".into(),
            },
            request_id: "r1".into(),
            address: Some("::1".into()),
            port: Some(1),
            user_agent: None,
        };
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(json["actor"]["kind"], "admin");
        assert_eq!(json["requestId"], "r1");
        assert!(json.get("userAgent").is_some());
    }
}
