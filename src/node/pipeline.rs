//! The request pipeline: from bytes off the broker to a signed reply.
//!
//! The steps run in the order docs/ARCHITECTURE.md gives (`node`): size, signature, reply
//! destination, age and ttl, replay, filter, agent and action, authorization, input validation,
//! run with a timeout, audit, signed reply. The replay step is split: a replay of an id already
//! taken is refused at its place in the order, but an id is only remembered once its request
//! passed the filter and authorization, so requests for other nodes or refused by policy take
//! no room in the window.
//! Each step is counted in [`Stats`]. Nothing here can panic on what arrives from the network:
//! a bad message costs one counter, one audit line and (where the sender is proven) one reply.
//!
//! The pipeline is split in two so a caller can bound concurrency between the halves:
//! [`Pipeline::admit`] does every check synchronously, and [`Pipeline::execute`] runs the
//! action and seals the reply.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use futures_util::FutureExt;
use std::time::Duration;

use tracing::{debug, warn};

use serde_json::{Map, Value};

use crate::agents::{ActionContext, ActionOutcome, Agent, AgentRegistry, Call};
use crate::broker::{Destination, is_reply_address_of};
use crate::node::audit::{AuditLog, AuditRecord, Outcome};
use crate::node::facts::NodeInventory;
use crate::node::filter_cache::FilterCache;
use crate::node::once::{self, Claim, OnceTable};
use crate::node::policy::Authorization;
use crate::node::stats::{ActionSeriesTable, Stats};
use crate::protocol::claims::{ClaimedRequest, dangerous_claimed_request};
use crate::protocol::{Reply, Request, StatusCode, now_ms};
use crate::security::replay::{ReplayWindow, Replayed};
use crate::security::{
    OpenError, Security, SharedSecurity, Verified, check_age, check_ttl_within, expires_at_ms,
};

/// Everything the pipeline knows about this node at one moment; swapped whole on reload so a
/// request always sees one consistent set of facts, classes and agents.
pub struct NodeSnapshot {
    pub inventory: NodeInventory,
    pub context: ActionContext,
    pub registry: AgentRegistry,
    /// The policies in force; [`Authorization::default`] allows everything.
    pub authorization: Arc<Authorization>,
}

/// A snapshot with the metric series of its agents, made once per (re)load.
fn with_series(snapshot: NodeSnapshot, stats: &Stats) -> (Arc<NodeSnapshot>, Arc<ActionSeriesTable>) {
    let series = Arc::new(stats.actions.series(&snapshot.registry));
    (Arc::new(snapshot), series)
}

/// Fixed settings of a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub identity: String,
    pub max_message_bytes: usize,
    pub clock_skew: Duration,
    pub replay_capacity: usize,
    /// The longest ttl accepted (`requests.max_ttl_secs`); a longer one is answered status 4.
    pub max_ttl_secs: u32,
    /// The longest any action may run, whatever its definition declares; an action is stopped
    /// at the shorter of this and its agent's timeout and answered with status 5.
    pub action_timeout: Duration,
}

/// What [`Pipeline::admit`] decided about one message.
pub enum Admission {
    /// Refused or not for us; already counted (and audited where it is a refusal).
    Dropped,
    /// Answer at once without running anything (unknown action, invalid input, ...).
    Answer(Verified<Request>, ActionOutcome),
    /// Refused by an authorization policy: answer "not authorized" (status 1) without running.
    /// The last field names the rule that refused it, for the audit log only.
    Unauthorized(Verified<Request>, ActionOutcome, String),
    /// Run this agent's action, then answer.
    Run(Admitted),
}

/// A request that passed every check, with its inputs checked against the agent's definition
/// and defaults filled in.
pub struct Admitted {
    pub request: Verified<Request>,
    pub agent: Arc<dyn Agent>,
    pub snapshot: Arc<NodeSnapshot>,
    pub inputs: Map<String, Value>,
}

/// A signed reply and where it goes.
pub struct SealedReply {
    pub destination: Destination,
    pub bytes: Vec<u8>,
    pub ttl: Duration,
}

/// One node's request pipeline. Shared between tasks behind an `Arc`.
pub struct Pipeline {
    settings: PipelineSettings,
    /// Swapped whole on SIGHUP, so a rotated key or trusted-keys directory takes effect
    /// without a restart.
    security: SharedSecurity,
    replay: Mutex<ReplayWindow>,
    filters: Mutex<FilterCache>,
    /// The snapshot, and the metric series of its agents' actions (made with it).
    snapshot: RwLock<(Arc<NodeSnapshot>, Arc<ActionSeriesTable>)>,
    pub stats: Arc<Stats>,
    audit: Option<Arc<AuditLog>>,
    /// The `once` keys run here (a tracked rollout's actions).
    once: OnceTable,
}

