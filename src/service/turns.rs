//! One command per user at a time in this process: a user's later requests wait their turn
//! here, holding no database connection, instead of each taking one to queue on the
//! stream's row lock. Without this, a lock left held on one user's stream (a transaction
//! open in psql, an instance frozen inside one) lets that user's requests fill the pool and
//! starve everyone else's. Requests of one user never ran side by side anyway: the row
//! lock, or the version check, put them one after the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Mutex as Line, OwnedMutexGuard};

use crate::domain::{AppId, ClientId};

type Key = (AppId, ClientId);

/// The users with a command running or waiting in this process; a user's entry goes when
/// their last request does.
pub struct UserTurns {
    lines: Mutex<HashMap<Key, Arc<Line<()>>>>,
    wait: Duration,
}

/// A user's turn: theirs until dropped. Shared (`Arc<Turn>`) with an append queued for a
/// group commit, it lasts until that append is resolved even if its request goes away, so
/// the user's next request cannot overtake it.
pub struct Turn {
    turns: Arc<UserTurns>,
    key: Key,
    line: Arc<Line<()>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl UserTurns {
    /// Turns that a request waits for at most `wait`.
    pub fn new(wait: Duration) -> Self {
        UserTurns {
            lines: Mutex::default(),
            wait,
        }
    }

    /// Waits for the user's turn; `None` once the wait is over and an earlier request of
    /// theirs still has it.
    pub async fn take(self: &Arc<Self>, app: &AppId, client: &ClientId) -> Option<Turn> {
        let key = (app.clone(), client.clone());
        let line = Arc::clone(self.lines().entry(key.clone()).or_default());
        let mut turn = Turn {
            turns: Arc::clone(self),
            key,
            line: Arc::clone(&line),
            held: None,
        };
        turn.held = Some(
            tokio::time::timeout(self.wait, line.lock_owned())
                .await
                .ok()?,
        );
        Some(turn)
    }

    /// Users with a request running or waiting.
    pub fn len(&self) -> usize {
        self.lines().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Line<()>>>> {
        // Nothing panics while holding it; if something did, the map is still whole.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.held = None;
        let mut lines = self.turns.lines();
        // Held only by the map and this turn: no one else is running or waiting. New
        // requests clone it under the map's lock, so none can be between the two.
        if Arc::strong_count(&self.line) == 2 {
            lines.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> (AppId, ClientId) {
        (AppId::parse("app").unwrap(), ClientId::parse(id).unwrap())
    }

    #[tokio::test]
    async fn a_users_second_request_waits_for_the_first_while_others_go_ahead() {
        let turns = Arc::new(UserTurns::new(Duration::from_millis(50)));
        let (app, alice) = user("alice");
        let (_, bob) = user("bob");
        let first = turns.take(&app, &alice).await.expect("free");
        assert!(turns.take(&app, &bob).await.is_some(), "bob does not wait");
        assert!(
            turns.take(&app, &alice).await.is_none(),
            "alice's second request waits and gives up"
        );
        drop(first);
        assert!(turns.take(&app, &alice).await.is_some());
    }

    /// Alice's first request's turn, and her second request waiting for it (answering
    /// whether it got it).
    async fn alice_twice(turns: &Arc<UserTurns>) -> (Turn, tokio::task::JoinHandle<bool>) {
        let (app, alice) = user("alice");
        let first = turns.take(&app, &alice).await.unwrap();
        let waiting = {
            let turns = Arc::clone(turns);
            tokio::spawn(async move { turns.take(&app, &alice).await.is_some() })
        };
        tokio::task::yield_now().await;
        (first, waiting)
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_turn_when_the_one_before_ends() {
        let turns = Arc::new(UserTurns::new(Duration::from_secs(10)));
        let (first, waiting) = alice_twice(&turns).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn a_user_leaves_no_entry_once_their_requests_are_done_or_gave_up() {
        let turns = Arc::new(UserTurns::new(Duration::from_millis(20)));
        let (app, alice) = user("alice");
        let first = turns.take(&app, &alice).await.unwrap();
        assert!(turns.take(&app, &alice).await.is_none());
        assert_eq!(turns.len(), 1);
        drop(first);
        assert!(turns.is_empty());
    }

    #[tokio::test]
    async fn a_request_cancelled_while_waiting_leaves_no_entry() {
        let turns = Arc::new(UserTurns::new(Duration::from_secs(10)));
        let (first, waiting) = alice_twice(&turns).await;
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        drop(first);
        assert!(turns.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_cancelled_after_the_turn_was_handed_to_it_leaves_no_entry() {
        let turns = Arc::new(UserTurns::new(Duration::from_secs(10)));
        let (first, waiting) = alice_twice(&turns).await;
        drop(first);
        waiting.abort();
        let _ = waiting.await;
        assert!(turns.is_empty());
    }
}
