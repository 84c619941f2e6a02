//! Jobs: one request the console sends for a logged-in user, its per-node results as they
//! arrive, and its place in the history.
//!
//! A job is checked before anything is sent, exactly as `baton rpc` checks: the filter is
//! compiled, each input's text is converted by its declared type
//! ([`ActionDefinition::parse_cli_value`]) and the inputs are validated
//! ([`ActionDefinition::validate_inputs`]). It goes to the registered nodes the filter selects
//! (quiet ones excluded), through the same [`Client`] the CLI uses, so every target ends
//! replied, unreachable or silent. Each event is kept in the job and announced on a `watch`
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

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tracing::warn;

use super::registry::Registry;
use super::store::{JobRecord, Store};
use crate::agents::catalog::Catalog;
use crate::broker::Broker;
use crate::client::{CallOutcome, Client, ClientSettings, Event, RequestSpec, Targets};
use crate::config::ClientConfig;
use crate::protocol::filter::{Filter, FilterSpec};
use crate::protocol::now_ms;
use crate::security::{Ed25519, Security};

/// How many jobs' live events are kept in memory (finished ones are in the store).
const LIVE_JOBS: usize = 64;

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
}

/// What the page asks for: an action, its inputs as typed into the form, and the filter.
#[derive(Debug, Clone, Deserialize)]
pub struct JobRequest {
    pub agent: String,
    pub action: String,
    /// Input name to the text typed (or JSON for structured inputs, as on the command line).
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(default)]
    pub filter: FilterSpec,
    /// Explicit targets instead of every registered node the filter selects (a clone's targets).
    #[serde(default)]
    pub nodes: Option<Vec<String>>,
}

/// One job's live events, in order, and whether it has finished.
pub struct LiveJob {
    events: Mutex<Vec<Value>>,
    progress: watch::Sender<(usize, bool)>,
}

impl LiveJob {
    fn new() -> LiveJob {
        LiveJob { events: Mutex::new(Vec::new()), progress: watch::channel((0, false)).0 }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    security: Arc<Security>,
    user_keys: Option<PathBuf>,
    catalog: Catalog,
    registry: Arc<Registry>,
    store: Arc<Store>,
    clients: tokio::sync::Mutex<HashMap<Requester, Arc<Client>>>,
    live: Mutex<VecDeque<(String, Arc<LiveJob>)>>,
}

impl Jobs {
    pub fn new(
        config: ClientConfig,
        broker: Broker,
        security: Arc<Security>,
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
            catalog,
            registry,
            store,
            clients: tokio::sync::Mutex::default(),
            live: Mutex::default(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The caller requests name for `requester`, and the security to sign them with.
    fn signer(&self, requester: &Requester) -> Result<(String, Arc<Security>), JobError> {
        let Some(user) = &requester.user else {
            let caller = if self.security.proves_callers() {
                self.security.key_id().to_owned()
            } else {
                self.config.caller.clone()
            };
            return Ok((caller, self.security.clone()));
        };
        let caller = format!("user={user}");
        if !self.security.proves_callers() {
            return Ok((caller, self.security.clone()));
        }
        let Some(dir) = &self.user_keys else {
            // Without the users' keys the console can only sign as itself; nodes then see
            // the console's key name as the caller (docs/CONSOLE.md).
            return Ok((self.security.key_id().to_owned(), self.security.clone()));
        };
        let trusted_dir = match self.security.as_ref() {
            Security::Ed25519(keys) => keys.trusted_dir().to_owned(),
            _ => return Err(JobError::Identity("ed25519 keys expected".to_owned())),
        };
        let key_file = dir.join(format!("{caller}.key"));
        let keys = Ed25519::load(&key_file, &trusted_dir).map_err(|error| {
            JobError::Identity(format!(
                "cannot sign as {caller}: {error} (make the key with: baton keygen --name {caller} --dir {})",
                dir.display()
            ))
        })?;
        Ok((caller, Arc::new(Security::Ed25519(Box::new(keys)))))
    }

    /// The client that sends as `requester`: one per user, sharing the console's connection.
    async fn client_for(&self, requester: &Requester) -> Result<(Arc<Client>, String), JobError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(requester) {
            return Ok((client.clone(), client.settings().caller.clone()));
        }
        let (caller, security) = self.signer(requester)?;
        let settings = ClientSettings {
            identity: self.config.identity.clone(),
            caller: caller.clone(),
            collective: self.config.collective.clone(),
            ttl: Duration::from_secs(self.config.ttl_secs),
            max_message_bytes: self.config.broker.max_message_bytes,
        };
        let client = Arc::new(Client::with_broker(self.broker.clone(), security, settings).await?);
        clients.insert(requester.clone(), client.clone());
        Ok((client, caller))
    }

    /// Converts and checks the inputs as `baton rpc` does: by declared type, then validated
    /// against the action's definition. Without a definition, the texts go as they are.
    pub fn check_inputs(&self, request: &JobRequest) -> Result<Map<String, Value>, JobError> {
        let texts =
            request.inputs.iter().filter(|(_, value)| !value.is_null() && value.as_str() != Some("")).map(
                |(key, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), text)
                },
            );
        let Some(definition) = self.catalog.definition(&request.agent) else {
            return Ok(texts.map(|(key, text)| (key, Value::String(text))).collect());
        };
        let declared = definition.require_action(&request.action).map_err(JobError::Invalid)?;
        let mut typed = Map::new();
        for (key, text) in texts {
            let value = declared
                .parse_cli_value(&request.agent, &request.action, &key, &text)
                .map_err(|error| JobError::Invalid(error.to_string()))?;
            typed.insert(key, value);
        }
        declared
            .validate_inputs(&request.agent, &request.action, &typed)
            .map_err(|error| JobError::Invalid(error.to_string()))?;
        Ok(typed)
    }

