//! Fire-and-forget requests: replies go to a named, durable queue and are collected later.
//!
//! `baton rpc ... --reply-to NAME` declares `<collective>.reply.<NAME>`, sends the request with
//! that queue as its reply address, records whom it was sent to in a small state file, and
//! exits. `baton replies NAME` later reads the queue, verifies every reply like a live call
//! does, and accounts for them per request: with the state file it also knows who has not
//! answered yet. Declaring the queue means subscribing to it for a moment; anything handed to
//! the sender in that moment belongs to the collector and is put back, never lost. Replies the
//! collector does not want (another request's, with `--request`) are put back too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use uuid::Uuid;

use super::outcome::{Recorded, Tally};
use super::{CallOutcome, Client, ClientError, Event, RequestSpec};
use crate::broker::{Destination, ReplyQueue};
use crate::protocol::{Reply, now_ms};

/// How long a reply put back into a named queue stays there (the queue itself expires after a
/// day unused).
const PUT_BACK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long to wait for the end of a subscription to be confirmed. It normally takes one
/// channel close round trip; the bound only matters when the broker connection is stuck.
const UNSUBSCRIBE_WAIT: Duration = Duration::from_secs(30);

/// What was sent with [`Client::send_detached`], as saved for the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedRequest {
    pub request_id: Uuid,
    /// The name given with `--reply-to`.
    pub name: String,
    /// The queue replies go to: `<collective>.reply.<name>`.
    pub queue: String,
    pub collective: String,
    pub agent: String,
    pub action: String,
    /// Every node the request was addressed to, sorted.
    pub targets: Vec<String>,
    /// The targets the broker had no queue for: they will never answer.
    pub unreachable: Vec<String>,
    /// When it was sent, milliseconds since the Unix epoch.
    pub sent_ms: u64,
}

/// Checks a reply-queue name: letters, digits, `-` and `_`, so it is one word in the queue name.
pub fn check_queue_name(name: &str) -> Result<(), ClientError> {
    let valid = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "reply queue name {name:?} may hold only letters, digits, '-' and '_' (at most 100)"
        )))
    }
}

/// Replies collected from a named queue, one outcome per request they answer.
#[derive(Debug, Clone)]
pub struct Collection {
    /// The queue read.
    pub queue: String,
    /// One outcome per request id, in the order their first reply (or record) was seen.
    /// `targeted` is known only for requests whose state file was found.
    pub requests: Vec<CallOutcome>,
    /// Replies dropped because they failed verification.
    pub dropped: u64,
    /// Replies left in the queue because they answer another request than the one asked for.
    pub put_back: usize,
    pub total_ms: u64,
}

/// What to collect, and for how long.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Only replies to this request; the others stay in the queue.
    pub request: Option<Uuid>,
    /// The longest wait.
    pub wait: Duration,
    /// When nobody knows which nodes still owe a reply, stop once the queue has been quiet
    /// this long.
    pub quiet: Duration,
}

impl Client {
    /// Declares the named reply queue, sends `spec` to `nodes` with replies going there, and
    /// returns at once, without waiting for any reply.
    pub async fn send_detached(
        &self,
        spec: &RequestSpec,
        nodes: &[String],
        name: &str,
    ) -> Result<DetachedRequest, ClientError> {
        check_queue_name(name)?;
        let queue = self.declare_named_queue(name).await?;
        let (request, bytes) = self.build_request_to(spec, &queue)?;
        let targets = super::unique_sorted(nodes.iter().cloned());
        let mut unreachable = self.publish_directed(&targets, &bytes, self.settings.ttl).await?;
        unreachable.sort();
        Ok(DetachedRequest {
            request_id: request.id,
            name: name.to_string(),
            queue,
            collective: self.settings.collective.clone(),
            agent: spec.agent.clone(),
            action: spec.action.clone(),
            targets,
            unreachable,
            sent_ms: request.time_ms,
        })
    }

    /// Creates `<collective>.reply.<name>` if needed and returns its address. The broker
    /// declares a queue only by subscribing to it, so stop consuming at once and put back
    /// whatever was already handed over: it belongs to whoever collects the queue.
    async fn declare_named_queue(&self, name: &str) -> Result<String, ClientError> {
        let ReplyQueue { address, messages } =
            self.broker.reply_queue(&self.settings.collective, Some(name)).await?;
        let handed_over = unsubscribe(messages).await;
        self.put_back(&address, handed_over).await?;
        Ok(address)
    }

