//! The emulator: many virtual nodes in one process, so that thousands of nodes load a real
//! broker the way real nodes would, on one machine.
//!
//! Each virtual node is a node in everything the fleet can see: its own identity
//! (`<prefix>00001`, ...), its own facts and classes (varied, and the same for the same seed and
//! index, see [`profile`]), its own queue in every collective bound for every agent it has, its
//! own request [`Pipeline`] (signature, age, replay window, filter, authorization, inputs, the
//! real agents, a signed reply) and its own counters. Nothing is short-cut: a request reaches
//! every virtual node through the broker, and each answers with a reply it signed itself.
//!
//! What the virtual nodes share is what one process can share without changing what the broker
//! or a client sees: the key, the agents (stateless), the authorization policies, the audit log,
//! and the broker connections. A real node holds one connection; the emulator spreads its
//! virtual nodes over a few (`connections`), each subscription still on a channel of its own,
//! because RabbitMQ caps the channels of one connection (2047 by default) and because thousands
//! of connections would measure the emulator's sockets rather than Baton.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, broadcast};
use tracing::{info, warn};

use super::audit::AuditLog;
use super::facts::{Classes, FactSource, Facts, NodeInventory};
use super::pipeline::{NodeSnapshot, Pipeline, PipelineSettings};
use super::policy::Authorization;
use super::stats::Stats;
use super::{MAX_ACTION_TIMEOUT, announce, consume, load_agents, register_periodically};
use crate::agents::{ActionContext, AgentRegistry};
use crate::broker::{Broker, BrokerSettings, ConnectMode};
use crate::config::{NodeConfig, SchemeKind};

/// Virtual nodes per broker connection when the caller does not say. Far under RabbitMQ's
/// default limit of 2047 channels per connection (one channel per subscription, plus a few),
/// and small because lapin looks at every channel of a connection each time it writes a frame
/// (`Channels::flow`): with 1000 channels that was a third of the emulator's CPU, a cost real
/// nodes, with one connection and a channel or two each, never pay.
pub const NODES_PER_CONNECTION: usize = 200;

/// Subscriptions set up at once: enough to keep every connection busy while it declares.
const SUBSCRIBE_CONCURRENCY: usize = 64;

/// How many virtual nodes to host, and how to name and connect them.
#[derive(Debug, Clone)]
pub struct EmulatorSettings {
    /// How many virtual nodes.
    pub count: usize,
    /// Identities are the prefix followed by a 5-digit index: `emu-00001`.
    pub prefix: String,
    /// Index of the first virtual node (several emulators can share a collective).
    pub first: usize,
    /// Broker connections to spread the nodes over; 0: one per [`NODES_PER_CONNECTION`].
    pub connections: usize,
    /// Varies the facts and classes; the same seed gives the same fleet.
    pub seed: u64,
    /// Whether each virtual node publishes its registration: once before the emulator is
    /// ready, as a real node does at start, then every `registration.interval_secs` (spread
    /// over the interval).
    pub register: bool,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        EmulatorSettings {
            count: 100,
            prefix: "emu-".to_string(),
            first: 1,
            connections: 0,
            seed: 1,
            register: true,
        }
    }
}

impl EmulatorSettings {
    /// The connections actually used: what was asked for, or one per [`NODES_PER_CONNECTION`],
    /// and never more than there are nodes.
    pub fn connection_count(&self) -> usize {
        let wanted = match self.connections {
            0 => self.count.div_ceil(NODES_PER_CONNECTION),
            asked => asked,
        };
        wanted.clamp(1, self.count.max(1))
    }
}

/// The identity of virtual node `index`: `emu-00042`.
pub fn virtual_identity(prefix: &str, index: usize) -> String {
    format!("{prefix}{index:05}")
}

/// What makes one virtual node different from the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Facts laid over the built-in ones (deep merge).
    pub facts: Map<String, Value>,
    pub classes: Vec<String>,
}

/// Operating systems the fleet is drawn from: family, name, release. Weighted by repetition.
const SYSTEMS: &[(&str, &str, &str)] = &[
    ("Debian", "Debian", "12"),
    ("Debian", "Debian", "12"),
    ("Debian", "Ubuntu", "22.04"),
    ("RedHat", "RedHat", "9"),
    ("RedHat", "Rocky", "8"),
    ("Suse", "SLES", "15"),
];

/// Roles, each with the Puppet class of the service it runs.
const ROLES: &[(&str, &str)] = &[
    ("web", "nginx"),
    ("web", "nginx"),
    ("app", "tomcat"),
    ("db", "postgresql"),
    ("cache", "redis"),
    ("queue", "rabbitmq"),
];

