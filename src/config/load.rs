//! Where configuration comes from and in which order: built-in defaults, then one TOML file,
//! then `BATON_*` environment variables, then overrides set by the program (command-line flags).
//! Later sources win, key by key.
//!
//! The file is parsed here with the `toml` crate rather than by figment's own TOML provider so
//! that a syntax error carries an exact line and column, and so that a missing explicitly-given
//! file is an error instead of silently empty configuration.
//!
//! Only environment variables whose name after `BATON_` is a known top-level key, or a known
//! table followed by `__`, are read: our own scripts export unrelated `BATON_*` variables
//! (`BATON_STATE_DIR`, `BATON_TLS_CA`, ...) that must not trip the unknown-key check.

use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::DeserializeOwned;

use super::error::{ConfigError, from_figment};
use super::origin::{
    DEFAULTS_SOURCE_NAME, ENV_PREFIX, ENV_SOURCE_NAME, OVERRIDE_SOURCE_NAME, env_var_for, origin_of,
};

/// The node's configuration file when `--config` is not given.
pub const NODE_CONFIG_FILE: &str = "/etc/baton/node.toml";
/// The system-wide client configuration file, read when no per-user file exists.
pub const CLIENT_SYSTEM_CONFIG_FILE: &str = "/etc/baton/client.toml";

/// Builds a configuration from its sources. [`NodeConfig::load`](super::NodeConfig::load) and
/// [`ClientConfig::load`](super::ClientConfig::load) cover the usual case; use this to inject
/// the environment (tests) or to apply command-line flags with the same error reporting as the
/// file (`.set("collective", "dc1")` reports a bad value as coming from "command-line flags").
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    explicit_file: Option<PathBuf>,
    env: Vec<(String, String)>,
    overrides: Vec<(String, Value)>,
}

impl ConfigLoader {
    /// A loader reading `explicit_file` (as given with `--config`; `None` to search the default
    /// locations) and the process environment.
    pub fn new(explicit_file: Option<&Path>) -> ConfigLoader {
        // Variables that are not valid Unicode cannot be configuration; skipping them (rather
        // than panicking as `std::env::vars` would) leaves the rest usable.
        let env = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        ConfigLoader { explicit_file: explicit_file.map(Path::to_path_buf), env, overrides: Vec::new() }
    }

    /// Replaces the environment that is read (both `BATON_*` keys and `HOME`, `XDG_CONFIG_HOME`,
    /// `USER` used for defaults and the client's file search).
    pub fn with_env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> ConfigLoader {
        self.env = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Sets the dotted `key` to `value` over every other source, as a command-line flag would.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> ConfigLoader {
        self.overrides.push((key.to_owned(), value.into()));
        self
    }

    pub(crate) fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Reads the file chosen from `explicit_file` or `candidates` (the first that exists),
    /// layers everything, and deserializes into `T`. Returns the figment too, so validation can
    /// tell where each value came from, and the file hint used in "missing" messages.
    pub(crate) fn extract<T: DeserializeOwned>(
        &self,
        defaults: Dict,
        candidates: &[PathBuf],
        top_level: &TopLevelKeys,
    ) -> Result<(T, Provenance), ConfigError> {
        let (file, file_hint) = match &self.explicit_file {
            Some(path) => (Some(path.clone()), path.display().to_string()),
            None => {
                let found = candidates.iter().find(|path| path.exists()).cloned();
                let hint = match &found {
                    Some(path) => path.display().to_string(),
                    None => candidates
                        .iter()
                        .map(|path| path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or "),
                };
                (found, hint)
            }
        };

        let mut figment = Figment::from(Layer { name: DEFAULTS_SOURCE_NAME, dict: defaults });
        if let Some(path) = &file {
            figment = figment.merge(TomlFile::read(path)?);
        }
        figment = figment.merge(EnvLayer::from_vars(&self.env, top_level));
        let mut overrides = Dict::new();
        for (key, value) in &self.overrides {
            insert_nested(&mut overrides, key.split('.'), value.clone());
        }
        figment = figment.merge(Layer { name: OVERRIDE_SOURCE_NAME, dict: overrides });

        let value = figment.extract::<T>().map_err(|error| from_figment(error, &file_hint))?;
        Ok((value, Provenance { figment: Some(figment), file_hint }))
    }
}

/// The top-level keys of a configuration: plain keys, read from `BATON_<KEY>`, and tables, read
/// from `BATON_<TABLE>__<KEY>`.
pub(crate) struct TopLevelKeys {
    pub plain: &'static [&'static str],
    pub tables: &'static [&'static str],
}

