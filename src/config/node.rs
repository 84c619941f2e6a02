//! The node daemon's configuration (`/etc/baton/node.toml`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};

use super::load::{NODE_CONFIG_FILE, TopLevelKeys};
use super::{
    BrokerConfig, ConfigError, ConfigLoader, Provenance, SecurityConfig, TlsConfig, defaults, lenient_string,
    one_or_many, positive, validate_collective,
};
use crate::agents::AgentSettings;
use crate::agents::puppet::PuppetSettings;
use crate::agents::resource::ResourceLimits;
use crate::broker::BrokerSettings;

/// Everything `batond` reads at start (and again on reload). Obtain one with
/// [`NodeConfig::load`]; a loaded configuration has passed [`NodeConfig::validate`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's name in the fleet; default: the host name.
    #[serde(deserialize_with = "lenient_string")]
    pub identity: String,
    /// The collectives this node serves; the first is its main collective.
    #[serde(default = "main_collective_only", deserialize_with = "one_or_many")]
    pub collectives: Vec<String>,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub facts: FactsConfig,
    #[serde(default)]
    pub agents: AgentsConfig,
    #[serde(default)]
    pub authorization: AuthorizationConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub registration: RegistrationConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub requests: RequestsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(skip)]
    provenance: Provenance,
}

const TOP_LEVEL: TopLevelKeys = TopLevelKeys {
    plain: &["identity", "collectives"],
    tables: &[
        "broker",
        "tls",
        "security",
        "facts",
        "agents",
        "authorization",
        "audit",
        "registration",
        "log",
        "requests",
        "metrics",
    ],
};

fn main_collective_only() -> Vec<String> {
    vec![defaults::main_collective()]
}

/// The `[facts]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactsConfig {
    /// YAML (`.yaml`, `.yml`) or JSON fact files, merged in order over the built-in facts.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Puppet's classes file: one class per line. Absent: the node has no classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes_file: Option<PathBuf>,
    /// How often the daemon checks the files for changes (it also reloads on SIGHUP).
    #[serde(default = "default_poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// Also take facts from `facter --json` (at start, on SIGHUP and when a file changes),
    /// merged over the built-in facts and under the files.
    #[serde(default)]
    pub facter: bool,
}

fn default_poll_interval_secs() -> u64 {
    5
}

impl Default for FactsConfig {
    fn default() -> Self {
        FactsConfig {
            files: Vec::new(),
            classes_file: None,
            poll_interval_secs: default_poll_interval_secs(),
            facter: false,
        }
    }
}

/// The `[agents]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// External agents: a subdirectory per agent with `definition.json` and an executable
    /// `agent` (docs/AGENTS.md). Reloaded on SIGHUP.
    #[serde(default = "default_agents_dir")]
    pub dir: PathBuf,
    /// How many requests the node runs at once; more wait their turn.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// How many external agent processes may run at once; more wait their turn.
    #[serde(default = "default_max_processes")]
    pub max_processes: usize,
    /// The root directory the `resource` agent reads and writes: `/`, or a container's tree.
    #[serde(default = "default_resource_root")]
    pub resource_root: PathBuf,
    /// The `[agents.resource]` table: what `resource create` may change (docs/OPERATIONS.md).
    #[serde(default)]
    pub resource: ResourceLimits,
    /// How the `puppet` agent runs Puppet (the agent's own settings type).
    #[serde(default)]
    pub puppet: PuppetSettings,
}

fn default_max_processes() -> usize {
    8
}

fn default_resource_root() -> PathBuf {
    PathBuf::from("/")
}

impl AgentsConfig {
    /// The settings the agents take.
    pub fn settings(&self) -> AgentSettings {
        AgentSettings {
            dir: Some(self.dir.clone()),
            resource_root: self.resource_root.clone(),
            resource: self.resource.clone(),
            max_processes: self.max_processes,
            puppet: self.puppet.clone(),
        }
    }
}

fn default_agents_dir() -> PathBuf {
    PathBuf::from("/usr/lib/baton/agents")
}

fn default_max_concurrency() -> usize {
    16
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            dir: default_agents_dir(),
            max_concurrency: default_max_concurrency(),
            max_processes: default_max_processes(),
            resource_root: default_resource_root(),
            resource: Default::default(),
            puppet: PuppetSettings::default(),
        }
    }
}

/// The `[authorization]` table: where per-agent policy files live and what applies to an
/// agent that has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// A directory of `<agent>.policy` files. Absent: no policies, `unconfigured` applies to all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_dir: Option<PathBuf>,
    /// What to do with a request for an agent without a policy file.
    #[serde(default)]
    pub unconfigured: UnconfiguredPolicy,
}

/// `authorization.unconfigured`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnconfiguredPolicy {
    /// Any caller who can sign a request may run the agent's actions (MCollective's behaviour
    /// without an authorization plugin).
    #[default]
    Allow,
    /// Refused with "not authorized" (MCollective's actionpolicy without `allow_unconfigured`).
    Deny,
}

