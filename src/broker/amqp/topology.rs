//! Baton's RabbitMQ topology: where each logical destination goes, the declarations behind each
//! subscription, and the publish path.
//!
//! One [`Session`] is one live connection. It keeps a confirm-mode channel for publishing, shared
//! by every publish in flight (lapin pipelines them: each publish waits only for its own
//! confirm), and remembers which exchanges it has already checked so that a publish costs one
//! round trip. Each subscription gets a channel of its own, so that its prefetch limit applies
//! to it alone and a broker error on it cannot take the publish channel down.
//!
//! Acknowledgements: subscriptions consume with manual acks and a prefetch of [`PREFETCH`]
//! ([`RETAINED_PREFETCH`] for a stream read);
//! a delivery is acked once it has been handed to the subscriber's bounded channel. A slow
//! subscriber therefore fills its channel, the forwarder waits, and the broker stops sending
//! after [`PREFETCH`] unacked deliveries: backpressure, never unbounded buffering. (With
//! automatic acks RabbitMQ ignores prefetch, which would leave no bound.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer, ErrorKind, ExchangeKind};
use tokio::sync::mpsc;

use super::connect::Endpoint;
use super::queue_check::{Found, QueueCheck};
#[cfg(test)]
use crate::broker::Retained;
use crate::broker::transport::{ForwardEnd, OperationError};
use crate::broker::wording::whole_seconds;
use crate::broker::{
    BrokerError, BrokerSettings, Delivery, Destination, Incoming, SubscriptionKind, claim_queue,
    sleep_until_some,
};

/// Unacked deliveries per subscription the broker may send ahead of the subscriber.
pub(super) const PREFETCH: u16 = 256;

/// The same for a stream read (the registry, the logs): one burst from a point in time to the
/// end, in which RabbitMQ spends less per message the further ahead it may send. Measured on
/// 11,000 registrations: 1.3 s of the broker's CPU instead of 1.6 s, the read 1.5 s instead of
/// 1.7 s (docs/PERFORMANCE.md). At a few kB a registration, the client holds a few MB at most.
pub(super) const RETAINED_PREFETCH: u16 = 2000;

/// How long a named (persistent) reply queue survives unused: a day.
const NAMED_REPLY_QUEUE_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

impl From<lapin::Error> for OperationError {
    /// A lapin error that [`classify`] did not sort as a refusal: the connection or a channel
    /// went away, so the operation may work on the next connection.
    fn from(error: lapin::Error) -> Self {
        OperationError::Transient(error.to_string())
    }
}

/// Where a logical destination goes on RabbitMQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::broker) struct Route {
    pub exchange: String,
    pub routing_key: String,
    /// Ask the broker to return the message when no queue takes it, so that an unroutable
    /// request is known at once. Not for events: nobody need be listening, and returns for
    /// them would only be noise on the channel that directed requests share.
    pub mandatory: bool,
}

impl Route {
    pub fn of(destination: &Destination) -> Route {
        let (exchange, routing_key) = Route::address(destination);
        let mandatory = !matches!(destination, Destination::Events { .. });
        Route { exchange, routing_key, mandatory }
    }

    /// The exchange and routing key of a destination.
    fn address(destination: &Destination) -> (String, String) {
        match destination {
            Destination::Broadcast { collective, agent } => {
                (broadcast_exchange(collective), format!("agent.{agent}"))
            }
            Destination::Node { collective, identity } => (String::new(), node_queue(collective, identity)),
            Destination::Reply(address) => (String::new(), address.clone()),
            Destination::Registration { collective, identity } => {
                (registration_exchange(collective), format!("node.{identity}"))
            }
            Destination::Events { collective, key } => (format!("{collective}.events"), key.clone()),
            // Mandatory: an unroutable end-of-read marker is how a client learns there is no
            // stream.
            Destination::Retained { collective, log } => (String::new(), log.name(collective)),
        }
    }

