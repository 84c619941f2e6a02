//! Agents: the only actions a node will run.
//!
//! An agent is a named set of actions. The node's pipeline has already verified, filtered and
//! authorized a request before an agent sees it, so an agent only checks its own inputs and does
//! its work. Agents know nothing of brokers or signatures; what they may read about the node
//! comes in an [`ActionContext`], filled in by the node.

pub mod rpcutil;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::protocol::StatusCode;

/// A boxed future, so agents of different types can live in one registry.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The result of one action: a status, a message for a person when it is not OK, and outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    pub status: StatusCode,
    pub message: String,
    pub data: Map<String, Value>,
}

impl ActionOutcome {
    pub fn ok(data: Map<String, Value>) -> ActionOutcome {
        ActionOutcome { status: StatusCode::Ok, message: String::new(), data }
    }

    pub fn fail(status: StatusCode, message: impl Into<String>) -> ActionOutcome {
        ActionOutcome { status, message: message.into(), data: Map::new() }
    }
}

/// What the node tells an agent about itself. Cheap to clone: everything large is shared.
#[derive(Clone)]
pub struct ActionContext {
    pub identity: String,
    pub collectives: Arc<[String]>,
    pub facts: Arc<Map<String, Value>>,
    pub classes: Arc<[String]>,
    /// Names of every agent this node has, sorted.
    pub agents: Arc<[AgentSummary]>,
    /// The daemon's counters, read live when an action asks for them.
    pub stats: Arc<dyn StatsSource>,
}

/// Something that can report the daemon's counters; implemented by the node's stats.
pub trait StatsSource: Send + Sync {
    fn snapshot(&self) -> Map<String, Value>;
}

/// One line of `rpcutil agent_inventory`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentSummary {
    pub agent: String,
    pub description: String,
    pub version: String,
    pub actions: Vec<String>,
}

/// An agent: a name, the actions it declares, and the code that runs them.
pub trait Agent: Send + Sync {
    fn summary(&self) -> AgentSummary;

    /// Whether `action` is one this agent declares. The node answers status 2 for any other.
    fn has_action(&self, action: &str) -> bool;

    /// Runs one action. The node enforces the timeout around this future and drops it when
    /// the timeout passes, so an agent need not watch the clock itself.
    fn call<'a>(
        &'a self,
        action: &'a str,
        data: &'a Map<String, Value>,
        context: &'a ActionContext,
    ) -> BoxFuture<'a, ActionOutcome>;
}

/// The agents a node has, by name.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: BTreeMap<String, Arc<dyn Agent>>,
}

impl AgentRegistry {
    /// The registry every node starts with: the built-in agents.
    pub fn builtin() -> AgentRegistry {
        let mut registry = AgentRegistry::default();
        registry.insert(Arc::new(rpcutil::Rpcutil));
        registry
    }

    pub fn insert(&mut self, agent: Arc<dyn Agent>) {
        self.agents.insert(agent.summary().agent, agent);
    }

    pub fn agent(&self, name: &str) -> Option<&Arc<dyn Agent>> {
        self.agents.get(name)
    }

    /// Agent names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    pub fn summaries(&self) -> Vec<AgentSummary> {
        self.agents.values().map(|agent| agent.summary()).collect()
    }
}

/// Reads a required string input, or says which input is missing or of the wrong type.
pub fn required_string<'a>(data: &'a Map<String, Value>, input: &str) -> Result<&'a str, ActionOutcome> {
    match data.get(input) {
        None | Some(Value::Null) => {
            Err(ActionOutcome::fail(StatusCode::MissingData, format!("missing required input \"{input}\"")))
        }
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(ActionOutcome::fail(
            StatusCode::InvalidData,
            format!("input \"{input}\" must be a string, got {other}"),
        )),
    }
}