const DATACENTERS: &[&str] = &["ams1", "fra1", "lon1", "nyc1"];

const ENVIRONMENTS: &[&str] = &["production", "production", "staging", "development"];

/// The facts and classes of virtual node `index` for `seed`: an operating system, a role, a
/// datacenter and an environment drawn from small weighted lists, the classes that go with
/// them, and a few numbers. The same `(seed, index)` always gives the same profile, so a
/// benchmark can compute which nodes a filter should match.
pub fn profile(identity: &str, seed: u64, index: usize) -> Profile {
    let mut draw = SplitMix(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (family, name, release) = SYSTEMS[draw.below(SYSTEMS.len())];
    let (role, service_class) = ROLES[draw.below(ROLES.len())];
    let datacenter = DATACENTERS[draw.below(DATACENTERS.len())];
    let environment = ENVIRONMENTS[draw.below(ENVIRONMENTS.len())];
    let memory_gib = [4u64, 8, 16, 32, 64][draw.below(5)];
    let processors = [2u64, 4, 8, 16][draw.below(4)];
    let major = release.split('.').next().unwrap_or(release);
    let domain = format!("{datacenter}.example.net");
    let facts = json!({
        "hostname": identity,
        "domain": domain,
        "fqdn": format!("{identity}.{domain}"),
        "os": {
            "family": family,
            "name": name,
            "release": { "full": release, "major": major },
        },
        "osfamily": family,
        "operatingsystem": name,
        "operatingsystemrelease": release,
        "operatingsystemmajrelease": major,
        "processors": { "count": processors },
        "processorcount": processors,
        "memory": { "system": { "total_bytes": memory_gib << 30 } },
        "role": role,
        "datacenter": datacenter,
        "environment": environment,
        "emulator": { "index": index, "seed": seed },
    });
    let Value::Object(facts) = facts else { unreachable!("a json! object literal is an object") };
    let mut classes = vec![
        "profile::base".to_string(),
        format!("role::{role}"),
        service_class.to_string(),
        format!("datacenter::{datacenter}"),
    ];
    if draw.below(2) == 0 {
        classes.push("monitoring::agent".to_string());
    }
    Profile { facts, classes }
}

/// SplitMix64: a tiny, well-mixed generator whose sequence never changes between versions,
/// unlike a library's default generator. Only used to vary test fleets.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Many virtual nodes, built from one node configuration. See the module documentation.
pub struct Emulator {
    config: NodeConfig,
    settings: EmulatorSettings,
    broker_settings: BrokerSettings,
    nodes: Vec<Arc<Pipeline>>,
    registry: AgentRegistry,
}

impl Emulator {
    /// Builds every virtual node from `config` (broker, key, agents, policies, audit, fact
    /// files: everything but the identity, which comes from `settings`). Fails, before touching
    /// the network, on what would stop `batond` too, and on ed25519, where every virtual node
    /// would need a key of its own.
    pub fn build(config: NodeConfig, settings: EmulatorSettings) -> anyhow::Result<Emulator> {
        if config.security.scheme == SchemeKind::Ed25519 {
            anyhow::bail!(
                "the emulator signs with a pre-shared key only: with ed25519 every virtual node \
                 would need a key named after it (set security.scheme = \"psk\")"
            );
        }
        if settings.count == 0 {
            anyhow::bail!("the emulator needs at least one virtual node (--count)");
        }
        let security = Arc::new(config.security.load_security().context("cannot load the message key")?);
        let broker_settings = crate::config::broker_settings(
            &config.broker,
            &config.tls,
            format!("baton-emulator {}{}..", settings.prefix, settings.first),
        )?;
        let audit = match &config.audit.file {
            Some(path) => Some(Arc::new(AuditLog::open(path).context("cannot open the audit log")?)),
            None => None,
        };
        let registry = load_agents(&config.agents.settings());
        let authorization = Arc::new(
            Authorization::load(&config.authorization).context("cannot load authorization policies")?,
        );
        let (base_facts, base_classes, warnings) =
            FactSource::from_config(&config.facts).load().context("cannot load facts")?;
        for warning in &warnings {
            warn!(%warning, "facts");
        }
        let agents: Arc<[_]> = registry.summaries().into();
        let collectives: Arc<[String]> = config.collectives.clone().into();
        let mut nodes = Vec::with_capacity(settings.count);
        for index in settings.first..settings.first + settings.count {
            let identity = virtual_identity(&settings.prefix, index);
            let profile = profile(&identity, settings.seed, index);
            let mut facts = base_facts.clone();
            facts.merge(profile.facts);
            let classes = Classes::from_names(base_classes.as_slice().iter().cloned().chain(profile.classes));
            let stats = Arc::new(Stats::default());
            let snapshot =
                snapshot(&identity, facts, classes, &registry, &agents, &collectives, &authorization, &stats);
            let pipeline_settings = PipelineSettings {
                identity,
                max_message_bytes: config.broker.max_message_bytes,
                clock_skew: Duration::from_secs(config.security.clock_skew_secs),
                replay_capacity: config.security.replay_window,
                max_ttl_secs: config.requests.max_ttl_secs,
                action_timeout: MAX_ACTION_TIMEOUT,
            };
            nodes.push(Arc::new(Pipeline::new(
                pipeline_settings,
                security.clone(),
                snapshot,
                stats,
                audit.clone(),
            )));
        }
        Ok(Emulator { config, settings, broker_settings, nodes, registry })
    }

    /// The virtual nodes' pipelines, in index order.
    pub fn nodes(&self) -> &[Arc<Pipeline>] {
        &self.nodes
    }

    /// Connects, subscribes every virtual node, calls `ready` once all of them take requests,
    /// and runs until `shutdown` completes; then stops taking requests and drains what is in
    /// flight, like `batond`.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(&EmulatorReady),
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let started = std::time::Instant::now();
        let connection_count = self.settings.connection_count();
        let connect = futures_util::future::try_join_all((0..connection_count).map(|number| {
            let mut settings = self.broker_settings.clone();
            settings.connection_name = format!("{} #{}", settings.connection_name, number + 1);
            Broker::connect(settings, ConnectMode::Persistent)
        }));
        let brokers = tokio::select! {
            brokers = connect => brokers.context("cannot connect to the broker")?,
            () = &mut shutdown => return Ok(()),
        };
        info!(connections = brokers.len(), nodes = self.nodes.len(), "connected; subscribing virtual nodes");

        let agents = self.registry.names();
        let collectives = self.config.collectives.clone();
        let subscribe =
            futures_util::stream::iter(self.nodes.iter().enumerate().flat_map(|(number, pipeline)| {
                let broker = brokers[number % brokers.len()].clone();
                let agents = agents.clone();
                collectives.clone().into_iter().map(move |collective| {
                    let broker = broker.clone();
                    let agents = agents.clone();
                    let pipeline = pipeline.clone();
                    async move {
                        let subscription = broker
                            .subscribe_node(&collective, pipeline.identity(), &agents)
                            .await
                            .with_context(|| {
                                format!("cannot subscribe {} to collective {collective}", pipeline.identity())
                            })?;
                        anyhow::Ok((pipeline, broker, subscription))
                    }
                })
            }))
            .buffer_unordered(SUBSCRIBE_CONCURRENCY);
        let subscriptions = tokio::select! {
            subscriptions = collect_all(subscribe, self.nodes.len() * collectives.len()) => subscriptions?,
            () = &mut shutdown => return Ok(()),
        };

        let (stop, _) = broadcast::channel::<()>(1);
        let max_concurrency = self.config.agents.max_concurrency;
        let mut consumers = Vec::with_capacity(subscriptions.len());
        let mut semaphores = Vec::with_capacity(self.nodes.len());
        for (pipeline, broker, subscription) in subscriptions {
            // One bound per virtual node, as each real node has its own.
            let concurrency = Arc::new(Semaphore::new(max_concurrency));
            semaphores.push(concurrency.clone());
            consumers.push(tokio::spawn(consume(
                subscription,
                pipeline,
                broker,
                concurrency,
                stop.subscribe(),
            )));
        }
        let mut registrations = Vec::new();
        if self.settings.register {
            let interval = Duration::from_secs(self.config.registration.interval_secs);
            // Each virtual node announces itself before the emulator says it is ready, as a
            // real node does at start: a fleet that is ready is in the registry, so a client
            // that reads it expects every node (announcements spread over an interval left
            // most of the fleet unknown for minutes, and a broadcast ending at the last expected
            // reply then missed whoever answered after the grace).
            let announce_all =
                futures_util::stream::iter(self.nodes.iter().enumerate().map(|(number, pipeline)| {
                    let broker = brokers[number % brokers.len()].clone();
                    let collectives = &collectives;
                    async move { announce(pipeline, &broker, collectives, interval).await }
                }))
                .buffer_unordered(SUBSCRIBE_CONCURRENCY)
                .collect::<Vec<()>>();
            tokio::select! {
                _ = announce_all => {}
                () = &mut shutdown => return Ok(()),
            }
            info!(nodes = self.nodes.len(), "every virtual node registered");
            // Real nodes start at different times, so their later registrations are spread
            // over the interval; thousands announced in the same instant would measure a burst
            // no fleet makes (and leave the allocator holding the peak). Each node's next one
            // is at most one interval after its first, so none ages out of the registry's
            // window (an interval plus slack). An interval of zero: announce once, done above.
            if !interval.is_zero() {
                let count = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX).max(1);
                for (number, pipeline) in self.nodes.iter().enumerate() {
                    let position = u32::try_from(number + 1).unwrap_or(u32::MAX);
                    registrations.push(tokio::spawn(register_periodically(
                        pipeline.clone(),
                        brokers[number % brokers.len()].clone(),
                        collectives.clone(),
                        interval,
                        interval / count * position,
                        stop.subscribe(),
                    )));
                }
            }
        }
        let summary = EmulatorReady {
            nodes: self.nodes.len(),
            connections: brokers.len(),
            collectives: collectives.clone(),
            first: self.nodes.first().map(|node| node.identity().to_string()).unwrap_or_default(),
            last: self.nodes.last().map(|node| node.identity().to_string()).unwrap_or_default(),
            setup: started.elapsed(),
        };
        info!(
            nodes = summary.nodes,
            connections = summary.connections,
            setup_ms = summary.setup.as_millis() as u64,
            "ready"
        );
        ready(&summary);

        shutdown.await;
        info!("shutting down: no new requests; draining in-flight actions");
        let _ = stop.send(());
        for consumer in consumers {
            let _ = consumer.await;
        }
        for registration in registrations {
            registration.abort();
        }
        let permits = u32::try_from(max_concurrency).unwrap_or(u32::MAX);
        let drain = futures_util::future::join_all(
            semaphores.iter().map(|semaphore| semaphore.acquire_many(permits)),
        );
        if tokio::time::timeout(super::DRAIN_TIMEOUT, drain).await.is_err() {
            warn!("in-flight actions still running after {} s; leaving them", super::DRAIN_TIMEOUT.as_secs());
        }
        for broker in &brokers {
            broker.close().await;
        }
        Ok(())
    }
}

