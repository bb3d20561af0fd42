//! The loop shape of the background services (health checks, JWKS refresh): a round every
//! `period`, skipping missed ticks, until the server shuts down.

use pingora::server::ShutdownWatch;
use std::time::Duration;

/// Runs `round` every `period` until `shutdown` fires. `round` must not block: it does its
/// slow work in spawned tasks.
pub async fn every(period: Duration, mut shutdown: ShutdownWatch, mut round: impl FnMut()) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => round(),
        }
    }
}
