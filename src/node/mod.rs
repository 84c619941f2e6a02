//! The node daemon: subscriptions, the request pipeline, facts, audit, stats, reload, shutdown.
//!
//! [`run`] is `batond`'s whole life: connect to the broker (retrying for as long as it takes),
//! subscribe the node's queue in every collective, feed each message through the
//! [`pipeline::Pipeline`] with bounded concurrency, publish the signed replies, publish the
//! node's inventory for registration, reload facts when they change, reload keys, agents and
//! authorization policies on SIGHUP (binding the node's queue for agents that appeared), and on
//! shutdown stop taking messages and drain what is in flight before closing the connection.
//! `systemd` tells systemd when the node is ready, reloading and stopping.

pub mod audit;
pub mod emulator;
pub mod facts;
pub mod filter_cache;
pub mod metrics;
pub mod once;
pub mod pipeline;
pub mod policy;
pub mod stats;
pub mod systemd;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, Semaphore, broadcast};
use tracing::{debug, error, info, warn};

use crate::agents::{ActionContext, AgentRegistry, AgentSettings};
use crate::broker::{Broker, BrokerSettings, ConnectMode, Delivery, Destination, Subscription};
use crate::config::NodeConfig;
use crate::node::audit::AuditLog;
use crate::node::facts::{FactSource, NodeInventory};
use crate::node::metrics::{Exporter, Health};
use crate::node::pipeline::{Admission, NodeSnapshot, Pipeline, PipelineSettings, SealedReply};
use crate::node::policy::Authorization;
use crate::node::stats::Stats;
use crate::protocol::{Registration, now_ms};

/// The longest any action may run; each agent's definition declares its own, shorter, timeout.
const MAX_ACTION_TIMEOUT: Duration = Duration::from_secs(crate::protocol::ddl::MAX_TIMEOUT_SECS + 60);

/// How long shutdown waits for in-flight actions before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a running node is made of, built from its configuration before connecting, so
/// that configuration mistakes stop the daemon before it touches the network.
pub struct Node {
    config: NodeConfig,
    broker_settings: BrokerSettings,
    pipeline: Arc<Pipeline>,
    fact_source: FactSource,
    audit: Option<Arc<AuditLog>>,
    agent_settings: AgentSettings,
    registry: AgentRegistry,
    authorization: Arc<Authorization>,
    health: Arc<Health>,
    /// Re-reads the configuration on SIGHUP, so a changed `[agents]` table (a new `agents.dir`)
    /// takes effect; `None` for a node built from configuration in memory.
    reread: Option<RereadConfig>,
}

/// How a node re-reads its configuration file on SIGHUP.
pub type RereadConfig = Box<dyn Fn() -> anyhow::Result<NodeConfig> + Send>;

