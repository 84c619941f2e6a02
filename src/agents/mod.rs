//! Agents: the only actions a node will run.
//!
//! An agent is a named set of actions, declared by its [`Definition`] (see
//! [`crate::protocol::ddl`]). The node's pipeline has already verified, filtered, authorized
//! and validated a request against that definition before an agent sees it, so an agent does
//! its work on inputs of the declared types, with defaults filled in. Agents know nothing of
//! brokers or signatures; what they may read about the node comes in an [`ActionContext`],
//! filled in by the node.
//!
//! Built-in agents are Rust ([`rpcutil`], [`service`], [`package`], [`resource`], [`puppet`]),
//! each with a definition shipped in the binary ([`builtin_definitions`], which the client uses
//! too). External agents ([`external`]) are an executable plus a definition in a directory,
//! run once per request.

pub mod catalog;
pub mod command;
pub mod external;
pub mod package;
pub mod package_name;
pub mod puppet;
pub mod resource;
pub mod resource_limits;
pub mod rooted;
pub mod rpcutil;
pub mod service;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::protocol::StatusCode;
use crate::protocol::ddl::Definition;

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

    /// Status 1 with outputs: the action ran and failed, and what it found is still reported.
    pub fn aborted_with(message: impl Into<String>, data: Map<String, Value>) -> ActionOutcome {
        ActionOutcome { status: StatusCode::Aborted, message: message.into(), data }
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

/// One line of `rpcutil agent_inventory`: an agent's metadata and actions.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentSummary {
    pub agent: String,
    pub description: String,
    pub author: String,
    pub version: String,
    pub license: String,
    pub url: String,
    /// Seconds one action may run.
    pub timeout: u64,
    pub actions: Vec<String>,
    /// The whole definition, for `rpcutil definition`; not part of the inventory line.
    #[serde(skip)]
    pub definition: Arc<Definition>,
}

impl AgentSummary {
    pub fn of(definition: &Arc<Definition>) -> AgentSummary {
        let metadata = &definition.metadata;
        AgentSummary {
            agent: metadata.name.clone(),
            description: metadata.description.clone(),
            author: metadata.author.clone(),
            version: metadata.version.clone(),
            license: metadata.license.clone(),
            url: metadata.url.clone(),
            timeout: metadata.timeout,
            actions: definition.action_names(),
            definition: definition.clone(),
        }
    }
}

/// An agent: its definition, and the code that runs the actions it declares.
pub trait Agent: Send + Sync {
    /// What the agent declares. The node refuses any action or input not declared here.
    fn definition(&self) -> &Arc<Definition>;

    fn summary(&self) -> AgentSummary {
        AgentSummary::of(self.definition())
    }

    /// Whether `action` is one this agent declares. The node answers status 2 for any other.
    fn has_action(&self, action: &str) -> bool {
        self.definition().action(action).is_some()
    }

    /// How long one action may run before the node stops it.
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.definition().metadata.timeout)
    }

    /// Whether outputs the definition does not declare make a reply a failure. True for
    /// external agents, whose output is not checked by any compiler.
    fn strict_outputs(&self) -> bool {
        false
    }

    /// Runs one action on inputs already checked against the definition. The node enforces the
    /// timeout around this future and drops it when the timeout passes, so an agent need not
    /// watch the clock itself (but must not leave work behind when dropped).
    fn call<'a>(&'a self, call: Call<'a>, context: &'a ActionContext) -> BoxFuture<'a, ActionOutcome>;
}

/// One invocation of an action, as the pipeline hands it to an agent: inputs already checked
/// against the definition, and who asked (proven with ed25519, claimed with PSK).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub action: &'a str,
    pub data: &'a Map<String, Value>,
    pub request_id: uuid::Uuid,
    pub caller: &'a str,
    pub sender: &'a str,
}

