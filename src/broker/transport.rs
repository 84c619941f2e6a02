//! What a transport must do for the connection owner: parse its URLs, open a session, subscribe,
//! publish, notice the end of a session, and close it.
//!
//! [`super::owner`] is written once against this trait; `amqp` and `stomp` implement it on their
//! session types and keep only what is theirs (lapin and the RabbitMQ topology; the STOMP codec,
//! connection and broker dialects). Everything that is the same for both (failover along the URL
//! list, backoff, re-subscription after a reconnect, waiting for a connection, retrying a
//! publish cut off by a reconnect, bounded shutdown) lives in the owner, so the two transports
//! cannot drift apart again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::broker::{BrokerError, BrokerSettings, Delivery, Destination, Incoming, SubscriptionKind};

/// One live connection of one transport, and how to make one.
///
/// A session is shared in an `Arc` by the owner, every publish in flight and every forwarder;
/// it is replaced, never repaired: when it ends the owner opens a new one on the next URL.
pub(super) trait Transport: Send + Sync + Sized + 'static {
    /// One broker URL, parsed once.
    type Endpoint: Endpoint;

    /// The transport's name in logs and errors: `AMQP`, `STOMP`.
    const NAME: &'static str;

    /// Connects to `endpoint` within `settings.connect_timeout`. The error says why, meant to
    /// follow the redacted URL.
    fn open(
        endpoint: Self::Endpoint,
        settings: Arc<BrokerSettings>,
    ) -> impl Future<Output = Result<Self, OpenError>> + Send;

    /// False once the connection is gone, even before [`Transport::ended`] has said so.
    fn is_alive(&self) -> bool;

    /// Resolves once the session has ended, with why (a sentence for the log). Owns what it
    /// needs, so the owner can hold it beside the session.
    fn ended(&self) -> impl Future<Output = String> + Send + 'static;

    /// Sets up `kind` on this session; on success the returned forwarder moves its messages
    /// to `subscriber` (acking each once there is room for it) until either side ends.
    fn subscribe(
        self: &Arc<Self>,
        kind: &SubscriptionKind,
        subscriber: mpsc::Sender<Incoming>,
    ) -> impl Future<Output = Result<Forwarder, OperationError>> + Send;

    /// What a publish to `destination` is called in errors: `publish to exchange "x" with key
    /// "y"`, `send to /topic/y`. Needs no session: a publish may fail before one exists.
    fn publish_operation(destination: &Destination, settings: &BrokerSettings) -> String;

    /// Publishes `message` once on this session and waits for the broker's answer.
    /// [`OperationError::Transient`] means: try again on the next session.
    fn publish(&self, message: &Outgoing) -> impl Future<Output = Result<Delivery, OperationError>> + Send;

    /// Says goodbye to the broker (bounded), after which the session is ended.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// One broker URL of a transport, parsed before any connection is tried.
pub(super) trait Endpoint: Clone + Send + Sync + Sized + 'static {
    /// Parses and checks `url` (see [`tls_target`]); the owner words the problem, with the URL
    /// redacted.
    fn parse(url: &str, settings: &BrokerSettings) -> Result<Self, UrlProblem>;
}

/// Why a session could not be opened.
#[derive(Debug)]
pub(super) enum OpenError {
    /// A sentence saying why; the next URL, or a later attempt, may do better.
    Failed(String),
    /// The broker refused the identity this connection claims
    /// ([`BrokerSettings::claimed_identity`]): another live connection holds it. Fatal on the
    /// first connection; on a reconnection the broker may still hold our own lost connection,
    /// so the owner tries again.
    IdentityInUse(BrokerError),
}

impl From<String> for OpenError {
    fn from(reason: String) -> Self {
        OpenError::Failed(reason)
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Failed(reason) => formatter.write_str(reason),
            OpenError::IdentityInUse(error) => error.fmt(formatter),
        }
    }
}

/// Why a URL cannot be used.
#[derive(Debug)]
pub(super) enum UrlProblem {
    /// Not a URL of this transport: why, and the form it should have
    /// (`amqp[s]://user:password@host:port/vhost`).
    Invalid { reason: String, form: &'static str },
    /// The scheme asks for TLS and `[tls]` is not configured; `plain` names the URLs without
    /// TLS (`an amqp:// URL`).
    TlsWithoutCa { plain: &'static str },
}

/// For a URL whose scheme asks for TLS: the client configuration, and the name the server's
/// certificate must carry (`tls.server_name`, else the URL's `host`). `plain` is for the error.
pub(super) fn tls_target(
    settings: &BrokerSettings,
    host: &str,
    plain: &'static str,
) -> Result<(Arc<rustls::ClientConfig>, String), UrlProblem> {
    let config = settings.tls.as_ref().ok_or(UrlProblem::TlsWithoutCa { plain })?;
    let server_name = settings.tls_server_name.clone().unwrap_or_else(|| host.to_string());
    Ok((Arc::clone(config), server_name))
}

/// A message to publish: where it goes, its bytes, and how long it stays fresh (its expiration
/// at the broker).
#[derive(Debug)]
pub(super) struct Outgoing {
    pub destination: Destination,
    pub body: Vec<u8>,
    pub ttl: Duration,
}

/// A subscription's forwarder, spawned by the owner; it says why it stopped.
pub(super) type Forwarder = Pin<Box<dyn Future<Output = ForwardEnd> + Send>>;

/// Why a forwarder stopped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ForwardEnd {
    /// The subscriber dropped its receiver; nothing more to do.
    Unsubscribed,
    /// The messages stopped coming (connection lost, queue deleted): set it up again.
    Interrupted,
}

/// An operation failed: either for good (tell the caller) or because the connection went away
/// (try again on the next connection).
#[derive(Debug)]
pub(super) enum OperationError {
    Fatal(BrokerError),
    Transient(String),
}

impl From<BrokerError> for OperationError {
    fn from(error: BrokerError) -> Self {
        OperationError::Fatal(error)
    }
}

impl std::fmt::Display for OperationError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperationError::Fatal(error) => error.fmt(formatter),
            OperationError::Transient(reason) => formatter.write_str(reason),
        }
    }
}
