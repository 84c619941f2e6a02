//! Jobs: one request the console sends for a logged-in user, its per-node results as they
//! arrive, and its place in the history.
//!
//! A job is prepared by [`client::prepare`], as `baton rpc` is: the names and the filter are
//! checked, each input's text is converted by its declared type and the inputs are validated,
//! and the reply timeout follows the definition. It goes to the registered nodes the filter selects
//! (quiet ones excluded), through the same [`Client`] the CLI uses, so every target ends
//! replied, unreachable or silent, and the outcome (with its aggregates) is the same
//! [`OutcomeReport`] document `baton rpc --json` prints. Each event is kept in the job and announced on a `watch`
//! channel; the page follows it with server-sent events, from the start whenever it connects.
//! Finished jobs are written to the [`Store`].
//!
//! Requests name the user as caller (`user=NAME`). With `ed25519` the console signs as the
//! user with their own key from the user key directory when one is configured; without one
//! it signs with its own key, and the caller is that key's name (nodes insist on it).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::registry::Registry;
use super::store::{JobRecord, Store};
use crate::agents::catalog::Catalog;
use crate::broker::Broker;
use crate::client::definitions::{self, Completion, DefinitionCache, complete_catalog};
use crate::client::report::OutcomeReport;
use crate::client::rollout::{RolloutOutcome, order_targets};
use crate::client::{
    self, Amount, CallOutcome, Client, ClientSettings, Event, NodeReply, PreparedRequest, RequestText,
    RolloutOptions, Targets,
};
use crate::config::ClientConfig;
use crate::protocol::filter::FilterSpec;
use crate::protocol::now_ms;
use crate::security::{Security, SharedSecurity};

/// How many jobs' live events are kept in memory (finished ones are in the store). Running
/// jobs are never dropped; they are bounded by [`MAX_RUNNING`].
const LIVE_JOBS: usize = 64;

/// How many jobs may run at once, in all.
pub const MAX_RUNNING: usize = 32;

/// How many jobs one user may run at once.
pub const MAX_RUNNING_PER_USER: usize = 8;

/// Why a job was not started.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Something the user must fix (bad filter, input, agent or action): nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// The console cannot send as this user.
    #[error("{0}")]
    Identity(String),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// Too many jobs run already (for this user, or in all): try again when one finishes.
    #[error("{0}")]
    Busy(String),
}

/// What the page asks for: an action, its inputs as typed into the form, and the filter.
#[derive(Debug, Clone, Deserialize)]
pub struct JobRequest {
    pub agent: String,
    pub action: String,
    /// Input name to the text typed (or JSON for structured inputs, as on the command line).
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(default, deserialize_with = "strict_filter")]
    pub filter: FilterSpec,
    /// Explicit targets instead of every registered node the filter selects (a clone's targets).
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
    /// For an action its definition does not declare read-only: how many nodes the user
    /// confirmed it may touch. The job is refused unless that is how many it targets.
    #[serde(default)]
    pub confirmed_nodes: Option<usize>,
    /// Nodes per batch (`5` or `20%`), as `baton rpc --batch`; empty or absent: all at once.
    #[serde(default)]
    pub batch: Option<String>,
    /// Failures tolerated before no further batch is sent (`2` or `10%`), as `--max-failures`.
    #[serde(default)]
    pub max_failures: Option<String>,
    /// Sent by the page on its own (a status refresh), not asked for: see [`JobRecord::automatic`].
    #[serde(default)]
    pub automatic: bool,
}

impl JobRequest {
    /// A request for `agent#action` with these inputs, to explicit `nodes` or to the filter's.
    pub fn new(agent: &str, action: &str, inputs: Map<String, Value>, filter: FilterSpec) -> JobRequest {
        JobRequest {
            agent: agent.to_owned(),
            action: action.to_owned(),
            inputs,
            filter,
            nodes: None,
            confirmed_nodes: None,
            batch: None,
            max_failures: None,
            automatic: false,
        }
    }

