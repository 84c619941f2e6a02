//! The STOMP 1.2 transport (ActiveMQ, RabbitMQ's STOMP plugin), on our own codec.
//!
//! `frame` is the codec, `connection` one connection (URL, TCP and TLS, handshake, heart-beats,
//! the reader and writer tasks), `dialect` where destinations live on each broker and what its
//! ERROR frames mean; this file fits them to [`Transport`], for the connection owner of
//! [`super::owner`], which reconnects when a session ends (closed, a malformed frame, an ERROR,
//! or a broker silent past its heart-beat window). Each publish waits for its own RECEIPT.
//!
//! What a RECEIPT proves is only that the broker took the frame: STOMP has no "unroutable". So a
//! publish answers [`Delivery::Unknown`], except on ActiveMQ where a refusal to create a node's
//! queue or an agent's topic means nobody subscribed to it ([`Delivery::Unroutable`]); see
//! [`dialect`] and docs/PROTOCOL.md.
//!
//! Acknowledgements: subscriptions use `client-individual` acks with a prefetch of
//! [`dialect::PREFETCH`]; a message is acked once it has been handed to the subscriber's bounded
//! channel, so a slow subscriber makes the broker stop sending instead of us buffering.

mod connection;
mod dialect;
pub mod frame;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use self::connection::{Answer, Delivered, Ending, Endpoint};
use self::dialect::{ErrorText, PREFETCH};
use self::frame::{Command as FrameCommand, Frame};
use crate::broker::transport::{ForwardEnd, Forwarder, OpenError, OperationError, Outgoing, Transport};
use crate::broker::wording::whole_seconds;
use crate::broker::{
    BrokerError, BrokerSettings, Delivery, Destination, Incoming, StompDialect, SubscriptionKind,
};

/// One STOMP session with the settings its subscriptions and publishes need.
pub(in crate::broker) struct Session {
    connection: connection::Session,
    settings: Arc<BrokerSettings>,
}

impl Transport for Session {
    type Endpoint = Endpoint;

    const NAME: &'static str = "STOMP";

    async fn open(endpoint: Endpoint, settings: Arc<BrokerSettings>) -> Result<Session, OpenError> {
        let opened = connection::open(&endpoint, &settings).await?;
        Ok(Session { connection: connection::Session::start(opened, endpoint), settings })
    }

    fn is_alive(&self) -> bool {
        self.connection.is_alive()
    }

    fn ended(&self) -> impl Future<Output = String> + Send + 'static {
        wait_end(self.connection.ending())
    }

    /// Sends the SUBSCRIBE frames of `kind`, each with a receipt, and forwards what arrives.
    async fn subscribe(
        self: &Arc<Self>,
        kind: &SubscriptionKind,
        subscriber: mpsc::Sender<Incoming>,
    ) -> Result<Forwarder, OperationError> {
        if let SubscriptionKind::Retained { log, .. } = kind
            && !dialect::retains(self.settings.dialect, *log)
        {
            return Err(retained_unsupported(self.settings.dialect));
        }
        if matches!(kind, SubscriptionKind::Lock { .. }) && self.settings.dialect == StompDialect::ActiveMq {
            // ActiveMQ's exclusive consumers only stand by; nothing refuses a second holder.
            return Err(OperationError::Fatal(BrokerError::Unsupported {
                operation: "a lock held on the broker".to_string(),
                transport: "ActiveMQ's STOMP",
            }));
        }
        let session = &self.connection;
        let wait = self.settings.connect_timeout;
        let frames = dialect::subscribe_frames(self.settings.dialect, kind, self.settings.node_queue_expiry);
        if frames.is_empty() {
            // A claim the connection itself carries (ActiveMQ's client-id): it lasts as long as
            // the connection, which is what its forwarder waits for.
            let ending = self.connection.ending();
            return Ok(Box::pin(async move {
                tokio::select! {
                    () = subscriber.closed() => ForwardEnd::Unsubscribed,
                    _ = wait_end(ending) => ForwardEnd::Interrupted,
                }
            }));
        }
        // Each STOMP subscription has at most PREFETCH unacknowledged messages in flight.
        let (route, routed) = mpsc::channel(PREFETCH * frames.len().max(1) + 16);
        let mut stomp_ids = Vec::with_capacity(frames.len());
        for frame in frames {
            let stomp_id = session.fresh_id("s");
            let destination = frame.value("destination").unwrap_or_default().to_string();
            if !session.route(&stomp_id, route.clone()) {
                return Err(OperationError::Transient("the connection ended".to_string()));
            }
            stomp_ids.push(stomp_id.clone());
            let refused = |error: &ErrorText| match kind {
                SubscriptionKind::Claim { identity, .. }
                    if dialect::refuses_claim(self.settings.dialect, error) =>
                {
                    BrokerError::IdentityInUse {
                        identity: identity.clone(),
                        detail: format!("the broker holds {destination} for another connection"),
                    }
                }
                SubscriptionKind::Lock { .. } if dialect::refuses_claim(self.settings.dialect, error) => {
                    BrokerError::LockHeld { queue: dialect::resource_name(&destination).to_string() }
                }
                _ => dialect::refused(&format!("subscribe to {destination}"), session.endpoint.user(), error),
            };
            let failure = match session.request(frame.header("id", stomp_id), wait).await {
                Answer::Receipt => continue,
                Answer::Error(error) => OperationError::Fatal(refused(&error)),
                Answer::Lost { error: Some(error), .. }
                    if error.names(dialect::resource_name(&destination)) =>
                {
                    OperationError::Fatal(refused(&error))
                }
                Answer::Lost { reason, .. } => OperationError::Transient(reason),
                Answer::TimedOut => OperationError::Fatal(BrokerError::Timeout {
                    operation: format!("subscribe to {destination}"),
                    seconds: whole_seconds(wait),
                }),
            };
            unsubscribe(session, &stomp_ids).await;
            return Err(failure);
        }
        drop(route);
        let this = Arc::clone(self);
        Ok(Box::pin(async move { forward(&this.connection, &stomp_ids, routed, subscriber).await }))
    }

    fn publish_operation(destination: &Destination, settings: &BrokerSettings) -> String {
        format!("send to {}", dialect::send_destination(settings.dialect, destination))
    }

    /// What a RECEIPT proves is only that the broker took the frame, hence
    /// [`Delivery::Unknown`]; ActiveMQ's refusal to create a destination is
    /// [`Delivery::Unroutable`] (see [`dialect::classify_error`]).
    async fn publish(&self, message: &Outgoing) -> Result<Delivery, OperationError> {
        if let Destination::Retained { log, .. } = &message.destination
            && !dialect::retains(self.settings.dialect, *log)
        {
            // Sent nowhere: on ActiveMQ it would create a queue of junk.
            return Err(retained_unsupported(self.settings.dialect));
        }
        let Outgoing { destination, body, ttl } = message;
        let dialect = self.settings.dialect;
        let wait = self.settings.connect_timeout;
        let target = dialect::send_destination(dialect, destination);
        let operation = format!("send to {target}");
        let frame = dialect::send_frame(dialect, destination, body.clone(), *ttl);
        let user = self.connection.endpoint.user();
        let classify = |error: &ErrorText| {
            dialect::classify_error(dialect, error, &operation, destination, user)
                .map_err(OperationError::Fatal)
        };
        match self.connection.request(frame, wait).await {
            Answer::Receipt => Ok(Delivery::Unknown),
            Answer::Error(error) => classify(&error),
            Answer::Lost { error: Some(error), .. } if error.names(dialect::resource_name(&target)) => {
                classify(&error)
            }
            Answer::Lost { reason, .. } => Err(OperationError::Transient(reason)),
            Answer::TimedOut => {
                Err(OperationError::Fatal(BrokerError::Timeout { operation, seconds: whole_seconds(wait) }))
            }
        }
    }

    async fn close(&self) {
        self.connection.close(Duration::from_secs(2)).await;
    }
}