    pub fn describe(&self) -> String {
        if self.exchange.is_empty() {
            format!("publish to queue \"{}\"", self.routing_key)
        } else {
            format!("publish to exchange \"{}\" with key \"{}\"", self.exchange, self.routing_key)
        }
    }
}

fn broadcast_exchange(collective: &str) -> String {
    format!("{collective}.broadcast")
}

fn registration_exchange(collective: &str) -> String {
    format!("{collective}.registration")
}

fn node_queue(collective: &str, identity: &str) -> String {
    format!("{collective}.node.{identity}")
}

/// One live connection and what this module keeps about it.
pub(in crate::broker) struct Session {
    pub connection: Connection,
    pub endpoint: Endpoint,
    pub settings: Arc<BrokerSettings>,
    /// Reopened by whichever publish finds it closed (a broker error closes a channel).
    publish_channel: tokio::sync::Mutex<Channel>,
    /// Exchanges known to exist on this connection; a new connection checks again.
    known_exchanges: Mutex<HashSet<String>>,
}

impl Session {
    pub async fn open(
        connection: Connection,
        endpoint: Endpoint,
        settings: Arc<BrokerSettings>,
    ) -> Result<Session, lapin::Error> {
        let publish_channel = confirm_mode(connection.create_channel().await?).await?;
        Ok(Session {
            connection,
            endpoint,
            settings,
            publish_channel: tokio::sync::Mutex::new(publish_channel),
            known_exchanges: Mutex::new(HashSet::new()),
        })
    }

    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    fn user(&self) -> &str {
        self.endpoint.user()
    }

    /// Opens a channel; a connection that can open no more is closed, so the owner replaces it.
    ///
    /// Why: lapin counts a channel against the connection's limit (the 2,047 RabbitMQ grants)
    /// until the broker has answered its close, and after a cluster member stopped under
    /// 10,000 emulated nodes the survivors' connections reached that limit and refused every
    /// later set-up, leaving nodes silent for good (docs/PERFORMANCE.md, issue 15; what held
    /// the channels was not pinned down). A new connection starts with an empty table, and the
    /// owner sets every subscription up again on it (after its reconnection backoff, which
    /// starts over only once every subscription is back, so this cannot loop quickly). A safety
    /// net, not the cure: what ended the channel churn is the owner's early stop of a failing
    /// set-up pass, and the runs since reached no limit, so this path is untested at scale.
    async fn new_channel(&self) -> Result<Channel, lapin::Error> {
        let opened = self.connection.create_channel().await;
        if let Err(error) = &opened
            && matches!(error.kind(), ErrorKind::ChannelsLimitReached)
        {
            tracing::warn!(%error, "this connection can open no more channels; closing it to reconnect");
            let closing = self.connection.close(200, "channel limit reached; reconnecting".into());
            if let Ok(Err(error)) = tokio::time::timeout(self.settings.connect_timeout, closing).await {
                tracing::debug!(%error, "closing the broker connection failed");
            }
        }
        opened
    }

    async fn publish_channel(&self) -> Result<Channel, lapin::Error> {
        let mut channel = self.publish_channel.lock().await;
        if !channel.status().connected() {
            *channel = confirm_mode(self.new_channel().await?).await?;
        }
        Ok(channel.clone())
    }

    fn exchange_known(&self, exchange: &str) -> bool {
        self.known_exchanges.lock().map(|known| known.contains(exchange)).unwrap_or(false)
    }

    fn remember_exchange(&self, exchange: &str) {
        if let Ok(mut known) = self.known_exchanges.lock() {
            known.insert(exchange.to_string());
        }
    }

    fn forget_exchange(&self, exchange: &str) {
        if let Ok(mut known) = self.known_exchanges.lock() {
            known.remove(exchange);
        }
    }

