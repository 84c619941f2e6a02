//! Node and client configuration: TOML files layered with `BATON_*` environment variables and
//! command-line flags (figment), checked once at load so the rest of the program can trust it.
//!
//! Precedence, lowest first: built-in defaults, the configuration file, environment variables
//! (`BATON_` prefix, `__` between nested keys: `BATON_BROKER__URLS='["amqp://mq1/baton"]'`),
//! then overrides set with [`ConfigLoader::set`] (how the CLI applies its flags). The CLI may
//! instead change fields of a loaded configuration and call `validate()` again; overrides
//! through the loader have the advantage that a bad value is reported as coming from
//! "command-line flags".
//!
//! Every table denies unknown keys, and every error names the key and the file or variable it
//! came from (see [`ConfigError`]). The keys documented in docs/OPERATIONS.md are a
//! contract; the example files in `deploy/examples/` show all of them.

mod client;
mod error;
mod load;
mod node;
mod origin;
mod wiring;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub use client::ClientConfig;
pub use error::ConfigError;
pub use load::{CLIENT_SYSTEM_CONFIG_FILE, ConfigLoader, NODE_CONFIG_FILE, Provenance, host_name};
pub use node::{
    AgentsConfig, AuditConfig, AuthorizationConfig, FactsConfig, LogConfig, LogFormat, MetricsConfig,
    NodeConfig, RegistrationConfig, UnconfiguredPolicy,
};
pub use origin::{ENV_PREFIX, env_var_for};
pub use wiring::{WiringError, broker_settings, check_tls};

use crate::broker::{BrokerSettings, StompDialect, Transport, redact};

/// The `[broker]` table, shared by node and client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `amqp` or `stomp`. When absent it follows from the URL schemes (all URLs must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportKind>,
    /// Tried in order on failover. Required: at least one. A single string is accepted too.
    #[serde(default, deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    /// STOMP only; default `activemq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<DialectKind>,
    #[serde(default = "defaults::connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    #[serde(default = "defaults::max_backoff_secs")]
    pub max_backoff_secs: u64,
    #[serde(default = "defaults::max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long a node's queue outlives its node (node only; ignored by the client).
    #[serde(default = "defaults::node_queue_expiry_secs")]
    pub node_queue_expiry_secs: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            transport: None,
            urls: Vec::new(),
            dialect: None,
            connect_timeout_secs: defaults::connect_timeout_secs(),
            max_backoff_secs: defaults::max_backoff_secs(),
            max_message_bytes: defaults::max_message_bytes(),
            node_queue_expiry_secs: defaults::node_queue_expiry_secs(),
        }
    }
}

/// `broker.transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Amqp,
    Stomp,
}

/// `broker.dialect`: which STOMP broker is on the other side, for its destination names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DialectKind {
    ActiveMq,
    RabbitMq,
}

impl BrokerConfig {
    /// The transport: the configured one, else the one the URL schemes name. Defaults to AMQP
    /// when neither says (only possible before validation, which requires URLs).
    pub fn transport(&self) -> TransportKind {
        self.transport
            .or_else(|| self.urls.first().and_then(|url| url_transport(url).ok()))
            .unwrap_or(TransportKind::Amqp)
    }

    /// Settings for [`crate::broker`]. `tls` is the rustls configuration built from the
    /// `[tls]` table (`None` when no URL uses TLS); `tls_server_name` comes from `tls.server_name`.
    pub fn settings(
        &self,
        tls: Option<Arc<rustls::ClientConfig>>,
        tls_server_name: Option<String>,
        connection_name: String,
    ) -> BrokerSettings {
        BrokerSettings {
            transport: match self.transport() {
                TransportKind::Amqp => Transport::Amqp,
                TransportKind::Stomp => Transport::Stomp,
            },
            urls: self.urls.clone(),
            dialect: match self.dialect.unwrap_or(DialectKind::ActiveMq) {
                DialectKind::ActiveMq => StompDialect::ActiveMq,
                DialectKind::RabbitMq => StompDialect::RabbitMq,
            },
            tls,
            tls_server_name,
            connection_name,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            max_backoff: Duration::from_secs(self.max_backoff_secs),
            max_message_bytes: self.max_message_bytes,
            node_queue_expiry: Duration::from_secs(self.node_queue_expiry_secs),
            claimed_identity: None,
        }
    }

