use chrono::{DateTime, TimeDelta, Utc};

use super::{Event, RoomId};

/// The longest a timed mute may last: a year.
pub const MAX_MUTE_SECONDS: i64 = 31_536_000;

/// One muted room: since when, and until when (`None`: forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMute {
    pub room: RoomId,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl RoomMute {
    /// A mute is in force strictly before its end.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// All notifications paused (do not disturb): since when, and until when (`None`: until
/// resumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

impl Pause {
    /// A pause is in force strictly before its end.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// A user's preferences as the log says they are: the muted rooms, oldest mute first, and
/// whether all notifications are paused, expired ones included until something drops them
/// (their expiry needs no event). A user has few mutes, so a vector keeps the order cheaply
/// and lookups stay fast.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MuteState {
    mutes: Vec<RoomMute>,
    pause: Option<Pause>,
}

impl MuteState {
    pub fn from_mutes(mutes: Vec<RoomMute>) -> Self {
        Self { mutes, pause: None }
    }

    pub fn with_pause(self, pause: Option<Pause>) -> Self {
        Self { pause, ..self }
    }

    /// The pause, in force or expired.
    pub fn pause(&self) -> Option<&Pause> {
        self.pause.as_ref()
    }

    pub fn is_paused(&self, now: DateTime<Utc>) -> bool {
        self.pause.is_some_and(|p| p.is_active(now))
    }

    /// The room's mute, in force or expired.
    pub fn get(&self, room: &RoomId) -> Option<&RoomMute> {
        self.mutes.iter().find(|m| &m.room == room)
    }

    pub fn is_muted(&self, room: &RoomId, now: DateTime<Utc>) -> bool {
        self.get(room).is_some_and(|m| m.is_active(now))
    }

    pub fn mutes(&self) -> &[RoomMute] {
        &self.mutes
    }

    /// Only the mutes and the pause in force at `now`: what every answer shows.
    pub fn active_at(mut self, now: DateTime<Utc>) -> Self {
        self.mutes.retain(|m| m.is_active(now));
        self.pause = self.pause.filter(|p| p.is_active(now));
        self
    }

    pub fn into_mutes(self) -> Vec<RoomMute> {
        self.mutes
    }
}

/// How long a mute or a pause lasts, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Forever,
    At(DateTime<Utc>),
    /// Seconds from now.
    For(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    MuteRoom { room: RoomId, expiry: Expiry },
    UnmuteRoom { room: RoomId },
    PauseNotifications { expiry: Expiry },
    ResumeNotifications,
}

impl Command {
    /// The room the command is about, which must exist; `None` for a pause or resume.
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            Command::MuteRoom { room, .. } | Command::UnmuteRoom { room } => Some(room),
            Command::PauseNotifications { .. } | Command::ResumeNotifications => None,
        }
    }

    /// Whether [`decide`] answers the same for this command on `state` at every instant:
    /// the command asks for no end, and what it concerns (its room's mute, or the pause) has
    /// none in `state`. Only such a decision may be made without the database's clock.
    pub fn decided_without_a_clock(&self, state: &MuteState) -> bool {
        match self {
            Command::MuteRoom { room, expiry } => {
                *expiry == Expiry::Forever && state.get(room).is_none_or(|m| m.until.is_none())
            }
            Command::UnmuteRoom { room } => state.get(room).is_none_or(|m| m.until.is_none()),
            Command::PauseNotifications { expiry } => {
                *expiry == Expiry::Forever && state.pause().is_none_or(|p| p.until.is_none())
            }
            Command::ResumeNotifications => state.pause().is_none_or(|p| p.until.is_none()),
        }
    }
}

/// Why the domain refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("a mute or pause must end in the future and within {MAX_MUTE_SECONDS} seconds")]
    ExpiryOutOfRange,
}

