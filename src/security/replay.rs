//! The replay window: a bounded memory of request ids admitted and not yet expired.
//!
//! A signed request captured off the broker verifies forever, so a node must refuse to run the
//! same request id twice while the request is still fresh. Once a request has expired, the
//! freshness check refuses it anyway and its id can be forgotten, which is what keeps the
//! window bounded in time. It is also bounded in size: when it holds `capacity` unexpired ids,
//! it refuses new requests with [`Replayed::WindowFull`] instead of forgetting an old id early,
//! because forgetting an id that is still fresh would let that request be replayed. Refusing is
//! the safe failure: a flood of valid requests degrades to refusals that are counted and
//! logged, never to a replay hole. The window drains on its own as ids expire.
//!
//! Two rules keep one caller from filling the window for everyone else (security review
//! finding 3). The node asks [`ReplayWindow::seen`] early, to refuse a replay before spending
//! anything on it, but only [`ReplayWindow::remember`]s an id once the request matched the
//! node's filter and passed authorization, so requests that are dropped or refused take no
//! room. And each caller may hold at most a share of the window ([`ReplayWindow::caller_share`],
//! an eighth of it): past that, only that caller's new requests are refused
//! ([`Replayed::CallerShareFull`]) and other callers still have room. Callers are remembered by a
//! keyed hash of their name, so a long name costs nothing and names cannot be chosen to
//! collide.
//!
//! Each call costs O(log n): ids live in a `HashMap` (for the duplicate check) and in a
//! `BTreeSet` ordered by expiry (so that expired ids are found from the front). The window is
//! not thread-safe by itself; the node wraps it in a mutex.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;

use uuid::Uuid;

/// A sensible capacity for a node: 100 000 ids cost a few megabytes and cover 1 600 requests a
/// second for a minute's ttl.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// One caller may hold at most `capacity / CALLER_SHARE_DIVISOR` ids of the window.
pub const CALLER_SHARE_DIVISOR: usize = 8;

/// Remembers request ids until they expire. See the module documentation.
#[derive(Debug)]
pub struct ReplayWindow {
    capacity: usize,
    caller_share: usize,
    /// Expiry and caller (hashed) of each remembered id.
    entries: HashMap<Uuid, (u64, u64)>,
    ids_by_expiry: BTreeSet<(u64, Uuid)>,
    ids_per_caller: HashMap<u64, usize>,
    caller_hasher: RandomState,
}

/// Why a request id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Replayed {
    #[error("request {id} was already received (a replay, or a client resending with the same id)")]
    Duplicate { id: Uuid },
    #[error(
        "replay window is full ({capacity} unexpired request ids); refusing new requests until \
         the oldest expires in {retry_after_ms} ms (requests arrive faster than the window was \
         sized for: raise security.replay_window or lower request ttls)"
    )]
    WindowFull { capacity: usize, retry_after_ms: u64 },
    #[error(
        "caller {caller:?} already has {share} unexpired requests on this node, its share of the \
         replay window; its new requests are refused until one expires (send fewer requests, \
         with shorter ttls, or raise security.replay_window)"
    )]
    CallerShareFull { caller: String, share: usize },
}

impl ReplayWindow {
    /// An empty window that holds at most `capacity` unexpired ids (at least one), and at most
    /// an eighth of that (at least one) per caller.
    pub fn new(capacity: usize) -> ReplayWindow {
        let capacity = capacity.max(1);
        ReplayWindow {
            capacity,
            caller_share: (capacity / CALLER_SHARE_DIVISOR).max(1),
            entries: HashMap::new(),
            ids_by_expiry: BTreeSet::new(),
            ids_per_caller: HashMap::new(),
            caller_hasher: RandomState::new(),
        }
    }

    /// Refuses `id` if it is remembered and not expired at `now_ms`. Remembers nothing: a
    /// request is remembered with [`ReplayWindow::remember`] once it is known to be for this
    /// node and allowed.
    pub fn seen(&self, id: Uuid, now_ms: u64) -> Result<(), Replayed> {
        match self.entries.get(&id) {
            Some(&(expiry, _)) if expiry >= now_ms => Err(Replayed::Duplicate { id }),
            _ => Ok(()),
        }
    }

    /// Refuses `id` if it is remembered and not expired at `now_ms`, if the window is full, or
    /// if `caller` already holds its share; otherwise remembers it until `expires_at_ms`
    /// (inclusive; see [`crate::security::expires_at_ms`]).
    ///
    /// Forgets ids whose expiry is before `now_ms` first. A duplicate keeps its first expiry.
    pub fn remember(
        &mut self,
        id: Uuid,
        caller: &str,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<(), Replayed> {
        self.forget_expired(now_ms);
        if self.entries.contains_key(&id) {
            return Err(Replayed::Duplicate { id });
        }
        if self.entries.len() >= self.capacity {
            let oldest_expiry = self.ids_by_expiry.first().map_or(now_ms, |(expiry, _)| *expiry);
            return Err(Replayed::WindowFull {
                capacity: self.capacity,
                // The oldest id is forgotten once now passes its expiry, hence the + 1.
                retry_after_ms: oldest_expiry.saturating_sub(now_ms).saturating_add(1),
            });
        }
        let caller_key = self.caller_hasher.hash_one(caller);
        let held = self.ids_per_caller.entry(caller_key).or_insert(0);
        if *held >= self.caller_share {
            return Err(Replayed::CallerShareFull { caller: caller.to_owned(), share: self.caller_share });
        }
        *held += 1;
        self.entries.insert(id, (expires_at_ms, caller_key));
        self.ids_by_expiry.insert((expires_at_ms, id));
        Ok(())
    }

    /// How many ids are remembered, expired ones not yet forgotten included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The most ids one caller may hold at once.
    pub fn caller_share(&self) -> usize {
        self.caller_share
    }

    fn forget_expired(&mut self, now_ms: u64) {
        while let Some(&(expiry, id)) = self.ids_by_expiry.first() {
            if expiry >= now_ms {
                break;
            }
            self.ids_by_expiry.pop_first();
            if let Some((_, caller_key)) = self.entries.remove(&id)
                && let Some(held) = self.ids_per_caller.get_mut(&caller_key)
            {
                *held -= 1;
                if *held == 0 {
                    self.ids_per_caller.remove(&caller_key);
                }
            }
        }
    }
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow::new(DEFAULT_REPLAY_CAPACITY)
    }
}