    /// The rollout the form asked for (batch size, max failures), or `None` to send at once.
    fn rollout(&self) -> Result<Option<RolloutOptions>, JobError> {
        let amount = |text: &Option<String>, what: &str| -> Result<Option<Amount>, JobError> {
            match text.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
                None => Ok(None),
                Some(text) => {
                    text.parse().map(Some).map_err(|error| JobError::Invalid(format!("{what}: {error}")))
                }
            }
        };
        let batch = amount(&self.batch, "batch size")?;
        let max_failures = amount(&self.max_failures, "max failures")?;
        if matches!(batch, Some(Amount::Count(0) | Amount::Percent(0))) {
            return Err(JobError::Invalid("batch size: at least 1 node (or 1%)".to_owned()));
        }
        if batch.is_none() && max_failures.is_none() {
            return Ok(None);
        }
        // Canaries and health checks are the CLI's (`--canary`, `--check`); the form has neither.
        Ok(Some(RolloutOptions {
            batch,
            batch_sleep: Duration::ZERO,
            max_failures,
            canary: None,
            check: None,
        }))
    }
}

/// Refuses an action that changes something unless the user confirmed it for exactly the
/// number of nodes it is about to go to (the selection may have changed since the page asked).
/// `read_only` is what the action's definition declares; without one an action changes things.
pub fn check_confirmed(
    what: &str,
    read_only: bool,
    confirmed: Option<usize>,
    targets: usize,
) -> Result<(), JobError> {
    if read_only {
        return Ok(());
    }
    let nodes = |count: usize| format!("{count} node{}", if count == 1 { "" } else { "s" });
    match confirmed {
        Some(count) if count == targets => Ok(()),
        Some(count) => Err(JobError::Invalid(format!(
            "{what} was confirmed for {} but would now go to {}: the selection changed; check it and confirm again",
            nodes(count),
            nodes(targets)
        ))),
        None => Err(JobError::Invalid(format!(
            "{what} changes things on {}: it needs a confirmation naming that count (it is not declared read-only)",
            nodes(targets)
        ))),
    }
}

/// The filter as the page sends it: [`FilterSpec`]'s keys and no others. A misspelt key
/// (`facts`) must be refused, not ignored: ignoring it would send the job to every node.
/// (The wire type stays lenient for CBOR compatibility; only the console's JSON is strict.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictFilter {
    #[serde(default)]
    identity: Vec<String>,
    #[serde(default)]
    class: Vec<String>,
    #[serde(default)]
    fact: Vec<String>,
    #[serde(default)]
    agent: Vec<String>,
    #[serde(default)]
    select: Vec<String>,
}

/// Deserializes a console filter, refusing unknown keys (see [`StrictFilter`]).
pub fn strict_filter<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<FilterSpec, D::Error> {
    let StrictFilter { identity, class, fact, agent, select } = StrictFilter::deserialize(deserializer)?;
    Ok(FilterSpec { identity, class, fact, agent, select })
}

/// Parses a console filter's JSON text, refusing unknown keys (see [`StrictFilter`]).
pub fn parse_strict_filter(text: &str) -> Result<FilterSpec, serde_json::Error> {
    strict_filter(&mut serde_json::Deserializer::from_str(text))
}

/// What the page is told about a job, in order, as server-sent events (`{"type": ...}`): it
/// started, its request is being sent, each node's reply or unreachability, a reply from a node
/// not targeted, and its end (the record with the outcome). The shape of the console's event
/// API lives here only.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent<'a> {
    Started {
        job: &'a JobRecord,
    },
    /// The client announces a request just before it publishes it: the publish may still fail
    /// (the broker down), so this says `sending`, not `sent`.
    Sending {
        request_id: uuid::Uuid,
        targets: Option<usize>,
    },
    Reply {
        reply: &'a NodeReply,
    },
    Unreachable {
        node: &'a str,
    },
    Unexpected {
        reply: &'a NodeReply,
    },
    /// A batched job is about to send batch `index` (1-based) of `of` to these nodes.
    Batch {
        index: usize,
        of: usize,
        nodes: &'a [String],
    },
    /// A batched job stopped at its max failures: these nodes are not sent the request.
    Skipped {
        nodes: &'a [String],
        failures: usize,
        max_failures: usize,
    },
    /// Someone asked to cancel the job: nothing more is sent or waited for.
    Cancelled {
        by: &'a str,
    },
    Finished {
        job: &'a JobRecord,
    },
}

impl JobEvent<'_> {
    /// The event as the JSON the page reads.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// One job's live events, in order, and whether it has finished.
pub struct LiveJob {
    events: Mutex<Vec<Value>>,
    progress: watch::Sender<(usize, bool)>,
    /// Who asked to cancel it, once someone did.
    cancel: watch::Sender<Option<String>>,
}

