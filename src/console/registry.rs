//! The live node registry: every node's latest inventory, from the registration exchange.
//!
//! Nodes publish a signed [`Registration`] at start and every registration interval. At start
//! the console reads the broker's registry once ([`fill`], through `client::registry`): every
//! node that registered within the registry's window is listed at once, as of when it
//! registered. Where there is no registry to read (STOMP to ActiveMQ, no stream declared) it
//! asks the fleet for its inventories instead. [`Filling`] says which, for the log and the API.
//! From then on the console listens on its own queue, verifies each one with the same keys as
//! replies (the console's [`SharedSecurity`], so keys a SIGHUP reloaded apply from the next
//! message; with ed25519 the signing key must be the node's own), keeps the newest per node, and
//! writes it to the [`Store`], so the list is there again after a restart. A node not heard
//! from for [`QUIET_INTERVALS`] registration intervals is shown as quiet, not forgotten.
//! After a restart, a node known only from the store is "unknown" (and still sent jobs) until
//! one interval has passed since the console started: until then, silence proves nothing.
//!
//! A registration dated further in the future than the clock skew allowance
//! (`security.clock_skew_secs`, as for requests), or older than the quiet time plus that
//! allowance, is refused: a node's clock must not decide how long its entry stays live.
//!
//! The node list is filtered with the CLI's filter language: the same [`Filter`] the nodes
//! evaluate, evaluated here against the registered facts, classes and agents.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tracing::{debug, info, warn};

use super::store::{Store, StoredNode};
use crate::broker::{Broker, BrokerError};
use crate::client::registry::{Fleet, RegisteredNode, RegistrySettings};
use crate::client::{Client, ClientError, Event, NodeReply, RequestSpec, Targets};
use crate::protocol::filter::Filter;
use crate::protocol::{Registration, now_ms};
use crate::security::{SharedSecurity, Verified};

/// A node is quiet once this many registration intervals pass without hearing from it.
pub const QUIET_INTERVALS: u32 = 3;

/// The longest identity accepted from a registration.
const MAX_IDENTITY_LEN: usize = 255;

/// Why a verified registration was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("registration of {identity:?} is signed by key {key:?}, not the node's own")]
    WrongKey { identity: String, key: String },
    #[error("registration names no usable identity ({0:?})")]
    BadIdentity(String),
    #[error("registration of {identity:?} is not for collective {collective:?}")]
    OtherCollective { identity: String, collective: String },
    #[error("registration of {0:?} is older than the one already held")]
    Stale(String),
    #[error(
        "registration of {identity:?} is dated {ahead_ms} ms in the future, beyond the clock skew allowance (synchronise the node's clock)"
    )]
    FromFuture { identity: String, ahead_ms: u64 },
    #[error("registration of {identity:?} is {age_ms} ms old: too old to count")]
    TooOld { identity: String, age_ms: u64 },
}

/// One node as the registry holds it: the client's view of a registration (what filters
/// match), and when the console last heard from it.
#[derive(Debug, Clone)]
struct Known {
    node: RegisteredNode,
    last_seen_ms: u64,
}

impl Known {
    fn new(stored: StoredNode) -> Known {
        Known { node: RegisteredNode::new(stored.registration), last_seen_ms: stored.last_seen_ms }
    }
}

/// A node as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSummary {
    pub identity: String,
    pub facts: serde_json::Map<String, Value>,
    pub classes: Vec<String>,
    pub agents: Vec<String>,
    pub collectives: Vec<String>,
    pub version: String,
    pub last_seen_ms: u64,
    /// Not heard from for [`QUIET_INTERVALS`] registration intervals.
    pub quiet: bool,
    /// `live`, `quiet`, or `unknown` (known from before a restart, not heard from since, and
    /// the console has not run for one interval yet).
    pub state: &'static str,
}

/// Where the node list was filled from at start (`filled_from` in `/api/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Filling {
    /// Still reading the registry (the nodes listed are the store's and live registrations).
    Starting,
    /// The broker's registry, read once: `nodes` registered within its window.
    Registry { nodes: usize, read_ms: u64 },
    /// There was no registry to read (`no_registry` says why), so the fleet was asked for its
    /// inventories; `nodes` answered (none yet while the console waits for answers).
    Inventories { no_registry: String, nodes: Option<usize> },
    /// Neither worked (`error`): nodes are listed as they register.
    Registrations { error: String },
}