    async fn put_back(&self, address: &str, bodies: Vec<Vec<u8>>) -> Result<(), ClientError> {
        debug!(count = bodies.len(), queue = address, "putting replies back");
        for body in bodies {
            self.broker.publish(Destination::Reply(address.to_string()), body, PUT_BACK_TTL).await?;
        }
        Ok(())
    }

    /// Reads the named reply queue and accounts for each request its replies answer.
    /// `record_of` returns what was saved when a request was sent, if anything, so that
    /// silent nodes can be listed.
    pub async fn collect(
        &self,
        name: &str,
        options: &CollectOptions,
        record_of: &dyn Fn(Uuid) -> Option<DetachedRequest>,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) -> Result<Collection, ClientError> {
        check_queue_name(name)?;
        let started = Instant::now();
        let ReplyQueue { address, mut messages } =
            self.broker.reply_queue(&self.settings.collective, Some(name)).await?;
        let mut accounts = Accounts::default();
        if let Some(request_id) = options.request {
            accounts.open(request_id, None, record_of);
        }
        let mut dropped = 0;
        let mut held = Vec::new();
        let deadline = tokio::time::Instant::now() + options.wait;
        loop {
            let waiting_for_known_nodes = options.request.is_some_and(|id| accounts.knows_targets(id));
            if let Some(request_id) = options.request
                && accounts.complete(request_id)
            {
                break;
            }
            let wake = if waiting_for_known_nodes {
                deadline
            } else {
                deadline.min(tokio::time::Instant::now() + options.quiet)
            };
            let incoming = tokio::select! {
                incoming = messages.recv() => incoming,
                () = tokio::time::sleep_until(wake) => None,
            };
            let Some(incoming) = incoming else { break };
            self.take(
                incoming.body,
                options.request,
                &mut accounts,
                &mut held,
                &mut dropped,
                record_of,
                on_event,
            );
        }
        // Stop consuming; whatever was already handed over is still accounted for.
        for body in unsubscribe(messages).await {
            self.take(body, options.request, &mut accounts, &mut held, &mut dropped, record_of, on_event);
        }
        let put_back = held.len();
        self.put_back(&address, held).await?;
        Ok(Collection {
            queue: address,
            requests: accounts.finish(started),
            dropped,
            put_back,
            total_ms: started.elapsed().as_millis() as u64,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        body: Vec<u8>,
        only: Option<Uuid>,
        accounts: &mut Accounts,
        held: &mut Vec<Vec<u8>>,
        dropped: &mut u64,
        record_of: &dyn Fn(Uuid) -> Option<DetachedRequest>,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) {
        let reply = match self.security.current().open_reply(&body, self.settings.max_message_bytes) {
            Ok(reply) => reply.into_inner(),
            Err(error) => {
                *dropped += 1;
                warn!(%error, "reply dropped from the named queue: it does not verify");
                return;
            }
        };
        if only.is_some_and(|id| id != reply.request_id) {
            held.push(body);
            return;
        }
        accounts.record(reply, record_of, on_event);
    }
}

/// Ends a subscription and returns what was handed over before it ended.
///
/// The transport acknowledges each message just before handing it over, and the broker returns
/// the rest to the queue when the subscription's channel closes. Draining until the connection
/// task has let go of the subscription (the channel reports closed) collects every message
/// that was acknowledged, so none is lost and none is both collected and redelivered.
async fn unsubscribe(mut messages: tokio::sync::mpsc::Receiver<crate::broker::Incoming>) -> Vec<Vec<u8>> {
    messages.close();
    let deadline = tokio::time::Instant::now() + UNSUBSCRIBE_WAIT;
    let mut handed_over = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, messages.recv()).await {
            Ok(Some(incoming)) => handed_over.push(incoming.body),
            Ok(None) => break,
            Err(_elapsed) => {
                warn!(
                    "the broker connection did not confirm the end of a reply-queue subscription in time; replies still in transit may be lost"
                );
                break;
            }
        }
    }
    debug!(count = handed_over.len(), "unsubscribed from the named reply queue");
    handed_over
}

/// One tally per request id, in the order they were first seen.
#[derive(Default)]
struct Accounts {
    order: Vec<Uuid>,
    tallies: BTreeMap<Uuid, (Tally, Option<DetachedRequest>)>,
}