/// The `[audit]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// One JSON line per request accepted or refused. Absent: no audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// The `[registration]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Seconds between inventory announcements; 0 announces only once, at start.
    #[serde(default = "default_registration_interval_secs")]
    pub interval_secs: u64,
}

fn default_registration_interval_secs() -> u64 {
    300
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig { interval_secs: default_registration_interval_secs() }
    }
}

/// The `[requests]` table: limits on what a node accepts from callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsConfig {
    /// The longest ttl a request may carry, in seconds (1 to 86 400; default 3 600). A request
    /// with a longer ttl is answered "invalid" without running: each accepted request holds a
    /// place in the replay window for its whole ttl.
    #[serde(default = "default_max_ttl_secs")]
    pub max_ttl_secs: u32,
}

fn default_max_ttl_secs() -> u32 {
    crate::security::DEFAULT_NODE_MAX_TTL_SECS
}

impl Default for RequestsConfig {
    fn default() -> Self {
        RequestsConfig { max_ttl_secs: default_max_ttl_secs() }
    }
}

/// The `[metrics]` table: Prometheus metrics and a health check over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve `/metrics` (Prometheus text) and `/healthz`, e.g. `127.0.0.1:9330`.
    /// Absent: no HTTP listener at all. Anyone who can reach it can read the counters (never
    /// a secret), so keep it on loopback or a monitoring network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
}

/// The `[log]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter: a level (`info`) or directives (`baton=debug,lapin=warn`).
    #[serde(default = "default_log_level", deserialize_with = "lenient_string")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::default(), level: default_log_level() }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

impl NodeConfig {
    /// Loads `path` (as given with `--config`), else `/etc/baton/node.toml` if it exists, then
    /// `BATON_*` environment variables, and validates the result. A missing explicit file is
    /// an error; a missing default file is not (the environment may hold everything).
    pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        ConfigLoader::new(path).node()
    }

    /// Where each value came from, for messages about this configuration.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The main collective: the first of `collectives`.
    pub fn main_collective(&self) -> &str {
        self.collectives.first().map_or("baton", String::as_str)
    }

    /// Checks every rule that a single key's type cannot express. [`NodeConfig::load`] has
    /// already called it; call it again after changing fields by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let provenance = &self.provenance;
        validate_identity(provenance, &self.identity)?;
        if self.collectives.is_empty() {
            return Err(provenance.invalid(
                "collectives",
                "expected at least one collective, found an empty list (the first is the main \
                 collective)",
            ));
        }
        for (index, collective) in self.collectives.iter().enumerate() {
            validate_collective(provenance, "collectives", collective)?;
            if self.collectives[..index].contains(collective) {
                return Err(
                    provenance.invalid("collectives", format!("collective {collective:?} is listed twice"))
                );
            }
        }
        self.broker.validate(provenance)?;
        self.tls.validate(provenance)?;
        self.security.validate(provenance)?;
        positive(provenance, "facts.poll_interval_secs", self.facts.poll_interval_secs)?;
        positive(provenance, "agents.max_concurrency", self.agents.max_concurrency as u64)?;
        positive(provenance, "agents.max_processes", self.agents.max_processes as u64)?;
        if !(1..=crate::security::MAX_TTL_SECS).contains(&self.requests.max_ttl_secs) {
            return Err(provenance.invalid(
                "requests.max_ttl_secs",
                format!(
                    "{} is not between 1 and {} seconds (the protocol's longest ttl)",
                    self.requests.max_ttl_secs,
                    crate::security::MAX_TTL_SECS
                ),
            ));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(provenance.invalid(
                "log.level",
                format!(
                    "{:?} is not a level (error, warn, info, debug, trace) or filter directive: \
                     {error}",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// Settings for the broker connection. `tls` is the rustls configuration built from
    /// [`NodeConfig::tls`]; `connection_name` is what the broker shows (e.g. `batond web01`).
    pub fn broker_settings(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
        connection_name: String,
    ) -> BrokerSettings {
        self.broker.settings(tls, self.tls.server_name.clone(), connection_name)
    }
}

/// A node identity is part of queue names and routing keys: host-name characters only.
fn validate_identity(provenance: &Provenance, identity: &str) -> Result<(), ConfigError> {
    if crate::protocol::is_node_identity(identity) {
        Ok(())
    } else {
        Err(provenance.invalid(
            "identity",
            format!(
                "{identity:?} is not a usable node identity: use letters, digits, '.', '-' and \
                 '_' (it becomes part of queue names)"
            ),
        ))
    }
}

impl ConfigLoader {
    /// Loads and validates a node configuration (see [`NodeConfig::load`]).
    pub fn node(&self) -> Result<NodeConfig, ConfigError> {
        let mut defaults = Dict::new();
        if let Some(host) = super::host_name() {
            defaults.insert("identity".to_owned(), Value::from(host));
        }
        let (mut config, provenance): (NodeConfig, Provenance) =
            self.extract(defaults, &[PathBuf::from(NODE_CONFIG_FILE)], &TOP_LEVEL)?;
        config.provenance = provenance;
        config.validate()?;
        Ok(config)
    }
}
