//! Reply accounting: which targeted nodes answered, how, and who stayed silent.
//!
//! A [`Tally`] follows one request. Every targeted node ends in exactly one of three places:
//! it replied (OK or not), the broker said it cannot be reached, or it did not answer in time.
//! Replies from nodes that were not targeted are kept apart, never counted as targets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Targets;
use crate::protocol::{Reply, Request, StatusCode};

/// One node's answer, as shown to people and scripts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReply {
    pub node: String,
    /// The numeric status code (0 to 5).
    pub status: u8,
    /// The status code in words (`OK`, `Request Aborted`, ...).
    pub status_text: &'static str,
    /// What went wrong, for a person; empty when OK.
    pub message: String,
    pub data: Map<String, Value>,
    /// Milliseconds from sending the request to receiving this reply (two decimals).
    pub ms: f64,
}

impl NodeReply {
    pub fn is_ok(&self) -> bool {
        self.status == StatusCode::Ok.code()
    }

    fn from_reply(reply: Reply, elapsed: Duration) -> NodeReply {
        NodeReply {
            node: reply.sender,
            status: reply.status.code(),
            status_text: reply.status.text(),
            message: reply.status_message,
            data: reply.data,
            ms: millis(elapsed),
        }
    }
}

/// Counts, as the JSON output's `stats` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub targeted: usize,
    pub ok: usize,
    pub failed: usize,
    pub no_response: usize,
    /// Targets never sent to, because a rollout stopped early.
    pub skipped: usize,
}

/// Everything known about one request once waiting has ended.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub request_id: Uuid,
    pub agent: String,
    pub action: String,
    /// The targeted nodes, sorted; `None` for a broadcast, where nobody is known in advance.
    pub targeted: Option<Vec<String>>,
    /// Replies from targeted nodes (or from anyone, for a broadcast), sorted by node.
    pub replies: Vec<NodeReply>,
    /// Targeted nodes that did not answer, sorted (includes the unreachable ones).
    pub no_response: Vec<String>,
    /// The subset of `no_response` the broker said had no queue.
    pub unreachable: Vec<String>,
    /// Replies from nodes that were not targeted.
    pub unexpected: Vec<NodeReply>,
    /// Targeted nodes that were never sent the request, because a rollout stopped early
    /// (sorted). They are in `targeted`, never in `no_response`.
    pub skipped: Vec<String>,
    pub first_reply_ms: Option<f64>,
    pub last_reply_ms: Option<f64>,
    pub total_ms: u64,
    /// Summaries the agent's definition declares, keyed by output (filled by the caller that
    /// has the definition; empty otherwise). See `protocol::ddl::ActionDefinition::summarize`.
    pub aggregates: Map<String, Value>,
}

impl CallOutcome {
    pub fn counts(&self) -> Counts {
        let ok = self.replies.iter().filter(|reply| reply.is_ok()).count();
        Counts {
            targeted: self.targeted.as_ref().map_or(self.replies.len(), Vec::len),
            ok,
            failed: self.replies.len() - ok,
            no_response: self.no_response.len(),
            skipped: self.skipped.len(),
        }
    }
}

