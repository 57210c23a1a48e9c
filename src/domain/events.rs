use serde::{Deserialize, Serialize};

use super::RoomId;

/// The only stream type so far: one stream per user holding their notification preferences.
pub const STREAM_TYPE_USER_PREFERENCES: &str = "user_preferences";

/// A fact about a user's preferences. The variant name is the `event_type` column and the
/// payload is the `data` column, so renaming either is a schema change of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    RoomMuted { room: RoomId },
    RoomUnmuted { room: RoomId },
}

impl Event {
    pub const ROOM_MUTED: &'static str = "RoomMuted";
    pub const ROOM_UNMUTED: &'static str = "RoomUnmuted";
    pub const SCHEMA_VERSION: i16 = 1;

    pub fn event_type(&self) -> &'static str {
        match self {
            Event::RoomMuted { .. } => Self::ROOM_MUTED,
            Event::RoomUnmuted { .. } => Self::ROOM_UNMUTED,
        }
    }

    pub fn room(&self) -> &RoomId {
        match self {
            Event::RoomMuted { room } | Event::RoomUnmuted { room } => room,
        }
    }

    pub fn data(&self) -> EventData<'_> {
        EventData {
            room: self.room().as_str(),
        }
    }

    /// Reads an event back from its stored columns; `None` for a type or payload this
    /// version does not know, which readers report rather than silently skip.
    pub fn from_stored(event_type: &str, data: &serde_json::Value) -> Option<Event> {
        let room = RoomId::parse(data.get("room")?.as_str()?).ok()?;
        match event_type {
            Self::ROOM_MUTED => Some(Event::RoomMuted { room }),
            Self::ROOM_UNMUTED => Some(Event::RoomUnmuted { room }),
            _ => None,
        }
    }
}

/// The stored payload of both event types (the `data` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventData<'a> {
    pub room: &'a str,
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

    #[test]
    fn stored_form_round_trips() {
        let room = RoomId::parse("général").unwrap();
        for event in [
            Event::RoomMuted { room: room.clone() },
            Event::RoomUnmuted { room },
        ] {
            assert_eq!(
                Event::from_stored(
                    event.event_type(),
                    &serde_json::to_value(event.data()).unwrap()
                ),
                Some(event)
            );
        }
    }

    #[test]
    fn unknown_stored_events_are_not_guessed() {
        let data = serde_json::json!({ "room": "r" });
        assert_eq!(Event::from_stored("RoomArchived", &data), None);
        assert_eq!(
            Event::from_stored("RoomMuted", &serde_json::json!({})),
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