    /// How long to wait for replies: the configured timeout, or longer when the agent's
    /// actions may run longer (as `baton rpc` does).
    fn timeout(&self, agent: &str) -> Duration {
        let declared = self.catalog.definition(agent).map_or(0, |definition| definition.metadata.timeout);
        let secs = if declared >= self.config.timeout_secs { declared + 5 } else { self.config.timeout_secs };
        Duration::from_secs(secs)
    }

    /// Checks and starts a job; returns its id at once. Results arrive on [`Jobs::live`].
    pub async fn start(&self, requester: &Requester, request: JobRequest) -> Result<String, JobError> {
        if !crate::protocol::ddl::is_agent_name(&request.agent)
            || !crate::protocol::ddl::is_agent_name(&request.action)
        {
            return Err(JobError::Invalid(format!(
                "\"{}#{}\" is not an agent and action",
                request.agent, request.action
            )));
        }
        let filter =
            Filter::compile(&request.filter).map_err(|error| JobError::Invalid(error.to_string()))?;
        let data = self.check_inputs(&request)?;
        let now = now_ms();
        let targets = match &request.nodes {
            Some(nodes) => {
                let known = self.registry.targets(&filter, now);
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
            None => self.registry.targets(&filter, now),
        };
        if targets.is_empty() {
            return Err(JobError::Invalid(
                "no registered node that is not quiet matches the filter".to_owned(),
            ));
        }
        let (client, caller) = self.client_for(requester).await?;
        let spec = RequestSpec {
            agent: request.agent.clone(),
            action: request.action.clone(),
            data: data.clone(),
            filter: request.filter.clone(),
        };
        // Sign once now, so a request too large or otherwise unsendable fails here, not later.
        client.build_request(&spec)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let record = JobRecord {
            id: id.clone(),
            user: requester.name(),
            caller: caller.clone(),
            agent: request.agent.clone(),
            action: request.action.clone(),
            inputs: Value::Object(data),
            filter: serde_json::to_value(&request.filter).unwrap_or_default(),
            targets: targets.clone(),
            started_ms: now,
            finished_ms: None,
            state: "running".to_owned(),
            outcome: Value::Null,
        };
        if let Err(error) = self.store.save_job(&record) {
            warn!(job = %id, %error, "cannot record the job");
        }
        let live = Arc::new(LiveJob::new());
        {
            let mut jobs = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            jobs.push_back((id.clone(), live.clone()));
            while jobs.len() > LIVE_JOBS {
                jobs.pop_front();
            }
        }
        live.push(json!({"type": "started", "job": &record}), false);
        let timeout = self.timeout(&request.agent);
        let store = self.store.clone();
        let summary = self
            .catalog
            .definition(&request.agent)
            .and_then(|definition| definition.action(&request.action))
            .cloned();
        tokio::spawn(async move {
            let events = live.clone();
            let mut on_event = move |event: &Event<'_>| {
                let value = match event {
                    Event::Sent { request_id, targets } => {
                        json!({"type": "sent", "request_id": request_id.to_string(), "targets": targets})
                    }
                    Event::Reply(reply) => json!({"type": "reply", "reply": reply}),
                    Event::Unreachable(node) => json!({"type": "unreachable", "node": node}),
                    Event::Unexpected(reply) => json!({"type": "unexpected", "reply": reply}),
                    _ => return,
                };
                events.push(value, false);
            };
            let targets = Targets::Nodes(targets);
            let result = client.call(&spec, &targets, timeout, None, &mut on_event).await;
            let mut record = record;
            record.finished_ms = Some(now_ms());
            match result {
                Ok(mut outcome) => {
                    if let Some(action) = &summary {
                        let outputs: Vec<&Map<String, Value>> = outcome
                            .replies
                            .iter()
                            .filter(|reply| reply.is_ok())
                            .map(|reply| &reply.data)
                            .collect();
                        outcome.aggregates = action.summarize(&outputs);
                    }
                    record.state = "finished".to_owned();
                    record.outcome = outcome_json(&outcome);
                }
                Err(error) => {
                    record.state = "failed".to_owned();
                    record.outcome = json!({"error": error.to_string()});
                }
            }
            if let Err(error) = store.save_job(&record) {
                warn!(job = %record.id, %error, "cannot record the finished job");
            }
            live.push(json!({"type": "finished", "job": record}), true);
        });
        Ok(id)
    }

    /// The live events of a job started since the console started (the latest [`LIVE_JOBS`]).
    pub fn live(&self, id: &str) -> Option<Arc<LiveJob>> {
        let jobs = self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        jobs.iter().find(|(job, _)| job == id).map(|(_, live)| live.clone())
    }
}

/// A finished call as the page and the history show it.
pub fn outcome_json(outcome: &CallOutcome) -> Value {
    json!({
        "request_id": outcome.request_id.to_string(),
        "replies": outcome.replies,
        "no_response": outcome.no_response,
        "unreachable": outcome.unreachable,
        "unexpected": outcome.unexpected,
        "aggregates": outcome.aggregates,
        "counts": outcome.counts(),
        "total_ms": outcome.total_ms,
    })
}
