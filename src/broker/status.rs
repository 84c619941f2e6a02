//! What the connection owner tells the outside world about its connection, for health checks
//! and metrics: connected or not, every subscription set up or not, and how often it
//! reconnected. Atomics, written by the owner and read by whoever holds the `Arc`, so a health
//! check never waits for the owner task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The state of one [`Broker`](super::Broker)'s connection. See the module doc.
#[derive(Debug, Default)]
pub struct ConnectionStatus {
    connected: AtomicBool,
    subscriptions_live: AtomicBool,
    reconnects: AtomicU64,
}

impl ConnectionStatus {
    /// True while a session is open.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// True while connected and every subscription is set up on the current session (vacuously
    /// true with none: whoever needs one knows whether it asked for it).
    pub fn subscriptions_live(&self) -> bool {
        self.connected() && self.subscriptions_live.load(Ordering::Relaxed)
    }

    /// Sessions opened after the first one: every reconnection, whatever the cause.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub(super) fn set(&self, connected: bool, subscriptions_live: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.subscriptions_live.store(subscriptions_live, Ordering::Relaxed);
    }

    pub(super) fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}