/// Every node the console has heard of.
pub struct Registry {
    collective: String,
    nodes: RwLock<BTreeMap<String, Known>>,
    store: Arc<Store>,
    quiet_after: Duration,
    interval: Duration,
    clock_skew: Duration,
    /// When the console started (ms since the epoch).
    started_ms: u64,
    rejected: AtomicU64,
    filling: RwLock<Filling>,
}

impl Registry {
    /// The registry of `collective`, starting from what the store remembers, for a console
    /// started at `started_ms`. Nodes register every `interval`; clocks may differ by `clock_skew`.
    pub fn load(
        collective: &str,
        store: Arc<Store>,
        interval: Duration,
        clock_skew: Duration,
        started_ms: u64,
    ) -> Result<Registry, super::store::StoreError> {
        let nodes = store
            .nodes()?
            .into_iter()
            .map(|stored| (stored.registration.identity.clone(), Known::new(stored)))
            .collect();
        Ok(Registry {
            collective: collective.to_owned(),
            nodes: RwLock::new(nodes),
            store,
            quiet_after: interval * QUIET_INTERVALS,
            interval,
            clock_skew,
            started_ms,
            rejected: AtomicU64::new(0),
            filling: RwLock::new(Filling::Starting),
        })
    }

    /// Takes a verified registration received at `now_ms`. With a scheme that proves who
    /// signed (`ed25519`), the key must be the node's own; a registration older than the one
    /// held is ignored (a replayed or delayed message must not roll the inventory back).
    pub fn accept(
        &self,
        registration: Verified<Registration>,
        proves_sender: bool,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let key = registration.key_id().to_owned();
        let registration = registration.into_inner();
        if proves_sender && key != registration.identity {
            return Err(Rejection::WrongKey { identity: registration.identity, key });
        }
        self.take(registration, now_ms, now_ms)
    }

    /// Takes a node's answer to the console's own `rpcutil inventory` (sent at start when there
    /// is no registry, see [`fill`]) as if the node had just registered. The client verified
    /// the reply, and with `ed25519` it only accepts replies signed by the key of the node they
    /// name.
    pub fn accept_inventory(&self, reply: &NodeReply, now_ms: u64) -> Result<(), Rejection> {
        let strings = |key: &str| -> Vec<String> {
            reply.data[key].as_array().map_or_else(Vec::new, |values| {
                values.iter().filter_map(|value| value.as_str().map(str::to_owned)).collect()
            })
        };
        let registration = Registration {
            identity: reply.node.clone(),
            collectives: strings("collectives"),
            facts: reply.data["facts"].as_object().cloned().unwrap_or_default(),
            classes: strings("classes"),
            agents: strings("agents"),
            version: reply.data["version"].as_str().unwrap_or_default().to_owned(),
            time_ms: now_ms,
        };
        self.take(registration, now_ms, now_ms)
    }

    /// Takes the fleet read from the broker's registry at start (see [`fill`]), every node as
    /// last heard from when it registered, not when the console read it: a node that stopped
    /// since shows its age, and goes quiet like one the console heard from itself. `client::registry`
    /// verified each registration (with `ed25519`, signed by the node's own key). The nodes are
    /// all listed before any is written to the store, in one transaction. Returns how many
    /// were taken (a node whose live registration came in meanwhile keeps that one).
    pub fn accept_fleet(&self, fleet: &Fleet, now_ms: u64) -> usize {
        let mut taken = Vec::with_capacity(fleet.len());
        for node in fleet.nodes() {
            let registration = node.registration.clone();
            let heard_ms = registration.time_ms.min(now_ms);
            match self.admit(registration, heard_ms, now_ms) {
                Ok(stored) => taken.push(stored),
                Err(Rejection::Stale(node)) => debug!(%node, "registry entry ignored: a newer one is held"),
                Err(rejection) => debug!(%rejection, "registry entry not taken"),
            }
        }
        if let Err(error) = self.store.save_nodes(&taken) {
            warn!(nodes = taken.len(), %error, "cannot record the registry's nodes");
        }
        taken.len()
    }