    /// True when at least one URL asks for TLS (`amqps://`, `stomp+ssl://`).
    pub fn uses_tls(&self) -> bool {
        self.urls.iter().any(|url| url.starts_with("amqps://") || url.starts_with("stomp+ssl://"))
    }

    fn validate(&self, provenance: &Provenance) -> Result<(), ConfigError> {
        if self.urls.is_empty() {
            return Err(provenance.missing("broker.urls"));
        }
        let mut first_transport = None;
        for url in &self.urls {
            let transport = url_transport(url).map_err(|reason| provenance.invalid("broker.urls", reason))?;
            match first_transport {
                None => first_transport = Some(transport),
                Some(first) if first != transport => {
                    return Err(provenance.invalid(
                        "broker.urls",
                        format!(
                            "{:?} uses a different transport than {:?}: all URLs must be AMQP \
                             (amqp://, amqps://) or all STOMP (stomp://, stomp+ssl://)",
                            redact(url),
                            redact(&self.urls[0])
                        ),
                    ));
                }
                Some(_) => {}
            }
            if let Some(configured) = self.transport
                && configured != transport
            {
                return Err(provenance.invalid(
                    "broker.urls",
                    format!(
                        "{:?} is a {} URL but broker.transport is {:?} (change the URL scheme or \
                         broker.transport)",
                        redact(url),
                        transport_name(transport),
                        transport_name(configured)
                    ),
                ));
            }
        }
        if self.dialect.is_some() && self.transport() == TransportKind::Amqp {
            return Err(provenance.invalid(
                "broker.dialect",
                "a dialect applies to STOMP only; remove it or use stomp:// URLs",
            ));
        }
        positive(provenance, "broker.connect_timeout_secs", self.connect_timeout_secs)?;
        positive(provenance, "broker.max_backoff_secs", self.max_backoff_secs)?;
        at_least(provenance, "broker.max_message_bytes", self.max_message_bytes as u64, 1024)?;
        at_least(provenance, "broker.node_queue_expiry_secs", self.node_queue_expiry_secs, 60)?;
        Ok(())
    }
}

fn transport_name(transport: TransportKind) -> &'static str {
    match transport {
        TransportKind::Amqp => "amqp",
        TransportKind::Stomp => "stomp",
    }
}

/// The transport a URL's scheme names, or why the URL is unusable.
fn url_transport(url: &str) -> Result<TransportKind, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{:?} is not a URL: expected scheme://host, e.g. amqps://mq1:5671/baton",
            redact(url)
        ));
    };
    let transport = match scheme {
        "amqp" | "amqps" => TransportKind::Amqp,
        "stomp" | "stomp+ssl" => TransportKind::Stomp,
        other => {
            return Err(format!(
                "{:?} has scheme {other:?}: expected one of \"amqp\", \"amqps\", \"stomp\", \
                 \"stomp+ssl\"",
                redact(url)
            ));
        }
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.is_empty() {
        return Err(format!("{:?} names no host", redact(url)));
    }
    Ok(transport)
}

/// The `[tls]` table, used by `amqps://` and `stomp+ssl://` URLs.
///
/// [`TlsConfig::settings`] turns it into the security module's `TlsSettings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle that verifies the broker; absent: the system's web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), together with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The host name to verify the broker certificate against, when not the URL's host.
    #[serde(default, deserialize_with = "lenient_optional_string", skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl TlsConfig {
    fn validate(&self, provenance: &Provenance) -> Result<(), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err(provenance.invalid(
                "tls.cert",
                "tls.cert is set but tls.key is not: a client certificate needs its key (set \
                 both or neither)",
            )),
            (None, Some(_)) => {
                Err(provenance.invalid("tls.key", "tls.key is set but tls.cert is not: set both or neither"))
            }
            _ => match &self.server_name {
                Some(name) if name.trim().is_empty() => Err(provenance.invalid(
                    "tls.server_name",
                    "expected a host name, found an empty string (remove the key to use the \
                     URL's host)",
                )),
                _ => Ok(()),
            },
        }
    }
}

