//! Rollouts: sending one request to the targets in batches, stopping when too many fail.
//!
//! A rollout is a sequence of ordinary calls, one per batch, each with its own request id.
//! The order of the targets is decided once, before anything is sent ([`order_targets`]): sorted
//! by identity, or shuffled by a seed so that the same seed and the same targets always give the
//! same order. Batches are consecutive slices of that order. After each batch has finished
//! (every node answered, was unreachable, or the timeout passed), the failures so far are
//! counted; once they exceed the allowed number, no further batch is sent and the nodes that
//! would have been are reported as skipped. A failure is a reply with a non-zero status or a
//! node that did not answer: a silent node is not known to have done what was asked.
//!
//! `--canary N` makes the first batch N nodes, the rest following in `--batch` sizes. A
//! health check (`--check`) runs another action on each batch's nodes once their action
//! succeeded; a node whose check fails, errs or stays silent after the retries counts as a
//! failure too, so a node that did what it was asked but is now unhealthy stops the rollout.
//! Every node's state (see [`NodeState`]) is reported as it changes, for `--json` and for the
//! rollout's saved state (`client::rollout_state`) that `baton rollout resume` continues from.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::outcome::{CallOutcome, NodeReply};
use super::{Client, ClientError, Event, PreparedRequest, RequestSpec, Targets};

/// A number of nodes, given either as a count or as a percentage of the targets
/// (`--batch 5`, `--batch 20%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(usize),
    /// A whole percentage, 0 to 100.
    Percent(u8),
}

/// Why a text is not an [`Amount`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not a number of nodes or a percentage (e.g. 5 or 20%)")]
    NotANumber(String),
    #[error("{0}% is not a percentage between 0 and 100")]
    PercentOutOfRange(u64),
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<Amount, AmountError> {
        let trimmed = text.trim();
        let not_a_number = || AmountError::NotANumber(text.to_string());
        match trimmed.strip_suffix('%') {
            Some(percent) => {
                let value: u64 = percent.trim().parse().map_err(|_| not_a_number())?;
                let value = u8::try_from(value)
                    .ok()
                    .filter(|value| *value <= 100)
                    .ok_or(AmountError::PercentOutOfRange(value))?;
                Ok(Amount::Percent(value))
            }
            None => trimmed.parse().map(Amount::Count).map_err(|_| not_a_number()),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(count) => write!(formatter, "{count}"),
            Amount::Percent(percent) => write!(formatter, "{percent}%"),
        }
    }
}

impl Amount {
    /// How many of `total` nodes this is, rounding a percentage up and never less than one
    /// when `total` is not zero: the size of a batch or a limit (`--batch 10%` of 5 nodes
    /// is a batch of 1, not of 0).
    pub fn at_least_one_of(self, total: usize) -> usize {
        let count = match self {
            Amount::Count(count) => count,
            Amount::Percent(percent) => (total * usize::from(percent)).div_ceil(100),
        };
        count.clamp(1.min(total), total)
    }

    /// How many of `total` nodes this is, rounding a percentage down: the failures a rollout
    /// tolerates (`--max-failures 10%` of 15 nodes tolerates 1 failure and stops at the 2nd).
    pub fn at_most_of(self, total: usize) -> usize {
        match self {
            Amount::Count(count) => count,
            Amount::Percent(percent) => total * usize::from(percent) / 100,
        }
    }
}

/// How to roll a request out.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    /// Nodes per batch; `None` sends to every target at once.
    pub batch: Option<Amount>,
    /// The pause between one batch finishing and the next being sent.
    pub batch_sleep: Duration,
    /// Failures tolerated before no further batch is sent; `None` never stops.
    pub max_failures: Option<Amount>,
    /// The size of a first batch of its own (`--canary N`).
    pub canary: Option<usize>,
    /// The health check run on each batch's nodes after their action.
    pub check: Option<CheckOptions>,
}

/// A health check between batches (`--check`, `--check-wait`, `--check-retries`).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The check's request, prepared like any other (it may be any agent's action).
    pub request: PreparedRequest,
    /// The pause before each attempt, so the nodes can settle after their action.
    pub wait: Duration,
    /// How many times a failing or silent check is tried again before it counts.
    pub retries: u32,
}

