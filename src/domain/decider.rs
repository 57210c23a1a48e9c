use super::{Event, RoomId};

/// A user's preferences as the log says they are: the muted rooms, oldest mute first.
/// A user has few mutes, so a vector keeps the order cheaply and lookups stay fast.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MuteState {
    muted: Vec<RoomId>,
}

impl MuteState {
    pub fn from_muted(muted: Vec<RoomId>) -> Self {
        Self { muted }
    }

    pub fn is_muted(&self, room: &RoomId) -> bool {
        self.muted.contains(room)
    }

    pub fn muted(&self) -> &[RoomId] {
        &self.muted
    }

    pub fn into_muted(self) -> Vec<RoomId> {
        self.muted
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    MuteRoom { room: RoomId },
    UnmuteRoom { room: RoomId },
}

/// Decides which events a command causes. Idempotence lives here: muting a muted room, or
/// unmuting one that is not muted, decides nothing, so retries and double taps leave no trace.
/// No command can fail yet, so the answer is the events alone.
pub fn decide(state: &MuteState, command: &Command) -> Vec<Event> {
    match command {
        Command::MuteRoom { room } if !state.is_muted(room) => {
            vec![Event::RoomMuted { room: room.clone() }]
        }
        Command::UnmuteRoom { room } if state.is_muted(room) => {
            vec![Event::RoomUnmuted { room: room.clone() }]
        }
        Command::MuteRoom { .. } | Command::UnmuteRoom { .. } => Vec::new(),
    }
}

/// Folds one event into the state. The live projection, rebuild and as-of answers all
/// use this one function, so they cannot disagree about what the log means.
pub fn evolve(mut state: MuteState, event: &Event) -> MuteState {
    match event {
        Event::RoomMuted { room } => {
            if !state.is_muted(room) {
                state.muted.push(room.clone());
            }
        }
        Event::RoomUnmuted { room } => state.muted.retain(|r| r != room),
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }
    fn muted(id: &str) -> Event {
        Event::RoomMuted { room: room(id) }
    }
    fn unmuted(id: &str) -> Event {
        Event::RoomUnmuted { room: room(id) }
    }
    fn mute(id: &str) -> Command {
        Command::MuteRoom { room: room(id) }
    }
    fn unmute(id: &str) -> Command {
        Command::UnmuteRoom { room: room(id) }
    }

    /// Given these past events, when this command, then exactly these new events.
    fn given_when_then(given: &[Event], when: Command, then: &[Event]) {
        let state = given.iter().fold(MuteState::default(), evolve);
        assert_eq!(decide(&state, &when), then, "given {given:?} when {when:?}");
    }

    #[test]
    fn muting_an_unmuted_room_records_it() {
        given_when_then(&[], mute("a"), &[muted("a")]);
    }

    #[test]
    fn muting_a_muted_room_records_nothing() {
        given_when_then(&[muted("a")], mute("a"), &[]);
    }

    #[test]
    fn muting_again_after_unmute_records_it() {
        given_when_then(&[muted("a"), unmuted("a")], mute("a"), &[muted("a")]);
    }

    #[test]
    fn unmuting_a_muted_room_records_it() {
        given_when_then(&[muted("a"), muted("b")], unmute("a"), &[unmuted("a")]);
    }

    #[test]
    fn unmuting_a_room_that_is_not_muted_records_nothing() {
        given_when_then(&[], unmute("a"), &[]);
        given_when_then(&[muted("a"), unmuted("a")], unmute("a"), &[]);
        given_when_then(&[muted("b")], unmute("a"), &[]);
    }

    #[test]
    fn state_keeps_mutes_in_the_order_they_happened() {
        let state = [muted("b"), muted("a"), muted("c"), unmuted("a"), muted("a")]
            .iter()
            .fold(MuteState::default(), evolve);
        assert_eq!(state.muted(), &[room("b"), room("c"), room("a")]);
    }

    #[test]
    fn evolve_tolerates_a_repeated_mute_in_the_log() {
        let state = [muted("a"), muted("a")]
            .iter()
            .fold(MuteState::default(), evolve);
        assert_eq!(state.muted(), &[room("a")]);
    }
}
