//! Where facts and classes come from ([`FactSource`]): fact files (YAML, or JSON when named
//! `*.json`) merged in order over the built-in facts, and Puppet's classes file. Loading names
//! the file (and line) of anything broken; [`FactSource::stamp`] tells cheaply whether any file
//! changed since, for reloading.

use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::{Classes, Facts};

/// Something worth logging that does not stop facts from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The configured classes file does not exist: the node has no classes.
    MissingClassesFile { path: PathBuf },
    /// A configured fact file does not exist: its facts are absent.
    MissingFactFile { path: PathBuf },
    /// `facts.facter` is on but Facter gave no facts; the reason says why.
    Facter { reason: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MissingClassesFile { path } => write!(
                f,
                "classes file {} does not exist: this node has no classes until it appears \
                 (check facts.classes_file)",
                path.display()
            ),
            Warning::MissingFactFile { path } => write!(
                f,
                "fact file {} does not exist: its facts are missing until it appears (check \
                 facts.files)",
                path.display()
            ),
            Warning::Facter { reason } => {
                write!(f, "no facts from Facter: {reason}; the node has its other facts")
            }
        }
    }
}

/// Why facts or classes could not be loaded. The daemon keeps its previous facts.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// A file exists but cannot be read (permissions, a directory, bad UTF-8).
    #[error("cannot read {what} {}: {source}", path.display())]
    Unreadable {
        /// "fact file" or "classes file".
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A fact file is not valid YAML or JSON.
    #[error("cannot parse fact file {}{}: {message}", path.display(), location(*line, *column))]
    Parse {
        path: PathBuf,
        /// 1-based, when the parser knows.
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A fact file parsed, but its top level is not a mapping of fact names to values.
    #[error(
        "fact file {} must hold a mapping of fact names to values at the top level, found {found}",
        path.display()
    )]
    NotAMapping { path: PathBuf, found: &'static str },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// Where a node's facts and classes come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactSource {
    /// Fact files, merged in order over the built-in facts.
    pub files: Vec<PathBuf>,
    pub classes_file: Option<PathBuf>,
    /// Facter to run for facts (`facter --json`), merged before the files; `None`: no Facter.
    pub facter: Option<String>,
}

/// The state of a [`FactSource`]'s files at one moment, to tell later whether any changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<Option<FileState>>);

/// What identifies one version of a file without reading it. The inode catches a file
/// replaced by rename with the same size within the clock's resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    modified: Option<SystemTime>,
    size: u64,
    inode: u64,
    device: u64,
}

impl FactSource {
    /// The sources named by the `[facts]` configuration table.
    pub fn from_config(config: &crate::config::FactsConfig) -> FactSource {
        FactSource {
            files: config.files.clone(),
            classes_file: config.classes_file.clone(),
            facter: config.facter.then(|| "facter".to_owned()),
        }
    }

    /// Reads the built-in facts, every fact file and the classes file. Missing files are
    /// warnings; unreadable or unparsable ones are errors naming the file (and line).
    ///
    /// Take a [`FactSource::stamp`] *before* calling this, so that a file changing while it is
    /// read shows up as a change at the next poll instead of being missed.
    pub fn load(&self) -> Result<(Facts, Classes, Vec<Warning>), FactsError> {
        let mut warnings = Vec::new();
        let mut facts = Facts::builtin();
        if let Some(program) = &self.facter {
            match super::facter::facts(program) {
                Ok(overlay) => facts.merge(overlay),
                Err(reason) => warnings.push(Warning::Facter { reason }),
            }
        }
        for path in &self.files {
            match read_fact_file(path)? {
                Some(overlay) => facts.merge(overlay),
                None => warnings.push(Warning::MissingFactFile { path: path.clone() }),
            }
        }
        let classes = match &self.classes_file {
            None => Classes::default(),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Classes::parse(&text),
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    warnings.push(Warning::MissingClassesFile { path: path.clone() });
                    Classes::default()
                }
                Err(source) => {
                    return Err(FactsError::Unreadable { what: "classes file", path: path.clone(), source });
                }
            },
        };
        Ok((facts, classes, warnings))
    }

    /// The current state of every file (a missing file is recorded as missing).
    pub fn stamp(&self) -> Stamp {
        Stamp(
            self.files
                .iter()
                .chain(self.classes_file.iter())
                .map(|path| {
                    std::fs::metadata(path).ok().map(|metadata| FileState {
                        modified: metadata.modified().ok(),
                        size: metadata.len(),
                        inode: metadata.ino(),
                        device: metadata.dev(),
                    })
                })
                .collect(),
        )
    }

    /// True when any file appeared, disappeared, or changed size, modification time or inode
    /// since `stamp` was taken. A handful of `stat` calls: cheap enough to poll every second.
    pub fn changed_since(&self, stamp: &Stamp) -> bool {
        self.stamp() != *stamp
    }
}

/// Reads one fact file: `Ok(None)` when it does not exist.
fn read_fact_file(path: &Path) -> Result<Option<Map<String, Value>>, FactsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FactsError::Unreadable { what: "fact file", path: path.to_path_buf(), source });
        }
    };
    let is_json = path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("json"));
    // YAML for anything not named .json: Facter writes .yaml, and YAML reads most JSON too.
    let value: Value = if is_json {
        serde_json::from_str(&text).map_err(|error| FactsError::Parse {
            path: path.to_path_buf(),
            line: Some(error.line()).filter(|line| *line > 0),
            column: Some(error.column()).filter(|column| *column > 0),
            message: strip_location(&error.to_string()),
        })?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|error| {
            let location = error.location();
            FactsError::Parse {
                path: path.to_path_buf(),
                line: location.as_ref().map(|at| at.line()),
                column: location.as_ref().map(|at| at.column()),
                message: strip_location(&error.to_string()),
            }
        })?
    };
    match value {
        Value::Object(map) => Ok(Some(map)),
        other => Err(FactsError::NotAMapping {
            path: path.to_path_buf(),
            found: match other {
                Value::Null => "nothing (is the file empty?)",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "a list",
                Value::Object(_) => "a mapping",
            },
        }),
    }
}

/// Parsers append " at line L column C" to their messages; the error carries those as fields.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}