/// Where a node stands in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Not sent the action yet.
    Pending,
    /// Sent the action; no answer yet (a client killed now leaves it here).
    Sent,
    /// Its action succeeded and its health check has not passed yet.
    Checking,
    /// Its action succeeded, and its check too when there is one.
    Ok,
    /// Its action failed.
    Failed,
    /// It did not answer the action.
    NoResponse,
    /// Its action succeeded but its check failed, erred or stayed silent.
    CheckFailed,
    /// Never sent the action because the rollout stopped.
    Skipped,
}

impl NodeState {
    /// Every state, in the order reports list them.
    pub const ALL: [NodeState; 8] = [
        NodeState::Ok,
        NodeState::Failed,
        NodeState::CheckFailed,
        NodeState::NoResponse,
        NodeState::Skipped,
        NodeState::Sent,
        NodeState::Checking,
        NodeState::Pending,
    ];

    /// The state's name, as JSON and the state file spell it.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Sent => "sent",
            NodeState::Checking => "checking",
            NodeState::Ok => "ok",
            NodeState::Failed => "failed",
            NodeState::NoResponse => "no_response",
            NodeState::CheckFailed => "check_failed",
            NodeState::Skipped => "skipped",
        }
    }
}

/// The order of the targets and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered {
    /// The targets in rollout order.
    pub nodes: Vec<String>,
    /// The seed that shuffled them, if they were shuffled.
    pub seed: Option<u64>,
    /// How many targets there were before a limit picked some of them.
    pub candidates: usize,
}

/// Puts the targets in the order a rollout sends to them, and applies a limit.
///
/// Without a seed the order is sorted by identity. With a seed the sorted targets are shuffled
/// by a fixed algorithm (SplitMix64 driving a Fisher-Yates shuffle), so the same seed and the
/// same targets give the same order on every machine and every version. A limit takes the
/// first nodes of that order; a limit without a seed draws a seed, so that the random subset
/// it picked is reported and can be picked again.
pub fn order_targets(nodes: &[String], limit: Option<Amount>, seed: Option<u64>) -> Ordered {
    let mut ordered = super::unique_sorted(nodes.iter().cloned());
    let candidates = ordered.len();
    let seed = match (limit, seed) {
        (Some(_), None) => Some(rand::random::<u64>()),
        (_, seed) => seed,
    };
    if let Some(seed) = seed {
        shuffle(&mut ordered, seed);
    }
    if let Some(limit) = limit {
        ordered.truncate(limit.at_least_one_of(candidates));
    }
    Ordered { nodes: ordered, seed, candidates }
}

/// Fisher-Yates with SplitMix64: small, fixed, and the same everywhere, unlike a library
/// generator whose stream may change between versions.
fn shuffle(nodes: &mut [String], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for index in (1..nodes.len()).rev() {
        // Multiply-shift maps the 64-bit draw onto 0..=index without a division.
        let pick = ((u128::from(next()) * (index as u128 + 1)) >> 64) as usize;
        nodes.swap(index, pick);
    }
}

/// The batches of a rollout: a canary batch of `canary` nodes first when given, then the rest
/// in batches of `batch` (a percentage is of all the targets, canary included).
pub fn plan_rollout(nodes: &[String], canary: Option<usize>, batch: Option<Amount>) -> Vec<Vec<String>> {
    let Some(canary) = canary.filter(|canary| *canary > 0) else { return plan_batches(nodes, batch) };
    let (first, rest) = nodes.split_at(canary.min(nodes.len()));
    let size = batch.map_or(rest.len(), |batch| batch.at_least_one_of(nodes.len()));
    let mut plan = vec![first.to_vec()];
    if !rest.is_empty() {
        plan.extend(rest.chunks(size.max(1)).map(<[String]>::to_vec));
    }
    plan
}

/// Splits targets already in rollout order into batches of `batch` nodes (all in one batch
/// when `None`).
pub fn plan_batches(nodes: &[String], batch: Option<Amount>) -> Vec<Vec<String>> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let size = batch.map_or(nodes.len(), |batch| batch.at_least_one_of(nodes.len()));
    nodes.chunks(size).map(<[String]>::to_vec).collect()
}

/// One batch as it was sent and how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRecord {
    /// 1-based position in the rollout.
    pub index: usize,
    /// The batch's nodes, in rollout order.
    pub nodes: Vec<String>,
    pub request_id: Uuid,
    pub ok: usize,
    pub failed: usize,
    pub no_response: usize,
    /// Milliseconds from the start of the rollout to sending this batch.
    pub started_ms: u64,
    /// Milliseconds this batch took, from sending to its last reply or timeout.
    pub ms: u64,
    /// The health check of the batch's nodes whose action succeeded, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckRecord>,
}

