//! The client: discovery, targeting, fan-out and reply accounting.
//!
//! One [`Client`] holds one broker connection and one reply queue. A router task verifies every
//! reply as it arrives and hands it to the request that is waiting for it; replies that fail
//! verification, or answer a request this client did not send, are dropped and counted.
//! The CLI, the console and the tests all drive Baton through this module, so what they see
//! is accounted the same way: every targeted node ends up replied, unreachable or silent.

pub mod definitions;
pub mod detached;
pub mod discovery;
pub mod events;
pub mod journal;
pub mod outcome;
pub mod prepare;
pub mod registry;
pub mod report;
pub mod retained;
pub mod rollout;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::broker::{Broker, BrokerError, ConnectMode, Delivery, Destination, ReplyQueue};
use crate::config::ClientConfig;
use crate::protocol::filter::{Filter, FilterError};
use crate::protocol::{Reply, Request, new_request_id, now_ms};
use crate::security::{SharedSecurity, Verified};

pub use outcome::{CallOutcome, NodeReply, Tally};
pub use prepare::{PrepareError, PreparedRequest, RequestText, aggregates_of, prepare};
pub use rollout::{
    Amount, BatchRecord, CheckOptions, CheckRecord, NodeState, RolloutOptions, RolloutOutcome, Stopped,
};

/// How many directed publishes may wait for their broker confirms at once.
const PUBLISH_CONCURRENCY: usize = 256;

/// Errors that stop a call before or while it is sent; each maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker could not be reached or refused us (exit 5).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A filter the user gave is invalid (exit 2).
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The key, TLS files or broker settings in the configuration are unusable (exit 2).
    #[error(transparent)]
    Settings(#[from] crate::config::WiringError),
    /// Anything else the user must fix before anything is sent (exit 2).
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// Whether the user must fix something on their side (exit 2) rather than the broker
    /// being unreachable or refusing (exit 5).
    pub fn is_usage(&self) -> bool {
        !matches!(self, ClientError::Broker(error) if !matches!(error, BrokerError::Config(_)))
    }
}

/// Who sends, as whom, and for how long requests stay valid.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub identity: String,
    pub caller: String,
    pub collective: String,
    pub ttl: Duration,
    pub max_message_bytes: usize,
}

/// What to ask. The filter is held compiled, so it is compiled once for the whole command, however
/// many requests (batches) go out with it; its source text is what travels.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub agent: String,
    pub action: String,
    pub data: Map<String, Value>,
    pub filter: Filter,
    /// The request's `once` key: nodes run the action at most once for it (a tracked
    /// rollout's actions; see `protocol::Request::once`).
    pub once: Option<String>,
}

/// Where to send it.
#[derive(Debug, Clone)]
pub enum Targets {
    /// One broadcast; whoever matches the filter answers. Nobody is known to be missing.
    Broadcast,
    /// Directed requests to exactly these nodes; anyone who does not answer is listed.
    Nodes(Vec<String>),
    /// One broadcast, expecting these nodes (the registry's nodes that match the filter):
    /// waiting ends once all of them answered and a grace has passed (at least `grace`, and at
    /// least half the spread of their replies) for nodes the registry does not know yet, who are
    /// counted as targets too; an expected node that
    /// stays silent until the timeout is listed as not responding.
    Expected { nodes: Vec<String>, grace: Duration },
    /// One broadcast whose expected nodes come from the registry, read while the broadcast is
    /// already on its way (the read and the nodes' replies overlap, so a discovery costs the
    /// longer of the two rather than their sum). Resolved to [`Targets::Expected`] with the
    /// registry's nodes that match the request's filter; without a registry to read, to
    /// [`Targets::Broadcast`] (waiting for `quiet`).
    Registry(registry::RegistrySettings),
}