    /// Makes sure a topic exchange exists: a passive declare first (a least-privilege user may
    /// not declare exchanges, and the broker's definitions normally provide them); if it is
    /// missing, an active declare on a fresh channel (the passive failure closed the first).
    async fn ensure_exchange(&self, exchange: &str) -> Result<(), OperationError> {
        if self.exchange_known(exchange) {
            return Ok(());
        }
        let probe = self.new_channel().await.map_err(OperationError::from)?;
        let passive = probe
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match passive {
            Ok(()) => {
                close_quietly(&probe).await;
                self.remember_exchange(exchange);
                return Ok(());
            }
            Err(error) if soft_error_code(&error) == Some(404) => {}
            Err(error) => {
                return Err(classify(error, &format!("check exchange \"{exchange}\""), self.user()));
            }
        }
        let declarer = self.new_channel().await.map_err(OperationError::from)?;
        let declared = declarer
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(()) => {
                close_quietly(&declarer).await;
                tracing::info!(exchange, "declared missing exchange");
                self.remember_exchange(exchange);
                Ok(())
            }
            Err(error) if soft_error_code(&error) == Some(403) => {
                Err(OperationError::Fatal(BrokerError::MissingExchange {
                    exchange: exchange.to_string(),
                    user: self.user().to_string(),
                }))
            }
            Err(error) => Err(classify(error, &format!("declare exchange \"{exchange}\""), self.user())),
        }
    }

    /// Declares what `kind` needs on a new channel and starts consuming.
    pub async fn establish(
        &self,
        kind: &SubscriptionKind,
        node_queue_expiry: Duration,
    ) -> Result<(Channel, Consumer), OperationError> {
        let user = self.user().to_string();
        let channel = self.new_channel().await.map_err(OperationError::from)?;
        let prefetch = match kind {
            SubscriptionKind::Retained { .. } => RETAINED_PREFETCH,
            _ => PREFETCH,
        };
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(OperationError::from)?;
        let queue = match kind {
            SubscriptionKind::Node { collective, identity, agents } => {
                let queue = node_queue(collective, identity);
                declare_queue(
                    &channel,
                    &queue,
                    QueueDeclareOptions::default(),
                    Some(node_queue_expiry),
                    &user,
                )
                .await?;
                // A node without agents takes directed requests only; it needs no exchange.
                let exchange = broadcast_exchange(collective);
                if !agents.is_empty() {
                    self.ensure_exchange(&exchange).await?;
                }
                for agent in agents {
                    bind(&channel, &queue, &exchange, &format!("agent.{agent}"), &user).await?;
                }
                queue
            }
            SubscriptionKind::Reply { collective, suffix, persistent } => {
                let queue = format!("{collective}.reply.{suffix}");
                let (options, expiry) = if *persistent {
                    (
                        QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                        Some(NAMED_REPLY_QUEUE_EXPIRY),
                    )
                } else {
                    (
                        QueueDeclareOptions {
                            exclusive: true,
                            auto_delete: true,
                            ..QueueDeclareOptions::default()
                        },
                        None,
                    )
                };
                declare_queue(&channel, &queue, options, expiry, &user).await?;
                queue
            }
            SubscriptionKind::Follow { collective, log, queue } => {
                let exchange = log.name(collective);
                self.ensure_exchange(&exchange).await?;
                let options = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                };
                declare_queue(&channel, queue, options, None, &user).await?;
                bind(&channel, queue, &exchange, log.every_key(), &user).await?;
                queue.clone()
            }
            SubscriptionKind::Claim { collective, identity } => {
                let queue = claim_queue(collective, identity);
                declare_exclusive(&channel, &queue, &user, || BrokerError::IdentityInUse {
                    identity: identity.clone(),
                    detail: format!("the broker holds queue \"{queue}\" for another connection"),
                })
                .await?;
                queue
            }
            SubscriptionKind::Lock { collective, name } => {
                let queue = format!("{collective}.reply.{name}");
                declare_exclusive(&channel, &queue, &user, || BrokerError::LockHeld { queue: queue.clone() })
                    .await?;
                queue
            }
            // The stream is the operator's (definitions.json): nothing to declare. A stream
            // needs manual acks and a prefetch, which every subscription here has. It shares
            // the exchange's name (queues and exchanges are apart in RabbitMQ), so the
            // client's read permission on the exchange's name covers it and nothing else.
            SubscriptionKind::Retained { collective, log, .. } => log.name(collective),
        };
        let mut arguments = FieldTable::default();
        if let SubscriptionKind::Retained { since_secs, .. } = kind {
            arguments.insert("x-stream-offset".into(), AMQPValue::Timestamp(*since_secs));
        }
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .map_err(|error| classify(error, &format!("consume queue \"{queue}\""), &user))?;
        Ok((channel, consumer))
    }

    /// Publishes once on this connection. `Transient` means: try again on a new connection.
    pub async fn publish_to(
        &self,
        route: &Route,
        body: &[u8],
        ttl: Duration,
        confirm_timeout: Duration,
    ) -> Result<Delivery, OperationError> {
        let operation = route.describe();
        if !route.exchange.is_empty() {
            self.ensure_exchange(&route.exchange).await?;
        }
        let channel = self.publish_channel().await.map_err(OperationError::from)?;
        let properties = BasicProperties::default().with_expiration(ttl.as_millis().to_string().into());
        let confirm = channel
            .basic_publish(
                route.exchange.as_str().into(),
                route.routing_key.as_str().into(),
                BasicPublishOptions { mandatory: route.mandatory, ..BasicPublishOptions::default() },
                body,
                properties,
            )
            .await
            .map_err(|error| classify(error, &operation, self.user()))?;
        let confirmation = match tokio::time::timeout(confirm_timeout, confirm).await {
            Ok(confirmation) => confirmation,
            Err(_elapsed) => {
                return Err(OperationError::Fatal(BrokerError::Timeout {
                    operation,
                    seconds: whole_seconds(confirm_timeout),
                }));
            }
        };
        match confirmation {
            Ok(Confirmation::Ack(None)) => Ok(Delivery::Routed),
            Ok(Confirmation::Ack(Some(_returned))) => Ok(Delivery::Unroutable),
            Ok(Confirmation::Nack(_)) => Err(OperationError::Fatal(BrokerError::NotTaken { operation })),
            Ok(Confirmation::NotRequested) => Ok(Delivery::Unknown),
            Err(error) => {
                if soft_error_code(&error) == Some(404) {
                    // The exchange vanished since we checked it; check again next time.
                    self.forget_exchange(&route.exchange);
                }
                Err(classify(error, &operation, self.user()))
            }
        }
    }
}

