//! The rollouts view: every rollout of the collective, rebuilt live from its events.
//!
//! The console follows the collective's events exchange `C.events` (what `baton rpc --events`
//! publishes, docs/PROTOCOL.md) and rebuilds each rollout with the same code that resumes one
//! on another machine (`client::events::Rollouts`): its nodes' states, its batch, its checks,
//! whether it stopped or finished. Where the broker retains the events (the stream `C.events`),
//! the console reads them from [`SHOWN_FOR`] ago on, so rollouts that started before it are
//! shown too, then keeps reading as they come; elsewhere (no stream, STOMP) a private queue
//! bound to the exchange shows the rollouts from the console's start. The page follows
//! [`Board::changes`] over server-sent events and is sent the whole list at every change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tracing::info;
use uuid::Uuid;

use crate::broker::{Broker, BrokerError, Retained, Subscription};
use crate::client::NodeState;
use crate::client::events::{BatchPosition, RolloutView, Rollouts};
use crate::client::retained::{NotRetained, check_retained, is_marker};
use crate::protocol::now_ms;
use crate::security::SharedSecurity;

/// How long a rollout stays on the board after its last event.
pub const SHOWN_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The rollouts known to the console, and a counter that moves at every change.
pub struct Board {
    rollouts: Mutex<Rollouts>,
    changes: watch::Sender<u64>,
    /// The console's keys: an event whose signature they do not verify is not shown
    /// (`client::events::open_event`).
    security: Arc<SharedSecurity>,
}

/// One rollout as the page shows it.
#[derive(Debug, Serialize)]
pub struct RolloutRow {
    pub rollout_id: Uuid,
    pub agent: String,
    pub action: String,
    /// `running`, `stopped` or `finished`.
    pub status: &'static str,
    pub run: u32,
    pub batch: Option<BatchPosition>,
    /// The nodes in each state that has any.
    pub nodes: BTreeMap<&'static str, Vec<String>>,
    pub targets: usize,
    /// Nodes not known to have succeeded: what a resume would send to.
    pub remaining: usize,
    pub checks_passed: usize,
    pub checks_failed: usize,
    pub updated_ms: u64,
}

impl RolloutRow {
    fn of(view: &RolloutView) -> RolloutRow {
        let record = &view.record;
        let nodes = NodeState::ALL
            .iter()
            .map(|state| (state.name(), record.nodes_in(*state)))
            .filter(|(_, nodes)| !nodes.is_empty())
            .collect();
        RolloutRow {
            rollout_id: record.rollout_id,
            agent: record.request.agent.clone(),
            action: record.request.action.clone(),
            status: record.status.name(),
            run: record.runs,
            batch: view.batch,
            nodes,
            targets: record.order.len(),
            remaining: record.remaining().len(),
            checks_passed: view.checks_passed,
            checks_failed: view.checks_failed,
            updated_ms: record.updated_ms,
        }
    }
}

impl Board {
    pub fn new(security: Arc<SharedSecurity>) -> Board {
        Board { rollouts: Mutex::default(), changes: watch::Sender::new(0), security }
    }

    /// Every rollout, the latest change first.
    pub fn rows(&self) -> Vec<RolloutRow> {
        let rollouts = self.rollouts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<RolloutRow> = rollouts.views().map(RolloutRow::of).collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.updated_ms));
        rows
    }

    /// Moves at every change of any rollout.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn take(&self, key: &str, body: &[u8]) {
        let changed = {
            let mut rollouts = self.rollouts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = rollouts.take(&self.security.current(), key, body).is_some();
            if changed {
                rollouts.forget_older(now_ms().saturating_sub(SHOWN_FOR.as_millis() as u64));
            }
            changed
        };
        if changed {
            self.changes.send_modify(|count| *count += 1);
        }
    }
}

/// Follows `collective`'s events into `board` until `shutdown` resolves or the broker ends
/// the subscription.
pub async fn follow(
    board: Arc<Board>,
    broker: Broker,
    collective: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BrokerError> {
    let mut subscription = subscribe(&broker, &collective).await?;
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            incoming = subscription.messages.recv() => incoming,
            () = &mut shutdown => return Ok(()),
        };
        let Some(incoming) = incoming else { return Ok(()) };
        if !is_marker(Retained::Events, &incoming.body) {
            board.take(&incoming.key, &incoming.body);
        }
    }
}

/// The stream `C.events` from [`SHOWN_FOR`] ago when the broker retains the events, else a
/// private queue bound to the exchange. Asking whether there is a stream costs one marker in
/// it (see `client::retained`), which readers skip.
async fn subscribe(broker: &Broker, collective: &str) -> Result<Subscription, BrokerError> {
    let log = Retained::Events;
    let retained = match check_retained(broker, collective, log, SHOWN_FOR).await {
        Ok(()) => {
            let since = SystemTime::now().checked_sub(SHOWN_FOR).unwrap_or(SystemTime::UNIX_EPOCH);
            broker
                .subscribe_retained(collective, log, since)
                .await
                .map_err(|error| NotRetained(error.to_string()))
        }
        Err(why) => Err(why),
    };
    match retained {
        Ok(subscription) => {
            info!(stream = %log.name(collective), "rollouts shown from the broker's events of the last day");
            Ok(subscription)
        }
        Err(NotRetained(why)) => {
            info!(%why, "rollouts shown from now on (the broker's events cannot be read back)");
            broker.follow(collective, log).await
        }
    }
}
