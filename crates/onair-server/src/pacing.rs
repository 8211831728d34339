//! Has the hub fold its rooms' measured turns into the cost per socket write that paces
//! big rooms (`onair_hub::Hub::observe_fanout`), once a second, and refresh the pacing
//! gauges of `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use onair_hub::Hub;
use tokio_util::sync::CancellationToken;

/// How often the cost is folded.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Runs until shutdown.
pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        hub.observe_fanout();
    }
}