/// Most deliveries one acknowledgement covers (see [`forward`]).
const MAX_ACK_BATCH: usize = 64;

/// Moves deliveries from one consumer to its subscriber. Each delivery is acked after room for
/// it is reserved in the subscriber's channel and before it is handed over, so a message is
/// never both handed over and redelivered: a subscriber that closes its receiver and drains it
/// (`Receiver::close`, then `recv` until `None`) gets every message that was acked.
///
/// Deliveries that are already waiting when one arrives are taken with it, as far as the
/// subscriber has room, and acked together with one `multiple` ack on the last (each
/// subscription has a channel of its own, so that ack covers exactly these), then handed over.
/// A client taking thousands of replies thus sends a few acks, not one per reply, and does not
/// wait for each ack to be written before taking the next reply.
///
/// With a [`QueueCheck`], the forwarder also checks now and then that its queue still exists,
/// and ends as interrupted when the broker lost it under the consumer (see `queue_check`).
pub(super) async fn forward(
    channel: Channel,
    mut consumer: Consumer,
    subscriber: mpsc::Sender<Incoming>,
    max_message_bytes: usize,
    mut check: Option<QueueCheck>,
) -> ForwardEnd {
    // Grows to the largest batch seen: a node's forwarder, which takes one request at a time,
    // keeps room for one delivery, a client's for many.
    let mut batch = Vec::new();
    loop {
        // Wait for room first: a slow subscriber holds deliveries back at the broker (prefetch)
        // instead of piling them up here.
        let Ok(permit) = subscriber.reserve().await else {
            // Closing the channel cancels the consumer; unacked deliveries go back.
            close_quietly(&channel).await;
            return ForwardEnd::Unsubscribed;
        };
        let check_due = check.as_ref().map(QueueCheck::due);
        let delivery = tokio::select! {
            () = subscriber.closed() => {
                close_quietly(&channel).await;
                return ForwardEnd::Unsubscribed;
            }
            () = sleep_until_some(check_due) => {
                if let Some(check) = check.as_mut()
                    && check.run(&channel).await == Found::Gone
                {
                    return ForwardEnd::Interrupted;
                }
                continue;
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    tracing::debug!(%error, queue = %consumer.queue(), "consumer stopped");
                    return ForwardEnd::Interrupted;
                }
                None => return ForwardEnd::Interrupted,
            },
        };
        batch.push((permit, delivery));
        let mut ended = None;
        while batch.len() < MAX_ACK_BATCH {
            let Ok(permit) = subscriber.try_reserve() else { break };
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => batch.push((permit, delivery)),
                Some(Some(Err(error))) => {
                    tracing::debug!(%error, queue = %consumer.queue(), "consumer stopped");
                    ended = Some(ForwardEnd::Interrupted);
                    break;
                }
                Some(None) => {
                    ended = Some(ForwardEnd::Interrupted);
                    break;
                }
                // Nothing else has arrived: hand over what there is.
                None => break,
            }
        }
        let Some((_, last)) = batch.last() else { continue };
        let options = BasicAckOptions { multiple: batch.len() > 1 };
        if let Err(error) = last.acker.ack(options).await {
            // Not acked: the broker redelivers them after a reconnect, and the receiver drops
            // the duplicates (nodes by request id, clients by node per request).
            tracing::debug!(%error, "ack failed");
        }
        for (permit, delivery) in batch.drain(..) {
            // Oversized messages are passed on too: the receiver's size check is the first step
            // of its pipeline, and it counts and audits what it refuses.
            let size = delivery.data.len();
            if size > max_message_bytes {
                tracing::debug!(size, limit = max_message_bytes, queue = %consumer.queue(),
                    "oversized message: the receiver will refuse it");
            }
            permit.send(Incoming { key: delivery.routing_key.to_string(), body: delivery.data });
        }
        if let Some(end) = ended {
            return end;
        }
    }
}