/// What running an admitted request gave: the outcome, and the earlier request it repeats
/// when the request's `once` key had already run here (nothing ran this time).
#[derive(Debug)]
pub struct Ran {
    pub outcome: ActionOutcome,
    pub earlier: Option<uuid::Uuid>,
}

impl Pipeline {
    pub fn new(
        settings: PipelineSettings,
        security: Arc<Security>,
        snapshot: NodeSnapshot,
        stats: Arc<Stats>,
        audit: Option<Arc<AuditLog>>,
    ) -> Pipeline {
        let replay = Mutex::new(ReplayWindow::new(settings.replay_capacity));
        Pipeline {
            settings,
            security: SharedSecurity::new(Arc::unwrap_or_clone(security)),
            replay,
            filters: Mutex::new(FilterCache::default()),
            snapshot: RwLock::new(with_series(snapshot, &stats)),
            stats,
            audit,
            once: OnceTable::default(),
        }
    }

    pub fn identity(&self) -> &str {
        &self.settings.identity
    }

    /// The keys in force now.
    pub fn security(&self) -> Arc<Security> {
        self.security.current()
    }

    /// Replaces the keys (SIGHUP: a rotated key or a changed trusted-keys directory). Requests
    /// already being checked finish with the keys they started with.
    pub fn replace_security(&self, security: Security) {
        self.security.replace(security);
    }

    /// The current snapshot of facts, classes and agents.
    pub fn snapshot(&self) -> Arc<NodeSnapshot> {
        self.current().0
    }

    /// The metric series of the current snapshot's agents and actions.
    fn series(&self) -> Arc<ActionSeriesTable> {
        self.current().1
    }

