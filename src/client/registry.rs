//! The registry: the live fleet, with each node's facts, classes and agents, in one read.
//!
//! Nodes publish a signed [`Registration`] at start and every registration interval to their
//! collective's registration exchange. Where the broker can retain them (RabbitMQ), a stream
//! of the same name, bound to that exchange, keeps them (rabbitmq/definitions.json). [`read`]
//! consumes the stream from `window` ago (the nodes' registration interval plus slack), so
//! every live node's latest registration is in what it reads.
//!
//! A stream never says "that was all": the reader reads to its own end-of-read marker
//! (`client::retained`), so everything the stream held when the read started has been seen,
//! however long the broker takes. Over AMQP the marker also asks, without side effects,
//! whether there is a registry (*Unroutable*: no stream), so a broker without one never sees a
//! consume of a missing queue; over STOMP to RabbitMQ a publish cannot come back unroutable,
//! and a missing stream shows as the consume refused. STOMP to ActiveMQ has no registry.
//!
//! Each registration is verified like a reply (with ed25519 the signing key must be the node's
//! own), must name the collective, must not be dated beyond the clock skew allowance, and is
//! dropped when older than the window; the newest per node wins.
//!
//! The console can fill its node list from here at start: [`read`] on its connection, then
//! [`Fleet::nodes`] for every node's registration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tracing::debug;

use super::retained::{NotRetained, read_to_end};
use crate::broker::{Broker, Incoming, Retained};
use crate::config::ClientConfig;
use crate::protocol::filter::{Filter, NodeView, dotted_fact_in};
use crate::protocol::{Registration, now_ms};
use crate::security::Security;

/// How the client reads and trusts the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySettings {
    /// How far back to read: the nodes' registration interval plus slack. A node whose latest
    /// registration is older is not expected.
    pub window: Duration,
    /// After every expected node answered a broadcast, how long to wait for nodes the
    /// registry does not know yet (started since their last registration was read).
    pub grace: Duration,
    /// How far in the future a registration may be dated (the nodes' clocks may be ahead).
    pub clock_skew: Duration,
    /// Give up reading (and fall back to the broadcast's quiet window) after this long.
    pub timeout: Duration,
}

impl RegistrySettings {
    /// The settings of a client configuration (`registry_window_secs`, `registry_grace_ms`,
    /// `security.clock_skew_secs`); reading may take up to the discovery timeout.
    pub fn of(config: &ClientConfig) -> RegistrySettings {
        RegistrySettings {
            window: Duration::from_secs(config.registry_window_secs),
            grace: Duration::from_millis(config.registry_grace_ms),
            clock_skew: Duration::from_secs(config.security.clock_skew_secs),
            timeout: Duration::from_secs(config.discovery_timeout_secs.max(1)),
        }
    }
}

/// Why there is no registry to read: the caller keeps the broadcast's quiet window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no registry to read: {0}")]
pub struct NoRegistry(pub String);

/// One node as its latest registration describes it.
#[derive(Debug, Clone)]
pub struct RegisteredNode {
    pub registration: Registration,
}

impl RegisteredNode {
    /// A node as `registration` describes it (the console keeps its nodes this way too).
    pub fn new(registration: Registration) -> RegisteredNode {
        RegisteredNode { registration }
    }
}

impl NodeView for RegisteredNode {
    fn identity(&self) -> &str {
        &self.registration.identity
    }
    fn has_class(&self, class: &str) -> bool {
        self.registration.classes.iter().any(|known| known == class)
    }
    fn classes(&self) -> &[String] {
        &self.registration.classes
    }
    fn fact(&self, dotted_key: &str) -> Option<&Value> {
        dotted_fact_in(&self.registration.facts, dotted_key)
    }
    fn has_agent(&self, agent: &str) -> bool {
        self.registration.agents.iter().any(|known| known == agent)
    }
    fn agents(&self) -> &[String] {
        &self.registration.agents
    }
}

/// The live fleet of one collective, as read from its registry.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    nodes: BTreeMap<String, RegisteredNode>,
    /// Messages read that were not taken: failed verification, another collective, too old
    /// or dated in the future.
    pub rejected: u64,
    /// How long the read took.
    pub elapsed: Duration,
}

