//! The daemon's counters: one per step of the request pipeline.
//!
//! Each counter is an atomic so the pipeline can count without a lock; `rpcutil daemon_stats`
//! reads them all at once. Counters only ever go up while the daemon runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::agents::StatsSource;

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Pipeline counters. See the module doc.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        impl Counters {
            fn to_map(&self) -> Map<String, Value> {
                let mut map = Map::new();
                $(map.insert(stringify!($name).to_string(), json!(self.$name.load(Ordering::Relaxed)));)*
                map
            }
        }
    };
}

counters! {
    received: "Messages taken off the broker.",
    too_large: "Refused before decoding: over the size limit.",
    malformed: "Refused: not a valid envelope or request (bad CBOR, wrong version, wrong kind).",
    bad_signature: "Refused: the signature did not verify with this node's key.",
    bad_reply_to: "Refused: reply_to is not a client reply queue of a collective this node serves.",
    expired: "Refused: older than its ttl, or from too far in the future.",
    replayed: "Refused: a request id already seen within its ttl.",
    replay_window_full: "Refused: the replay window, or the caller's share of it, is full.",
    filtered: "Dropped silently: the filter does not match this node.",
    unknown_action: "Answered status 2: no such agent or action.",
    unauthorized: "Answered status 1: refused by policy.",
    invalid_input: "Answered status 3 or 4: inputs missing or invalid.",
    ok: "Actions that ran and succeeded.",
    failed: "Actions that ran and failed (status 1 or 5), including timeouts.",
    timed_out: "Actions stopped at their timeout (also counted in failed).",
    replies: "Signed replies published.",
    replies_unroutable: "Replies the broker could not route (the client had gone).",
    replies_failed: "Replies that could not be published at all.",
}

/// The daemon's statistics: counters plus when it started.
#[derive(Debug)]
pub struct Stats {
    pub counters: Counters,
    started: Instant,
    started_ms: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counters: Counters::default(),
            started: Instant::now(),
            started_ms: crate::protocol::now_ms(),
        }
    }
}

impl Stats {
    /// Adds one to a counter.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl StatsSource for Stats {
    fn snapshot(&self) -> Map<String, Value> {
        let mut map = self.counters.to_map();
        map.insert("uptime_secs".to_string(), json!(self.started.elapsed().as_secs()));
        map.insert("started_ms".to_string(), json!(self.started_ms));
        map.insert("pid".to_string(), json!(std::process::id()));
        map.insert("version".to_string(), json!(env!("CARGO_PKG_VERSION")));
        map
    }
}