    /// Keeps a registration whose sender is known, heard from at `heard_ms`, and records it.
    fn take(&self, registration: Registration, heard_ms: u64, now_ms: u64) -> Result<(), Rejection> {
        let stored = self.admit(registration, heard_ms, now_ms)?;
        if let Err(error) = self.store.save_node(&stored) {
            warn!(node = %stored.registration.identity, %error, "cannot record the registration");
        }
        Ok(())
    }

    /// Lists a registration heard from at `heard_ms`, unless its identity is unusable, it is
    /// for another collective, from the future, too old, or older than the one held (of two
    /// copies of one registration, the one heard from last).
    fn admit(&self, registration: Registration, heard_ms: u64, now_ms: u64) -> Result<StoredNode, Rejection> {
        let identity = registration.identity.clone();
        if identity.is_empty() || identity.len() > MAX_IDENTITY_LEN || identity.chars().any(char::is_control)
        {
            return Err(Rejection::BadIdentity(identity));
        }
        if !registration.collectives.contains(&self.collective) {
            return Err(Rejection::OtherCollective { identity, collective: self.collective.clone() });
        }
        let skew_ms = millis(self.clock_skew);
        if registration.time_ms > now_ms.saturating_add(skew_ms) {
            return Err(Rejection::FromFuture { identity, ahead_ms: registration.time_ms - now_ms });
        }
        let age_ms = now_ms.saturating_sub(registration.time_ms);
        if age_ms > millis(self.quiet_after).saturating_add(skew_ms) {
            return Err(Rejection::TooOld { identity, age_ms });
        }
        let stored = StoredNode { registration, last_seen_ms: heard_ms };
        let mut nodes = self.write();
        if let Some(held) = nodes.get(&identity) {
            let (held_ms, new_ms) = (held.node.registration.time_ms, stored.registration.time_ms);
            if held_ms > new_ms || (held_ms == new_ms && held.last_seen_ms >= heard_ms) {
                return Err(Rejection::Stale(identity));
            }
        }
        nodes.insert(identity, Known::new(stored.clone()));
        Ok(stored)
    }

