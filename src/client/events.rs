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
//!
//! Where the broker retains the events (a RabbitMQ stream `C.events` bound to the exchange,
//! rabbitmq/definitions.json), they are the rollout's journal on the broker: the `started`
//! event carries everything a resume needs ([`RolloutStart`]), and a `node` event every
//! change of a node's state, the same changes the local journal saves. [`Rollouts`] rebuilds
//! each rollout's record from them, event by event: [`read_rollout`] for `baton rollout
//! status` and `resume` on a machine without the record, and the console's live view.
//!
//! Every published event is signed, because a resume runs the request a `started` event
//! carries under the resumer's own key: an unsigned or forged one would let anyone who may
//! publish to `C.events` run an action as whoever resumes it. The signature is the line's last
//! field, `signature` (`scheme`, `key_id`, `value` in hex), over the rest of the line as CBOR
//! (so no canonical JSON is needed); [`sign_event`] adds it and [`open_event`] checks it with
//! the reader's keys (its trusted keys, or its own). Events that fail are passed over and
//! counted ([`Rollouts::refused`]), never rebuilt into a rollout.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;
use uuid::Uuid;

use super::Client;
use super::journal::{RolloutRecord, RolloutStart, RolloutStatus};
use super::retained::{NotRetained, read_to_end};
use super::rollout::NodeState;
use crate::broker::{Destination, Incoming, Retained};
use crate::protocol::{Envelope, PROTOCOL_VERSION, PayloadKind, now_ms, to_cbor};
use crate::security::{OpenError, Security, hex};

/// How long an event waits in a consumer's queue before the broker drops it.
const EVENT_TTL: Duration = Duration::from_secs(60 * 60);

/// Publishes one rollout's events in order.
pub struct EventPublisher {
    prefix: String,
    /// The keys the client had when the rollout started: every event is signed with them.
    security: std::sync::Arc<Security>,
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
        EventPublisher {
            prefix: format!("rollout.{rollout_id}"),
            security: self.security.current(),
            sender: Some(sender),
            task,
        }
    }
}

impl EventPublisher {
    /// Signs an event line, as it is printed and published ([`sign_event`]).
    pub fn sign(&self, line: String) -> String {
        sign_event(&self.security, line)
    }

    /// Queues one event of type `kind`, its body the JSON line as printed (signed).
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

/// An event line's signature, its last field.
#[derive(Debug, Serialize, Deserialize)]
struct EventSignature {
    scheme: String,
    key_id: String,
    /// The signature, in hex.
    value: String,
}

/// `line` (one JSON object) with its signature as a last field, `signature`, over the rest of
/// the line's value as CBOR. A line that is not a JSON object is returned as it is (it cannot
/// be: the lines are Baton's own).
pub fn sign_event(security: &Security, line: String) -> String {
    let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(&line) else { return line };
    let envelope = security.seal(PayloadKind::Event, to_cbor(&value));
    let signature = EventSignature {
        scheme: envelope.scheme,
        key_id: envelope.key_id,
        value: hex::encode(&envelope.signature),
    };
    let Ok(signature) = serde_json::to_string(&signature) else { return line };
    let mut line = line;
    line.pop(); // the object's closing brace
    if !line.ends_with('{') {
        line.push(',');
    }
    line.push_str("\"signature\":");
    line.push_str(&signature);
    line.push('}');
    line
}

/// Why an event was passed over.
#[derive(Debug, thiserror::Error)]
pub enum EventRefused {
    #[error("not a JSON object")]
    NotJson,
    #[error("unsigned (published by an older Baton, or not by Baton)")]
    Unsigned,
    #[error("{0}")]
    Signature(#[from] OpenError),
}

/// The event in `body` once its signature is checked with `security` (a key it trusts, or its
/// own), without the signature; and the id of the key that signed it.
pub fn open_event(security: &Security, body: &[u8]) -> Result<(Value, String), EventRefused> {
    let mut value: Value = serde_json::from_slice(body).map_err(|_| EventRefused::NotJson)?;
    let object = value.as_object_mut().ok_or(EventRefused::NotJson)?;
    let signature = object.remove("signature").ok_or(EventRefused::Unsigned)?;
    let signature: EventSignature = serde_json::from_value(signature).map_err(|_| EventRefused::Unsigned)?;
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        scheme: signature.scheme,
        key_id: signature.key_id,
        kind: PayloadKind::Event,
        payload: to_cbor(&value),
        signature: hex::decode(&signature.value).ok_or(EventRefused::Unsigned)?,
    };
    let key_id = security.verify_own_or_trusted(&envelope, PayloadKind::Event)?;
    Ok((value, key_id))
}

/// One rollout as its events tell it: the record the journal keeps, and where its batches and
/// checks stand.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutView {
    pub record: RolloutRecord,
    /// The batch sent last, and how many this run has.
    pub batch: Option<BatchPosition>,
    /// Nodes whose health check passed, and did not, over every batch so far.
    pub checks_passed: usize,
    pub checks_failed: usize,
    /// This run stopped at `--max-failures`; its summary has not come yet.
    #[serde(skip)]
    stopping: bool,
}

/// Batch `index` (1-based) of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPosition {
    pub index: usize,
    pub of: usize,
}