/// What [`Emulator::run`] reports once every virtual node takes requests.
#[derive(Debug, Clone)]
pub struct EmulatorReady {
    pub nodes: usize,
    pub connections: usize,
    pub collectives: Vec<String>,
    pub first: String,
    pub last: String,
    /// From the start of `run` to every subscription being up and every virtual node
    /// registered once (when they register).
    pub setup: Duration,
}

/// Waits for every subscription, logging progress now and then; the first failure wins.
async fn collect_all<T>(
    mut stream: impl futures_util::Stream<Item = anyhow::Result<T>> + Unpin,
    expected: usize,
) -> anyhow::Result<Vec<T>> {
    let mut done = Vec::with_capacity(expected);
    while let Some(item) = stream.next().await {
        done.push(item?);
        if done.len() % 1000 == 0 {
            info!(subscribed = done.len(), of = expected, "subscribing");
        }
    }
    Ok(done)
}

#[allow(clippy::too_many_arguments)]
fn snapshot(
    identity: &str,
    facts: Facts,
    classes: Classes,
    registry: &AgentRegistry,
    agents: &Arc<[crate::agents::AgentSummary]>,
    collectives: &Arc<[String]>,
    authorization: &Arc<Authorization>,
    stats: &Arc<Stats>,
) -> NodeSnapshot {
    let inventory = NodeInventory::new(identity, facts, classes, registry.names());
    let context = ActionContext {
        identity: identity.to_string(),
        collectives: collectives.clone(),
        facts: inventory.facts().shared(),
        classes: inventory.class_list().as_slice().into(),
        agents: agents.clone(),
        stats: stats.clone(),
    };
    NodeSnapshot { inventory, context, registry: registry.clone(), authorization: authorization.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_deterministic_and_varied() {
        let one = profile("emu-00001", 7, 1);
        assert_eq!(one, profile("emu-00001", 7, 1));
        let families: std::collections::BTreeSet<String> = (1..200)
            .map(|index| {
                profile("x", 7, index).facts["os"]["family"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert!(families.len() >= 3, "families: {families:?}");
        assert_ne!(profile("x", 7, 1), profile("x", 8, 1));
    }

    #[test]
    fn identities_sort_in_index_order() {
        assert_eq!(virtual_identity("emu-", 42), "emu-00042");
        assert!(virtual_identity("emu-", 9) < virtual_identity("emu-", 10));
    }

    #[test]
    fn connections_default_to_one_per_two_hundred_nodes() {
        let settings = |count, connections| EmulatorSettings { count, connections, ..Default::default() };
        assert_eq!(settings(50, 0).connection_count(), 1);
        assert_eq!(settings(201, 0).connection_count(), 2);
        assert_eq!(settings(5000, 0).connection_count(), 25);
        assert_eq!(settings(3, 8).connection_count(), 3);
    }
}