/// Puts a new channel in confirm mode: the publish channel, on which every publish waits for
/// the broker's confirm.
async fn confirm_mode(channel: Channel) -> Result<Channel, lapin::Error> {
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

/// Declares `queue` exclusive to this connection: the broker refuses it to any other
/// (RESOURCE_LOCKED, answered with `held()`) until this connection is gone, and deletes it then.
async fn declare_exclusive(
    channel: &Channel,
    queue: &str,
    user: &str,
    held: impl FnOnce() -> BrokerError,
) -> Result<(), OperationError> {
    let options =
        QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
    match channel.queue_declare(queue.into(), options, FieldTable::default()).await {
        Ok(_) => Ok(()),
        Err(error) if soft_error_code(&error) == Some(405) => Err(OperationError::Fatal(held())),
        Err(error) => Err(classify(error, &format!("declare queue \"{queue}\""), user)),
    }
}

async fn declare_queue(
    channel: &Channel,
    queue: &str,
    options: QueueDeclareOptions,
    expiry: Option<Duration>,
    user: &str,
) -> Result<(), OperationError> {
    let mut arguments = FieldTable::default();
    if let Some(expiry) = expiry {
        let millis = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX).max(1);
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(millis));
    }
    match channel.queue_declare(queue.into(), options, arguments).await {
        Ok(_) => Ok(()),
        Err(error) if soft_error_code(&error) == Some(406) => {
            Err(OperationError::Fatal(BrokerError::Refused {
                operation: format!("declare queue \"{queue}\""),
                reason: format!(
                    "it already exists with different settings (delete the queue, or restore \
                     the settings it was made with): {}",
                    broker_text(&error)
                ),
            }))
        }
        Err(error) => Err(classify(error, &format!("declare queue \"{queue}\""), user)),
    }
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    user: &str,
) -> Result<(), OperationError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|error| {
            classify(
                error,
                &format!("bind queue \"{queue}\" to exchange \"{exchange}\" with key \"{routing_key}\""),
                user,
            )
        })
}