/// How a batch's health check went, after its retries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckRecord {
    /// `AGENT ACTION`.
    pub check: String,
    /// How many times the check was sent (1 + the retries used).
    pub attempts: u32,
    /// One request id per attempt.
    pub request_ids: Vec<Uuid>,
    /// The nodes whose check passed.
    pub ok: Vec<String>,
    /// The last failing reply of each node whose check still failed.
    pub failed: Vec<NodeReply>,
    /// The nodes that did not answer the last attempt.
    pub no_response: Vec<String>,
}

impl CheckRecord {
    /// The nodes whose check did not pass, sorted.
    pub fn not_ok(&self) -> Vec<String> {
        super::unique_sorted(
            self.failed.iter().map(|reply| reply.node.clone()).chain(self.no_response.iter().cloned()),
        )
    }
}

/// Why a rollout stopped before its last batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stopped {
    /// Failed replies, silent nodes and failed checks, over all batches sent.
    pub failures: usize,
    /// How many failures `--max-failures` tolerated.
    pub max_failures: usize,
    /// The last batch sent (1-based).
    pub after_batch: usize,
}

/// Everything known once a rollout has ended.
#[derive(Debug, Clone)]
pub struct RolloutOutcome {
    /// Every batch's replies, merged: `targeted` holds all targets, `skipped` the ones never
    /// sent to, `request_id` the first batch's. Reply times (`ms`) count from their own
    /// batch's sending; `first_reply_ms`, `last_reply_ms` and `total_ms` from the rollout's start.
    pub call: CallOutcome,
    /// The batches that were sent, in order.
    pub batches: Vec<BatchRecord>,
    /// How many batches were planned.
    pub planned_batches: usize,
    pub stopped: Option<Stopped>,
    /// Every target's state at the end.
    pub nodes: BTreeMap<String, NodeState>,
}

impl RolloutOutcome {
    /// The nodes in `state`, sorted.
    pub fn nodes_in(&self, state: NodeState) -> Vec<String> {
        nodes_in(&self.nodes, state)
    }
}

/// The nodes of `states` in `state`, sorted.
pub fn nodes_in(states: &BTreeMap<String, NodeState>, state: NodeState) -> Vec<String> {
    states.iter().filter(|(_, known)| **known == state).map(|(node, _)| node.clone()).collect()
}

impl Client {
    /// Sends the prepared request to `nodes` (already in rollout order, see [`order_targets`])
    /// batch by batch, each batch waiting the request's timeout, reporting each step to
    /// `on_event`. `nodes` must not be empty. The merged outcome carries the aggregates.
    pub async fn rollout(
        &self,
        prepared: &PreparedRequest,
        nodes: &[String],
        options: &RolloutOptions,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) -> Result<RolloutOutcome, ClientError> {
        self.roll_out(prepared, nodes, options, Sending::Directed, on_event).await
    }

    /// Sends the prepared request as one broadcast, expecting `nodes` (the registry's nodes that
    /// match its filter) and waiting for nodes the registry does not know yet as long as `grace`
    /// at least ([`Targets::Expected`]): one round trip where discovery and a directed request
    /// are two. Reported as a rollout of one batch, so that it reads like [`Client::rollout`];
    /// nodes that answer without being expected are targets too. Only for what may reach a node
    /// that was not counted beforehand, and answers about as fast on every node: `baton rpc`
    /// sends this way an `rpcutil` action that is not a tracked rollout (`cli::cmd::rpc`).
    pub async fn broadcast_rollout(
        &self,
        prepared: &PreparedRequest,
        nodes: &[String],
        grace: Duration,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) -> Result<RolloutOutcome, ClientError> {
        let options = RolloutOptions {
            batch: None,
            batch_sleep: Duration::ZERO,
            max_failures: None,
            canary: None,
            check: None,
        };
        self.roll_out(prepared, nodes, &options, Sending::Expecting { grace }, on_event).await
    }

