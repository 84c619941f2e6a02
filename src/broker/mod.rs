//! The transport: the only module that knows AMQP or STOMP exist.
//!
//! Everything above this module talks to a broker through [`Broker`], a cheap cloneable handle
//! to one task that owns the connection, reconnects it with backoff and jitter along the URL
//! list, and re-declares every subscription after a reconnect. Destinations are logical
//! ([`Destination`]); each transport maps them onto its own topology (see docs/PROTOCOL.md).
//!
//! The handle speaks a closed, transport-neutral [`Command`] enum to the connection task over a
//! bounded channel, with replies on `oneshot` channels. That task is written once (`owner`),
//! generic over what a transport does (`transport`); [`Broker::connect`] picks the transport by
//! [`Transport`]. `redact` and `wording` word URLs, durations and failed connections the same
//! way for both. Dropping every [`Broker`] handle closes the connection.

mod amqp;
pub mod backoff;
mod owner;
mod redact;
mod reply_address;
mod status;
pub mod stomp;
mod transport;
mod wording;

pub use redact::redact;

pub use reply_address::{MAX_REPLY_SUFFIX_CHARS, is_reply_address_of, reply_address};
pub use status::ConnectionStatus;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// A logical destination, mapped by each transport onto its own exchanges, queues or topics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Every node in `collective` that has `agent` (AMQP: exchange `C.broadcast`, key `agent.A`).
    Broadcast { collective: String, agent: String },
    /// One node's own queue (AMQP: default exchange, key `C.node.<identity>`).
    Node { collective: String, identity: String },
    /// A client's reply address, as handed out by [`Broker::reply_queue`] or named by the user.
    Reply(String),
    /// The registration exchange of `collective` (AMQP: exchange `C.registration`, key `node.<identity>`).
    Registration { collective: String, identity: String },
    /// The events exchange of `collective`, which anyone may follow (AMQP: exchange `C.events`,
    /// key `key`); the body is JSON, not a sealed message.
    Events { collective: String, key: String },
    /// What the broker retains of one of `collective`'s exchanges itself (AMQP: the stream of
    /// the exchange's name, through the default exchange). A reader publishes its end-of-read
    /// marker here; `Unroutable` means the broker retains nothing of it.
    Retained { collective: String, log: Retained },
}

/// An exchange whose messages the broker retains, where it can (a RabbitMQ stream of the same
/// name, declared by the operator: rabbitmq/definitions.json), for a client to read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retained {
    /// `C.registration`: the nodes' registrations, the registry.
    Registrations,
    /// `C.events`: the rollouts' events, from which a rollout can be resumed elsewhere.
    Events,
}

impl Retained {
    /// The routing keys of every message of the exchange (AMQP binding pattern).
    pub fn every_key(self) -> &'static str {
        match self {
            Retained::Registrations => "node.#",
            Retained::Events => "rollout.#",
        }
    }

    /// The exchange (and stream) name in `collective`.
    pub fn name(self, collective: &str) -> String {
        match self {
            Retained::Registrations => format!("{collective}.registration"),
            Retained::Events => format!("{collective}.events"),
        }
    }
}

/// The queue whose exclusive holder owns `identity` in `collective` (AMQP and RabbitMQ's STOMP):
/// `<C>.node.<identity>:claim`, under the node user's `<C>.node.` permissions, and never a node
/// queue, since an identity cannot contain `:`.
fn claim_queue(collective: &str, identity: &str) -> String {
    format!("{collective}.node.{identity}:claim")
}

/// Sleeps until `when`, or forever without one: a `select!` branch for an optional deadline
/// (a reconnection, a retry, a heartbeat, a queue check).
async fn sleep_until_some(when: Option<tokio::time::Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

/// Shorthands for the tables of destinations in the transports' tests.
#[cfg(test)]
impl Destination {
    fn broadcast(collective: &str, agent: &str) -> Destination {
        Destination::Broadcast { collective: collective.into(), agent: agent.into() }
    }

    fn node(collective: &str, identity: &str) -> Destination {
        Destination::Node { collective: collective.into(), identity: identity.into() }
    }

    fn registration(collective: &str, identity: &str) -> Destination {
        Destination::Registration { collective: collective.into(), identity: identity.into() }
    }
}

/// What the broker said about a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The broker accepted the message and routed it to at least one queue.
    Routed,
    /// The broker accepted the message but had nowhere to put it (AMQP `mandatory` return):
    /// for a directed request this means the node has no queue, so it cannot answer.
    Unroutable,
    /// The transport cannot tell whether the message was routed (e.g. STOMP to ActiveMQ).
    Unknown,
}