async fn close_quietly(channel: &Channel) {
    if channel.status().connected()
        && let Err(error) = channel.close(200, "OK".into()).await
    {
        tracing::debug!(%error, "closing a channel failed");
    }
}

/// The reply code of a channel-level (soft) AMQP error, e.g. 403 or 404.
pub(super) fn soft_error_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp_error) => match amqp_error.kind() {
            AMQPErrorKind::Soft(_) => Some(amqp_error.get_id()),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

fn broker_text(error: &lapin::Error) -> String {
    match error.kind() {
        ErrorKind::ProtocolError(amqp_error) => amqp_error.get_message().to_string(),
        _ => error.to_string(),
    }
}

/// Sorts a lapin error into "tell the caller" (the broker refused) or "retry on reconnect".
fn classify(error: lapin::Error, operation: &str, user: &str) -> OperationError {
    let ErrorKind::ProtocolError(amqp_error) = error.kind() else {
        return OperationError::from(error);
    };
    let AMQPErrorKind::Soft(soft) = amqp_error.kind() else {
        // A hard error closes the connection; the next connection may do better.
        return OperationError::from(error);
    };
    let reason = amqp_error.get_message().to_string();
    let refused =
        |operation: String| OperationError::Fatal(BrokerError::Refused { operation, reason: reason.clone() });
    match soft {
        AMQPSoftError::ACCESSREFUSED => refused(format!("{operation} for user \"{user}\"")),
        AMQPSoftError::RESOURCELOCKED => OperationError::Fatal(BrokerError::Refused {
            operation: operation.to_string(),
            reason: format!("another connection holds it exclusively: {reason}"),
        }),
        _ => refused(operation.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(destination: Destination, exchange: &str, routing_key: &str) {
        let route = Route::of(&destination);
        assert_eq!(
            (route.exchange.as_str(), route.routing_key.as_str()),
            (exchange, routing_key),
            "route of {destination:?}"
        );
        let is_event = matches!(destination, Destination::Events { .. });
        assert_eq!(route.mandatory, !is_event, "only events may go unrouted silently: {destination:?}");
    }

    #[test]
    fn destinations_map_onto_the_documented_topology() {
        let (broadcast, node, registration) =
            (Destination::broadcast, Destination::node, Destination::registration);
        check(broadcast("baton", "rpcutil"), "baton.broadcast", "agent.rpcutil");
        check(broadcast("dc1", "service"), "dc1.broadcast", "agent.service");
        check(node("baton", "web01"), "", "baton.node.web01");
        check(Destination::Reply("baton.reply.abc".into()), "", "baton.reply.abc");
        check(registration("baton", "web01"), "baton.registration", "node.web01");
        check(
            Destination::Events { collective: "baton".into(), key: "rollout.r1.summary".into() },
            "baton.events",
            "rollout.r1.summary",
        );
        let retained = |log| Destination::Retained { collective: "baton".into(), log };
        check(retained(Retained::Registrations), "", "baton.registration");
        check(retained(Retained::Events), "", "baton.events");
    }
}
