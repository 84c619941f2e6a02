//! The client's configuration (`~/.config/baton/client.toml`, `/etc/baton/client.toml`), shared
//! by the CLI, the console and the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};

use super::load::{CLIENT_SYSTEM_CONFIG_FILE, TopLevelKeys};
use super::{
    BrokerConfig, ConfigError, ConfigLoader, Provenance, SecurityConfig, TlsConfig, defaults, lenient_string,
    positive, validate_collective,
};
use crate::broker::BrokerSettings;

/// Everything a client needs to send requests and collect replies. Obtain one with
/// [`ClientConfig::load`]; a loaded configuration has passed [`ClientConfig::validate`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The sender named in requests; default `<user>@<host>`.
    #[serde(deserialize_with = "lenient_string")]
    pub identity: String,
    /// Who asks, as authorization policies see it; default `user=<login name>`.
    #[serde(deserialize_with = "lenient_string")]
    pub caller: String,
    /// The collective requests go to unless `-T` says otherwise.
    #[serde(default = "defaults::main_collective", deserialize_with = "lenient_string")]
    pub collective: String,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    /// How long to wait for replies after the last request went out.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How long broadcast discovery waits at most.
    #[serde(default = "default_discovery_timeout_secs")]
    pub discovery_timeout_secs: u64,
    /// How long a request stays valid; nodes refuse it afterwards.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
    /// How far back the registry is read: the nodes' `registration.interval_secs` plus slack.
    /// A node not registered within it is not expected by a broadcast.
    #[serde(default = "default_registry_window_secs")]
    pub registry_window_secs: u64,
    /// Once every node the registry expects has answered a broadcast, how long at least to wait
    /// for nodes it does not know yet, in milliseconds (the wait is also at least half the spread
    /// of the expected nodes' replies, so a slow broker gets a longer grace: see `Client::call`).
    #[serde(default = "default_registry_grace_ms")]
    pub registry_grace_ms: u64,
    /// Definitions of external agents (`<dir>/<agent>/definition.json`, as on the nodes), used
    /// to check inputs before sending and to summarise replies. Built-in agents need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions_dir: Option<PathBuf>,
    /// How long `baton replies` keeps the record of a fire-and-forget request (`baton rpc
    /// --reply-to`) whose replies are not all collected; a record is removed as soon as every
    /// node it expects has been collected.
    #[serde(default = "default_request_records_days")]
    pub request_records_days: u64,
    /// `baton rpc` of an action not declared read-only asks for confirmation when it would
    /// reach more than this many nodes (`--yes` answers for it; docs/CLI.md).
    #[serde(default = "default_confirm_above")]
    pub confirm_above: usize,
    #[serde(skip)]
    provenance: Provenance,
}

const TOP_LEVEL: TopLevelKeys = TopLevelKeys {
    plain: &[
        "identity",
        "caller",
        "collective",
        "timeout_secs",
        "discovery_timeout_secs",
        "ttl_secs",
        "registry_window_secs",
        "registry_grace_ms",
        "definitions_dir",
        "request_records_days",
        "confirm_above",
    ],
    tables: &["broker", "tls", "security"],
};

fn default_timeout_secs() -> u64 {
    10
}

fn default_discovery_timeout_secs() -> u64 {
    2
}

fn default_request_records_days() -> u64 {
    7
}

fn default_confirm_above() -> usize {
    10
}

fn default_ttl_secs() -> u64 {
    60
}

/// The nodes' default registration interval (300 s) plus a tenth.
fn default_registry_window_secs() -> u64 {
    330
}

fn default_registry_grace_ms() -> u64 {
    // Measured (docs/PERFORMANCE.md, issue 16): a node the registry does not know answers a
    // broadcast as fast as the known ones, so the grace need only cover their spread; 25 ms
    // plus the proportional part keeps 100 real nodes' discovery near the directed floor.
    25
}

impl ClientConfig {
    /// Loads `path` (as given with `--config`), else the first that exists of
    /// `$XDG_CONFIG_HOME/baton/client.toml` (default `~/.config`) and `/etc/baton/client.toml`,
    /// then `BATON_*` environment variables, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<ClientConfig, ConfigError> {
        ConfigLoader::new(path).client()
    }

    /// Where each value came from, for messages about this configuration.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Checks every rule that a single key's type cannot express. [`ClientConfig::load`] has
    /// already called it; call it again after changing fields by hand (e.g. from flags).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let provenance = &self.provenance;
        for (key, value) in [("identity", &self.identity), ("caller", &self.caller)] {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(provenance.invalid(
                    key,
                    format!("{value:?} must be non-empty, without spaces or control characters"),
                ));
            }
        }
        validate_collective(provenance, "collective", &self.collective)?;
        self.broker.validate(provenance)?;
        self.tls.validate(provenance)?;
        self.security.validate(provenance)?;
        positive(provenance, "timeout_secs", self.timeout_secs)?;
        positive(provenance, "discovery_timeout_secs", self.discovery_timeout_secs)?;
        positive(provenance, "ttl_secs", self.ttl_secs)?;
        positive(provenance, "registry_window_secs", self.registry_window_secs)?;
        // Nodes refuse a ttl over a day as invalid; catch it here as a usage error instead of
        // every node silently not answering.
        if self.ttl_secs > crate::security::MAX_TTL_SECS as u64 {
            return Err(provenance.invalid(
                "ttl_secs",
                format!(
                    "{} is over the {}-second maximum that nodes accept",
                    self.ttl_secs,
                    crate::security::MAX_TTL_SECS
                ),
            ));
        }
        Ok(())
    }

    /// Settings for the broker connection; see [`super::NodeConfig::broker_settings`].
    pub fn broker_settings(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
        connection_name: String,
    ) -> BrokerSettings {
        self.broker.settings(tls, self.tls.server_name.clone(), connection_name)
    }
}

impl ConfigLoader {
    /// The client files searched when no `--config` is given, in order.
    pub fn client_candidates(&self) -> Vec<PathBuf> {
        let user_config_dir =
            self.env_var("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()).map(PathBuf::from).or_else(|| {
                self.env_var("HOME")
                    .filter(|home| !home.is_empty())
                    .map(|home| Path::new(home).join(".config"))
            });
        let mut candidates: Vec<PathBuf> =
            user_config_dir.map(|dir| dir.join("baton").join("client.toml")).into_iter().collect();
        candidates.push(PathBuf::from(CLIENT_SYSTEM_CONFIG_FILE));
        candidates
    }

    /// Loads and validates a client configuration (see [`ClientConfig::load`]).
    pub fn client(&self) -> Result<ClientConfig, ConfigError> {
        let user = self
            .env_var("USER")
            .or_else(|| self.env_var("LOGNAME"))
            .filter(|user| !user.is_empty())
            .unwrap_or("unknown")
            .to_owned();
        let host = super::host_name().unwrap_or_else(|| "localhost".to_owned());
        let mut defaults = Dict::new();
        defaults.insert("identity".to_owned(), Value::from(format!("{user}@{host}")));
        defaults.insert("caller".to_owned(), Value::from(format!("user={user}")));
        let (mut config, provenance): (ClientConfig, Provenance) =
            self.extract(defaults, &self.client_candidates(), &TOP_LEVEL)?;
        config.provenance = provenance;
        config.validate()?;
        Ok(config)
    }
}