    fn current(&self) -> (Arc<NodeSnapshot>, Arc<ActionSeriesTable>) {
        // A poisoned lock means a panic while swapping two Arcs, which cannot leave the value
        // half-written; keep serving the last snapshot.
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the snapshot (after facts, classes or agents were reloaded).
    pub fn replace_snapshot(&self, snapshot: NodeSnapshot) {
        let current = with_series(snapshot, &self.stats);
        match self.snapshot.write() {
            Ok(mut guard) => *guard = current,
            Err(poisoned) => *poisoned.into_inner() = current,
        }
    }

    /// Every check before running anything, in the documented order.
    pub fn admit(&self, body: &[u8]) -> Admission {
        let counters = &self.stats.counters;
        Stats::count(&counters.received);

        let security = self.security();
        let request = match security.open_request(body, self.settings.max_message_bytes) {
            Ok(request) => request,
            Err(error) => {
                self.refuse_unopened(body, &error);
                return Admission::Dropped;
            }
        };

        if security.proves_callers() && request.caller != request.key_id() {
            // With ed25519 the key proves who signed; a request naming another caller is a
            // request re-signed by someone else, or a misconfigured client.
            Stats::count(&counters.bad_signature);
            let reason = format!(
                "caller {:?} does not match the key that signed the request ({:?}); the caller must be the key's name",
                request.caller,
                request.key_id()
            );
            self.audit_refusal(&request, reason);
            return Admission::Dropped;
        }

        let snapshot = self.snapshot();
        // Before anything can be answered: a node publishes replies only into a client reply
        // queue of the request's collective, one this node serves, never into another node's
        // queue or whatever else a request names (security review finding 10).
        let serves_collective =
            snapshot.context.collectives.iter().any(|served| *served == request.collective);
        if !serves_collective || !is_reply_address_of(&request.reply_to, &request.collective) {
            Stats::count(&counters.bad_reply_to);
            let reason = format!(
                "reply_to {:?} is not a client reply queue ({}.reply.<id>) of collective {:?}, or this node \
                 does not serve that collective; no reply sent (a broken or hostile client)",
                shortened(&request.reply_to),
                shortened(&request.collective),
                shortened(&request.collective),
            );
            self.audit_refusal(&request, reason);
            return Admission::Dropped;
        }

        let now = now_ms();
        let skew_ms = self.settings.clock_skew.as_millis() as u64;
        if let Err(stale) = check_age(request.time_ms, request.ttl_secs, now, skew_ms) {
            Stats::count(&counters.expired);
            self.audit_refusal(&request, format!("expired: {stale}"));
            return Admission::Dropped;
        }
        if let Err(too_long) = check_ttl_within(request.ttl_secs, self.settings.max_ttl_secs) {
            // Fresh and signed, so the sender gets told why; nothing is remembered or run.
            let outcome = ActionOutcome::fail(StatusCode::InvalidData, too_long.to_string());
            return Admission::Answer(request, outcome);
        }

        // A replay of a request this node already took is refused here, before anything is
        // spent on it; the id is only remembered further down, once the request is known to be
        // for this node and allowed (security review finding 3).
        if let Err(replay) = self.replay_window().seen(request.id, now) {
            Stats::count(&counters.replayed);
            self.audit_refusal(&request, format!("replay: {replay}"));
            return Admission::Dropped;
        }

        let compiled = self.filters.lock().unwrap_or_else(PoisonError::into_inner).compile(&request.filter);
        match compiled {
            Ok(filter) if filter.matches(&snapshot.inventory) => {}
            Ok(_) => {
                Stats::count(&counters.filtered);
                debug!(request = %request.id, "filter does not match this node");
                return Admission::Dropped;
            }
            Err(error) => {
                // The client checks filters before sending, so this is a foreign or broken
                // client; say so rather than silently looking like a node that did not match.
                let outcome = ActionOutcome::fail(StatusCode::InvalidData, error.to_string());
                return Admission::Answer(request, outcome);
            }
        }

        let Some(agent) = snapshot.registry.agent(&request.agent).cloned() else {
            // The caller may not be allowed anything here: it learns only that this agent is
            // missing, not which agents the node has (security review finding 11).
            debug!(request = %request.id, agent = %request.agent, agents = ?snapshot.registry.names(), "unknown agent");
            let message = format!("unknown agent \"{}\" on {}", request.agent, self.settings.identity);
            return Admission::Answer(request, ActionOutcome::fail(StatusCode::UnknownAction, message));
        };
        let definition = agent.definition().clone();
        let Some(action) = definition.action(&request.action) else {
            // The actions are the agent's published definition (`baton doc`), not a secret.
            let message = format!(
                "agent \"{}\" has no action \"{}\" (actions: {})",
                request.agent,
                request.action,
                definition.action_names().join(", ")
            );
            return Admission::Answer(request, ActionOutcome::fail(StatusCode::UnknownAction, message));
        };

        // Inputs are checked before the policy decides, so that input conditions in policies
        // see validated values with defaults filled in; the caller still hears "not authorized"
        // before it hears anything about its inputs.
        let inputs = action.validate_inputs(&request.agent, &request.action, &request.data);
        let decision = snapshot.authorization.decide_request(
            &request.caller,
            &request.agent,
            &request.action,
            &snapshot.inventory,
            inputs.as_ref().ok(),
        );
        if !decision.allowed {
            warn!(node = %self.settings.identity, caller = %request.caller, agent = %request.agent,
                action = %request.action, rule = %decision.rule, "request not authorized");
            // Which rule refused it goes to the audit log and the node's log, not to the
            // caller (security review finding 11).
            let message = format!(
                "not authorized: {} may not run {}#{} on {}",
                request.caller, request.agent, request.action, self.settings.identity
            );
            let outcome = ActionOutcome::fail(StatusCode::Aborted, message);
            return Admission::Unauthorized(request, outcome, decision.rule);
        }

        let expires_at = expires_at_ms(request.time_ms, request.ttl_secs, skew_ms);
        if let Err(refusal) = self.replay_window().remember(request.id, &request.caller, expires_at, now) {
            self.audit_refusal(&request, format!("replay: {refusal}"));
            return match refusal {
                Replayed::Duplicate { .. } => {
                    Stats::count(&counters.replayed);
                    Admission::Dropped
                }
                // An authorized caller sending faster than the window allows is told so at
                // once (status 5, the window's own message), instead of waiting out its
                // timeout for a reply that never comes; nothing runs, nothing is remembered.
                Replayed::WindowFull { .. } | Replayed::CallerShareFull { .. } => {
                    Stats::count(&counters.replay_window_full);
                    let message = format!("{refusal} (refused by {})", self.settings.identity);
                    Admission::Answer(request, ActionOutcome::fail(StatusCode::UnknownError, message))
                }
            };
        }

        // The client checks inputs too, but a request may come from anything holding a key.
        match inputs {
            Ok(inputs) => Admission::Run(Admitted { request, agent, snapshot, inputs }),
            Err(error) => {
                let message = format!("{error} (refused by {})", self.settings.identity);
                Admission::Answer(request, ActionOutcome::fail(error.status(), message))
            }
        }
    }

    fn replay_window(&self) -> MutexGuard<'_, ReplayWindow> {
        // A panic while holding the lock cannot leave the window inconsistent in a way that
        // opens a replay hole (each insert is one map and one set insert); keep using it.
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs an admitted request: its action, unless its `once` key already ran here
    /// ([`crate::node::once`]). Never panics and never hangs past the action's timeout (a
    /// request waiting for another's run of the same key waits that run's timeout).
    pub async fn run(&self, admitted: &Admitted) -> Ran {
        let request = &admitted.request;
        let Some(key) = &request.once else {
            return Ran { outcome: self.run_action(admitted).await, earlier: None };
        };
        let earlier =
            match self.once.claim(key, &request.agent, &request.action, &admitted.inputs, request.id) {
                Claim::Run(running) => {
                    let outcome = self.run_action(admitted).await;
                    running.finish(&outcome);
                    return Ran { outcome, earlier: None };
                }
                Claim::Earlier(earlier) => Some(earlier),
                Claim::Wait(receiver) => once::wait(receiver).await,
            };
        match earlier {
            Some(earlier) => Ran { outcome: earlier.outcome, earlier: Some(earlier.request_id) },
            // The run this request waited for was abandoned (the node is stopping).
            None => Ran {
                outcome: ActionOutcome::fail(
                    StatusCode::Aborted,
                    format!(
                        "{}#{} was being run for {key} by another request, which was stopped before it ended; send it again",
                        request.agent, request.action
                    ),
                ),
                earlier: None,
            },
        }
    }

    /// Runs an admitted action with its timeout. Never panics and never hangs past the timeout.
    async fn run_action(&self, admitted: &Admitted) -> ActionOutcome {
        let Admitted { request, agent, snapshot, inputs } = admitted;
        let timeout = agent.timeout().min(self.settings.action_timeout);
        // Admitted, so the agent and action exist here: bounded labels.
        let _running = self.series().of(&request.agent, &request.action).running();
        let call = Call {
            action: &request.action,
            data: inputs,
            request_id: request.id,
            caller: &request.caller,
            sender: &request.sender,
        };
        // A panicking agent is a bug in that agent, not a reason to lose the reply: it is
        // caught here and answered with status 5 like any other crash.
        let call = std::panic::AssertUnwindSafe(agent.call(call, &snapshot.context)).catch_unwind();
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(mut outcome)) => {
                if outcome.status.is_ok()
                    && let Some(action) = agent.definition().action(&request.action)
                {
                    action.fill_output_defaults(&mut outcome.data);
                }
                outcome
            }
            Ok(Err(_panic)) => {
                Stats::count(&self.stats.counters.failed);
                ActionOutcome::fail(
                    StatusCode::UnknownError,
                    format!(
                        "{}#{} crashed on {} (see the daemon's log)",
                        request.agent, request.action, self.settings.identity
                    ),
                )
            }
            Err(_) => {
                Stats::count(&self.stats.counters.timed_out);
                ActionOutcome::fail(
                    StatusCode::UnknownError,
                    format!(
                        "{}#{} did not finish within {} s and was stopped",
                        request.agent,
                        request.action,
                        timeout.as_secs()
                    ),
                )
            }
        }
    }

    /// Counts and audits an outcome and seals the reply. Every reply status is counted here,
    /// and only here, whichever step produced it.
    pub fn finish(&self, request: &Verified<Request>, outcome: ActionOutcome) -> SealedReply {
        self.count_status(outcome.status);
        let reason = outcome.message.clone();
        self.seal(request, outcome, Outcome::Accepted, reason)
    }

    fn count_status(&self, status: StatusCode) {
        let counters = &self.stats.counters;
        match status {
            StatusCode::Ok => Stats::count(&counters.ok),
            StatusCode::MissingData | StatusCode::InvalidData => Stats::count(&counters.invalid_input),
            StatusCode::UnknownAction => Stats::count(&counters.unknown_action),
            StatusCode::Aborted | StatusCode::UnknownError => Stats::count(&counters.failed),
        }
    }

    /// As [`Pipeline::finish`], for what [`Pipeline::run`] gave: an answer repeated from an
    /// earlier run of the same `once` key is audited as `remembered`, naming that run.
    pub fn finish_ran(&self, request: &Verified<Request>, ran: Ran) -> SealedReply {
        let Some(earlier) = ran.earlier else { return self.finish(request, ran.outcome) };
        self.count_status(ran.outcome.status);
        let reason = format!(
            "not run again: request {earlier} ran it for {}",
            request.once.as_deref().unwrap_or_default()
        );
        self.seal(request, ran.outcome, Outcome::Remembered, reason)
    }

    /// Counts, audits and seals the "not authorized" answer to a request a policy refused.
    /// Counted as `unauthorized`, not as a failed action: nothing ran. The audit line names
    /// the `rule` that refused it; the reply does not.
    pub fn finish_unauthorized(
        &self,
        request: &Verified<Request>,
        outcome: ActionOutcome,
        rule: &str,
    ) -> SealedReply {
        Stats::count(&self.stats.counters.unauthorized);
        let reason = format!("{} ({rule})", outcome.message);
        self.seal(request, outcome, Outcome::Refused, reason)
    }

    fn seal(
        &self,
        request: &Verified<Request>,
        outcome: ActionOutcome,
        audited_as: Outcome,
        reason: String,
    ) -> SealedReply {
        self.audit(request, audited_as, Some(outcome.status), reason);
        self.series().of(&request.agent, &request.action).answered(outcome.status);

        let reply = Reply {
            request_id: request.id,
            sender: self.settings.identity.clone(),
            agent: request.agent.clone(),
            action: request.action.clone(),
            time_ms: now_ms(),
            status: outcome.status,
            status_message: outcome.message,
            data: outcome.data,
        };
        SealedReply {
            destination: Destination::Reply(request.reply_to.clone()),
            bytes: self.security().seal_reply(&reply),
            ttl: Duration::from_secs(u64::from(request.ttl_secs.max(1))),
        }
    }

    /// The whole pipeline for one message, without a concurrency bound: for tests and callers
    /// that bound concurrency themselves.
    pub async fn handle(&self, body: &[u8]) -> Option<SealedReply> {
        match self.admit(body) {
            Admission::Dropped => None,
            Admission::Answer(request, outcome) => Some(self.finish(&request, outcome)),
            Admission::Unauthorized(request, outcome, rule) => {
                Some(self.finish_unauthorized(&request, outcome, &rule))
            }
            Admission::Run(admitted) => {
                let ran = self.run(&admitted).await;
                Some(self.finish_ran(&admitted.request, ran))
            }
        }
    }

    /// Counts and audits a message that could not be opened. The audit line carries what the
    /// message claims about itself (marked unverified) so an operator can match it to a client.
    fn refuse_unopened(&self, body: &[u8], error: &OpenError) {
        let counters = &self.stats.counters;
        let counter = match error {
            OpenError::TooLarge { .. } => &counters.too_large,
            OpenError::BadSignature { .. }
            | OpenError::UnknownKey { .. }
            | OpenError::ForgedSignature { .. } => &counters.bad_signature,
            _ => &counters.malformed,
        };
        Stats::count(counter);
        warn!(node = %self.settings.identity, %error, "request refused");
        if let Some(audit) = &self.audit {
            let claimed = dangerous_claimed(body, self.settings.max_message_bytes);
            let record = AuditRecord::unverified(&claimed, format!("{error}"));
            if let Err(error) = audit.write(&record) {
                warn!(%error, "cannot write the audit log");
            }
        }
    }

    fn audit_refusal(&self, request: &Request, reason: String) {
        warn!(node = %self.settings.identity, request = %request.id, %reason, "request refused");
        self.audit(request, Outcome::Refused, None, reason);
    }

    fn audit(&self, request: &Request, outcome: Outcome, status: Option<StatusCode>, reason: String) {
        if let Some(audit) = &self.audit {
            let record = AuditRecord::for_request(request, outcome, status, reason);
            if let Err(error) = audit.write(&record) {
                warn!(%error, "cannot write the audit log");
            }
        }
    }
}

/// What a message that failed verification claims to be, for the audit line only: nothing in
/// it is trusted or acted on, the payload is never decoded in full (see
/// [`dangerous_claimed_request`]), and the audit record marks it unverified.
fn dangerous_claimed(body: &[u8], limit: usize) -> ClaimedRequest {
    match crate::protocol::Envelope::decode(body, limit) {
        Ok(envelope) => dangerous_claimed_request(&envelope.payload),
        Err(_) => ClaimedRequest::default(),
    }
}

/// The longest text from a request that a refusal repeats.
const MAX_REPEATED_CHARS: usize = 128;

/// `text` cut to [`MAX_REPEATED_CHARS`], for repeating a request's field in a refusal.
fn shortened(text: &str) -> &str {
    match text.char_indices().nth(MAX_REPEATED_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}
