//! Reading what the broker retains of an exchange (a RabbitMQ stream of the same name: the
//! registry, the rollouts' events) to its end.
//!
//! A stream never says "that was all". Rather than wait for silence (which a slow broker turns
//! into missing messages), the reader first publishes a marker of its own into the stream, with
//! a confirm, then consumes from `since` until the marker comes back: everything the stream
//! held when the read started has then been seen, however long the broker takes. The marker
//! goes first because it also asks, without side effects, whether there is a stream at all
//! (*Unroutable*: no stream; refused over STOMP), so a broker without one never sees a consume
//! of a missing queue. The marker goes straight into the stream (not through the exchange), so
//! consumers of the exchange never see it; readers of the stream skip every marker
//! ([`is_marker`]).

use std::time::{Duration, SystemTime};

use crate::broker::{Broker, Delivery, Destination, Incoming, Retained};

/// What every end-of-read marker of `log` starts with; the rest is the reader's own random id.
fn marker_prefix(log: Retained) -> &'static [u8] {
    match log {
        Retained::Registrations => b"baton-registry-end ",
        Retained::Events => b"baton-events-end ",
    }
}

/// Whether a message read from `log` is a reader's end-of-read marker, not a message.
pub fn is_marker(log: Retained, body: &[u8]) -> bool {
    body.starts_with(marker_prefix(log))
}

/// Why nothing retained could be read: there is no stream, the client may not read it, the
/// transport cannot, or the read did not reach its end in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotRetained(pub String);

/// Publishes a marker of this reader's own at the end of `collective`'s retained `log`, and
/// returns it; fails when the broker retains nothing of it (or refuses).
async fn mark_end(
    broker: &Broker,
    collective: &str,
    log: Retained,
    marker_ttl: Duration,
) -> Result<Vec<u8>, NotRetained> {
    let mut marker = marker_prefix(log).to_vec();
    marker.extend_from_slice(uuid::Uuid::new_v4().simple().to_string().as_bytes());
    let destination = Destination::Retained { collective: collective.to_string(), log };
    match broker.publish(destination, marker.clone(), marker_ttl).await {
        Ok(Delivery::Unroutable) => {
            Err(NotRetained(format!("the broker has no stream \"{}\"", log.name(collective))))
        }
        Ok(_) => Ok(marker),
        Err(error) => Err(NotRetained(error.to_string())),
    }
}

/// Whether the broker retains `collective`'s `log`, asked as a read asks it (one marker,
/// which every reader skips): for a follower that reads the stream and then keeps reading.
pub async fn check_retained(
    broker: &Broker,
    collective: &str,
    log: Retained,
    marker_ttl: Duration,
) -> Result<(), NotRetained> {
    mark_end(broker, collective, log, marker_ttl).await.map(drop)
}

/// Reads `collective`'s retained `log` from `since` to its end (see the module's doc), handing
/// each message (markers excluded) to `take`, within `timeout`. The marker expires after
/// `marker_ttl`.
pub async fn read_to_end(
    broker: &Broker,
    collective: &str,
    log: Retained,
    since: SystemTime,
    marker_ttl: Duration,
    timeout: Duration,
    take: &mut (dyn FnMut(&Incoming) + Send),
) -> Result<(), NotRetained> {
    let started = std::time::Instant::now();
    // Where a read's time goes, for `-vv`, also when it did not finish: the marker's confirm,
    // the consume's set-up, the first message, the messages.
    let mut steps = ReadSteps::default();
    let work = async {
        let marker = mark_end(broker, collective, log, marker_ttl).await?;
        steps.marked = Some(started.elapsed());
        // From before the marker: it comes back at the end of what the stream held.
        let mut subscription = broker
            .subscribe_retained(collective, log, since)
            .await
            .map_err(|error| NotRetained(error.to_string()))?;
        steps.subscribed = Some(started.elapsed());
        while let Some(message) = subscription.messages.recv().await {
            steps.first.get_or_insert_with(|| started.elapsed());
            if message.body == marker {
                return Ok(());
            }
            if !is_marker(log, &message.body) {
                steps.messages += 1;
                take(&message);
            }
        }
        Err(NotRetained(format!(
            "the subscription to stream \"{}\" ended before the read was complete",
            log.name(collective)
        )))
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_elapsed) => Err(NotRetained(format!(
            "reading stream \"{}\" did not finish within {} s",
            log.name(collective),
            timeout.as_secs_f64()
        ))),
    };
    let ms = |step: Option<Duration>| step.map(|step| step.as_millis() as u64);
    tracing::debug!(
        stream = %log.name(collective),
        messages = steps.messages,
        marked_ms = ms(steps.marked),
        subscribed_ms = ms(steps.subscribed),
        first_ms = ms(steps.first),
        ended_ms = started.elapsed().as_millis() as u64,
        error = result.as_ref().err().map(ToString::to_string),
        "stream read"
    );
    result
}

/// How far a read got, and when (from its start).
#[derive(Default)]
struct ReadSteps {
    marked: Option<Duration>,
    subscribed: Option<Duration>,
    first: Option<Duration>,
    messages: usize,
}