/// One message received from a subscription.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub body: Vec<u8>,
    /// Where it was published: the routing key (AMQP), or the destination (STOMP). Events
    /// say which rollout they belong to only here (`rollout.<id>.<type>`).
    pub key: String,
}

/// How a transport should connect.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `amqp` or `stomp`.
    pub transport: Transport,
    /// Tried in order; after the last, back to the first.
    pub urls: Vec<String>,
    /// STOMP only.
    pub dialect: StompDialect,
    /// TLS client configuration for `amqps://` and `stomp+ssl://` URLs.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Overrides the host name checked against the server certificate.
    pub tls_server_name: Option<String>,
    /// A name the broker shows for this connection (e.g. `batond web01`).
    pub connection_name: String,
    /// Give up a single connection attempt after this long.
    pub connect_timeout: Duration,
    /// Longest wait between reconnection attempts (backoff doubles up to this, with jitter).
    pub max_backoff: Duration,
    /// Messages larger than this are dropped by the transport where it can tell early.
    pub max_message_bytes: usize,
    /// How long an idle node queue survives its node (AMQP `x-expires`).
    pub node_queue_expiry: Duration,
    /// `batond` only: the identity this connection claims for itself alone. ActiveMQ carries
    /// the claim on the connection (STOMP `client-id`, which it refuses to a second live
    /// connection); AMQP and RabbitMQ's STOMP carry it on [`Broker::claim_identity`]'s
    /// exclusive queue instead. See docs/PROTOCOL.md, "Duplicate identities".
    pub claimed_identity: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Amqp,
    Stomp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StompDialect {
    ActiveMq,
    RabbitMq,
}

/// Errors a caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// No URL in the list could be connected to; `attempts` says why for each.
    #[error("cannot reach any broker: {}", attempts.join("; "))]
    Unreachable { attempts: Vec<String> },
    /// The connection task has stopped (shutdown, or a fatal error it already reported).
    #[error("the broker connection is closed")]
    Closed,
    /// The broker refused an operation (permissions, a missing exchange, ...).
    #[error("the broker refused {operation}: {reason}")]
    Refused { operation: String, reason: String },
    /// The message is larger than the configured limit; nothing was sent.
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// An exchange that Baton needs does not exist, and this user may not create it. Every
    /// exchange is `<collective>.<kind>`, so the message names the collective: most often it is
    /// a typo in `-T` or `collective`.
    #[error(
        "collective \"{}\" does not exist on this broker: exchange \"{exchange}\" is missing and \
         user \"{user}\" may not create it (check -T and the collective setting; a new collective \
         is declared as in rabbitmq/definitions.json)",
        exchange.rsplit_once('.').map_or(exchange.as_str(), |(collective, _)| collective)
    )]
    MissingExchange { exchange: String, user: String },
    /// The broker answered a publish with a negative acknowledgement: it did not take the
    /// message (on a cluster, the member holding the queue going down; or a broker short of
    /// memory or disk).
    #[error(
        "the broker did not take {operation} (negative acknowledgement: the queue's cluster \
         member going down, or a broker short of memory or disk)"
    )]
    NotTaken { operation: String },
    /// A publish was not confirmed in time.
    #[error("the broker did not confirm {operation} within {seconds} s")]
    Timeout { operation: String, seconds: u64 },
    /// The connection was down and did not come back in time for `operation`.
    #[error(
        "cannot {operation}: the connection to the broker is down and was not restored within \
         {seconds} s (it keeps reconnecting in the background)"
    )]
    Disconnected { operation: String, seconds: u64 },
    /// Another live connection holds the identity this process claims: two processes with one
    /// identity would take turns with its requests, so this one must not start.
    #[error(
        "identity \"{identity}\" is already in use by another process connected to the broker \
         ({detail}); two processes with one identity would take turns with its requests, so this \
         one stops. Stop the other process (a cloned machine, or an old batond still running), or \
         give this node its own `identity` in node.toml; if the other process is already gone, \
         start again once the broker has noticed (within its heart-beat timeout)"
    )]
    IdentityInUse { identity: String, detail: String },
    /// Another live connection holds the lock this process asked for ([`Broker::lock`]).
    #[error("the broker holds queue \"{queue}\" for another connection")]
    LockHeld { queue: String },
    /// Bad settings (an unparsable URL, an unsupported scheme).
    #[error("{0}")]
    Config(String),
    /// The transport cannot do this at all (e.g. read a registry over STOMP to ActiveMQ).
    #[error("{operation} is not possible over {transport}")]
    Unsupported { operation: String, transport: &'static str },
}