/// What `batond --check` refuses beyond what [`Node::build`] does: an agent under `agents.dir`
/// that the daemon would skip with a warning, and TLS files that no URL uses yet. Each problem
/// names its file. A missing `agents.dir` is no error (the node runs its built-in agents; the
/// daemon warns about it at start).
pub fn check(config: &NodeConfig) -> anyhow::Result<()> {
    let settings = config.agents.settings();
    let problems = match &settings.dir {
        Some(dir) if dir.is_dir() => AgentRegistry::load(&settings).1,
        _ => Vec::new(),
    };
    if !problems.is_empty() {
        anyhow::bail!(
            "{} agent problem(s), the daemon would run without them (fix or remove the files):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    crate::config::check_tls(&config.tls)?;
    Ok(())
}

impl Node {
    /// Checks the configuration, loads the key, the TLS settings, facts and classes. Fails on
    /// an empty or placeholder key, unreadable files or bad TLS settings, naming what is wrong.
    pub fn build(config: NodeConfig) -> anyhow::Result<Node> {
        let security = Arc::new(config.security.load_security().context("cannot load the message key")?);
        let mut broker_settings = crate::config::broker_settings(
            &config.broker,
            &config.tls,
            format!("batond {}", config.identity),
        )?;
        broker_settings.claimed_identity = Some(config.identity.clone());
        let audit = match &config.audit.file {
            Some(path) => Some(Arc::new(AuditLog::open(path).context("cannot open the audit log")?)),
            None => None,
        };
        let fact_source = FactSource::from_config(&config.facts);
        let agent_settings = config.agents.settings();
        let registry = load_agents(&agent_settings);
        let authorization = Arc::new(
            Authorization::load(&config.authorization).context("cannot load authorization policies")?,
        );
        info!(policies = authorization.policy_count(), unconfigured = ?config.authorization.unconfigured, "authorization policies loaded");
        let stats = Arc::new(Stats::default());
        let snapshot = load_snapshot(&config, &fact_source, &registry, &authorization, &stats)?;
        let settings = PipelineSettings {
            identity: config.identity.clone(),
            max_message_bytes: config.broker.max_message_bytes,
            clock_skew: Duration::from_secs(config.security.clock_skew_secs),
            replay_capacity: config.security.replay_window,
            max_ttl_secs: config.requests.max_ttl_secs,
            action_timeout: MAX_ACTION_TIMEOUT,
        };
        let pipeline = Arc::new(Pipeline::new(settings, security, snapshot, stats, audit.clone()));
        Ok(Node {
            config,
            broker_settings,
            pipeline,
            fact_source,
            audit,
            agent_settings,
            registry,
            authorization,
            health: Arc::default(),
            reread: None,
        })
    }

    /// Re-reads the configuration with `reread` on every SIGHUP: the `[agents]` table it reads
    /// (`agents.dir` above all) replaces the one the node started with. Other tables take
    /// effect on restart.
    pub fn rereading(mut self, reread: RereadConfig) -> Node {
        self.reread = Some(reread);
        self
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Runs until `shutdown` completes; `reload` is notified on SIGHUP.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        reload: Arc<Notify>,
    ) -> anyhow::Result<()> {
        let (stop, _) = broadcast::channel::<()>(1);
        if let Some(listen) = self.config.metrics.listen {
            let exporter = Exporter::new(self.pipeline.stats.clone(), self.health.clone())?;
            metrics::serve(listen, Arc::new(exporter)).await?;
        }
        let connect = Broker::connect_reporting(
            self.broker_settings.clone(),
            ConnectMode::Persistent,
            self.health.broker.clone(),
        );
        tokio::pin!(shutdown);
        let broker = tokio::select! {
            broker = connect => broker.context("cannot connect to the broker")?,
            () = &mut shutdown => return Ok(()),
        };
        info!(node = %self.config.identity, "connected to the broker");

        // Claimed before the node's queues are consumed, and held until the end of `run`.
        let _claims = self.claim_identity(&broker).await?;
        let concurrency = Arc::new(Semaphore::new(self.config.agents.max_concurrency));
        let mut consumers = self.subscribe(&broker, &concurrency).await?;
        self.health.set_subscribed(true);
        let registration = tokio::spawn(register_periodically(
            self.pipeline.clone(),
            broker.clone(),
            self.config.collectives.clone(),
            Duration::from_secs(self.config.registration.interval_secs),
            Duration::ZERO,
            stop.subscribe(),
        ));
        info!(node = %self.config.identity, collectives = ?self.config.collectives, agents = ?self.registry.names(), "ready");
        systemd::ready("subscribed; answering requests");

        let mut fact_stamp = self.fact_source.stamp();
        let mut poll = tokio::time::interval(Duration::from_secs(self.config.facts.poll_interval_secs));
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = reload.notified() => {
                    info!("reloading keys, facts, classes, agents and policies (SIGHUP)");
                    systemd::reloading();
                    self.reload_keys();
                    let agents_before = self.registry.names();
                    self.reload_agents_and_policies();
                    self.reload(&mut fact_stamp).await;
                    if self.registry.names() != agents_before {
                        // New agents need bindings on the broadcast exchange; subscribing again
                        // with the new list adds them, then the old consumers are stopped.
                        // Bindings of removed agents stay until the queue is re-created;
                        // requests for them are answered "unknown agent".
                        match self.subscribe(&broker, &concurrency).await {
                            Ok(fresh) => {
                                let old = std::mem::replace(&mut consumers, fresh);
                                old.stop().await;
                                info!(agents = ?self.registry.names(), "subscriptions renewed for the new agents");
                            }
                            Err(error) => error!(error = %format!("{error:#}"), "cannot bind the new agents; they answer directed requests only"),
                        }
                    }
                    if let Some(audit) = &self.audit
                        && let Err(error) = audit.reopen()
                    {
                        error!(%error, "cannot reopen the audit log");
                    }
                    systemd::ready("reloaded; answering requests");
                }
                _ = poll.tick() => {
                    if self.fact_source.changed_since(&fact_stamp) {
                        info!("fact or classes file changed; reloading");
                        self.reload(&mut fact_stamp).await;
                    }
                }
            }
        }

        info!("shutting down: no new requests; draining in-flight actions");
        systemd::stopping();
        let _ = stop.send(());
        consumers.stop().await;
        registration.abort();
        let permits = u32::try_from(self.config.agents.max_concurrency).unwrap_or(u32::MAX);
        match tokio::time::timeout(DRAIN_TIMEOUT, concurrency.acquire_many(permits)).await {
            Ok(_) => info!("in-flight actions finished"),
            Err(_) => {
                warn!("in-flight actions still running after {} s; leaving them", DRAIN_TIMEOUT.as_secs())
            }
        }
        broker.close().await;
        Ok(())
    }

    /// Claims the node's identity in every collective, so that a second process with the same
    /// identity is refused instead of taking turns with this one on its queue.
    async fn claim_identity(&self, broker: &Broker) -> anyhow::Result<Vec<Subscription>> {
        let mut claims = Vec::new();
        for collective in &self.config.collectives {
            let claim = broker
                .claim_identity(collective, &self.config.identity)
                .await
                .with_context(|| format!("cannot join collective {collective}"))?;
            claims.push(claim);
        }
        Ok(claims)
    }

    /// Subscribes the node's queue in every collective, bound for the current agents, and
    /// starts a consumer for each.
    async fn subscribe(&self, broker: &Broker, concurrency: &Arc<Semaphore>) -> anyhow::Result<Consumers> {
        let agents = self.registry.names();
        let (stop, _) = broadcast::channel::<()>(1);
        let mut handles = Vec::new();
        for collective in &self.config.collectives {
            let subscription = broker
                .subscribe_node(collective, &self.config.identity, &agents)
                .await
                .with_context(|| format!("cannot subscribe to collective {collective}"))?;
            handles.push(tokio::spawn(consume(
                subscription,
                self.pipeline.clone(),
                broker.clone(),
                concurrency.clone(),
                stop.subscribe(),
            )));
        }
        Ok(Consumers { stop, handles })
    }

    /// Loads the PSK, or this node's private key and the trusted callers' keys, again: a key
    /// rotation needs no restart. A PSK or private key that does not load keeps the previous
    /// keys in force; a trusted public key file that does not load is skipped (that caller is
    /// refused until it is fixed), so a key removed in the same change is never kept trusted.
    fn reload_keys(&self) {
        match self.config.security.reload_security() {
            Ok((security, skipped)) => {
                for problem in &skipped {
                    error!(%problem, "trusted key file skipped: its caller is refused until it is fixed");
                }
                info!(
                    scheme = security.scheme(),
                    key = security.key_id(),
                    skipped = skipped.len(),
                    "keys reloaded"
                );
                self.pipeline.replace_security(security);
            }
            Err(error) => {
                error!(error = %format!("{error:#}"), "keys not reloaded; the previous keys stay in force")
            }
        }
    }

    /// Loads the agents directory and the policies again. A policy that does not load keeps
    /// the previous policies in force: a typo must not open or close the node.
    fn reload_agents_and_policies(&mut self) {
        if let Some(reread) = &self.reread {
            match reread() {
                Ok(config) => {
                    let settings = config.agents.settings();
                    if settings.dir != self.agent_settings.dir {
                        info!(before = ?self.agent_settings.dir, now = ?settings.dir, "agents.dir changed");
                    }
                    self.agent_settings = settings;
                }
                Err(error) => error!(
                    error = %format!("{error:#}"),
                    "configuration not re-read; agents load from the previous agents.dir"
                ),
            }
        }
        self.registry = load_agents(&self.agent_settings);
        match Authorization::load(&self.config.authorization) {
            Ok(authorization) => {
                info!(policies = authorization.policy_count(), "authorization policies reloaded");
                self.authorization = Arc::new(authorization);
            }
            Err(error) => error!(%error, "policies not reloaded; the previous policies stay in force"),
        }
    }

    /// Loads facts and classes again, off the runtime's thread: Facter takes seconds, and the
    /// node keeps answering with its previous facts meanwhile (batond runs one thread).
    async fn reload(&self, stamp: &mut crate::node::facts::Stamp) {
        *stamp = self.fact_source.stamp();
        let (config, fact_source, registry, authorization, stats) = (
            self.config.clone(),
            self.fact_source.clone(),
            self.registry.clone(),
            self.authorization.clone(),
            self.pipeline.stats.clone(),
        );
        let loading = tokio::task::spawn_blocking(move || {
            load_snapshot(&config, &fact_source, &registry, &authorization, &stats)
        });
        match loading.await {
            Ok(Ok(snapshot)) => self.pipeline.replace_snapshot(snapshot),
            Ok(Err(error)) => {
                error!(error = %format!("{error:#}"), "reload failed; keeping the previous facts")
            }
            Err(error) => error!(%error, "reload failed; keeping the previous facts"),
        }
    }
}