/// The `[security]` table, shared by node and client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    #[serde(default = "defaults::scheme")]
    pub scheme: SchemeKind,
    /// The pre-shared key (scheme `psk`): required for that scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk_file: Option<PathBuf>,
    /// This party's ed25519 private key (scheme `ed25519`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The other side's ed25519 public keys (scheme `ed25519`): on a node, the callers it
    /// trusts; on a client, the nodes whose replies it accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_keys_dir: Option<PathBuf>,
    /// How far a message's time may be in the future (clocks disagree).
    #[serde(default = "defaults::clock_skew_secs")]
    pub clock_skew_secs: u64,
    /// How many recently seen request ids a node remembers to refuse replays.
    #[serde(default = "defaults::replay_window")]
    pub replay_window: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            scheme: defaults::scheme(),
            psk_file: None,
            key_file: None,
            trusted_keys_dir: None,
            clock_skew_secs: defaults::clock_skew_secs(),
            replay_window: defaults::replay_window(),
        }
    }
}

/// `security.scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemeKind {
    Psk,
    Ed25519,
}

impl SecurityConfig {
    fn validate(&self, provenance: &Provenance) -> Result<(), ConfigError> {
        match self.scheme {
            SchemeKind::Psk if self.psk_file.is_none() => {
                return Err(provenance.missing("security.psk_file"));
            }
            SchemeKind::Ed25519 if self.key_file.is_none() => {
                return Err(provenance.missing("security.key_file"));
            }
            SchemeKind::Ed25519 if self.trusted_keys_dir.is_none() => {
                return Err(provenance.missing("security.trusted_keys_dir"));
            }
            _ => {}
        }
        positive(provenance, "security.replay_window", self.replay_window as u64)
    }
}

/// Collective names become parts of exchange and queue names, so they are kept to a safe set.
fn validate_collective(provenance: &Provenance, key: &str, collective: &str) -> Result<(), ConfigError> {
    let valid = !collective.is_empty()
        && collective.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(provenance.invalid(
            key,
            format!(
                "collective {collective:?} must be lowercase letters, digits, '_' or '-' (it is \
                 part of exchange and queue names)"
            ),
        ))
    }
}

fn positive(provenance: &Provenance, key: &str, value: u64) -> Result<(), ConfigError> {
    at_least(provenance, key, value, 1)
}

fn at_least(provenance: &Provenance, key: &str, value: u64, minimum: u64) -> Result<(), ConfigError> {
    if value >= minimum {
        Ok(())
    } else {
        Err(provenance.invalid(key, format!("expected at least {minimum}, found {value}")))
    }
}

/// Accepts a list of strings, or a single string as a one-item list
/// (`BATON_BROKER__URLS=amqp://mq1/baton`).
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, one: &str) -> Result<Vec<String>, E> {
            Ok(vec![one.to_owned()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Vec<String>, A::Error> {
            let mut many = Vec::new();
            while let Some(item) = items.next_element::<String>()? {
                many.push(item);
            }
            Ok(many)
        }
    }
    deserializer.deserialize_any(OneOrMany)
}

/// Accepts a string, or a number or boolean written where a string was meant: an environment
/// variable such as `BATON_IDENTITY=1234` arrives as a number.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Lenient;
    impl Visitor<'_> for Lenient {
        type Value = String;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_owned())
        }
        fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_i64<E: de::Error>(self, number: i64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_f64<E: de::Error>(self, number: f64) -> Result<String, E> {
            Ok(number.to_string())
        }
        fn visit_bool<E: de::Error>(self, flag: bool) -> Result<String, E> {
            Ok(flag.to_string())
        }
    }
    deserializer.deserialize_any(Lenient)
}

fn lenient_optional_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    lenient_string(deserializer).map(Some)
}

/// Default values, as functions because serde's `default = "..."` needs paths.
mod defaults {
    use super::SchemeKind;

    pub fn connect_timeout_secs() -> u64 {
        5
    }
    pub fn max_backoff_secs() -> u64 {
        30
    }
    pub fn max_message_bytes() -> usize {
        1024 * 1024
    }
    pub fn node_queue_expiry_secs() -> u64 {
        7 * 24 * 60 * 60
    }
    pub fn scheme() -> SchemeKind {
        SchemeKind::Psk
    }
    pub fn clock_skew_secs() -> u64 {
        60
    }
    pub fn replay_window() -> usize {
        100_000
    }
    pub fn main_collective() -> String {
        "baton".to_owned()
    }
}