/// How [`Broker::connect`] behaves until the first connection is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// Clients: try each URL once (each within `connect_timeout`) and fail with
    /// [`BrokerError::Unreachable`] naming every URL and why.
    FailFast,
    /// Nodes: keep trying along the URL list with backoff and jitter, logging each failure,
    /// until connected. Cancel by dropping the future (e.g. in a `select!` with shutdown).
    Persistent,
}

/// A cheap, cloneable handle to the task that owns one broker connection.
///
/// Once connected, the task keeps the connection up for as long as a handle exists: when the
/// connection drops it reconnects with backoff and jitter along the URL list and re-declares
/// every live subscription, so subscribers keep their receivers.
#[derive(Clone)]
pub struct Broker {
    commands: mpsc::Sender<Command>,
    /// Enforced on the handle side so an oversized message never reaches the task.
    max_message_bytes: usize,
    transport: Transport,
}

/// Capacity of the command channel: callers wait (backpressure) when the task is this far behind.
const COMMAND_CAPACITY: usize = 1024;

/// Capacity of each subscription's channel; when a subscriber is slower than this, the transport
/// stops taking deliveries from the broker (prefetch) instead of buffering without bound.
pub(crate) const SUBSCRIPTION_CAPACITY: usize = 1024;

/// What the handle asks of the connection task. Closed: every transport handles all of these.
pub(crate) enum Command {
    Publish {
        destination: Destination,
        body: Vec<u8>,
        ttl: Duration,
        reply: oneshot::Sender<Result<Delivery, BrokerError>>,
    },
    Subscribe {
        kind: SubscriptionKind,
        reply: oneshot::Sender<Result<Subscription, BrokerError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A subscription the task must (re-)establish on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscriptionKind {
    /// A node's own queue, bound to the broadcast exchange for each of its agents.
    Node { collective: String, identity: String, agents: Vec<String> },
    /// A client's reply queue, named `<collective>.reply.<suffix>`.
    Reply {
        collective: String,
        suffix: String,
        /// Named by the user for replies collected later: durable, survives the client.
        persistent: bool,
    },
    /// Every message published to one of `collective`'s exchanges from now on (the console's
    /// view of registrations or rollouts), through its own queue `queue`.
    Follow { collective: String, log: Retained, queue: String },
    /// `batond`'s claim on its identity in `collective`: held for this connection alone,
    /// refused with [`BrokerError::IdentityInUse`] while another connection holds it. No
    /// message ever arrives on it.
    Claim { collective: String, identity: String },
    /// What the broker retains of one of `collective`'s exchanges (a RabbitMQ stream), read
    /// from `since_secs` (seconds since the epoch) onwards. AMQP only.
    Retained { collective: String, log: Retained, since_secs: u64 },
    /// A lock held by this connection alone: the exclusive queue `<collective>.reply.<name>`
    /// (the only queues a client user may declare), refused with [`BrokerError::LockHeld`]
    /// while another connection holds it, released when this connection ends. No message ever
    /// arrives on it. AMQP and RabbitMQ's STOMP.
    Lock { collective: String, name: String },
}

impl Broker {
    /// Connects to the broker named by `settings.urls`.
    ///
    /// With [`ConnectMode::FailFast`] every URL is tried once (each within `connect_timeout`)
    /// and, if none answers, [`BrokerError::Unreachable`] says for each URL (password redacted)
    /// why. With [`ConnectMode::Persistent`] this keeps trying with backoff and jitter until it
    /// connects; dropping the returned future stops it. Either way, once connected, a background
    /// task owns the connection and restores it (with failover along the URL list) whenever it
    /// drops.
    pub async fn connect(settings: BrokerSettings, mode: ConnectMode) -> Result<Broker, BrokerError> {
        Broker::connect_reporting(settings, mode, Arc::default()).await
    }

    /// [`Broker::connect`], keeping `status` up to date from the first attempt on (a node's
    /// health check and metrics read it, also while it is still trying to connect).
    pub async fn connect_reporting(
        settings: BrokerSettings,
        mode: ConnectMode,
        status: Arc<ConnectionStatus>,
    ) -> Result<Broker, BrokerError> {
        if settings.urls.is_empty() {
            return Err(BrokerError::Config("no broker URL configured (set broker.urls)".to_string()));
        }
        let (max_message_bytes, transport) = (settings.max_message_bytes, settings.transport);
        let (commands, command_receiver) = mpsc::channel(COMMAND_CAPACITY);
        match settings.transport {
            Transport::Amqp => {
                owner::start::<amqp::Session>(settings, mode, status, command_receiver).await?
            }
            Transport::Stomp => {
                owner::start::<stomp::Session>(settings, mode, status, command_receiver).await?
            }
        }
        Ok(Broker { commands, max_message_bytes, transport })
    }

    /// Whether reading a stream that does not exist leaves the connection as it was: over AMQP a
    /// missing stream is an unroutable marker, nothing more; RabbitMQ's STOMP refuses the
    /// consume and closes the connection, taking its subscriptions (a reply queue) with it.
    pub fn reads_missing_streams_harmlessly(&self) -> bool {
        self.transport == Transport::Amqp
    }

    /// Publishes `body` to `destination`; `ttl` becomes the message's expiration, so a
    /// consumer that comes back later never sees it once stale.
    ///
    /// Returns [`Delivery::Routed`] once the broker has confirmed the message, or
    /// [`Delivery::Unroutable`] as soon as it says no queue took it. A message over
    /// `max_message_bytes` fails with [`BrokerError::TooLarge`] and nothing is sent. While the
    /// connection is down this waits up to `connect_timeout` for it to come back.
    pub async fn publish(
        &self,
        destination: Destination,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Delivery, BrokerError> {
        if body.len() > self.max_message_bytes {
            return Err(BrokerError::TooLarge { size: body.len(), limit: self.max_message_bytes });
        }
        let (reply, answer) = oneshot::channel();
        self.request(Command::Publish { destination, body, ttl, reply }, answer).await
    }

    /// Node side: declares the node's queue `<collective>.node.<identity>` (it expires
    /// `node_queue_expiry` after its node was last connected), binds it to the broadcast
    /// exchange for each agent, and consumes it. Re-declared after every reconnection.
    pub async fn subscribe_node(
        &self,
        collective: &str,
        identity: &str,
        agents: &[String],
    ) -> Result<Subscription, BrokerError> {
        self.subscribe(SubscriptionKind::Node {
            collective: collective.to_string(),
            identity: identity.to_string(),
            agents: agents.to_vec(),
        })
        .await
    }

    /// Node side: claims `identity` in `collective` for this connection alone, before
    /// [`Broker::subscribe_node`], so that a second process with the same identity is refused
    /// ([`BrokerError::IdentityInUse`]) instead of sharing the node's queue. Held until the
    /// returned subscription is dropped, and claimed again after every reconnection.
    pub async fn claim_identity(
        &self,
        collective: &str,
        identity: &str,
    ) -> Result<Subscription, BrokerError> {
        self.subscribe(SubscriptionKind::Claim {
            collective: collective.to_string(),
            identity: identity.to_string(),
        })
        .await
    }

    /// Client side: a reply queue for `collective`.
    ///
    /// `None` gives a fresh queue private to this connection that disappears with it; `Some(name)`
    /// gives a durable queue `<collective>.reply.<name>` that outlives the client (for a day
    /// unused), for replies collected later. Its [`ReplyQueue::address`] goes in requests.
    pub async fn reply_queue(&self, collective: &str, name: Option<&str>) -> Result<ReplyQueue, BrokerError> {
        let (suffix, persistent) = match name {
            Some(name) => (name.to_string(), true),
            None => (uuid::Uuid::new_v4().simple().to_string(), false),
        };
        let address = reply_address(collective, &suffix);
        let subscription = self
            .subscribe(SubscriptionKind::Reply { collective: collective.to_string(), suffix, persistent })
            .await?;
        Ok(ReplyQueue { address, messages: subscription.messages })
    }

    /// Console side: every registration published in `collective`, through a private queue.
    pub async fn subscribe_registrations(&self, collective: &str) -> Result<Subscription, BrokerError> {
        self.follow(collective, Retained::Registrations).await
    }

    /// Console side: every message published to `collective`'s exchange `log` from now on
    /// (registrations: `node.#`; events: `rollout.#`), through a private queue.
    ///
    /// The queue is named like a reply queue, `<collective>.reply.console-<uuid>`, because that
    /// is the only kind of queue the broker lets a client user declare (`rabbitmq/definitions.json`).
    pub async fn follow(&self, collective: &str, log: Retained) -> Result<Subscription, BrokerError> {
        self.subscribe(SubscriptionKind::Follow {
            collective: collective.to_string(),
            log,
            queue: format!("{collective}.reply.console-{}", uuid::Uuid::new_v4().simple()),
        })
        .await
    }

    /// Client side: every message retained of `collective`'s exchange `log` from `since`
    /// onwards (possibly a little earlier: a stream is read from the start of the chunk that
    /// holds `since`), then whatever arrives later, through a consumer of the stream. Fails with
    /// [`BrokerError::Unsupported`] over STOMP to ActiveMQ (and over STOMP to RabbitMQ for
    /// anything but the registry) and [`BrokerError::Refused`] when nothing is retained (over
    /// STOMP to RabbitMQ, the refusal also ends the connection); see `client::retained` for
    /// reading it to its end.
    pub async fn subscribe_retained(
        &self,
        collective: &str,
        log: Retained,
        since: std::time::SystemTime,
    ) -> Result<Subscription, BrokerError> {
        let since_secs = since.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        self.subscribe(SubscriptionKind::Retained { collective: collective.to_string(), log, since_secs })
            .await
    }

    /// Client side: takes the lock `name` in `collective` for this connection alone (see
    /// [`SubscriptionKind::Lock`]); held until the returned subscription is dropped or the
    /// process ends. Fails with [`BrokerError::LockHeld`] while another connection holds it,
    /// and with [`BrokerError::Unsupported`] on ActiveMQ, which has no exclusive queues.
    pub async fn lock(&self, collective: &str, name: &str) -> Result<Subscription, BrokerError> {
        self.subscribe(SubscriptionKind::Lock { collective: collective.to_string(), name: name.to_string() })
            .await
    }

    /// Closes the connection cleanly once in-flight publishes have finished. Later calls on
    /// any clone of this handle fail with [`BrokerError::Closed`].
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_ok() {
            // An error here means the task already stopped, which is what we want.
            let _ = done.await;
        }
    }

    async fn subscribe(&self, kind: SubscriptionKind) -> Result<Subscription, BrokerError> {
        let (reply, answer) = oneshot::channel();
        self.request(Command::Subscribe { kind, reply }, answer).await
    }

    async fn request<T>(
        &self,
        command: Command,
        answer: oneshot::Receiver<Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        self.commands.send(command).await.map_err(|_| BrokerError::Closed)?;
        answer.await.map_err(|_| BrokerError::Closed)?
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Broker")
            .field("closed", &self.commands.is_closed())
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

/// A stream of messages for one subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub messages: mpsc::Receiver<Incoming>,
}

/// The client's own reply queue: its address, to put in requests, and its messages.
#[derive(Debug)]
pub struct ReplyQueue {
    pub address: String,
    pub messages: mpsc::Receiver<Incoming>,
}