/// What [`Tally::record`] made of a reply.
pub enum Recorded<'a> {
    Targeted(&'a NodeReply),
    Unexpected(&'a NodeReply),
    /// A second reply from the same node, or a reply to another request.
    Ignored,
}

/// The running account of one request.
pub struct Tally {
    request_id: Uuid,
    agent: String,
    action: String,
    /// `None` for broadcasts.
    pending: Option<BTreeSet<String>>,
    targeted: Option<Vec<String>>,
    /// A broadcast expecting known nodes: anyone else who answers becomes a target too.
    open: bool,
    replies: BTreeMap<String, NodeReply>,
    unexpected: BTreeMap<String, NodeReply>,
    unreachable: BTreeSet<String>,
    first_reply_ms: Option<f64>,
    last_reply_ms: Option<f64>,
}

impl Tally {
    pub fn new(request: &Request, targets: &Targets) -> Tally {
        let targeted = match targets {
            // An unresolved registry read expects nobody yet (`Client::call` resolves it first).
            Targets::Broadcast | Targets::Registry(_) => None,
            Targets::Nodes(nodes) | Targets::Expected { nodes, .. } => Some(nodes.clone()),
        };
        let mut tally = Tally::for_request(request.id, &request.agent, &request.action, targeted);
        tally.open = matches!(targets, Targets::Expected { .. });
        tally
    }

    /// A tally for a request known only by its id, as when collecting replies from a named
    /// queue later: `targeted` is `None` when nobody knows whom it was sent to.
    pub fn for_request(request_id: Uuid, agent: &str, action: &str, targeted: Option<Vec<String>>) -> Tally {
        let targeted = targeted.map(super::unique_sorted);
        Tally {
            request_id,
            agent: agent.to_string(),
            action: action.to_string(),
            pending: targeted.as_ref().map(|nodes| nodes.iter().cloned().collect()),
            targeted,
            open: false,
            replies: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            unreachable: BTreeSet::new(),
            first_reply_ms: None,
            last_reply_ms: None,
        }
    }

    /// Every targeted node is accounted for (never true for a broadcast).
    pub fn complete(&self) -> bool {
        self.pending.as_ref().is_some_and(BTreeSet::is_empty)
    }

    pub fn unreachable(&mut self, node: &str) {
        if let Some(pending) = &mut self.pending
            && pending.remove(node)
        {
            self.unreachable.insert(node.to_string());
        }
    }

    /// Records one verified reply. A reply for another request never reaches here: the
    /// client's router matches request ids first.
    pub fn record(&mut self, reply: Reply, elapsed: Duration) -> Recorded<'_> {
        if reply.request_id != self.request_id {
            return Recorded::Ignored;
        }
        let node = reply.sender.clone();
        if self.replies.contains_key(&node) || self.unexpected.contains_key(&node) {
            return Recorded::Ignored;
        }
        let ms = millis(elapsed);
        // A node reported unreachable can still answer: a publish retried after a reconnect
        // may have reached its queue the first time, before the queue went with its cluster
        // member, and found it gone the second. Its reply wins, so it is listed once.
        let was_unreachable = self.unreachable.remove(&node);
        let targeted = match &mut self.pending {
            None => true,
            Some(pending) => pending.remove(&node) || was_unreachable,
        };
        let is_target =
            targeted || self.targeted.as_ref().is_some_and(|nodes| nodes.binary_search(&node).is_ok());
        if !is_target
            && self.open
            && let Some(nodes) = &mut self.targeted
            && let Err(position) = nodes.binary_search(&node)
        {
            // A node the registry did not know yet: it answered the broadcast, so it counts.
            nodes.insert(position, node.clone());
        } else if !is_target {
            let entry = self.unexpected.entry(node).or_insert(NodeReply::from_reply(reply, elapsed));
            return Recorded::Unexpected(entry);
        }
        // Earliest and latest rather than first and last recorded: replies collected later
        // from a named queue are not recorded in the order they were sent.
        self.first_reply_ms = Some(self.first_reply_ms.map_or(ms, |first| first.min(ms)));
        self.last_reply_ms = Some(self.last_reply_ms.map_or(ms, |last| last.max(ms)));
        let entry = self.replies.entry(node).or_insert(NodeReply::from_reply(reply, elapsed));
        Recorded::Targeted(entry)
    }

    /// When the first targeted reply arrived, if one has.
    pub fn first_reply_ms(&self) -> Option<f64> {
        self.first_reply_ms
    }

    /// When the last targeted reply so far arrived, if one has.
    pub fn last_reply_ms(&self) -> Option<f64> {
        self.last_reply_ms
    }

    pub fn finish(self, started: Instant) -> CallOutcome {
        let mut no_response: Vec<String> = self.pending.into_iter().flatten().collect();
        no_response.extend(self.unreachable.iter().cloned());
        no_response.sort();
        CallOutcome {
            request_id: self.request_id,
            agent: self.agent,
            action: self.action,
            targeted: self.targeted,
            replies: self.replies.into_values().collect(),
            no_response,
            unreachable: self.unreachable.into_iter().collect(),
            unexpected: self.unexpected.into_values().collect(),
            skipped: Vec::new(),
            first_reply_ms: self.first_reply_ms,
            last_reply_ms: self.last_reply_ms,
            total_ms: started.elapsed().as_millis() as u64,
            aggregates: Map::new(),
        }
    }
}

/// A duration in milliseconds, rounded to two decimals for display and JSON.
pub fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 100_000.0).round() / 100.0
}
