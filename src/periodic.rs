//! Background rounds of `serve` (the sweep of expired rows, personal-data retention, API
//! key use stamps): one ticker for all of them, so each says only what a round does.

use std::future::Future;
use std::time::Duration;

use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// Runs `round` at `first` and then every `interval` on the current runtime, for as long as
/// the runtime lives. A round that overruns delays the next rather than bunching them up.
pub fn spawn_every<F, Fut>(first: Instant, interval: Duration, mut round: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = interval_at(first, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            round().await;
        }
    });
}