/// The consumers of one generation of subscriptions.
struct Consumers {
    stop: broadcast::Sender<()>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Consumers {
    /// Stops taking messages; actions already started carry on and answer.
    async fn stop(self) {
        let _ = self.stop.send(());
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// Loads the built-in and external agents, logging each external agent that did not load.
fn load_agents(settings: &AgentSettings) -> AgentRegistry {
    let (registry, warnings) = AgentRegistry::load(settings);
    for warning in &warnings {
        warn!(%warning, "agents");
    }
    registry
}

/// Loads facts and classes and builds the snapshot the pipeline works from.
fn load_snapshot(
    config: &NodeConfig,
    fact_source: &FactSource,
    registry: &AgentRegistry,
    authorization: &Arc<Authorization>,
    stats: &Arc<Stats>,
) -> anyhow::Result<NodeSnapshot> {
    let (facts, classes, warnings) = fact_source.load().context("cannot load facts")?;
    for warning in &warnings {
        warn!(%warning, "facts");
    }
    let inventory = NodeInventory::new(config.identity.clone(), facts, classes, registry.names());
    let context = ActionContext {
        identity: config.identity.clone(),
        collectives: config.collectives.clone().into(),
        facts: inventory.facts().shared(),
        classes: inventory.class_list().as_slice().into(),
        agents: registry.summaries().into(),
        stats: stats.clone(),
    };
    Ok(NodeSnapshot { inventory, context, registry: registry.clone(), authorization: authorization.clone() })
}

/// Takes messages off one subscription until told to stop, running each through the pipeline.
async fn consume(
    mut subscription: Subscription,
    pipeline: Arc<Pipeline>,
    broker: Broker,
    concurrency: Arc<Semaphore>,
    mut stop: broadcast::Receiver<()>,
) {
    loop {
        let incoming = tokio::select! {
            incoming = subscription.messages.recv() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
            _ = stop.recv() => return,
        };
        // Waiting for a permit here, before taking the next message, is what bounds the
        // number of actions in flight and pushes back on the broker when the node is busy.
        let Ok(permit) = concurrency.clone().acquire_owned().await else { return };
        match pipeline.admit(&incoming.body) {
            Admission::Dropped => {}
            Admission::Answer(request, outcome) => {
                let reply = pipeline.finish(&request, outcome);
                tokio::spawn(send_reply(broker.clone(), pipeline.clone(), reply, permit));
            }
            Admission::Unauthorized(request, outcome, rule) => {
                let reply = pipeline.finish_unauthorized(&request, outcome, &rule);
                tokio::spawn(send_reply(broker.clone(), pipeline.clone(), reply, permit));
            }
            Admission::Run(admitted) => {
                let pipeline = pipeline.clone();
                let broker = broker.clone();
                tokio::spawn(async move {
                    let ran = pipeline.run(&admitted).await;
                    let reply = pipeline.finish_ran(&admitted.request, ran);
                    send_reply(broker, pipeline, reply, permit).await;
                });
            }
        }
    }
}

/// The waits before publishing an unroutable reply again (3.15 s in all). A client in another
/// site has its reply queue there too, declared by a federation link shortly after the client
/// declared its own, and a quick node can answer before that (docs/PROTOCOL.md section 8,
/// "Sites"). On one broker an unroutable reply means the client has gone, and the retries only
/// delay the count.
const UNROUTABLE_REPLY_WAITS: [Duration; 6] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
];

async fn send_reply(
    broker: Broker,
    pipeline: Arc<Pipeline>,
    reply: SealedReply,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let counters = &pipeline.stats.counters;
    let mut permit = Some(permit);
    let mut waits = UNROUTABLE_REPLY_WAITS.iter();
    loop {
        match broker.publish(reply.destination.clone(), reply.bytes.clone(), reply.ttl).await {
            Ok(Delivery::Unroutable) => {
                // The permit bounds the actions in flight, not replies waiting for a route.
                drop(permit.take());
                if let Some(wait) = waits.next() {
                    debug!(?wait, "reply unroutable; publishing it again after a wait");
                    tokio::time::sleep(*wait).await;
                    continue;
                }
                Stats::count(&counters.replies_unroutable);
                warn!("reply unroutable: the client's reply queue is gone");
            }
            Ok(_) => Stats::count(&counters.replies),
            Err(error) => {
                Stats::count(&counters.replies_failed);
                error!(%error, "cannot publish reply");
            }
        }
        return;
    }
}

/// Publishes the node's inventory to every collective's registration exchange, `first_after`
/// the start (zero for a real node) and then every `interval`.
async fn register_periodically(
    pipeline: Arc<Pipeline>,
    broker: Broker,
    collectives: Vec<String>,
    interval: Duration,
    first_after: Duration,
    mut stop: broadcast::Receiver<()>,
) {
    if !first_after.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(first_after) => {}
            _ = stop.recv() => return,
        }
    }
    // An interval of zero means: announce once, at start.
    let mut ticker = (!interval.is_zero()).then(|| tokio::time::interval(interval));
    let mut announced = false;
    loop {
        match &mut ticker {
            Some(ticker) => tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.recv() => return,
            },
            None if announced => {
                let _ = stop.recv().await;
                return;
            }
            None => {}
        }
        announced = true;
        announce(&pipeline, &broker, &collectives, interval).await;
    }
}

/// Publishes the node's inventory once to every collective's registration exchange (and so to
/// the registry, where the broker keeps one), each publish confirmed or its failure logged.
async fn announce(pipeline: &Pipeline, broker: &Broker, collectives: &[String], interval: Duration) {
    let snapshot = pipeline.snapshot();
    let registration = Registration {
        identity: pipeline.identity().to_string(),
        collectives: collectives.to_vec(),
        facts: (*snapshot.context.facts).clone(),
        classes: snapshot.context.classes.to_vec(),
        agents: snapshot.registry.names(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        time_ms: now_ms(),
    };
    let bytes = pipeline.security().seal_registration(&registration);
    for collective in collectives {
        let destination = Destination::Registration {
            collective: collective.clone(),
            identity: pipeline.identity().to_string(),
        };
        let ttl = if interval.is_zero() { Duration::from_secs(3600) } else { interval * 2 };
        if let Err(error) = broker.publish(destination, bytes.clone(), ttl).await {
            warn!(%error, %collective, "cannot publish registration");
        }
    }
}
