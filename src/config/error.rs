//! Configuration errors, and their translation from figment's errors into messages that name the
//! key and where its value came from (a file, an environment variable, a flag).
//!
//! figment reports the failing key as a path, the provider that supplied the value as metadata,
//! and the problem as a serde error kind; this module turns those three into one sentence a
//! person can act on without knowing that figment exists.

use std::path::PathBuf;

use figment::error::{Actual, Kind};

use super::origin::{env_var_for, origin_of};

/// Why configuration could not be loaded. Every message names the key (as a dotted path) and
/// the place its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file that must be read could not be (an explicitly given file that does
    /// not exist, a permission problem, a directory where a file was expected).
    ///
    /// The I/O error is part of the message and deliberately not a `#[source]`: printed with
    /// its cause chain (`{:#}`), it would otherwise appear twice (regression).
    #[error("cannot read configuration file {}: {error} (check the path and its permissions)", path.display())]
    FileUnreadable { path: PathBuf, error: std::io::Error },
    /// The file is not valid TOML.
    #[error("syntax error in {}, line {line}, column {column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// 1-based, in characters.
        column: usize,
        message: String,
    },
    /// A key that no table of this configuration has (often a typo).
    #[error("unknown key {key:?} in {origin} (known keys: {})", known.join(", "))]
    UnknownKey {
        /// Dotted path of the unknown key, e.g. `broker.urlz`.
        key: String,
        /// Where it was found: a file path, or `environment variable BATON_...`.
        origin: String,
        /// The keys that the enclosing table accepts.
        known: Vec<String>,
    },
    /// A value of the wrong type, out of range, or inconsistent with another key.
    #[error("invalid value for {key:?} in {origin}: {reason}")]
    InvalidValue {
        key: String,
        origin: String,
        /// What was expected and what was found, or which rule the value breaks.
        reason: String,
    },
    /// A required key has no value anywhere.
    #[error("missing {key:?}: set it in {file} or {env_var}")]
    Missing {
        key: String,
        /// The configuration file(s) that would be read, as a person should edit them.
        file: String,
        /// The environment variable that sets the key.
        env_var: String,
    },
}

impl ConfigError {
    /// The dotted key this error is about, if it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Missing { key, .. } => Some(key),
            ConfigError::FileUnreadable { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

/// Translates the first of figment's (possibly chained) errors. Deserialization stops at the
/// first problem, so later ones in the chain are rare and usually consequences of the first.
pub(crate) fn from_figment(error: figment::Error, file_hint: &str) -> ConfigError {
    let first = error.into_iter().next();
    let Some(error) = first else {
        // figment never produces an empty chain; say something true rather than panic.
        return ConfigError::InvalidValue {
            key: String::new(),
            origin: file_hint.to_owned(),
            reason: "the configuration could not be read".to_owned(),
        };
    };
    let origin = error
        .metadata
        .as_ref()
        .map(|metadata| origin_of(metadata, &error.path))
        .unwrap_or_else(|| file_hint.to_owned());
    let parent = error.path.clone();
    match error.kind {
        Kind::UnknownField(field, known) => ConfigError::UnknownKey {
            // serde's path for an unknown field already ends with the field itself.
            key: dotted(&parent, None).unwrap_or(field),
            origin,
            known: known.iter().map(|k| (*k).to_owned()).collect(),
        },
        Kind::MissingField(field) => {
            let key = dotted(&parent, Some(&field)).unwrap_or_else(|| field.to_string());
            ConfigError::Missing { env_var: env_var_for(&key), key, file: file_hint.to_owned() }
        }
        Kind::UnknownVariant(found, expected) => ConfigError::InvalidValue {
            key: dotted(&parent, None).unwrap_or_default(),
            origin,
            reason: format!("expected {}, found {found:?}", one_of(expected)),
        },
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            ConfigError::InvalidValue {
                key: dotted(&parent, None).unwrap_or_default(),
                origin,
                reason: format!(
                    "expected {}, found {}",
                    expected_in_words(&expected),
                    actual_in_words(&found)
                ),
            }
        }
        Kind::InvalidLength(length, expected) => ConfigError::InvalidValue {
            key: dotted(&parent, None).unwrap_or_default(),
            origin,
            reason: format!("expected {expected}, found {length} items"),
        },
        other => ConfigError::InvalidValue {
            key: dotted(&parent, None).unwrap_or_default(),
            origin,
            reason: other.to_string(),
        },
    }
}

fn dotted(path: &[String], last: Option<&str>) -> Option<String> {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    if let Some(last) = last {
        parts.push(last);
    }
    (!parts.is_empty()).then(|| parts.join("."))
}

/// `"amqp" or "stomp"`, or `one of "a", "b", "c"`.
pub(crate) fn one_of(expected: &[&str]) -> String {
    let quoted: Vec<String> = expected.iter().map(|e| format!("{e:?}")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_owned(),
        [only] => only.clone(),
        [a, b] => format!("{a} or {b}"),
        many => format!("one of {}", many.join(", ")),
    }
}

/// serde's expectation strings are written for Rust programmers (`u64`, `a sequence`); say them
/// in TOML's words.
fn expected_in_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "path string" => "a path".to_owned(),
        other if other.starts_with("struct ") || other == "a map" => "a table".to_owned(),
        other => other.to_owned(),
    }
}

fn actual_in_words(found: &Actual) -> String {
    match found {
        Actual::Bool(value) => value.to_string(),
        Actual::Unsigned(value) => value.to_string(),
        Actual::Signed(value) => value.to_string(),
        Actual::Float(value) => value.to_string(),
        Actual::Char(value) => format!("{:?}", value.to_string()),
        Actual::Str(value) => format!("{value:?}"),
        Actual::Seq => "a list".to_owned(),
        Actual::Map => "a table".to_owned(),
        Actual::Unit | Actual::Option => "nothing".to_owned(),
        other => other.to_string(),
    }
}
