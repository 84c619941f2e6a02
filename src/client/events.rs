//! A rollout's events on the broker, for anyone to follow: a dashboard, a log shipper, another
//! pipeline. Each event is the same JSON line `--jsonl` prints, published to the collective's
//! topic exchange `C.events` with the key `rollout.<id>.<type>` (bind `rollout.#` for every
//! rollout, `rollout.<id>.#` for one).
//!
//! Events are published one at a time, each after the previous one's confirm, so a consumer
//! sees them in the order they happened. The rollout never waits for them: they are queued by
//! the caller's event callback (which cannot wait) and published by a task of their own, and
//! [`EventPublisher::finish`] waits for the last. A broker that refuses them (no `C.events`
//! exchange, no permission) costs one warning, never the rollout.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::Client;
use crate::broker::Destination;

/// How long an event waits in a consumer's queue before the broker drops it.
const EVENT_TTL: Duration = Duration::from_secs(60 * 60);

/// Publishes one rollout's events in order.
pub struct EventPublisher {
    prefix: String,
    // Unbounded because the callback that queues events cannot wait; a rollout's events are a
    // few per node, and the task drains them as fast as the broker confirms.
    sender: Option<mpsc::UnboundedSender<(String, Vec<u8>)>>,
    task: JoinHandle<()>,
}

impl Client {
    /// Starts publishing the events of rollout `rollout_id` to `<collective>.events`.
    pub fn event_publisher(&self, rollout_id: uuid::Uuid) -> EventPublisher {
        let (sender, mut events) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let broker = self.broker.clone();
        let collective = self.settings.collective.clone();
        let task = tokio::spawn(async move {
            while let Some((key, body)) = events.recv().await {
                let destination = Destination::Events { collective: collective.clone(), key };
                if let Err(error) = broker.publish(destination, body, EVENT_TTL).await {
                    warn!(%error, "the rollout's events are not published to {collective}.events (the rollout goes on)");
                    break;
                }
            }
        });
        EventPublisher { prefix: format!("rollout.{rollout_id}"), sender: Some(sender), task }
    }
}

impl EventPublisher {
    /// Queues one event of type `kind`, its body the JSON line as printed.
    pub fn publish(&self, kind: &str, body: &str) {
        if let Some(sender) = &self.sender {
            // Fails only once the task gave up after a refusal, which it has already said.
            let _ = sender.send((format!("{}.{kind}", self.prefix), body.as_bytes().to_vec()));
        }
    }

    /// Waits until every queued event is published (or the broker refused them).
    pub async fn finish(mut self) {
        self.sender.take();
        let _ = self.task.await;
    }
}