    /// Where the node list was filled from at start.
    pub fn filling(&self) -> Filling {
        self.filling.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub(super) fn set_filling(&self, filling: Filling) {
        *self.filling.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = filling;
    }

    /// How many nodes the registry knows, quiet ones included.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Registrations dropped so far: bad signature, wrong key, malformed.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The nodes `filter` selects, sorted by identity, as of `now_ms`.
    pub fn matching(&self, filter: &Filter, now_ms: u64) -> Vec<NodeSummary> {
        self.read()
            .values()
            .filter(|known| filter.matches(&known.node))
            .map(|known| {
                let quiet = self.is_quiet(known.last_seen_ms, now_ms);
                // Heard of only before this start, and too early to call it quiet.
                let unknown = quiet
                    && known.last_seen_ms < self.started_ms
                    && now_ms < self.started_ms.saturating_add(millis(self.interval));
                NodeSummary {
                    identity: known.node.registration.identity.clone(),
                    facts: known.node.registration.facts.clone(),
                    classes: known.node.registration.classes.clone(),
                    agents: known.node.registration.agents.clone(),
                    collectives: known.node.registration.collectives.clone(),
                    version: known.node.registration.version.clone(),
                    last_seen_ms: known.last_seen_ms,
                    quiet: quiet && !unknown,
                    state: if unknown {
                        "unknown"
                    } else if quiet {
                        "quiet"
                    } else {
                        "live"
                    },
                }
            })
            .collect()
    }

    /// The identities of the nodes `filter` selects that are not quiet: the targets of a job.
    pub fn targets(&self, filter: &Filter, now_ms: u64) -> Vec<String> {
        self.matching(filter, now_ms)
            .into_iter()
            .filter(|node| !node.quiet)
            .map(|node| node.identity)
            .collect()
    }

    /// Whether a node last seen at `last_seen_ms` counts as quiet at `now_ms`.
    pub fn is_quiet(&self, last_seen_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(last_seen_ms) > millis(self.quiet_after)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Known>> {
        self.nodes.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Known>> {
        self.nodes.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Subscribes to the collective's registrations and feeds them to `registry` until `shutdown`
/// resolves. Messages that fail verification are dropped and counted.
pub async fn follow(
    registry: Arc<Registry>,
    broker: Broker,
    security: Arc<SharedSecurity>,
    max_message_bytes: usize,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BrokerError> {
    let mut subscription = broker.subscribe_registrations(&registry.collective).await?;
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            incoming = subscription.messages.recv() => incoming,
            () = &mut shutdown => return Ok(()),
        };
        let Some(incoming) = incoming else { return Ok(()) };
        // The keys in force now: a SIGHUP may have replaced them since the last message.
        let security = security.current();
        let verified = match security.open_registration(&incoming.body, max_message_bytes) {
            Ok(verified) => verified,
            Err(error) => {
                registry.rejected.fetch_add(1, Ordering::Relaxed);
                warn!(%error, "registration dropped: it does not verify");
                continue;
            }
        };
        // Accepting writes the store: on a blocking thread, off the async workers.
        let accepting = registry.clone();
        let proves = security.proves_callers();
        let accepted =
            tokio::task::spawn_blocking(move || accepting.accept(verified, proves, now_ms())).await;
        let Ok(accepted) = accepted else { continue };
        match accepted {
            Ok(()) => {}
            Err(Rejection::Stale(node)) => debug!(%node, "registration ignored: older than the one held"),
            // A delayed message, not a forgery: ignored like a stale one, but worth a word.
            Err(rejection @ Rejection::TooOld { .. }) => debug!(%rejection, "registration ignored"),
            Err(rejection) => {
                registry.rejected.fetch_add(1, Ordering::Relaxed);
                warn!(%rejection, "registration dropped");
            }
        }
    }
}

/// Fills the node list at start, so that a console started after the nodes lists them at
/// once instead of when they next register (up to one registration interval later): from the
/// broker's registry, read once with `client::registry` (nothing is asked of the nodes, and
/// one that stopped answering is listed with its age), or, where there is no registry to read,
/// from the fleet's answers to `rpcutil inventory` ([`ask_inventories`]). Says which in the
/// log and in [`Registry::filling`].
pub async fn fill(
    registry: Arc<Registry>,
    client: Arc<Client>,
    settings: RegistrySettings,
    timeout: Duration,
) {
    let no_registry = match client.registry(&settings).await {
        Ok(fleet) => {
            let read_ms = u64::try_from(fleet.elapsed.as_millis()).unwrap_or(u64::MAX);
            let rejected = fleet.rejected;
            let taking = registry.clone();
            let taken = tokio::task::spawn_blocking(move || taking.accept_fleet(&fleet, now_ms())).await;
            match taken {
                Ok(nodes) => {
                    registry.set_filling(Filling::Registry { nodes, read_ms });
                    info!(nodes, read_ms, rejected, "node list filled from the registry");
                }
                Err(error) => {
                    let error = format!("taking the registry's nodes failed: {error}");
                    warn!(%error, "nodes are listed as they register");
                    registry.set_filling(Filling::Registrations { error });
                }
            }
            return;
        }
        Err(no_registry) => no_registry.0,
    };
    info!(%no_registry, "no registry to read: asking the fleet for its inventories");
    registry.set_filling(Filling::Inventories { no_registry: no_registry.clone(), nodes: None });
    match ask_inventories(registry.clone(), client, timeout).await {
        Ok(nodes) => {
            registry.set_filling(Filling::Inventories { no_registry, nodes: Some(nodes) });
            info!(nodes, "node list filled from the fleet's inventories");
        }
        Err(error) => {
            let error = error.to_string();
            warn!(%error, "cannot ask the fleet for its inventories; nodes are listed as they register");
            registry.set_filling(Filling::Registrations { error });
        }
    }
}

/// Asks every node of the collective for its inventory once, at start, and takes each answer
/// as it arrives ([`Registry::accept_inventory`]). Waits the whole `timeout` (nothing is in a
/// hurry at start, and a large fleet's replies spread out). Returns how many nodes answered
/// and were taken.
async fn ask_inventories(
    registry: Arc<Registry>,
    client: Arc<Client>,
    timeout: Duration,
) -> Result<usize, ClientError> {
    let spec = RequestSpec {
        agent: "rpcutil".to_owned(),
        action: "inventory".to_owned(),
        data: serde_json::Map::new(),
        filter: Filter::default(),
        once: None,
    };
    // Taking a node writes the store: on a blocking thread, off the client's event callback.
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<NodeReply>();
    let taker = tokio::spawn(async move {
        let mut taken = 0;
        while let Some(reply) = received.recv().await {
            let registry = registry.clone();
            let accepted =
                tokio::task::spawn_blocking(move || registry.accept_inventory(&reply, now_ms())).await;
            match accepted {
                Ok(Ok(())) => taken += 1,
                Ok(Err(rejection @ Rejection::OtherCollective { .. })) => {
                    debug!(%rejection, "inventory ignored")
                }
                Ok(Err(rejection)) => warn!(%rejection, "inventory at start not taken"),
                Err(_) => {}
            }
        }
        taken
    });
    let mut forward = |event: &Event<'_>| {
        if let Event::Reply(reply) = event
            && reply.is_ok()
        {
            let _ = sender.send((*reply).clone());
        }
    };
    let called = client.call(&spec, &Targets::Broadcast, timeout, None, &mut forward).await;
    drop(sender);
    let taken = taker.await.unwrap_or(0);
    called.map(|_| taken)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::filter::FilterSpec;
    use crate::security::{Ed25519, Psk, Security};

    fn registration(identity: &str, role: &str, time_ms: u64) -> Registration {
        Registration {
            identity: identity.to_owned(),
            collectives: vec!["baton".to_owned()],
            facts: json!({"role": role, "os": {"family": "Debian"}}).as_object().cloned().unwrap_or_default(),
            classes: vec![format!("role::{role}")],
            agents: vec!["rpcutil".to_owned(), "puppet".to_owned()],
            version: "0.1.0".to_owned(),
            time_ms,
        }
    }

    fn psk() -> Security {
        Security::Psk(Psk::from_bytes(b"q7Lk2vX9pR4mZ8wN3bT6yH1cF5gJ0dSa", "test").expect("psk"))
    }

    fn verified(security: &Security, registration: &Registration) -> Verified<Registration> {
        security.open_registration(&security.seal_registration(registration), 1 << 20).expect("verifies")
    }

    /// Nodes register every 10 s; clocks may be 60 s apart; the console started at 0.
    fn registry(store: Arc<Store>) -> Registry {
        Registry::load("baton", store, Duration::from_secs(10), Duration::from_secs(60), 0).expect("load")
    }

    fn filter(spec: FilterSpec) -> Filter {
        Filter::compile(&spec).expect("filter compiles")
    }

    fn identities(nodes: &[NodeSummary]) -> Vec<&str> {
        nodes.iter().map(|node| node.identity.as_str()).collect()
    }

    fn inventory_reply(node: &str, collectives: &[&str]) -> NodeReply {
        NodeReply {
            node: node.to_owned(),
            status: 0,
            status_text: "OK",
            message: String::new(),
            data: json!({
                "identity": node,
                "facts": {"role": "web", "os": {"family": "Debian"}},
                "classes": ["nginx"],
                "agents": ["rpcutil", "puppet"],
                "collectives": collectives,
                "main_collective": collectives.first(),
                "version": "0.2.0",
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
            ms: 1.0,
        }
    }

    #[test]
    fn the_registry_read_at_start_lists_nodes_as_of_when_they_registered() {
        let store = Arc::new(Store::in_memory().expect("store"));
        let registry = registry(store.clone());
        let now = 100_000;
        // web01 registered just now; db01 25 s ago (quiet after 30 s); old01 long ago.
        let mut elsewhere = registration("other01", "web", now);
        elsewhere.collectives = vec!["other".into()];
        let fleet: Fleet = [
            registration("web01", "web", now - 1_000),
            registration("db01", "db", now - 25_000),
            registration("old01", "db", now - 95_000),
            elsewhere,
        ]
        .into_iter()
        .collect();
        assert_eq!(registry.accept_fleet(&fleet, now), 2);
        let everyone = filter(FilterSpec::default());
        let nodes = registry.matching(&everyone, now);
        assert_eq!(identities(&nodes), ["db01", "web01"]);
        assert_eq!(
            (nodes[0].last_seen_ms, nodes[0].state),
            (now - 25_000, "live"),
            "its age, not the read's"
        );
        // Not heard from since: quiet once three intervals have passed since it registered.
        let later = registry.matching(&everyone, now + 6_000);
        assert_eq!((later[0].identity.as_str(), later[0].state), ("db01", "quiet"));
        assert_eq!(registry.targets(&everyone, now + 6_000), ["web01"]);
        // Recorded like registrations heard live.
        assert_eq!(store.nodes().expect("nodes").len(), 2);

        // A live registration that came in meanwhile is kept over the registry's copy of it.
        let security = psk();
        registry
            .accept(verified(&security, &registration("web02", "web", now - 2_000)), false, now)
            .expect("live");
        let copy: Fleet = [registration("web02", "web", now - 2_000)].into_iter().collect();
        assert_eq!(registry.accept_fleet(&copy, now), 0);
        let web02 = registry.matching(&everyone, now).into_iter().find(|node| node.identity == "web02");
        assert_eq!(web02.map(|node| node.last_seen_ms), Some(now), "heard live at the read's time");
    }

    #[test]
    fn an_inventory_answered_at_start_lists_the_node_like_a_registration() {
        let registry = registry(Arc::new(Store::in_memory().expect("store")));
        registry.accept_inventory(&inventory_reply("web01", &["baton"]), 5_000).expect("taken");
        let nodes = registry.matching(
            &filter(FilterSpec { fact: vec!["os.family=Debian".to_owned()], ..FilterSpec::default() }),
            5_000,
        );
        assert_eq!(identities(&nodes), ["web01"]);
        assert_eq!(
            (nodes[0].state, nodes[0].version.as_str(), nodes[0].last_seen_ms),
            ("live", "0.2.0", 5_000)
        );
        assert_eq!((nodes[0].classes.clone(), nodes[0].agents.len()), (vec!["nginx".to_owned()], 2));
        assert!(matches!(
            registry.accept_inventory(&inventory_reply("db01", &["other"]), 5_000),
            Err(Rejection::OtherCollective { .. })
        ));
        assert!(matches!(
            registry.accept_inventory(&inventory_reply("bad\nname", &["baton"]), 5_000),
            Err(Rejection::BadIdentity(_))
        ));
        // A registration that came in meanwhile is newer: the inventory does not roll it back.
        let security = psk();
        registry
            .accept(verified(&security, &registration("db02", "db", 9_000)), false, 9_000)
            .expect("registered");
        assert!(matches!(
            registry.accept_inventory(&inventory_reply("db02", &["baton"]), 8_000),
            Err(Rejection::Stale(_))
        ));
        assert_eq!(identities(&registry.matching(&filter(FilterSpec::default()), 9_000)), ["db02", "web01"]);
    }

    #[test]
    fn registered_nodes_are_filtered_with_the_cli_filter_language() {
        let security = psk();
        let registry = registry(Arc::new(Store::in_memory().expect("store")));
        for (identity, role) in [("web01", "web"), ("web02", "web"), ("db01", "db")] {
            registry
                .accept(verified(&security, &registration(identity, role, 1)), false, 1000)
                .expect("accepted");
        }
        let all = registry.matching(&filter(FilterSpec::default()), 1000);
        assert_eq!(identities(&all), ["db01", "web01", "web02"]);
        let check = |spec: FilterSpec, expected: &[&str]| {
            assert_eq!(identities(&registry.matching(&filter(spec.clone()), 1000)), expected, "{spec:?}");
        };
        check(FilterSpec { fact: vec!["role=web".into()], ..Default::default() }, &["web01", "web02"]);
        check(FilterSpec { identity: vec!["/^web/".into()], ..Default::default() }, &["web01", "web02"]);
        check(FilterSpec { class: vec!["role::db".into()], ..Default::default() }, &["db01"]);
        check(FilterSpec { agent: vec!["puppet".into()], ..Default::default() }, &["db01", "web01", "web02"]);
        check(FilterSpec { agent: vec!["service".into()], ..Default::default() }, &[]);
        check(
            FilterSpec { select: vec!["os.family=Debian and not role=web".into()], ..Default::default() },
            &["db01"],
        );
        check(
            FilterSpec {
                identity: vec!["web02".into()],
                fact: vec!["role=web".into()],
                ..Default::default()
            },
            &["web02"],
        );
    }

    #[test]
    fn nodes_go_quiet_after_three_intervals_and_are_kept() {
        let security = psk();
        let registry = registry(Arc::new(Store::in_memory().expect("store")));
        registry
            .accept(verified(&security, &registration("web01", "web", 1)), false, 1_000)
            .expect("accepted");
        let everyone = filter(FilterSpec::default());
        assert!(!registry.matching(&everyone, 31_000)[0].quiet, "three intervals exactly: not yet");
        let later = registry.matching(&everyone, 31_001);
        assert!(later[0].quiet, "{later:?}");
        assert!(registry.targets(&everyone, 31_001).is_empty(), "quiet nodes are not sent jobs");
        registry
            .accept(verified(&security, &registration("web01", "web", 39_000)), false, 40_000)
            .expect("accepted");
        assert!(!registry.matching(&everyone, 40_000)[0].quiet, "heard from again");
    }

    #[test]
    fn older_foreign_and_misattributed_registrations_are_refused() {
        let security = psk();
        let registry = registry(Arc::new(Store::in_memory().expect("store")));
        registry.accept(verified(&security, &registration("web01", "web", 5)), false, 1).expect("accepted");
        assert_eq!(
            registry.accept(verified(&security, &registration("web01", "db", 4)), false, 2),
            Err(Rejection::Stale("web01".into()))
        );
        let everyone = filter(FilterSpec::default());
        assert_eq!(registry.matching(&everyone, 2)[0].facts["role"], "web", "the newer inventory is kept");
        let mut elsewhere = registration("db01", "db", 1);
        elsewhere.collectives = vec!["other".into()];
        assert!(matches!(
            registry.accept(verified(&security, &elsewhere), false, 2),
            Err(Rejection::OtherCollective { .. })
        ));
        assert!(matches!(
            registry.accept(verified(&security, &registration("", "db", 1)), false, 2),
            Err(Rejection::BadIdentity(_))
        ));

        // With ed25519, a node may only register itself.
        let secret = [7u8; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key().to_bytes();
        let keys = Ed25519::from_keys("web09", secret, [("web09".to_owned(), public)]).expect("keys");
        let signed = Security::Ed25519(Box::new(keys));
        let impostor = verified(&signed, &registration("web10", "web", 1));
        assert_eq!(
            registry.accept(impostor, true, 3),
            Err(Rejection::WrongKey { identity: "web10".into(), key: "web09".into() })
        );
        registry.accept(verified(&signed, &registration("web09", "web", 1)), true, 3).expect("its own key");
    }

    #[test]
    fn the_registry_comes_back_from_the_store() {
        let security = psk();
        let store = Arc::new(Store::in_memory().expect("store"));
        registry(store.clone())
            .accept(verified(&security, &registration("web01", "web", 1)), false, 7)
            .expect("ok");
        let reloaded = registry(store.clone());
        let nodes = reloaded.matching(&filter(FilterSpec::default()), 7);
        assert_eq!(identities(&nodes), ["web01"]);
        assert_eq!(nodes[0].last_seen_ms, 7);

        // Restarted long after: unknown (and still a target) for one interval, then quiet.
        let restarted =
            Registry::load("baton", store, Duration::from_secs(10), Duration::from_secs(60), 100_000)
                .expect("load");
        let everyone = filter(FilterSpec::default());
        let early = restarted.matching(&everyone, 105_000);
        assert_eq!((early[0].state, early[0].quiet), ("unknown", false));
        assert_eq!(restarted.targets(&everyone, 105_000), ["web01"]);
        let later = restarted.matching(&everyone, 110_001);
        assert_eq!((later[0].state, later[0].quiet), ("quiet", true));
        assert!(restarted.targets(&everyone, 110_001).is_empty());
    }

    #[test]
    fn registrations_from_the_future_or_long_ago_are_refused() {
        let security = psk();
        let registry = registry(Arc::new(Store::in_memory().expect("store")));
        let now = 1_000_000;
        assert_eq!(
            registry.accept(verified(&security, &registration("web01", "web", now + 60_001)), false, now),
            Err(Rejection::FromFuture { identity: "web01".into(), ahead_ms: 60_001 })
        );
        // Quiet after 30 s, plus 60 s of skew.
        assert_eq!(
            registry.accept(verified(&security, &registration("web01", "web", now - 90_001)), false, now),
            Err(Rejection::TooOld { identity: "web01".into(), age_ms: 90_001 })
        );
        assert!(registry.matching(&filter(FilterSpec::default()), now).is_empty());
        registry
            .accept(verified(&security, &registration("web01", "web", now + 60_000)), false, now)
            .expect("within the allowance ahead");
        registry
            .accept(verified(&security, &registration("web02", "web", now - 90_000)), false, now)
            .expect("within the allowance behind");
    }
}