impl LiveJob {
    fn new() -> LiveJob {
        LiveJob {
            events: Mutex::new(Vec::new()),
            progress: watch::channel((0, false)).0,
            cancel: watch::channel(None).0,
        }
    }

    /// Asks the job to stop: no further batch is sent and no more replies are awaited.
    /// Returns false when it had finished already.
    pub fn cancel(&self, by: &str) -> bool {
        if self.is_finished() {
            return false;
        }
        self.cancel.send_if_modified(|cancel| {
            if cancel.is_some() {
                return false;
            }
            *cancel = Some(by.to_owned());
            true
        });
        true
    }

    /// Resolves with who cancelled the job, once someone does.
    async fn cancelled(&self) -> String {
        let mut cancel = self.cancel.subscribe();
        loop {
            if let Some(by) = cancel.borrow_and_update().clone() {
                return by;
            }
            if cancel.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn push(&self, event: Value, last: bool) {
        let count = {
            let mut events = self.lock();
            events.push(event);
            events.len()
        };
        self.progress.send_replace((count, last));
    }

    /// Events from index `from` on.
    pub fn events_from(&self, from: usize) -> Vec<Value> {
        self.lock().iter().skip(from).cloned().collect()
    }

    /// A receiver that changes whenever an event is added: (events so far, finished).
    pub fn subscribe(&self) -> watch::Receiver<(usize, bool)> {
        self.progress.subscribe()
    }

    /// Whether the `finished` event has been pushed.
    pub fn is_finished(&self) -> bool {
        self.progress.borrow().1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ends a job's events however its task ends: when the task stops without finishing (a panic,
/// or the runtime shutting down), the job is recorded as failed and `finished` is still sent,
/// so no page waits forever for it.
struct FinishGuard {
    live: Arc<LiveJob>,
    record: Option<JobRecord>,
    store: Arc<Store>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else { return };
        if self.live.is_finished() {
            return;
        }
        record.finished_ms = Some(now_ms());
        record.state = "failed".to_owned();
        record.outcome = json!({"error": "the job stopped unexpectedly (see the console's log)"});
        let store = self.store.clone();
        let saved = record.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || {
                if let Err(error) = store.save_job(&saved) {
                    warn!(job = %saved.id, %error, "cannot record the failed job");
                }
            });
        }
        self.live.push(JobEvent::Finished { job: &record }.to_json(), true);
    }
}

/// Who a job is run for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requester {
    /// The logged-in user; `None` when the console has no login (loopback only).
    pub user: Option<String>,
}

impl Requester {
    pub fn name(&self) -> String {
        self.user.clone().unwrap_or_else(|| "(no login)".to_owned())
    }
}

/// Starts jobs and keeps them.
pub struct Jobs {
    config: ClientConfig,
    broker: Broker,
    /// The console's own keys, replaced on SIGHUP ([`Jobs::reload_keys`]); shared with the
    /// registration follower and every client that signs as the console.
    security: Arc<SharedSecurity>,
    user_keys: Option<PathBuf>,
    /// Built-in and `definitions_dir` definitions, plus those fetched from nodes as jobs need
    /// them (`client::definitions`).
    catalog: std::sync::RwLock<Catalog>,
    definitions_cache: Option<DefinitionCache>,
    registry: Arc<Registry>,
    store: Arc<Store>,
    clients: tokio::sync::Mutex<HashMap<Requester, Arc<Client>>>,
    live: Mutex<VecDeque<(String, Arc<LiveJob>)>>,
    running: Arc<tokio::sync::Semaphore>,
    running_per_user: Mutex<HashMap<Requester, Arc<tokio::sync::Semaphore>>>,
}