/// The fields of a `node` event.
#[derive(Deserialize)]
struct NodeEvent {
    node: String,
    state: NodeState,
}

/// The fields of a `check_result` event that count.
#[derive(Deserialize)]
struct CheckEvent {
    ok: Vec<String>,
    failed: Vec<Value>,
    no_response: Vec<String>,
}

/// Rollouts rebuilt from their events, in any order of rollouts, each rollout's in the order
/// they were published.
#[derive(Debug, Default, Clone)]
pub struct Rollouts {
    by_id: BTreeMap<Uuid, RolloutView>,
    refused: usize,
}

impl Rollouts {
    /// Takes in one event published with routing key (or STOMP destination) `key`, once its
    /// signature is checked with `security` ([`open_event`]); returns the rollout it changed.
    /// Events that fail the check (counted in [`Rollouts::refused`]), events of a rollout
    /// whose `started` event was not seen (gone from the broker) and anything that is not an
    /// event are passed over.
    pub fn take(&mut self, security: &Security, key: &str, body: &[u8]) -> Option<Uuid> {
        // `rollout.<id>.<type>`, after the exchange's name over STOMP.
        let id = key.split(['.', '/']).find_map(|part| Uuid::parse_str(part).ok())?;
        let event = match open_event(security, body) {
            Ok((event, _signer)) => event,
            Err(error) => {
                self.refused += 1;
                tracing::debug!(%key, %error, "a rollout event is passed over");
                return None;
            }
        };
        let kind = event.get("type")?.as_str()?.to_owned();
        if kind == "started" {
            let start: RolloutStart = serde_json::from_value(event).ok()?;
            if start.rollout_id != id {
                return None;
            }
            match self.by_id.get_mut(&id) {
                Some(view) => {
                    view.record.restart(&start);
                    view.batch = None;
                    view.stopping = false;
                }
                None => {
                    let record = RolloutRecord::from_start(start);
                    let view = RolloutView {
                        record,
                        batch: None,
                        checks_passed: 0,
                        checks_failed: 0,
                        stopping: false,
                    };
                    self.by_id.insert(id, view);
                }
            }
            return Some(id);
        }
        let view = self.by_id.get_mut(&id)?;
        match kind.as_str() {
            "node" => {
                let NodeEvent { node, state } = serde_json::from_value(event).ok()?;
                if let Some(known) = view.record.nodes.get_mut(&node) {
                    *known = state;
                }
            }
            "batch_started" => view.batch = serde_json::from_value(event).ok(),
            "check_result" => {
                let check: CheckEvent = serde_json::from_value(event).ok()?;
                view.checks_passed += check.ok.len();
                view.checks_failed += check.failed.len() + check.no_response.len();
            }
            "stopped" => view.stopping = true,
            // The last event of every run, as the journal's `finish`.
            "summary" => {
                view.record.status =
                    if view.stopping { RolloutStatus::Stopped } else { RolloutStatus::Finished };
                view.stopping = false;
            }
            _ => return None,
        }
        view.record.updated_ms = now_ms();
        Some(id)
    }

    /// How many events failed their signature check: unsigned, forged, or signed by a key
    /// this reader does not trust.
    pub fn refused(&self) -> usize {
        self.refused
    }

    pub fn get(&self, id: Uuid) -> Option<&RolloutView> {
        self.by_id.get(&id)
    }

    /// Every rollout, by id.
    pub fn views(&self) -> impl Iterator<Item = &RolloutView> {
        self.by_id.values()
    }

    /// Forgets rollouts last changed before `before_ms`.
    pub fn forget_older(&mut self, before_ms: u64) {
        self.by_id.retain(|_, view| view.record.updated_ms >= before_ms);
    }
}

/// How long reading a rollout's events from the broker may take: they are read to their end.
pub const EVENTS_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How far back the broker keeps events: the stream's `x-max-age` in rabbitmq/definitions.json.
pub const EVENTS_RETAINED: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Rebuilds rollout `id` of `collective` from the events the broker retains, reading them all
/// to their end within `timeout`: `None` when none of its events (its `started` event) is
/// there. Fails with [`NotRetained`] when the broker keeps no events (no stream `C.events`,
/// STOMP) or the read did not end in time.
pub async fn read_rollout(
    client: &Client,
    collective: &str,
    id: Uuid,
    timeout: Duration,
) -> Result<Option<RolloutRecord>, NotRetained> {
    let since = SystemTime::now().checked_sub(EVENTS_RETAINED).unwrap_or(SystemTime::UNIX_EPOCH);
    let security = client.security.current();
    let mut rollouts = Rollouts::default();
    let wanted = format!("rollout.{id}.");
    let mut take = |message: &Incoming| {
        // Other rollouts' events are passed over unparsed.
        if message.key.starts_with(&wanted) {
            rollouts.take(&security, &message.key, &message.body);
        }
    };
    read_to_end(client.broker(), collective, Retained::Events, since, timeout, timeout, &mut take).await?;
    if rollouts.refused() > 0 {
        warn!(
            rollout = %id,
            "{} event(s) of this rollout on the broker were passed over: unsigned, forged, or signed by a key not among this client's trusted keys (security.trusted_keys)",
            rollouts.refused()
        );
    }
    Ok(rollouts.get(id).map(|view| view.record.clone()))
}