    async fn roll_out(
        &self,
        prepared: &PreparedRequest,
        nodes: &[String],
        options: &RolloutOptions,
        sending: Sending,
        on_event: &mut (dyn FnMut(&Event<'_>) + Send),
    ) -> Result<RolloutOutcome, ClientError> {
        if nodes.is_empty() {
            return Err(ClientError::Usage("a rollout needs at least one target".to_string()));
        }
        if options.batch == Some(Amount::Count(0)) || options.batch == Some(Amount::Percent(0)) {
            return Err(ClientError::Usage("--batch must be at least 1 node (or 1%)".to_string()));
        }
        let started = Instant::now();
        let plan = plan_rollout(nodes, options.canary, options.batch);
        let planned_batches = plan.len();
        let allowed = options.max_failures.map(|amount| amount.at_most_of(nodes.len()));
        let mut states: BTreeMap<String, NodeState> =
            nodes.iter().map(|node| (node.clone(), NodeState::Pending)).collect();
        let mut outcomes: Vec<(u64, CallOutcome)> = Vec::new();
        let mut batches = Vec::new();
        let mut stopped = None;
        let mut failures = 0;
        for (position, batch) in plan.iter().enumerate() {
            let index = position + 1;
            if position > 0 && !options.batch_sleep.is_zero() {
                tokio::time::sleep(options.batch_sleep).await;
            }
            on_event(&Event::BatchStarted { index, of: planned_batches, nodes: batch });
            for node in batch {
                set_state(&mut states, node, NodeState::Sent, on_event);
            }
            let started_ms = started.elapsed().as_millis() as u64;
            let targets = match sending {
                Sending::Directed => Targets::Nodes(batch.clone()),
                Sending::Expecting { grace } => Targets::Expected { nodes: batch.clone(), grace },
            };
            let outcome = self.call(&prepared.spec, &targets, prepared.timeout, None, on_event).await?;
            let counts = outcome.counts();
            let passed: Vec<String> = outcome
                .replies
                .iter()
                .filter(|reply| reply.is_ok())
                .map(|reply| reply.node.clone())
                .collect();
            let after_action = if options.check.is_some() { NodeState::Checking } else { NodeState::Ok };
            for reply in &outcome.replies {
                // A broadcast's answer from a node the registry did not know yet: it was sent the
                // request too, as every node that answers a broadcast was.
                if !states.contains_key(&reply.node) {
                    states.insert(reply.node.clone(), NodeState::Sent);
                    on_event(&Event::NodeState { node: &reply.node, state: NodeState::Sent });
                }
                let state = if reply.is_ok() { after_action } else { NodeState::Failed };
                set_state(&mut states, &reply.node, state, on_event);
            }
            for node in outcome.no_response.iter().chain(&outcome.unreachable) {
                set_state(&mut states, node, NodeState::NoResponse, on_event);
            }
            let check = match &options.check {
                Some(check) if !passed.is_empty() => {
                    let record = self.check_batch(check, passed).await?;
                    for node in &record.ok {
                        set_state(&mut states, node, NodeState::Ok, on_event);
                    }
                    for node in record.not_ok() {
                        set_state(&mut states, &node, NodeState::CheckFailed, on_event);
                    }
                    on_event(&Event::CheckFinished { index, check: &record });
                    Some(record)
                }
                _ => None,
            };
            let check_failures = check.as_ref().map_or(0, |check| check.not_ok().len());
            let record = BatchRecord {
                index,
                // In rollout order; a broadcast's batch is every node that turned out a target,
                // expected or not.
                nodes: match sending {
                    Sending::Directed => batch.clone(),
                    Sending::Expecting { .. } => outcome.targeted.clone().unwrap_or_else(|| batch.clone()),
                },
                request_id: outcome.request_id,
                ok: counts.ok,
                failed: counts.failed,
                no_response: counts.no_response,
                started_ms,
                ms: outcome.total_ms,
                check,
            };
            on_event(&Event::BatchFinished { batch: &record, of: planned_batches });
            batches.push(record);
            failures += counts.failed + counts.no_response + check_failures;
            outcomes.push((started_ms, outcome));
            let rest = &plan[index..];
            if let Some(allowed) = allowed
                && failures > allowed
                && !rest.is_empty()
            {
                let skipped: Vec<String> = rest.iter().flatten().cloned().collect();
                for node in &skipped {
                    set_state(&mut states, node, NodeState::Skipped, on_event);
                }
                let reason = Stopped { failures, max_failures: allowed, after_batch: index };
                on_event(&Event::Skipped { nodes: &skipped, stopped: &reason });
                stopped = Some(reason);
                break;
            }
        }
        let mut call = merge(
            &prepared.spec,
            nodes,
            outcomes,
            stopped.is_some().then(|| plan[batches.len()..].concat()),
            started,
        );
        call.aggregates = prepared.aggregates(&call);
        Ok(RolloutOutcome { call, batches, planned_batches, stopped, nodes: states })
    }

    /// Runs the health check on `nodes`, trying the ones that fail or stay silent again up to
    /// the retries, each attempt after the check's wait. Its replies are not the action's, so
    /// they are not reported as replies; the record says how it went.
    async fn check_batch(
        &self,
        check: &CheckOptions,
        nodes: Vec<String>,
    ) -> Result<CheckRecord, ClientError> {
        let spec = &check.request.spec;
        let mut record = CheckRecord {
            check: format!("{} {}", spec.agent, spec.action),
            attempts: 0,
            request_ids: Vec::new(),
            ok: Vec::new(),
            failed: Vec::new(),
            no_response: Vec::new(),
        };
        let mut pending = nodes;
        while !pending.is_empty() && record.attempts <= check.retries {
            if !check.wait.is_zero() {
                tokio::time::sleep(check.wait).await;
            }
            record.attempts += 1;
            let outcome = self
                .call(spec, &Targets::Nodes(pending.clone()), check.request.timeout, None, &mut |_| {})
                .await?;
            record.request_ids.push(outcome.request_id);
            let (ok, failed): (Vec<NodeReply>, Vec<NodeReply>) =
                outcome.replies.into_iter().partition(NodeReply::is_ok);
            record.ok.extend(ok.into_iter().map(|reply| reply.node));
            record.no_response =
                super::unique_sorted(outcome.no_response.into_iter().chain(outcome.unreachable));
            record.failed = failed;
            pending = record.not_ok();
        }
        record.ok.sort();
        Ok(record)
    }
}

/// How each batch of a rollout goes out.
#[derive(Debug, Clone, Copy)]
enum Sending {
    /// To each node's own queue.
    Directed,
    /// As one broadcast expecting the batch's nodes ([`Targets::Expected`]).
    Expecting { grace: Duration },
}

/// Moves a node to `state` and reports it, when that changes anything.
fn set_state(
    states: &mut BTreeMap<String, NodeState>,
    node: &str,
    state: NodeState,
    on_event: &mut (dyn FnMut(&Event<'_>) + Send),
) {
    if let Some(known) = states.get_mut(node)
        && *known != state
    {
        *known = state;
        on_event(&Event::NodeState { node, state });
    }
}

/// Merges the batches' outcomes into one, as if one call had reached every target.
fn merge(
    spec: &RequestSpec,
    nodes: &[String],
    outcomes: Vec<(u64, CallOutcome)>,
    skipped: Option<Vec<String>>,
    started: Instant,
) -> CallOutcome {
    let request_id = outcomes.first().map_or_else(Uuid::nil, |(_, outcome)| outcome.request_id);
    let mut merged = CallOutcome {
        request_id,
        agent: spec.agent.clone(),
        action: spec.action.clone(),
        // A broadcast's targets include the nodes that answered without being expected.
        targeted: Some(super::unique_sorted(
            nodes
                .iter()
                .chain(outcomes.iter().flat_map(|(_, outcome)| outcome.targeted.iter().flatten()))
                .cloned(),
        )),
        replies: Vec::new(),
        no_response: Vec::new(),
        unreachable: Vec::new(),
        unexpected: Vec::new(),
        skipped: super::unique_sorted(skipped.unwrap_or_default()),
        first_reply_ms: None,
        last_reply_ms: None,
        total_ms: 0,
        // Summaries are computed over the merged replies by whoever has the definition.
        aggregates: serde_json::Map::new(),
    };
    for (offset, outcome) in outcomes {
        let offset = offset as f64;
        if let Some(first) = outcome.first_reply_ms {
            let first = first + offset;
            merged.first_reply_ms = Some(merged.first_reply_ms.map_or(first, |known: f64| known.min(first)));
        }
        if let Some(last) = outcome.last_reply_ms {
            let last = last + offset;
            merged.last_reply_ms = Some(merged.last_reply_ms.map_or(last, |known: f64| known.max(last)));
        }
        merged.replies.extend(outcome.replies);
        merged.no_response.extend(outcome.no_response);
        merged.unreachable.extend(outcome.unreachable);
        merged.unexpected.extend(outcome.unexpected);
    }
    merged.replies.sort_by(|left, right| left.node.cmp(&right.node));
    merged.no_response.sort();
    merged.unreachable.sort();
    merged.unexpected.sort_by(|left, right| left.node.cmp(&right.node));
    merged.total_ms = started.elapsed().as_millis() as u64;
    merged
}