impl Jobs {
    pub fn new(
        config: ClientConfig,
        broker: Broker,
        security: Arc<SharedSecurity>,
        user_keys: Option<PathBuf>,
        catalog: Catalog,
        registry: Arc<Registry>,
        store: Arc<Store>,
    ) -> Jobs {
        Jobs {
            config,
            broker,
            security,
            user_keys,
            catalog: std::sync::RwLock::new(catalog),
            definitions_cache: DefinitionCache::user(),
            registry,
            store,
            clients: tokio::sync::Mutex::default(),
            live: Mutex::default(),
            running: Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING)),
            running_per_user: Mutex::default(),
        }
    }

    /// Jobs waiting for replies now.
    pub fn running(&self) -> usize {
        MAX_RUNNING.saturating_sub(self.running.available_permits())
    }

    /// The definitions known now (a copy: fetching one for a job adds to it).
    pub fn catalog(&self) -> Catalog {
        self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Makes sure the catalog has `agent`'s definition if any node has it, as `baton rpc`
    /// does: cached, or asked of the nodes through `requester`'s client.
    async fn complete_catalog(&self, requester: &Requester, agent: &str) {
        let mut catalog = self.catalog();
        let fetch = async {
            let (client, _) = self.client_for(requester).await?;
            let timeout = Duration::from_secs(self.config.discovery_timeout_secs.max(1));
            Ok::<_, JobError>(definitions::fetch(&client, agent, timeout).await?)
        };
        let completion = complete_catalog(&mut catalog, self.definitions_cache.as_ref(), agent, fetch).await;
        if completion != Completion::NotNeeded
            && let Some(definition) = catalog.definition(agent)
        {
            let mut shared = self.catalog.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            shared.insert(definition.clone());
        }
    }

    /// The caller requests name for `requester`, and the keys to sign them with: `None` for
    /// the console's own, or the user's key (with the console's trusted keys) from `--user-keys`.
    fn signer(&self, requester: &Requester) -> Result<(String, Option<Security>), JobError> {
        let security = self.security.current();
        let Some(user) = &requester.user else {
            let caller = if security.proves_callers() {
                security.key_id().to_owned()
            } else {
                self.config.caller.clone()
            };
            return Ok((caller, None));
        };
        let caller = format!("user={user}");
        if !security.proves_callers() {
            return Ok((caller, None));
        }
        let Some(dir) = &self.user_keys else {
            // Without the users' keys the console can only sign as itself; nodes then see
            // the console's key name as the caller (docs/CONSOLE.md).
            return Ok((security.key_id().to_owned(), None));
        };
        let Security::Ed25519(console_keys) = security.as_ref() else {
            return Err(JobError::Identity("ed25519 keys expected".to_owned()));
        };
        let (key_file, _) = crate::security::ed25519::key_pair_paths(dir, &caller);
        let cannot_sign = |reason: String| {
            JobError::Identity(format!(
                "cannot sign as {caller}: {reason} (make the key with: baton keygen --name {caller} --dir {})",
                dir.display()
            ))
        };
        let keys = console_keys.signing_as(&key_file).map_err(|error| cannot_sign(error.to_string()))?;
        if keys.key_id() != caller {
            // Nodes would refuse every request (the caller must be the key's name); say why here.
            return Err(cannot_sign(format!("{} holds the key of {:?}", key_file.display(), keys.key_id())));
        }
        Ok((caller, Some(Security::Ed25519(Box::new(keys)))))
    }

    /// Loads the console's keys again (SIGHUP), as `batond` does: the private key and the
    /// trusted node keys, a broken trusted key file skipped and named, a private key or PSK that
    /// does not load keeping the previous keys. Every client then signs and checks with the new
    /// keys: those signing as the console share them, and a user's client gets the user's key
    /// read again beside the new trusted keys (a user whose key no longer loads loses their
    /// client, so their next job says why).
    pub async fn reload_keys(&self) {
        match self.config.security.reload_security() {
            Ok((security, skipped)) => {
                for problem in &skipped {
                    error!(%problem, "trusted key file skipped: replies and registrations signed with it are dropped until it is fixed");
                }
                info!(
                    scheme = security.scheme(),
                    key = security.key_id(),
                    skipped = skipped.len(),
                    "keys reloaded"
                );
                self.security.replace(security);
            }
            Err(error) => {
                error!(error = %format!("{error:#}"), "keys not reloaded; the previous keys stay in force");
                return;
            }
        }
        let mut clients = self.clients.lock().await;
        let mut unsigned = Vec::new();
        for (requester, client) in clients.iter() {
            match self.signer(requester) {
                Ok((_, None)) => {}
                Ok((_, Some(keys))) => client.replace_security(keys),
                Err(error) => {
                    error!(user = %requester.name(), %error, "cannot sign as this user after the reload");
                    unsigned.push(requester.clone());
                }
            }
        }
        // A dropped client's reply queue is kept until the console stops (its router has no
        // end of its own); this happens once per user whose key went away.
        for requester in unsigned {
            clients.remove(&requester);
        }
    }

    /// The client that sends as `requester`: one per user, sharing the console's connection.
    async fn client_for(&self, requester: &Requester) -> Result<(Arc<Client>, String), JobError> {
        if let Some(client) = self.clients.lock().await.get(requester) {
            return Ok((client.clone(), client.settings().caller.clone()));
        }
        // Built without holding the lock (loading a key and declaring a reply queue take time,
        // and other users' jobs must not wait for them); the first one built is kept.
        let (caller, own_keys) = self.signer(requester)?;
        let security = match own_keys {
            Some(keys) => Arc::new(SharedSecurity::new(keys)),
            None => self.security.clone(),
        };
        let settings = ClientSettings {
            identity: self.config.identity.clone(),
            caller: caller.clone(),
            collective: self.config.collective.clone(),
            ttl: Duration::from_secs(self.config.ttl_secs),
            max_message_bytes: self.config.broker.max_message_bytes,
        };
        let client = Arc::new(Client::with_broker(self.broker.clone(), security, settings).await?);
        let client = self.clients.lock().await.entry(requester.clone()).or_insert(client).clone();
        let caller = client.settings().caller.clone();
        Ok((client, caller))
    }

    /// Prepares the request as `baton rpc` does ([`client::prepare`]): names, filter, inputs
    /// by declared type and validated, the reply timeout. Empty form fields are left out.
    pub fn prepare(&self, request: &JobRequest) -> Result<PreparedRequest, JobError> {
        let inputs = request
            .inputs
            .iter()
            .filter(|(_, value)| !value.is_null() && value.as_str() != Some(""))
            .map(|(key, value)| (key.clone(), crate::protocol::ddl::plain_text(value)))
            .collect();
        let text = RequestText {
            agent: request.agent.clone(),
            action: request.action.clone(),
            inputs,
            filter: request.filter.clone(),
        };
        let configured = Duration::from_secs(self.config.timeout_secs);
        client::prepare(&self.catalog(), text, configured, None)
            .map_err(|error| JobError::Invalid(error.to_string()))
    }

    /// Checks and starts a job; returns its id at once. Results arrive on [`Jobs::live`].
    pub async fn start(&self, requester: &Requester, request: JobRequest) -> Result<String, JobError> {
        self.complete_catalog(requester, &request.agent).await;
        let prepared = self.prepare(&request)?;
        let filter = &prepared.spec.filter;
        let now = now_ms();
        let targets = match &request.nodes {
            Some(nodes) => {
                let known = self.registry.targets(filter, now);
                if let Some(unknown) = nodes.iter().find(|node| !known.contains(node)) {
                    return Err(JobError::Invalid(format!(
                        "node {unknown:?} is not among the selected nodes that are registered and not quiet"
                    )));
                }
                let mut nodes = nodes.clone();
                nodes.sort();
                nodes.dedup();
                nodes
            }
            None => self.registry.targets(filter, now),
        };
        if targets.is_empty() {
            return Err(JobError::Invalid(
                "no registered node that is not quiet matches the filter".to_owned(),
            ));
        }
        let read_only = prepared.read_only();
        let what = format!("{}#{}", request.agent, request.action);
        check_confirmed(&what, read_only, request.confirmed_nodes, targets.len())?;
        let rollout = request.rollout()?;
        let permits = self.reserve(requester)?;
        let (client, caller) = self.client_for(requester).await?;
        // Sign once now, so a request too large or otherwise unsendable fails here, not later.
        client.build_request(&prepared.spec)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let record = JobRecord {
            id: id.clone(),
            user: requester.name(),
            caller: caller.clone(),
            agent: request.agent.clone(),
            action: request.action.clone(),
            inputs: Value::Object(prepared.spec.data.clone()),
            filter: serde_json::to_value(&request.filter).unwrap_or_default(),
            targets: targets.clone(),
            started_ms: now,
            finished_ms: None,
            state: "running".to_owned(),
            outcome: Value::Null,
            // Only a read-only action may be kept out of the default history: a change is
            // always listed, whatever the page says of it (review of issue 14, finding 5).
            automatic: request.automatic && read_only,
        };
        let saved = record.clone();
        if let Err(error) = self.store.call(move |store| store.save_job(&saved)).await {
            warn!(job = %id, %error, "cannot record the job");
        }
        let live = Arc::new(LiveJob::new());
        {
            let mut jobs = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            jobs.push_back((id.clone(), live.clone()));
            evict_finished(&mut jobs, LIVE_JOBS);
        }
        live.push(JobEvent::Started { job: &record }.to_json(), false);
        let store = self.store.clone();
        let guard = FinishGuard { live: live.clone(), record: Some(record.clone()), store: store.clone() };
        tokio::spawn(async move {
            let _guard = guard;
            let _permits = permits;
            let events = live.clone();
            let mut on_event = move |event: &Event<'_>| {
                let event = match event {
                    Event::Sent { request_id, targets } => {
                        JobEvent::Sending { request_id: *request_id, targets: *targets }
                    }
                    Event::Reply(reply) => JobEvent::Reply { reply },
                    Event::Unreachable(node) => JobEvent::Unreachable { node },
                    Event::Unexpected(reply) => JobEvent::Unexpected { reply },
                    Event::BatchStarted { index, of, nodes } => {
                        JobEvent::Batch { index: *index, of: *of, nodes }
                    }
                    Event::Skipped { nodes, stopped } => JobEvent::Skipped {
                        nodes,
                        failures: stopped.failures,
                        max_failures: stopped.max_failures,
                    },
                    // Per-node states and checks are the CLI's rollout journal; the job's
                    // events show replies and batches.
                    Event::BatchFinished { .. } | Event::NodeState { .. } | Event::CheckFinished { .. } => {
                        return;
                    }
                };
                events.push(event.to_json(), false);
            };
            let call = async {
                match &rollout {
                    None => client
                        .call_prepared(&prepared, &Targets::Nodes(targets.clone()), &mut on_event)
                        .await
                        .map(|outcome| outcome_json(&outcome)),
                    Some(options) => {
                        let ordered = order_targets(&targets, None, None);
                        client
                            .rollout(&prepared, &ordered.nodes, options, &mut on_event)
                            .await
                            .map(|outcome| rollout_json(&outcome))
                    }
                }
            };
            let result = tokio::select! {
                result = call => Ok(result),
                by = live.cancelled() => Err(by),
            };
            let mut record = record;
            record.finished_ms = Some(now_ms());
            match result {
                Ok(Ok(outcome)) => {
                    record.state = "finished".to_owned();
                    record.outcome = outcome;
                }
                Ok(Err(error)) => {
                    record.state = "failed".to_owned();
                    record.outcome = json!({"error": error.to_string()});
                }
                Err(by) => {
                    live.push(JobEvent::Cancelled { by: &by }.to_json(), false);
                    record.state = "cancelled".to_owned();
                    record.outcome = cancelled_outcome(&record.targets, &live.events_from(0), &by);
                }
            }
            let saved = record.clone();
            if let Err(error) = store.call(move |store| store.save_job(&saved)).await {
                warn!(job = %record.id, %error, "cannot record the finished job");
            }
            live.push(JobEvent::Finished { job: &record }.to_json(), true);
        });
        Ok(id)
    }

    /// Takes a place for one more running job of `requester`, or says why there is none.
    fn reserve(
        &self,
        requester: &Requester,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), JobError> {
        let mine = self
            .running_per_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(requester.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING_PER_USER)))
            .clone();
        let mine = mine.try_acquire_owned().map_err(|_| {
            JobError::Busy(format!(
                "you already have {MAX_RUNNING_PER_USER} jobs running: wait for one to finish"
            ))
        })?;
        let total = self.running.clone().try_acquire_owned().map_err(|_| {
            JobError::Busy(format!("{MAX_RUNNING} jobs are running already: wait for one to finish"))
        })?;
        Ok((mine, total))
    }

    /// Cancels a running job for `requester`: nothing more is sent or waited for. Requests
    /// already sent cannot be called back. `Ok(false)` when it had finished already.
    pub fn cancel(&self, requester: &Requester, id: &str) -> Result<bool, JobError> {
        let live = self.live(id).ok_or_else(|| JobError::Invalid(format!("job {id} is not running")))?;
        Ok(live.cancel(&requester.name()))
    }

    /// The client that sends as the console itself (its own key and caller), for what the
    /// console asks on its own: the inventory at start.
    pub async fn own_client(&self) -> Result<Arc<Client>, JobError> {
        Ok(self.client_for(&Requester { user: None }).await?.0)
    }

    /// The live events of a job started since the console started (the latest [`LIVE_JOBS`]).
    pub fn live(&self, id: &str) -> Option<Arc<LiveJob>> {
        let jobs = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        jobs.iter().find(|(job, _)| job == id).map(|(_, live)| live.clone())
    }
}