/// Remembers where each value came from, so that validation after loading can name the file or
/// variable to fix. Empty (and harmless) for a configuration built by hand.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    figment: Option<Figment>,
    file_hint: String,
}

impl Provenance {
    /// Where the value of dotted `key` came from: a file path, `environment variable
    /// BATON_...`, `command-line flags`, or `built-in defaults`.
    pub fn origin(&self, key: &str) -> String {
        let found = self.figment.as_ref().and_then(|figment| figment.find_metadata(key));
        match found {
            Some(metadata) => {
                let path: Vec<String> = key.split('.').map(str::to_owned).collect();
                origin_of(metadata, &path)
            }
            None if self.file_hint.is_empty() => "the configuration".to_owned(),
            None => self.file_hint.clone(),
        }
    }

    /// The configuration file(s) a person should edit, for "missing key" messages.
    pub fn file_hint(&self) -> &str {
        if self.file_hint.is_empty() { "the configuration file" } else { &self.file_hint }
    }

    /// An error for a required `key` that has no value.
    pub fn missing(&self, key: &str) -> ConfigError {
        ConfigError::Missing {
            key: key.to_owned(),
            file: self.file_hint().to_owned(),
            env_var: env_var_for(key),
        }
    }

    /// An error for a `key` whose value breaks a rule.
    pub fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue { key: key.to_owned(), origin: self.origin(key), reason: reason.into() }
    }
}

/// A fixed dictionary of values under a name (defaults, command-line overrides).
struct Layer {
    name: &'static str,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// One TOML file, parsed when read so that syntax errors carry their position.
struct TomlFile {
    path: PathBuf,
    dict: Dict,
}

impl TomlFile {
    fn read(path: &Path) -> Result<TomlFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::FileUnreadable { path: path.to_path_buf(), error })?;
        let table: toml::Table = toml::from_str(&text).map_err(|error| {
            let (line, column) =
                error.span().map(|span| line_and_column(&text, span.start)).unwrap_or((1, 1));
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: error.message().trim().replace('\n', "; "),
            }
        })?;
        // A toml::Table always serializes to a map, so this cannot fail for well-formed input;
        // report rather than assume.
        let dict =
            Value::serialize(&table).ok().and_then(Value::into_dict).ok_or_else(|| ConfigError::Syntax {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: "the file does not hold a TOML table".to_owned(),
            })?;
        Ok(TomlFile { path: path.to_path_buf(), dict })
    }
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("TOML file", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The `BATON_*` variables that name configuration keys, nested at `__`.
struct EnvLayer {
    dict: Dict,
}

impl EnvLayer {
    fn from_vars(vars: &[(String, String)], top_level: &TopLevelKeys) -> EnvLayer {
        let mut dict = Dict::new();
        for (name, raw_value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase();
            let is_plain = top_level.plain.contains(&key.as_str());
            let is_in_table = top_level.tables.iter().any(|table| {
                key.strip_prefix(table)
                    .and_then(|after| after.strip_prefix("__"))
                    .is_some_and(|inner| !inner.is_empty())
            });
            if !(is_plain || is_in_table) {
                continue;
            }
            // figment's value syntax: `5`, `true`, `[1, 2]` and `{a = 1}` become typed values,
            // anything else a string; the lenient deserializers accept a number where a string
            // is expected.
            let value: Value =
                raw_value.parse().unwrap_or_else(|never: std::convert::Infallible| match never {});
            insert_nested(&mut dict, key.split("__"), value);
        }
        EnvLayer { dict }
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE_NAME)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Puts `value` at the path `keys` in `dict`, creating tables on the way and replacing any
/// non-table in the way.
fn insert_nested<'k>(dict: &mut Dict, mut keys: impl Iterator<Item = &'k str>, value: Value) {
    let Some(first) = keys.next() else {
        return;
    };
    let rest: Vec<&str> = keys.collect();
    if rest.is_empty() {
        dict.insert(first.to_owned(), value);
        return;
    }
    let entry = dict.entry(first.to_owned()).or_insert_with(|| Value::from(Dict::new()));
    if entry.as_dict().is_none() {
        *entry = Value::from(Dict::new());
    }
    if let Value::Dict(_, inner) = entry {
        insert_nested(inner, rest.into_iter(), value);
    }
}

/// The host name, from the kernel or the `hostname` command, trimmed; `None` if neither works.
pub fn host_name() -> Option<String> {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let name = from_kernel.or_else(|| {
        let output = crate::agents::command::new_blocking("hostname").output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    })?;
    let trimmed = name.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}
