//! The transport: the only module that knows AMQP or STOMP exist.
//!
//! Everything above this module talks to a broker through [`Broker`], a cheap cloneable handle
//! to one task that owns the connection, reconnects it with backoff and jitter along the URL
//! list, and re-declares every subscription after a reconnect. Destinations are logical
//! ([`Destination`]); each transport maps them onto its own topology (see DESIGN.md).
//!
//! PLACEHOLDER: the public API below is the contract; the transports are being written.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

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
    /// A publish was not confirmed in time.
    #[error("the broker did not confirm {operation} within {seconds} s")]
    Timeout { operation: String, seconds: u64 },
    /// Bad settings (an unparsable URL, an unsupported scheme).
    #[error("{0}")]
    Config(String),
}

/// A cheap, cloneable handle to the task that owns one broker connection.
#[derive(Clone)]
pub struct Broker {
    _commands: mpsc::Sender<()>,
}

/// A stream of messages for one subscription. Dropping it unsubscribes.
pub struct Subscription {
    pub messages: mpsc::Receiver<Incoming>,
}

/// The client's own reply queue: its address, to put in requests, and its messages.
pub struct ReplyQueue {
    pub address: String,
    pub messages: mpsc::Receiver<Incoming>,
}
