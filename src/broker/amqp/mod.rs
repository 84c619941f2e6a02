//! The AMQP 0-9-1 transport (RabbitMQ, through lapin): `connect` opens one connection to one
//! URL and words its failures, `topology` declares, binds, consumes and publishes; this file
//! fits them to [`Transport`], for the connection owner of [`super::owner`].
//!
//! lapin's own recovery is left off: it reconnects to one URL only, while failover along the
//! list and re-declaring our topology (with our names, arguments and bindings) belong to the
//! owner and to `topology`.

mod connect;
mod queue_check;
mod topology;

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use lapin::Event;
use tokio::sync::mpsc;

use self::connect::Endpoint;
use self::queue_check::QueueCheck;
use self::topology::Route;
pub(super) use self::topology::Session;
use crate::broker::transport::{Forwarder, OpenError, OperationError, Outgoing, Transport};
use crate::broker::wording::whole_seconds;
use crate::broker::{BrokerError, BrokerSettings, Delivery, Destination, Incoming, SubscriptionKind};

impl Transport for Session {
    type Endpoint = Endpoint;

    const NAME: &'static str = "AMQP";

    /// AMQP has no claim on the connection itself: the identity is claimed per collective by
    /// [`SubscriptionKind::Claim`]'s exclusive queue (see `topology`).
    async fn open(endpoint: Endpoint, settings: Arc<BrokerSettings>) -> Result<Session, OpenError> {
        let connection = connect::open(&endpoint, &settings).await?;
        Session::open(connection, endpoint, settings)
            .await
            .map_err(|error| OpenError::Failed(format!("connected, but could not open a channel: {error}")))
    }

    fn is_alive(&self) -> bool {
        self.is_connected()
    }

    fn ended(&self) -> impl Future<Output = String> + Send + 'static {
        let mut events = Box::pin(self.connection.events_listener());
        let status = self.connection.status().clone();
        async move {
            loop {
                match events.next().await {
                    None => return "the connection closed".to_string(),
                    // lapin reports channel errors as events too; only a dead connection ends us.
                    Some(Event::Error(error)) if !status.connected() => return error.to_string(),
                    Some(_) => {}
                }
            }
        }
    }

    async fn subscribe(
        self: &Arc<Self>,
        kind: &SubscriptionKind,
        subscriber: mpsc::Sender<Incoming>,
    ) -> Result<Forwarder, OperationError> {
        let timeout = self.settings.connect_timeout;
        let setup = self.establish(kind, self.settings.node_queue_expiry);
        let (channel, consumer) = match tokio::time::timeout(timeout, setup).await {
            Ok(result) => result?,
            Err(_elapsed) => {
                return Err(OperationError::Fatal(BrokerError::Timeout {
                    operation: format!("setting up subscription {kind:?}"),
                    seconds: whole_seconds(timeout),
                }));
            }
        };
        let max_message_bytes = self.settings.max_message_bytes;
        // A retained stream is the operator's, read once from start to end: nothing to lose.
        let check = match kind {
            SubscriptionKind::Retained { .. } => None,
            _ => Some(QueueCheck::new(consumer.queue().to_string(), timeout)),
        };
        Ok(Box::pin(topology::forward(channel, consumer, subscriber, max_message_bytes, check)))
    }

    fn publish_operation(destination: &Destination, _settings: &BrokerSettings) -> String {
        Route::of(destination).describe()
    }

    async fn publish(&self, message: &Outgoing) -> Result<Delivery, OperationError> {
        let route = Route::of(&message.destination);
        self.publish_to(&route, &message.body, message.ttl, self.settings.connect_timeout).await
    }

    async fn close(&self) {
        if self.is_connected()
            && let Err(error) = self.connection.close(200, "OK".into()).await
        {
            tracing::debug!(%error, "closing the broker connection failed");
        }
    }
}
