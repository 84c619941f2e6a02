//! The replay window: a bounded memory of request ids seen and not yet expired.
//!
//! A signed request captured off the broker verifies forever, so a node must refuse to run the
//! same request id twice while the request is still fresh. Once a request has expired, the
//! freshness check refuses it anyway and its id can be forgotten, which is what keeps the
//! window bounded in time. It is also bounded in size: when it holds `capacity` unexpired ids,
//! it refuses new requests with [`Replayed::WindowFull`] instead of forgetting an old id early,
//! because forgetting an id that is still fresh would let that request be replayed. Refusing is
//! the safe failure: a flood of valid requests (which needs the key) degrades to refusals that
//! are counted and logged, never to a replay hole. The window drains on its own as ids expire.
//!
//! Each call costs O(log n): ids live in a `HashMap` (for the duplicate check) and in a
//! `BTreeSet` ordered by expiry (so that expired ids are found from the front). The window is
//! not thread-safe by itself; the node wraps it in a mutex.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

/// A sensible capacity for a node: 100 000 ids cost a few megabytes and cover 1 600 requests a
/// second for a minute's ttl.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// Remembers request ids until they expire. See the module documentation.
#[derive(Debug)]
pub struct ReplayWindow {
    capacity: usize,
    expiry_by_id: HashMap<Uuid, u64>,
    ids_by_expiry: BTreeSet<(u64, Uuid)>,
}

/// Why a request id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Replayed {
    #[error("request {id} was already received (a replay, or a client resending with the same id)")]
    Duplicate { id: Uuid },
    #[error(
        "replay window is full ({capacity} unexpired request ids); refusing new requests until \
         the oldest expires in {retry_after_ms} ms (requests arrive faster than the window was \
         sized for: raise its capacity or lower request ttls)"
    )]
    WindowFull { capacity: usize, retry_after_ms: u64 },
}

impl ReplayWindow {
    /// An empty window that holds at most `capacity` unexpired ids (at least one).
    pub fn new(capacity: usize) -> ReplayWindow {
        ReplayWindow {
            capacity: capacity.max(1),
            expiry_by_id: HashMap::new(),
            ids_by_expiry: BTreeSet::new(),
        }
    }

    /// Refuses `id` if it is remembered and not expired at `now_ms`; otherwise remembers it
    /// until `expires_at_ms` (inclusive; see [`crate::security::expires_at_ms`]).
    ///
    /// Forgets ids whose expiry is before `now_ms` first. A duplicate keeps its first expiry.
    pub fn check_and_remember(&mut self, id: Uuid, expires_at_ms: u64, now_ms: u64) -> Result<(), Replayed> {
        self.forget_expired(now_ms);
        if self.expiry_by_id.contains_key(&id) {
            return Err(Replayed::Duplicate { id });
        }
        if self.expiry_by_id.len() >= self.capacity {
            let oldest_expiry = self.ids_by_expiry.first().map_or(now_ms, |(expiry, _)| *expiry);
            return Err(Replayed::WindowFull {
                capacity: self.capacity,
                // The oldest id is forgotten once now passes its expiry, hence the + 1.
                retry_after_ms: oldest_expiry.saturating_sub(now_ms).saturating_add(1),
            });
        }
        self.expiry_by_id.insert(id, expires_at_ms);
        self.ids_by_expiry.insert((expires_at_ms, id));
        Ok(())
    }

    /// How many ids are remembered, expired ones not yet forgotten included.
    pub fn len(&self) -> usize {
        self.expiry_by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.expiry_by_id.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn forget_expired(&mut self, now_ms: u64) {
        while let Some(&(expiry, id)) = self.ids_by_expiry.first() {
            if expiry >= now_ms {
                break;
            }
            self.ids_by_expiry.pop_first();
            self.expiry_by_id.remove(&id);
        }
    }
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow::new(DEFAULT_REPLAY_CAPACITY)
    }
}
