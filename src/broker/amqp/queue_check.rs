//! Checking, now and then, that the queue a subscription consumes still exists on the broker.
//!
//! Why: on a RabbitMQ cluster, when a member goes down every surviving member deletes the
//! non-durable queues that lived on it, by name, in batches (RabbitMQ 3.x, `on_node_down`). A
//! node that failed over and declared its queue again on a surviving member while that cleanup
//! was still running can have its *new* queue's record and bindings deleted too, while the queue
//! process and the node's consumer on it live on: the node sees no error and no cancel, and
//! nothing reaches it again (RabbitMQ issues 6271, 9798 and 11000). With a few nodes per member
//! the cleanup is over before they declare again; with a thousand virtual nodes failing over at
//! once, a fifth of them lost their queue that way (docs/PERFORMANCE.md).
//!
//! So each subscription's forwarder checks its queue with a passive declare on its own channel:
//! about [`FIRST_CHECK`] after it started consuming, then at doubling intervals (jittered, so
//! thousands of queues are not checked in the same instant) up to [`LONGEST_INTERVAL`], for as
//! long as it runs. A queue that is gone makes the broker close the channel (404), the forwarder
//! reports an interruption, and the connection owner sets the subscription up again as it does
//! for a queue deleted under it: declare, bind, consume.

use std::time::Duration;

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::time::Instant;

use crate::broker::backoff::Backoff;

use super::topology::soft_error_code;

/// When the first check runs after a subscription starts consuming: the cluster's cleanup of a
/// lost member's queues, which is what removes queues silently, takes seconds.
pub(super) const FIRST_CHECK: Duration = Duration::from_secs(5);

/// The longest interval between two checks of one queue: how long a queue deleted later (a
/// forgotten queue's `x-expires` deleting its successor by name, issue 9798) can go unnoticed.
/// One passive declare per queue per interval is nothing for a node; 10,000 emulated nodes
/// cost the broker about 80 of them a second.
pub(super) const LONGEST_INTERVAL: Duration = Duration::from_secs(120);

/// What a check found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// The queue is there (or the check could not tell; the consumer notices a dead channel).
    Present,
    /// The broker says the queue does not exist: set the subscription up again.
    Gone,
}

/// The check schedule of one subscription's queue.
pub(super) struct QueueCheck {
    queue: String,
    schedule: Backoff,
    next: Instant,
    timeout: Duration,
}

impl QueueCheck {
    /// Checks `queue` from about [`FIRST_CHECK`] from now; each check waits at most `timeout`.
    pub fn new(queue: String, timeout: Duration) -> QueueCheck {
        let mut schedule = Backoff::starting_at(FIRST_CHECK, LONGEST_INTERVAL);
        let next = Instant::now() + schedule.next_delay();
        QueueCheck { queue, schedule, next, timeout }
    }

    /// When the next check is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Checks the queue on `channel` (a passive declare: it creates nothing) and schedules the
    /// next check. A 404 closes `channel`, which is what the caller does next anyway.
    pub async fn run(&mut self, channel: &Channel) -> Found {
        self.next = Instant::now() + self.schedule.next_delay();
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel.queue_declare(self.queue.as_str().into(), options, FieldTable::default());
        match tokio::time::timeout(self.timeout, declared).await {
            Ok(Ok(_)) => Found::Present,
            Ok(Err(error)) if soft_error_code(&error) == Some(404) => {
                tracing::warn!(queue = %self.queue, %error,
                    "the broker lost this queue under its consumer (a cluster member's cleanup?); \
                     setting the subscription up again");
                Found::Gone
            }
            // The channel or the connection is going: the consumer ends by itself.
            Ok(Err(error)) => {
                tracing::debug!(queue = %self.queue, %error, "queue check failed");
                Found::Present
            }
            Err(_elapsed) => {
                tracing::debug!(queue = %self.queue, "queue check unanswered; trying again later");
                Found::Present
            }
        }
    }
}