/// Drops the oldest finished jobs until at most `keep` remain; running ones always stay.
fn evict_finished(jobs: &mut VecDeque<(String, Arc<LiveJob>)>, keep: usize) {
    let mut excess = jobs.len().saturating_sub(keep);
    jobs.retain(|(_, live)| {
        if excess > 0 && live.is_finished() {
            excess -= 1;
            return false;
        }
        true
    });
}

/// A finished call as the page and the history show it: the document of `baton rpc --json`.
pub fn outcome_json(outcome: &CallOutcome) -> Value {
    serde_json::to_value(OutcomeReport::new(outcome, None)).unwrap_or_default()
}

/// A finished batched job: the merged call's document, with its batches and why it stopped.
fn rollout_json(rollout: &RolloutOutcome) -> Value {
    let mut report = OutcomeReport::new(&rollout.call, None);
    report.stats.batches = Some(rollout.batches.len());
    report.stats.planned_batches = Some(rollout.planned_batches);
    let mut document = serde_json::to_value(report).unwrap_or_default();
    document["batches"] = serde_json::to_value(&rollout.batches).unwrap_or_default();
    document["stopped"] = serde_json::to_value(&rollout.stopped).unwrap_or_default();
    document
}

/// What is known of a cancelled job, from its events: the replies that had arrived, the
/// nodes that were unreachable, and those still awaited when it was cancelled.
fn cancelled_outcome(targets: &[String], events: &[Value], by: &str) -> Value {
    let replies: Vec<&Value> =
        events.iter().filter(|event| event["type"] == "reply").map(|event| &event["reply"]).collect();
    let unreachable: Vec<&str> = events
        .iter()
        .filter(|event| event["type"] == "unreachable")
        .filter_map(|event| event["node"].as_str())
        .collect();
    let awaited: Vec<&String> = targets
        .iter()
        .filter(|node| {
            !unreachable.contains(&node.as_str())
                && !replies.iter().any(|reply| reply["node"] == node.as_str())
        })
        .collect();
    json!({
        "error": format!(
            "cancelled by {by} with {} of {} nodes answered; {} still awaited (a request already sent may still run there)",
            replies.len(),
            targets.len(),
            awaited.len()
        ),
        "cancelled_by": by,
        "replies": replies,
        "unreachable": unreachable,
        "awaited": awaited,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(finished: bool) -> Arc<LiveJob> {
        let live = Arc::new(LiveJob::new());
        live.push(json!({"type": "started"}), false);
        if finished {
            live.push(json!({"type": "finished"}), true);
        }
        live
    }

    #[test]
    fn unknown_filter_keys_are_refused_naming_the_key_and_the_valid_ones() {
        for key in ["facts", "bogus"] {
            let error =
                parse_strict_filter(&format!(r#"{{"{key}": ["role=web"]}}"#)).expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
            for valid in ["identity", "class", "fact", "agent", "select"] {
                assert!(error.contains(valid), "{error}");
            }
            let request = serde_json::from_value::<JobRequest>(
                json!({"agent": "rpcutil", "action": "ping", "filter": {key: ["role=web"]}}),
            );
            assert!(request.expect_err(key).to_string().contains(key));
        }
        let spec = parse_strict_filter(r#"{"fact": ["role=web"], "identity": ["web01"]}"#).expect("valid");
        assert_eq!(spec.fact, ["role=web"]);
        assert_eq!(spec.identity, ["web01"]);
        let request: JobRequest =
            serde_json::from_value(json!({"agent": "rpcutil", "action": "ping"})).expect("no filter");
        assert!(request.filter.is_empty());
    }

    #[test]
    fn only_finished_jobs_leave_the_live_list() {
        let mut jobs: VecDeque<(String, Arc<LiveJob>)> = VecDeque::new();
        for (id, finished) in [("a", false), ("b", true), ("c", false), ("d", true), ("e", true)] {
            jobs.push_back((id.to_owned(), live(finished)));
        }
        evict_finished(&mut jobs, 3);
        assert_eq!(jobs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a", "c", "e"]);
        evict_finished(&mut jobs, 1);
        assert_eq!(
            jobs.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
            ["a", "c"],
            "running ones stay"
        );
    }

    #[test]
    fn a_changing_action_needs_a_confirmation_for_exactly_its_targets() {
        assert!(check_confirmed("rpcutil#ping", true, None, 204).is_ok(), "read-only: no confirmation");
        assert!(check_confirmed("puppet#runonce", false, Some(3), 3).is_ok());
        let missing =
            check_confirmed("puppet#runonce", false, None, 204).expect_err("unconfirmed").to_string();
        assert!(missing.contains("puppet#runonce changes things on 204 nodes"), "{missing}");
        let changed = check_confirmed("service#restart", false, Some(3), 4).expect_err("stale").to_string();
        assert!(changed.contains("confirmed for 3 nodes but would now go to 4"), "{changed}");
        assert!(check_confirmed("service#restart", false, Some(1), 1).is_ok());
    }

    #[test]
    fn batch_size_and_max_failures_are_read_like_the_cli_reads_them() {
        let form = |batch: &str, max: &str| {
            let mut request = JobRequest::new("puppet", "runonce", Map::new(), FilterSpec::default());
            request.batch = Some(batch.to_owned());
            request.max_failures = Some(max.to_owned());
            request.rollout()
        };
        assert!(form("", " ").expect("empty fields").is_none(), "empty fields: all at once");
        let options = form("5", "10%").expect("valid").expect("a rollout");
        assert_eq!(
            (options.batch, options.max_failures),
            (Some(Amount::Count(5)), Some(Amount::Percent(10)))
        );
        let only_max = form("", "0").expect("valid").expect("a rollout");
        assert_eq!((only_max.batch, only_max.max_failures), (None, Some(Amount::Count(0))));
        assert!(form("0", "").expect_err("zero").to_string().contains("at least 1 node"));
        assert!(form("five", "").expect_err("words").to_string().starts_with("batch size: \"five\""));
        assert!(form("", "200%").expect_err("percent").to_string().starts_with("max failures: 200%"));
    }

    #[tokio::test]
    async fn a_cancelled_job_says_who_cancelled_it_and_which_nodes_were_awaited() {
        let job = live(false);
        let waiting = {
            let job = job.clone();
            tokio::spawn(async move { job.cancelled().await })
        };
        assert!(job.cancel("alice"));
        assert!(job.cancel("bob"), "still running: the first one counts");
        assert_eq!(waiting.await.expect("joined"), "alice");
        let events = [
            json!({"type": "reply", "reply": {"node": "web01", "status": 0}}),
            json!({"type": "unreachable", "node": "web02"}),
        ];
        let targets = ["web01", "web02", "web03", "web04"].map(str::to_owned);
        let outcome = cancelled_outcome(&targets, &events, "alice");
        assert_eq!(outcome["awaited"], json!(["web03", "web04"]));
        assert_eq!(outcome["replies"][0]["node"], "web01");
        assert_eq!(outcome["unreachable"], json!(["web02"]));
        let message = outcome["error"].as_str().expect("a message");
        assert!(
            message.starts_with("cancelled by alice with 1 of 4 nodes answered; 2 still awaited"),
            "{message}"
        );
        assert!(!live(true).cancel("alice"), "a finished job cannot be cancelled");
    }

    #[tokio::test]
    async fn a_job_task_that_dies_still_finishes_its_job() {
        let store = Arc::new(Store::in_memory().expect("store"));
        let job = live(false);
        let record = JobRecord {
            id: "j1".to_owned(),
            user: "alice".to_owned(),
            caller: "user=alice".to_owned(),
            agent: "rpcutil".to_owned(),
            action: "ping".to_owned(),
            inputs: json!({}),
            filter: json!({}),
            targets: vec!["web01".to_owned()],
            started_ms: 1,
            finished_ms: None,
            state: "running".to_owned(),
            outcome: Value::Null,
            automatic: false,
        };
        let guard = FinishGuard { live: job.clone(), record: Some(record), store };
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("a bug in the job task");
        });
        assert!(task.await.is_err(), "the task panicked");
        assert!(job.is_finished());
        let events = job.events_from(0);
        let finished = events.last().expect("an event");
        assert_eq!(finished["type"], "finished");
        assert_eq!(finished["job"]["state"], "failed");
    }
}