/// Something that happened during a call, reported as it happens (for progress bars, JSONL
/// streams and the console).
#[derive(Debug)]
pub enum Event<'a> {
    /// The request went out to this many nodes: directed ones, or a broadcast expecting them
    /// (`None` for a broadcast that expects nobody in particular).
    Sent { request_id: Uuid, targets: Option<usize> },
    /// A targeted node answered.
    Reply(&'a NodeReply),
    /// The broker had no queue for this node: it cannot answer.
    Unreachable(&'a str),
    /// A node that was not targeted answered.
    Unexpected(&'a NodeReply),
    /// A rollout is about to send batch `index` (1-based) of `of` to these nodes.
    BatchStarted { index: usize, of: usize, nodes: &'a [String] },
    /// A rollout's batch has finished: every node answered, was unreachable, or timed out.
    BatchFinished { batch: &'a BatchRecord, of: usize },
    /// A rollout stopped early: these nodes will not be sent the request.
    Skipped { nodes: &'a [String], stopped: &'a Stopped },
    /// A rollout's node changed state (sent, replied, checked, skipped).
    NodeState { node: &'a str, state: NodeState },
    /// A rollout's health check of batch `index` has finished, retries included.
    CheckFinished { index: usize, check: &'a CheckRecord },
}

/// A connected client.
pub struct Client {
    broker: Broker,
    /// Shared with whoever reloads keys (the console on SIGHUP); each request and reply uses
    /// the keys in force when it is signed or checked.
    security: Arc<SharedSecurity>,
    settings: ClientSettings,
    reply_address: String,
    waiting: Arc<Mutex<HashMap<Uuid, mpsc::Sender<Verified<Reply>>>>>,
    dropped_replies: Arc<AtomicU64>,
}

impl Client {
    /// Connects to the first broker in the list that answers, or fails with every reason.
    pub async fn connect(config: &ClientConfig) -> Result<Client, ClientError> {
        let security = config.security.load_security()?;
        let settings = crate::config::broker_settings(
            &config.broker,
            &config.tls,
            format!("baton {}", config.identity),
        )?;
        let broker = Broker::connect(settings, ConnectMode::FailFast).await?;
        // With ed25519 the caller is proven by the key, so it is the key's name; nodes refuse a
        // request whose caller differs from the name of the key that signed it.
        let caller = if security.proves_callers() {
            if security.key_id() != config.caller {
                debug!(configured = %config.caller, key = %security.key_id(), "caller taken from the ed25519 key's name");
            }
            security.key_id().to_owned()
        } else {
            config.caller.clone()
        };
        let client_settings = ClientSettings {
            identity: config.identity.clone(),
            caller,
            collective: config.collective.clone(),
            ttl: Duration::from_secs(config.ttl_secs),
            max_message_bytes: config.broker.max_message_bytes,
        };
        Client::with_broker(broker, Arc::new(SharedSecurity::new(security)), client_settings).await
    }

    /// Builds a client on an existing connection and opens its reply queue. Requests are signed
    /// and replies checked with the keys `security` holds at the time.
    pub async fn with_broker(
        broker: Broker,
        security: Arc<SharedSecurity>,
        settings: ClientSettings,
    ) -> Result<Client, ClientError> {
        let ReplyQueue { address, messages } = broker.reply_queue(&settings.collective, None).await?;
        let waiting: Arc<Mutex<HashMap<Uuid, mpsc::Sender<Verified<Reply>>>>> = Arc::default();
        let dropped_replies = Arc::new(AtomicU64::new(0));
        tokio::spawn(route_replies(
            messages,
            security.clone(),
            settings.max_message_bytes,
            waiting.clone(),
            dropped_replies.clone(),
        ));
        Ok(Client { broker, security, settings, reply_address: address, waiting, dropped_replies })
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Signs and checks with `security` from now on (the console's SIGHUP reload of a user's
    /// keys). Calls in flight finish with whichever keys their replies meet.
    pub fn replace_security(&self, security: crate::security::Security) {
        self.security.replace(security);
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Replies dropped so far because they failed verification or answered no request of ours.
    pub fn dropped_replies(&self) -> u64 {
        self.dropped_replies.load(Ordering::Relaxed)
    }

    /// Builds and signs a request.
    pub fn build_request(&self, spec: &RequestSpec) -> Result<(Request, Vec<u8>), ClientError> {
        self.build_request_to(spec, &self.reply_address)
    }

    /// As [`Client::build_request`], with replies going to `reply_to` instead of this client's
    /// own reply queue.
    pub fn build_request_to(
        &self,
        spec: &RequestSpec,
        reply_to: &str,
    ) -> Result<(Request, Vec<u8>), ClientError> {
        let request = Request {
            id: new_request_id(),
            sender: self.settings.identity.clone(),
            caller: self.settings.caller.clone(),
            collective: self.settings.collective.clone(),
            agent: spec.agent.clone(),
            action: spec.action.clone(),
            filter: spec.filter.spec().clone(),
            time_ms: now_ms(),
            ttl_secs: u32::try_from(self.settings.ttl.as_secs()).unwrap_or(u32::MAX),
            reply_to: reply_to.to_string(),
            data: spec.data.clone(),
            once: spec.once.clone(),
        };
        let bytes = self.security.current().seal_request(&request);
        if bytes.len() > self.settings.max_message_bytes {
            return Err(ClientError::Usage(format!(
                "the request is {} bytes, over the {}-byte limit (send smaller inputs or raise broker.max_message_bytes)",
                bytes.len(),
                self.settings.max_message_bytes
            )));
        }
        Ok((request, bytes))
    }

    /// Sends one request and accounts for every reply until all targets answered or `timeout`
    /// passed. With [`Targets::Broadcast`], waiting also ends once replies have gone quiet for
    /// `quiet` (when given); with [`Targets::Expected`], the grace after the last expected
    /// reply; [`Targets::Registry`] becomes one of these two once the registry is read.
    pub async fn call(
        &self,
        spec: &RequestSpec,
        targets: &Targets,
        timeout: Duration,
        quiet: Option<Duration>,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) -> Result<CallOutcome, ClientError> {
        let started = Instant::now();
        let (request, bytes) = self.build_request(spec)?;
        let (sender, mut replies) = mpsc::channel(1024);
        self.lock_waiting().insert(request.id, sender);
        let _unregister = Unregister { waiting: &self.waiting, id: request.id };

        let ttl = self.settings.ttl;
        // Replies that came while the request was still going out (or the registry was being
        // read), with the time they came: recorded once the tally knows its targets.
        let mut early = Vec::new();
        let mut unreachable = Vec::new();
        // What `Targets::Registry` resolved to; every other kind is its own resolution.
        let mut resolved: Option<Targets> = None;
        // Where a missing registry would end the connection (and the reply queue with it), it is
        // read before anything is sent rather than while the replies come.
        if let Targets::Registry(settings) = targets
            && !self.broker.reads_missing_streams_harmlessly()
        {
            resolved = Some(self.resolve_registry(settings, &spec.filter).await);
        }
        match targets {
            Targets::Broadcast | Targets::Expected { .. } | Targets::Registry(_) => {
                let destination = Destination::Broadcast {
                    collective: self.settings.collective.clone(),
                    agent: spec.agent.clone(),
                };
                // A broadcast expecting known nodes says how many; a plain one (or one whose
                // registry is still to be read) cannot.
                let expected = match targets {
                    Targets::Expected { nodes, .. } => Some(nodes.len()),
                    _ => None,
                };
                on_event(&Event::Sent { request_id: request.id, targets: expected });
                if self.broker.publish(destination, bytes, ttl).await? == Delivery::Unroutable {
                    // No node has this agent bound at all: nobody can answer, so stop now.
                    debug!(agent = %spec.agent, "broadcast unroutable: no node has the agent");
                    // Whom it expected (a registry read first) are then not responding.
                    let nobody = match (&resolved, targets) {
                        (Some(expected), _) => expected,
                        (None, Targets::Registry(_)) => &Targets::Broadcast,
                        (None, targets) => targets,
                    };
                    return Ok(Tally::new(&request, nobody).finish(started));
                }
                if let (Targets::Registry(settings), None) = (targets, &resolved) {
                    let reading = self.resolve_registry(settings, &spec.filter);
                    tokio::pin!(reading);
                    resolved = Some(loop {
                        tokio::select! {
                            expected = &mut reading => break expected,
                            Some(reply) = replies.recv() => early.push((reply, started.elapsed())),
                        }
                    });
                }
            }
            Targets::Nodes(nodes) => {
                on_event(&Event::Sent { request_id: request.id, targets: Some(nodes.len()) });
                // Replies start arriving while thousands of directed publishes still wait for
                // their confirms: take them as they come (with the time they came), so the
                // router never stalls on a full channel and the reply times are true.
                let publishing = self.publish_directed(nodes, &bytes, ttl);
                tokio::pin!(publishing);
                unreachable = loop {
                    tokio::select! {
                        published = &mut publishing => break published?,
                        Some(reply) = replies.recv() => early.push((reply, started.elapsed())),
                    }
                };
            }
        }
        let targets = resolved.as_ref().unwrap_or(targets);
        // A quiet window applies to a plain broadcast only: an expected set ends with its grace.
        let quiet = if matches!(targets, Targets::Broadcast) { quiet } else { None };
        let mut tally = Tally::new(&request, targets);
        let came_early = !early.is_empty();
        for (reply, elapsed) in early {
            match tally.record(reply.into_inner(), elapsed) {
                outcome::Recorded::Targeted(node_reply) => on_event(&Event::Reply(node_reply)),
                outcome::Recorded::Unexpected(node_reply) => on_event(&Event::Unexpected(node_reply)),
                outcome::Recorded::Ignored => {}
            }
        }
        for node in unreachable {
            tally.unreachable(&node);
            on_event(&Event::Unreachable(&node));
        }

        let deadline = tokio::time::Instant::now() + timeout;
        let quiet_after = |tally: &Tally, quiet: Duration| {
            // Wait at least `quiet` after each reply, and longer when the first reply itself
            // was slow: a loaded broker spreads replies out.
            let first_ms = tally.first_reply_ms().unwrap_or(0.0);
            tokio::time::Instant::now() + quiet.max(Duration::from_secs_f64(first_ms * 3.0 / 1000.0))
        };
        // Replies that came during the registry read start the quiet window too.
        let mut quiet_deadline = quiet.filter(|_| came_early).map(|quiet| quiet_after(&tally, quiet));
        let grace = match targets {
            Targets::Expected { grace, .. } => Some(*grace),
            Targets::Broadcast | Targets::Nodes(_) | Targets::Registry(_) => None,
        };
        let mut grace_deadline: Option<tokio::time::Instant> = None;
        loop {
            if tally.complete() {
                match grace {
                    // Every expected node answered: only nodes not known yet may still come. They
                    // answer about as fast as the known ones did, so wait half the spread of
                    // those replies (first to last: a slow broker spreads them out), and never
                    // less than `grace`. Not the time since sending: at 50,000 nodes most of it
                    // was the broker routing the broadcast (17 s before the first reply), which
                    // says nothing about the replies' spread (docs/PERFORMANCE.md, issue 16).
                    // The wait runs from the last expected reply, not from now: when the
                    // registry's read ended after it (the read is the longer leg at 100 nodes,
                    // and at 50,000), the replies that came during the read were already taken.
                    Some(grace) => {
                        let (first, last) = (tally.first_reply_ms(), tally.last_reply_ms());
                        let spread = last.unwrap_or(0.0) - first.unwrap_or(0.0);
                        let wait = grace.max(Duration::from_secs_f64(spread.max(0.0) / 2000.0));
                        let since = match last {
                            Some(last) => tokio::time::Instant::from_std(
                                started + Duration::from_secs_f64(last.max(0.0) / 1000.0),
                            ),
                            None => tokio::time::Instant::now(),
                        };
                        grace_deadline.get_or_insert(since + wait);
                    }
                    None => break,
                }
            }
            let wake = [Some(deadline), quiet_deadline, grace_deadline]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            // Replies first: one already waiting is taken even when the deadline has passed
            // (the grace runs from the last reply, so it may have passed while the registry
            // was read); an unbiased select would drop it half of the time.
            let reply = tokio::select! {
                biased;
                reply = replies.recv() => reply,
                () = tokio::time::sleep_until(wake) => None,
            };
            let Some(reply) = reply else { break };
            let elapsed = started.elapsed();
            match tally.record(reply.into_inner(), elapsed) {
                outcome::Recorded::Targeted(node_reply) => on_event(&Event::Reply(node_reply)),
                outcome::Recorded::Unexpected(node_reply) => on_event(&Event::Unexpected(node_reply)),
                outcome::Recorded::Ignored => {}
            }
            if let Some(quiet) = quiet {
                quiet_deadline = Some(quiet_after(&tally, quiet));
            }
        }
        Ok(tally.finish(started))
    }

    /// What a broadcast with [`Targets::Registry`] expects: the registry's nodes that match
    /// `filter`, or nobody in particular (a plain broadcast) without a registry to read.
    pub(crate) async fn resolve_registry(
        &self,
        settings: &registry::RegistrySettings,
        filter: &Filter,
    ) -> Targets {
        match self.registry(settings).await {
            Ok(fleet) => Targets::Expected { nodes: fleet.matching(filter), grace: settings.grace },
            Err(no_registry) => {
                debug!(%no_registry, "waiting for replies to go quiet instead");
                Targets::Broadcast
            }
        }
    }

    /// Reads this client's collective's registry (see [`registry::read`]).
    pub async fn registry(
        &self,
        settings: &registry::RegistrySettings,
    ) -> Result<registry::Fleet, registry::NoRegistry> {
        registry::read(
            &self.broker,
            &self.security.current(),
            &self.settings.collective,
            settings,
            self.settings.max_message_bytes,
        )
        .await
    }

    /// Sends a prepared request ([`prepare`]) and waits as long as it says; the outcome carries
    /// the aggregates its definition declares.
    pub async fn call_prepared(
        &self,
        prepared: &PreparedRequest,
        targets: &Targets,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) -> Result<CallOutcome, ClientError> {
        let mut outcome = self.call(&prepared.spec, targets, prepared.timeout, None, on_event).await?;
        outcome.aggregates = prepared.aggregates(&outcome);
        Ok(outcome)
    }

    /// Publishes the same sealed request to each node's own queue, many in flight at once.
    /// Returns the nodes the broker had no queue for.
    ///
    /// A publish the broker did not confirm in time or did not take (a negative
    /// acknowledgement), both seen while the member holding that node's queue goes down (10,000
    /// emulated nodes on a cluster; a batch of one in the `cluster` test), concerns that node
    /// alone: it is awaited like the others and reported as no response if it stays silent,
    /// rather than ending the whole call with the requests already sent to every other node
    /// unaccounted for. A publish that could not be made at all (the connection not back in
    /// time) is treated the same unless none went through, when the call fails with that error.
    async fn publish_directed(
        &self,
        nodes: &[String],
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<Vec<String>, ClientError> {
        let collective = &self.settings.collective;
        // Each publish owns its node's name: a future borrowing it through a closure is not
        // `Send` for every lifetime, and the console runs calls on spawned tasks.
        let mut results = futures_util::stream::iter(nodes.iter().cloned().map(|node| {
            let destination = Destination::Node { collective: collective.clone(), identity: node.clone() };
            let broker = self.broker.clone();
            let body = bytes.to_vec();
            async move { (node, broker.publish(destination, body, ttl).await) }
        }))
        .buffer_unordered(PUBLISH_CONCURRENCY);
        let mut unreachable = Vec::new();
        let mut unconfirmed: Vec<String> = Vec::new();
        let mut first_failure = None;
        let mut not_sent = 0;
        while let Some((node, result)) = results.next().await {
            match result {
                Ok(Delivery::Unroutable) => unreachable.push(node),
                Ok(Delivery::Routed | Delivery::Unknown) => {}
                Err(error @ (BrokerError::Timeout { .. } | BrokerError::NotTaken { .. })) => {
                    unconfirmed.push(node);
                    first_failure.get_or_insert(error);
                }
                Err(error @ BrokerError::Disconnected { .. }) => {
                    not_sent += 1;
                    if not_sent == nodes.len() {
                        return Err(error.into());
                    }
                    unconfirmed.push(node);
                    first_failure.get_or_insert(error);
                }
                Err(error) => return Err(error.into()),
            }
        }
        if let Some(error) = first_failure {
            unconfirmed.sort();
            warn!(
                count = unconfirmed.len(),
                first = %unconfirmed[0],
                %error,
                "requests to some nodes were not confirmed by the broker; they are awaited like \
                 the others and reported as no response if silent"
            );
        }
        Ok(unreachable)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, mpsc::Sender<Verified<Reply>>>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the connection.
    pub async fn close(&self) {
        self.broker.close().await;
    }
}

/// Removes a request from the routing table when its call ends, however it ends.
struct Unregister<'a> {
    waiting: &'a Mutex<HashMap<Uuid, mpsc::Sender<Verified<Reply>>>>,
    id: Uuid,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.id);
    }
}

/// Verifies each reply off the reply queue and hands it to the call waiting for it.
async fn route_replies(
    mut messages: mpsc::Receiver<crate::broker::Incoming>,
    security: Arc<SharedSecurity>,
    max_message_bytes: usize,
    waiting: Arc<Mutex<HashMap<Uuid, mpsc::Sender<Verified<Reply>>>>>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(incoming) = messages.recv().await {
        let security = security.current();
        let reply = match security.open_reply(&incoming.body, max_message_bytes) {
            Ok(reply) => reply,
            Err(error) => {
                dropped.fetch_add(1, Ordering::Relaxed);
                warn!(%error, "reply dropped: it does not verify");
                continue;
            }
        };
        if !crate::protocol::is_node_identity(&reply.sender) {
            // No node can have that name (batond refuses it); it would reach the terminal.
            dropped.fetch_add(1, Ordering::Relaxed);
            warn!(claimed = %reply.sender, "reply dropped: its sender is not a node identity");
            continue;
        }
        if security.proves_callers() && reply.sender != reply.key_id() {
            // With ed25519 a node signs with the key named after its identity; a reply that
            // claims another identity is a trusted node answering as someone else.
            dropped.fetch_add(1, Ordering::Relaxed);
            warn!(claimed = %reply.sender, key = %reply.key_id(), "reply dropped: its sender is not the name of the key that signed it");
            continue;
        }
        let sender =
            waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&reply.request_id).cloned();
        match sender {
            Some(sender) => {
                // The call may have just finished; a late reply is then simply dropped.
                let _ = sender.send(reply).await;
            }
            None => {
                dropped.fetch_add(1, Ordering::Relaxed);
                debug!(request = %reply.request_id, node = %reply.sender, "reply dropped: answers no request in progress");
            }
        }
    }
}

/// Where this client keeps what it must remember between runs: `$XDG_STATE_HOME/baton`, or
/// `~/.local/state/baton`.
pub fn state_home() -> Option<std::path::PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|value| !value.is_empty()) {
        Some(state) => std::path::PathBuf::from(state),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".local/state"),
    };
    Some(base.join("baton"))
}

/// The identities of a node list, deduplicated and sorted.
pub fn unique_sorted(nodes: impl IntoIterator<Item = String>) -> Vec<String> {
    nodes.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}