/// The end of a mute or pause asked at `now`, to the millisecond (the API's precision, so that
/// asking for the same end again is recognised as the same).
fn resolve(expiry: Expiry, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, DomainError> {
    let until = match expiry {
        Expiry::Forever => return Ok(None),
        Expiry::At(until) => until,
        Expiry::For(seconds) if (1..=MAX_MUTE_SECONDS).contains(&seconds) => {
            now + TimeDelta::seconds(seconds)
        }
        Expiry::For(_) => return Err(DomainError::ExpiryOutOfRange),
    };
    let until = DateTime::from_timestamp_millis(until.timestamp_millis())
        .ok_or(DomainError::ExpiryOutOfRange)?;
    if until <= now || until > now + TimeDelta::seconds(MAX_MUTE_SECONDS) {
        return Err(DomainError::ExpiryOutOfRange);
    }
    Ok(Some(until))
}

/// Decides which events a command causes at `now` (the database's clock, read with the
/// state). Idempotence lives here: muting a room muted until the same end, or unmuting one
/// that is not muted (never muted, unmuted, or expired), decides nothing, so retries and
/// double taps leave no trace. A different end, or a mute whose end has passed, is a new
/// mute. Pauses follow the same rules: the same end again decides nothing, resuming when
/// not paused (never, resumed, or expired) decides nothing.
pub fn decide(
    state: &MuteState,
    command: &Command,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    Ok(match command {
        Command::MuteRoom { room, expiry } => {
            let until = resolve(*expiry, now)?;
            match state.get(room) {
                Some(mute) if mute.is_active(now) && mute.until == until => Vec::new(),
                _ => vec![Event::RoomMuted {
                    room: room.clone(),
                    until,
                }],
            }
        }
        Command::UnmuteRoom { room } if state.is_muted(room, now) => {
            vec![Event::RoomUnmuted { room: room.clone() }]
        }
        Command::UnmuteRoom { .. } => Vec::new(),
        Command::PauseNotifications { expiry } => {
            let until = resolve(*expiry, now)?;
            match state.pause() {
                Some(pause) if pause.is_active(now) && pause.until == until => Vec::new(),
                _ => vec![Event::NotificationsPaused { until }],
            }
        }
        Command::ResumeNotifications if state.is_paused(now) => {
            vec![Event::NotificationsResumed]
        }
        Command::ResumeNotifications => Vec::new(),
    })
}

/// Folds one event recorded at `recorded_at` into the state. The live projection, rebuild
/// and as-of answers all follow this one rule, so they cannot disagree about what the log
/// means: a mute replaces any earlier mute of the room (it is muted since this event, until
/// this event's end, and moves last), an unmute removes it; a pause replaces any earlier
/// pause (paused since this event, until its end), a resume ends it.
pub fn evolve(mut state: MuteState, event: &Event, recorded_at: DateTime<Utc>) -> MuteState {
    match event {
        Event::RoomMuted { room, until } => {
            state.mutes.retain(|m| &m.room != room);
            state.mutes.push(RoomMute {
                room: room.clone(),
                since: recorded_at,
                until: *until,
            });
        }
        Event::RoomUnmuted { room } => state.mutes.retain(|m| &m.room != room),
        Event::NotificationsPaused { until } => {
            state.pause = Some(Pause {
                since: recorded_at,
                until: *until,
            });
        }
        Event::NotificationsResumed => state.pause = None,
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of the givens are recorded a second apart from this instant; `now` is
    /// chosen per test.
    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }
    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }
    fn muted(id: &str) -> Event {
        Event::RoomMuted {
            room: room(id),
            until: None,
        }
    }
    fn muted_until(id: &str, until: DateTime<Utc>) -> Event {
        Event::RoomMuted {
            room: room(id),
            until: Some(until),
        }
    }
    fn unmuted(id: &str) -> Event {
        Event::RoomUnmuted { room: room(id) }
    }
    fn mute(id: &str) -> Command {
        Command::MuteRoom {
            room: room(id),
            expiry: Expiry::Forever,
        }
    }
    fn mute_until(id: &str, until: DateTime<Utc>) -> Command {
        Command::MuteRoom {
            room: room(id),
            expiry: Expiry::At(until),
        }
    }
    fn unmute(id: &str) -> Command {
        Command::UnmuteRoom { room: room(id) }
    }

    fn fold(given: &[Event]) -> MuteState {
        (0..)
            .zip(given)
            .fold(MuteState::default(), |state, (i, e)| evolve(state, e, t(i)))
    }

    /// Given these past events, when this command at `now`, then exactly these new events.
    fn given_when_then(given: &[Event], when: Command, now: DateTime<Utc>, then: &[Event]) {
        assert_eq!(
            decide(&fold(given), &when, now),
            Ok(then.to_vec()),
            "given {given:?} when {when:?} at {now}"
        );
    }

    #[test]
    fn muting_an_unmuted_room_records_it() {
        given_when_then(&[], mute("a"), t(10), &[muted("a")]);
        given_when_then(
            &[],
            mute_until("a", t(60)),
            t(10),
            &[muted_until("a", t(60))],
        );
    }

    #[test]
    fn muting_a_muted_room_with_the_same_end_records_nothing() {
        given_when_then(&[muted("a")], mute("a"), t(10), &[]);
        given_when_then(
            &[muted_until("a", t(60))],
            mute_until("a", t(60)),
            t(10),
            &[],
        );
    }

    #[test]
    fn muting_a_muted_room_with_another_end_records_the_new_end() {
        let timed = || muted_until("a", t(60));
        given_when_then(
            &[timed()],
            mute_until("a", t(90)),
            t(10),
            &[muted_until("a", t(90))],
        );
        given_when_then(&[timed()], mute("a"), t(10), &[muted("a")]);
        given_when_then(&[muted("a")], mute_until("a", t(60)), t(10), &[timed()]);
    }

    #[test]
    fn muting_a_room_whose_mute_expired_records_a_new_mute() {
        let timed = || muted_until("a", t(60));
        given_when_then(&[timed()], mute_until("a", t(60)), t(59), &[]);
        given_when_then(&[timed()], mute("a"), t(60), &[muted("a")]);
        given_when_then(
            &[timed()],
            mute_until("a", t(120)),
            t(61),
            &[muted_until("a", t(120))],
        );
    }

    #[test]
    fn a_duration_ends_that_long_after_now_to_the_millisecond() {
        let now = t(10) + TimeDelta::microseconds(1_234_567);
        let when = Command::MuteRoom {
            room: room("a"),
            expiry: Expiry::For(3600),
        };
        let until = DateTime::from_timestamp_millis((now + TimeDelta::hours(1)).timestamp_millis());
        assert_eq!(
            decide(&MuteState::default(), &when, now),
            Ok(vec![muted_until("a", until.unwrap())])
        );
    }

    #[test]
    fn an_end_in_the_past_or_beyond_a_year_is_refused() {
        let now = t(100);
        let year = TimeDelta::seconds(MAX_MUTE_SECONDS);
        for expiry in [
            Expiry::At(now),
            Expiry::At(t(99)),
            Expiry::At(now + year + TimeDelta::milliseconds(1)),
            Expiry::For(0),
            Expiry::For(-5),
            Expiry::For(MAX_MUTE_SECONDS + 1),
        ] {
            let when = Command::MuteRoom {
                room: room("a"),
                expiry,
            };
            assert_eq!(
                decide(&MuteState::default(), &when, now),
                Err(DomainError::ExpiryOutOfRange),
                "{expiry:?}"
            );
        }
        for expiry in [
            Expiry::At(now + year),
            Expiry::For(1),
            Expiry::For(MAX_MUTE_SECONDS),
        ] {
            let when = Command::MuteRoom {
                room: room("a"),
                expiry,
            };
            assert!(
                decide(&MuteState::default(), &when, now).is_ok(),
                "{expiry:?}"
            );
        }
    }

    #[test]
    fn muting_again_after_unmute_records_it() {
        given_when_then(&[muted("a"), unmuted("a")], mute("a"), t(10), &[muted("a")]);
    }

    #[test]
    fn unmuting_a_muted_room_records_it() {
        given_when_then(
            &[muted("a"), muted("b")],
            unmute("a"),
            t(10),
            &[unmuted("a")],
        );
        given_when_then(
            &[muted_until("a", t(60))],
            unmute("a"),
            t(59),
            &[unmuted("a")],
        );
    }

    #[test]
    fn unmuting_a_room_that_is_not_muted_records_nothing() {
        given_when_then(&[], unmute("a"), t(10), &[]);
        given_when_then(&[muted("a"), unmuted("a")], unmute("a"), t(10), &[]);
        given_when_then(&[muted("b")], unmute("a"), t(10), &[]);
    }

    #[test]
    fn unmuting_an_expired_mute_records_nothing() {
        given_when_then(&[muted_until("a", t(60))], unmute("a"), t(60), &[]);
        given_when_then(&[muted_until("a", t(60))], unmute("a"), t(600), &[]);
    }

    fn paused(until: Option<DateTime<Utc>>) -> Event {
        Event::NotificationsPaused { until }
    }
    fn pause(expiry: Expiry) -> Command {
        Command::PauseNotifications { expiry }
    }

    #[test]
    fn pausing_when_not_paused_records_it() {
        given_when_then(&[], pause(Expiry::Forever), t(10), &[paused(None)]);
        given_when_then(
            &[muted("a")],
            pause(Expiry::At(t(60))),
            t(10),
            &[paused(Some(t(60)))],
        );
        given_when_then(
            &[paused(None), Event::NotificationsResumed],
            pause(Expiry::Forever),
            t(10),
            &[paused(None)],
        );
    }

    #[test]
    fn pausing_again_with_the_same_end_records_nothing() {
        given_when_then(&[paused(None)], pause(Expiry::Forever), t(10), &[]);
        given_when_then(&[paused(Some(t(60)))], pause(Expiry::At(t(60))), t(59), &[]);
    }

    #[test]
    fn pausing_with_another_end_or_after_the_end_records_the_new_pause() {
        given_when_then(
            &[paused(Some(t(60)))],
            pause(Expiry::At(t(90))),
            t(10),
            &[paused(Some(t(90)))],
        );
        given_when_then(
            &[paused(Some(t(60)))],
            pause(Expiry::Forever),
            t(10),
            &[paused(None)],
        );
        given_when_then(
            &[paused(None)],
            pause(Expiry::For(60)),
            t(10),
            &[paused(Some(t(70)))],
        );
        given_when_then(
            &[paused(Some(t(60)))],
            pause(Expiry::At(t(120))),
            t(60),
            &[paused(Some(t(120)))],
        );
    }

    #[test]
    fn a_pause_end_in_the_past_or_beyond_a_year_is_refused() {
        for expiry in [
            Expiry::At(t(10)),
            Expiry::For(0),
            Expiry::For(MAX_MUTE_SECONDS + 1),
        ] {
            assert_eq!(
                decide(&MuteState::default(), &pause(expiry), t(10)),
                Err(DomainError::ExpiryOutOfRange),
                "{expiry:?}"
            );
        }
    }

    #[test]
    fn resuming_a_pause_in_force_records_it() {
        let resume = Command::ResumeNotifications;
        given_when_then(
            &[paused(None)],
            resume.clone(),
            t(10),
            &[Event::NotificationsResumed],
        );
        given_when_then(
            &[paused(Some(t(60)))],
            resume,
            t(59),
            &[Event::NotificationsResumed],
        );
    }

    #[test]
    fn resuming_when_not_paused_or_after_the_end_records_nothing() {
        let resume = || Command::ResumeNotifications;
        given_when_then(&[], resume(), t(10), &[]);
        given_when_then(&[muted("a")], resume(), t(10), &[]);
        given_when_then(
            &[paused(None), Event::NotificationsResumed],
            resume(),
            t(10),
            &[],
        );
        given_when_then(&[paused(Some(t(60)))], resume(), t(60), &[]);
        given_when_then(&[paused(Some(t(60)))], resume(), t(600), &[]);
    }

    #[test]
    fn a_pause_leaves_the_mutes_alone_and_ends_at_its_end() {
        let state = fold(&[muted("a"), paused(Some(t(60))), muted("b")]);
        assert_eq!(
            state.pause(),
            Some(&Pause {
                since: t(1),
                until: Some(t(60))
            })
        );
        assert_eq!(state.mutes().len(), 2);
        assert!(state.is_paused(t(59)));
        assert!(!state.is_paused(t(60)));
        assert_eq!(
            state.clone().active_at(t(59)).pause().map(|p| p.since),
            Some(t(1))
        );
        assert_eq!(state.clone().active_at(t(60)).pause(), None);
        assert_eq!(state.active_at(t(60)).mutes().len(), 2);
        let resumed = fold(&[paused(None), muted("a"), Event::NotificationsResumed]);
        assert_eq!(resumed.pause(), None);
        assert_eq!(resumed.mutes().len(), 1);
    }

    #[test]
    fn state_keeps_mutes_in_the_order_they_happened() {
        let state = fold(&[muted("b"), muted("a"), muted("c"), unmuted("a"), muted("a")]);
        let rooms: Vec<&RoomId> = state.mutes().iter().map(|m| &m.room).collect();
        assert_eq!(rooms, [&room("b"), &room("c"), &room("a")]);
    }

    #[test]
    fn a_new_mute_of_a_muted_room_replaces_it() {
        let state = fold(&[muted("a"), muted("b"), muted_until("a", t(60))]);
        assert_eq!(
            state.mutes(),
            &[
                RoomMute {
                    room: room("b"),
                    since: t(1),
                    until: None
                },
                RoomMute {
                    room: room("a"),
                    since: t(2),
                    until: Some(t(60))
                },
            ]
        );
    }

    #[test]
    fn only_mutes_in_force_are_active() {
        let state = fold(&[muted_until("a", t(60)), muted("b")]);
        let active = |now| -> Vec<RoomId> {
            state
                .clone()
                .active_at(now)
                .into_mutes()
                .into_iter()
                .map(|m| m.room)
                .collect()
        };
        assert_eq!(active(t(59)), [room("a"), room("b")]);
        assert_eq!(active(t(60)), [room("b")]);
    }

    #[test]
    fn a_decision_made_without_a_clock_is_the_same_at_every_instant() {
        let givens: [&[Event]; 6] = [
            &[],
            &[muted("a")],
            &[muted_until("a", t(60))],
            &[muted("a"), unmuted("a")],
            &[paused(None)],
            &[paused(Some(t(60)))],
        ];
        let whens = [
            mute("a"),
            mute_until("a", t(90)),
            unmute("a"),
            pause(Expiry::Forever),
            pause(Expiry::For(30)),
            Command::ResumeNotifications,
        ];
        for given in givens {
            let state = fold(given);
            for when in &whens {
                if when.decided_without_a_clock(&state) {
                    assert_eq!(
                        decide(&state, when, t(10)),
                        decide(&state, when, t(1_000_000)),
                        "given {given:?} when {when:?}"
                    );
                }
            }
        }
        assert!(mute("a").decided_without_a_clock(&fold(&[muted("a")])));
        assert!(unmute("a").decided_without_a_clock(&fold(&[muted("b")])));
        assert!(!unmute("a").decided_without_a_clock(&fold(&[muted_until("a", t(60))])));
        assert!(!mute_until("a", t(90)).decided_without_a_clock(&MuteState::default()));
        assert!(
            !Command::ResumeNotifications.decided_without_a_clock(&fold(&[paused(Some(t(60)))]))
        );
    }
}
