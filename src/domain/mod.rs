//! The pure core: validated identifiers, events and the decider. No I/O lives here.

mod decider;
mod events;
mod ids;

pub use decider::{
    decide, evolve, Command, DomainError, Expiry, MuteState, Pause, RoomMute, MAX_MUTE_SECONDS,
};
pub use events::{Actor, ActorKind, Event, EventData, EventMetadata, STREAM_TYPE_USER_PREFERENCES};
pub use ids::{AppId, ClientId, IdError, RoomId, ID_PATTERN, MAX_ID_BYTES};