/// Settings the built-in and external agents take from the node's configuration.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Where external agents live; `None` for none.
    pub dir: Option<PathBuf>,
    /// The root directory the `resource` agent reads and writes (`/` on a real node; a
    /// container's or a test's directory tree otherwise).
    pub resource_root: PathBuf,
    /// What the `resource` agent's `create` may change.
    pub resource: resource::ResourceLimits,
    /// How many external agent processes may run at once.
    pub max_processes: usize,
    pub puppet: puppet::PuppetSettings,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            dir: None,
            resource_root: PathBuf::from("/"),
            resource: resource::ResourceLimits::default(),
            max_processes: 8,
            puppet: puppet::PuppetSettings::default(),
        }
    }
}

/// The agents a node has, by name.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: BTreeMap<String, Arc<dyn Agent>>,
}

impl AgentRegistry {
    /// The built-in agents with default settings (resources under `/`).
    pub fn builtin() -> AgentRegistry {
        AgentRegistry::builtin_with(&AgentSettings::default())
    }

    /// The built-in agents with the given settings.
    pub fn builtin_with(settings: &AgentSettings) -> AgentRegistry {
        let mut registry = AgentRegistry::default();
        registry.insert(Arc::new(rpcutil::Rpcutil::new()));
        registry.insert(Arc::new(service::Service::new()));
        registry.insert(Arc::new(package::Package::new()));
        registry.insert(Arc::new(resource::Resource::with_limits(
            settings.resource_root.clone(),
            settings.resource.clone(),
        )));
        registry.insert(Arc::new(puppet::Puppet::new(settings.puppet.clone())));
        registry
    }

    /// The built-in agents plus every external agent found in `settings.dir`. An external
    /// agent that cannot be loaded is left out and reported in the returned warnings, so one
    /// broken agent never stops a node.
    pub fn load(settings: &AgentSettings) -> (AgentRegistry, Vec<String>) {
        let mut registry = AgentRegistry::builtin_with(settings);
        let mut warnings = Vec::new();
        if let Some(dir) = &settings.dir {
            let limiter = Arc::new(tokio::sync::Semaphore::new(settings.max_processes.max(1)));
            let (found, problems) = external::load_dir(dir, limiter);
            warnings.extend(problems);
            for agent in found {
                let name = agent.definition().name().to_owned();
                if registry.agents.contains_key(&name) {
                    warnings.push(format!(
                        "external agent \"{name}\" in {} is ignored: a built-in agent has that name (rename it)",
                        dir.display()
                    ));
                    continue;
                }
                registry.insert(Arc::new(agent));
            }
        }
        (registry, warnings)
    }

    pub fn insert(&mut self, agent: Arc<dyn Agent>) {
        self.agents.insert(agent.definition().name().to_owned(), agent);
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

/// The definitions of the built-in agents, parsed from the documents shipped in the binary.
/// The client uses them to check inputs and summarise outputs without asking a node.
pub fn builtin_definitions() -> Vec<Arc<Definition>> {
    BUILTIN_DEFINITIONS.iter().map(|(name, _)| builtin_definition(name)).collect()
}

/// The shipped definition documents, by agent name.
const BUILTIN_DEFINITIONS: &[(&str, &str)] = &[
    ("package", include_str!("definitions/package.json")),
    ("puppet", include_str!("definitions/puppet.json")),
    ("resource", include_str!("definitions/resource.json")),
    ("rpcutil", include_str!("definitions/rpcutil.json")),
    ("service", include_str!("definitions/service.json")),
];

/// One built-in agent's definition.
///
/// # Panics
/// On a name that is not a built-in agent, or a shipped definition that does not parse; both
/// are programming errors that `tests/agents.rs` catches.
pub fn builtin_definition(name: &str) -> Arc<Definition> {
    let (_, text) = BUILTIN_DEFINITIONS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .expect("builtin_definition is only called with the name of a built-in agent");
    let definition = Definition::from_builtin_json(text.as_bytes(), &format!("built-in {name}"))
        .expect("built-in definitions are valid (checked by tests/agents.rs)");
    Arc::new(definition)
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