impl Fleet {
    /// Every known node, by identity.
    pub fn nodes(&self) -> impl Iterator<Item = &RegisteredNode> {
        self.nodes.values()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The identities, sorted, of the known nodes that `filter` matches, evaluated here as
    /// each node would evaluate it.
    pub fn matching(&self, filter: &Filter) -> Vec<String> {
        self.nodes
            .values()
            .filter(|node| filter.matches(*node))
            .map(|node| node.identity().to_string())
            .collect()
    }

    /// Takes one message of the stream read at `now_ms`; false when it was not taken.
    fn take(&mut self, body: &[u8], reader: &Reader<'_>) -> bool {
        let Ok(verified) = reader.security.open_registration(body, reader.max_message_bytes) else {
            return false;
        };
        let key = verified.key_id().to_owned();
        let registration = verified.into_inner();
        if reader.security.proves_callers() && key != registration.identity {
            return false;
        }
        if !registration.collectives.iter().any(|collective| collective == reader.collective) {
            return false;
        }
        let skew_ms = u64::try_from(reader.settings.clock_skew.as_millis()).unwrap_or(u64::MAX);
        let window_ms = u64::try_from(reader.settings.window.as_millis()).unwrap_or(u64::MAX);
        if registration.time_ms > reader.now_ms.saturating_add(skew_ms)
            || reader.now_ms.saturating_sub(registration.time_ms) > window_ms
        {
            return false;
        }
        if self
            .nodes
            .get(&registration.identity)
            .is_some_and(|held| held.registration.time_ms > registration.time_ms)
        {
            // Stale, not rejected: an older registration of a node already held.
            return true;
        }
        self.nodes.insert(registration.identity.clone(), RegisteredNode::new(registration));
        true
    }
}

/// A fleet of these registrations, the newest per node, unchecked: as a read that took them
/// would hold them (for the console's tests, and anyone holding registrations verified
/// elsewhere).
impl FromIterator<Registration> for Fleet {
    fn from_iter<I: IntoIterator<Item = Registration>>(registrations: I) -> Fleet {
        let mut fleet = Fleet::default();
        for registration in registrations {
            if fleet
                .nodes
                .get(&registration.identity)
                .is_none_or(|held| held.registration.time_ms <= registration.time_ms)
            {
                fleet.nodes.insert(registration.identity.clone(), RegisteredNode::new(registration));
            }
        }
        fleet
    }
}

/// What one read needs to judge a message.
struct Reader<'a> {
    security: &'a Security,
    collective: &'a str,
    settings: &'a RegistrySettings,
    max_message_bytes: usize,
    now_ms: u64,
}

/// Reads `collective`'s registry on `broker` to its end (see the module's doc). Fails with
/// [`NoRegistry`] when the broker retains no registrations (ActiveMQ, or no stream declared), the
/// client may not read it, or the read did not reach its end within `settings.timeout`.
pub async fn read(
    broker: &Broker,
    security: &Security,
    collective: &str,
    settings: &RegistrySettings,
    max_message_bytes: usize,
) -> Result<Fleet, NoRegistry> {
    let started = Instant::now();
    let since = SystemTime::now().checked_sub(settings.window).unwrap_or(SystemTime::UNIX_EPOCH);
    let reader = Reader { security, collective, settings, max_message_bytes, now_ms: now_ms() };
    let mut fleet = Fleet::default();
    let mut take = |message: &Incoming| {
        if !fleet.take(&message.body, &reader) {
            fleet.rejected += 1;
        }
    };
    read_to_end(
        broker,
        collective,
        Retained::Registrations,
        since,
        settings.window,
        settings.timeout,
        &mut take,
    )
    .await
    .map_err(|NotRetained(why)| NoRegistry(why))?;
    fleet.elapsed = started.elapsed();
    debug!(
        nodes = fleet.len(),
        rejected = fleet.rejected,
        ms = fleet.elapsed.as_millis() as u64,
        "registry read"
    );
    Ok(fleet)
}