/// Moves messages from one subscription's STOMP subscriptions to its subscriber, acking each
/// once it is handed over.
async fn forward(
    session: &connection::Session,
    stomp_ids: &[String],
    mut routed: mpsc::Receiver<Delivered>,
    subscriber: mpsc::Sender<Incoming>,
) -> ForwardEnd {
    loop {
        let delivered = tokio::select! {
            () = subscriber.closed() => {
                unsubscribe(session, stomp_ids).await;
                return ForwardEnd::Unsubscribed;
            }
            delivered = routed.recv() => match delivered {
                Some(delivered) => delivered,
                None => return ForwardEnd::Interrupted,
            },
        };
        match delivered.oversized {
            Some(declared) => {
                // The decoder threw the body away rather than buffer it; nothing to pass on.
                tracing::warn!(size = declared, "message dropped: over the frame size limit");
            }
            None => {
                if subscriber
                    .send(Incoming { body: delivered.body, key: delivered.destination })
                    .await
                    .is_err()
                {
                    unsubscribe(session, stomp_ids).await;
                    return ForwardEnd::Unsubscribed;
                }
            }
        }
        if let Some(ack) = delivered.ack
            && let Err(reason) = session.send(&Frame::new(FrameCommand::Ack).header("id", ack)).await
        {
            // Unacknowledged, the broker delivers it again after a reconnect; receivers drop
            // duplicates.
            tracing::debug!(%reason, "ack failed");
        }
    }
}

/// Cancels STOMP subscriptions (best effort: a dead connection cancels them anyway).
async fn unsubscribe(session: &connection::Session, stomp_ids: &[String]) {
    for stomp_id in stomp_ids {
        session.unroute(stomp_id);
        if session.is_alive() {
            let _ = session.send(&Frame::new(FrameCommand::Unsubscribe).header("id", stomp_id.clone())).await;
        }
    }
}

/// Resolves once the session has ended, with why.
async fn wait_end(mut watcher: watch::Receiver<Option<Ending>>) -> String {
    loop {
        if let Some(ending) = watcher.borrow_and_update().clone() {
            return ending.reason;
        }
        if watcher.changed().await.is_err() {
            return "the connection tasks stopped".to_string();
        }
    }
}

/// What STOMP cannot read back: anything on ActiveMQ (it retains nothing), and on RabbitMQ
/// anything but the registry (see [`dialect::retains`]). Callers fall back (to a broadcast's
/// quiet window, to the local rollout journal).
fn retained_unsupported(dialect: StompDialect) -> OperationError {
    OperationError::Fatal(BrokerError::Unsupported {
        operation: "reading a stream".to_string(),
        transport: match dialect {
            StompDialect::ActiveMq => "STOMP to ActiveMQ",
            StompDialect::RabbitMq => "STOMP to RabbitMQ (only the registry is read over STOMP)",
        },
    })
}