impl Accounts {
    fn open(
        &mut self,
        request_id: Uuid,
        first: Option<&Reply>,
        record_of: &dyn Fn(Uuid) -> Option<DetachedRequest>,
    ) {
        if self.tallies.contains_key(&request_id) {
            return;
        }
        let record = record_of(request_id);
        let (agent, action) = match (&record, first) {
            (Some(record), _) => (record.agent.clone(), record.action.clone()),
            (None, Some(reply)) => (reply.agent.clone(), reply.action.clone()),
            (None, None) => (String::new(), String::new()),
        };
        let mut tally = Tally::for_request(
            request_id,
            &agent,
            &action,
            record.as_ref().map(|record| record.targets.clone()),
        );
        for node in record.iter().flat_map(|record| &record.unreachable) {
            tally.unreachable(node);
        }
        debug!(request = %request_id, known = record.is_some(), "collecting replies");
        self.order.push(request_id);
        self.tallies.insert(request_id, (tally, record));
    }

    fn knows_targets(&self, request_id: Uuid) -> bool {
        self.tallies.get(&request_id).is_some_and(|(_, record)| record.is_some())
    }

    fn complete(&self, request_id: Uuid) -> bool {
        self.tallies.get(&request_id).is_some_and(|(tally, _)| tally.complete())
    }

    fn record(
        &mut self,
        reply: Reply,
        record_of: &dyn Fn(Uuid) -> Option<DetachedRequest>,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) {
        self.open(reply.request_id, Some(&reply), record_of);
        let Some((tally, record)) = self.tallies.get_mut(&reply.request_id) else { return };
        // Reply times count from the sending, when the record says when that was.
        let elapsed = record.as_ref().map_or(Duration::ZERO, |record| {
            Duration::from_millis(reply.time_ms.saturating_sub(record.sent_ms))
        });
        match tally.record(reply, elapsed) {
            Recorded::Targeted(node_reply) => on_event(&Event::Reply(node_reply)),
            Recorded::Unexpected(node_reply) => on_event(&Event::Unexpected(node_reply)),
            Recorded::Ignored => {}
        }
    }

    fn finish(mut self, started: Instant) -> Vec<CallOutcome> {
        self.order
            .iter()
            .filter_map(|id| self.tallies.remove(id))
            .map(|(tally, _)| tally.finish(started))
            .collect()
    }
}

/// Where sent requests are recorded: `$XDG_STATE_HOME/baton/requests`, or
/// `~/.local/state/baton/requests`.
pub fn state_dir() -> Option<PathBuf> {
    super::state_home().map(|dir| dir.join("requests"))
}

/// Saves what was sent, so that a later collection knows whom to expect. Returns the file.
pub fn save_record(dir: &Path, record: &DetachedRequest) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = record_path(dir, record.request_id);
    let text = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Keeps the request records in `dir` to what a later collection still needs, after
/// `collected` were accounted: collected replies have left the queue, so each collected
/// request's record keeps only the nodes still owed (neither replied nor unreachable), and is
/// removed once none is; any record sent more than `max_age` ago is removed as well. Returns
/// how many records were removed.
pub fn prune_records(dir: &Path, collected: &[CallOutcome], max_age: Duration) -> usize {
    let mut removed = 0;
    for outcome in collected {
        let Some(mut record) = load_record(dir, outcome.request_id) else { continue };
        record
            .targets
            .retain(|node| outcome.no_response.contains(node) && !record.unreachable.contains(node));
        record.unreachable.clear();
        if record.targets.is_empty() {
            removed += usize::from(std::fs::remove_file(record_path(dir, record.request_id)).is_ok());
        } else if let Err(error) = save_record(dir, &record) {
            warn!(request = %record.request_id, %error, "cannot update the request record");
        }
    }
    let oldest_ms = now_ms().saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        let Some(request_id) = path.file_stem().and_then(|stem| stem.to_str()?.parse::<Uuid>().ok()) else {
            continue;
        };
        if load_record(dir, request_id).is_some_and(|record| record.sent_ms < oldest_ms)
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

fn record_path(dir: &Path, request_id: Uuid) -> PathBuf {
    dir.join(format!("{request_id}.json"))
}

/// Reads what was saved when `request_id` was sent, if it was and the file is readable.
pub fn load_record(dir: &Path, request_id: Uuid) -> Option<DetachedRequest> {
    let text = std::fs::read_to_string(record_path(dir, request_id)).ok()?;
    match serde_json::from_str(&text) {
        Ok(record) => Some(record),
        Err(error) => {
            warn!(request = %request_id, %error, "ignoring an unreadable request record");
            None
        }
    }
}
