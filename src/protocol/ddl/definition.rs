//! The schema of an agent definition: the types a definition document deserializes into,
//! and the checks serde's types cannot express (names, timeouts, lists, aggregates that name
//! declared outputs). A [`Definition`] exists only once [`Definition::from_json`] accepted it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::Aggregate;

/// The most memory one compiled validation regex may take, in bytes.
pub const VALIDATION_REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// The largest definition document accepted, in bytes.
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;

/// The longest action timeout a definition may declare, in seconds (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// One agent's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub metadata: Metadata,
    /// The actions, by name.
    pub actions: BTreeMap<String, ActionDefinition>,
}

/// Who wrote an agent, what it is for, and how long its actions may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The agent's name: lowercase letters, digits and `_`, starting with a letter. It is part
    /// of routing keys (`agent.<name>`), so nothing else is allowed.
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub license: String,
    #[serde(default)]
    pub url: String,
    /// How long one action may run, in seconds, before the node stops it (status 5).
    #[serde(default = "default_timeout_secs")]
    pub timeout: u64,
}

fn default_timeout_secs() -> u64 {
    10
}

/// One action: what it takes, what it returns, how it is summarised and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDefinition {
    pub description: String,
    /// Which nodes' replies the client shows by default.
    #[serde(default)]
    pub display: DisplayPolicy,
    /// The action only reads: it changes nothing on the node. The console runs such actions
    /// without asking for confirmation; every other action is treated as changing something.
    /// Absent means `false`, the safe side.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default)]
    pub inputs: BTreeMap<String, InputDefinition>,
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputDefinition>,
    /// Summaries the client computes over every node's outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate: Vec<Aggregate>,
}

/// When a node's reply gets a line of its own in the client's output (`--display` overrides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayPolicy {
    /// Only replies that succeeded (for actions whose output is the point, like `status`).
    Ok,
    /// Only replies that failed (MCollective's default).
    #[default]
    Failed,
    /// Every reply.
    Always,
}

/// The declared type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Integer,
    Float,
    /// An integer or a float.
    Number,
    Boolean,
    /// One of the strings in the input's `list`.
    List,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
}

impl InputType {
    /// The type's name as written in definitions.
    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Float => "float",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::List => "list",
            InputType::Array => "array",
            InputType::Object => "object",
        }
    }
}

/// One input of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDefinition {
    /// A short label for forms (the console) and help.
    #[serde(default)]
    pub prompt: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Whether the input may be left out. A required input with a `default` is filled in.
    #[serde(default)]
    pub optional: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Strings only: the value must match this regular expression (anchor it with `^...$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// Strings only: the longest value accepted, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlength: Option<usize>,
    /// Lists only: the values accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<String>>,
}

/// One output of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDefinition {
    pub description: String,
    /// The label shown next to the value.
    pub display_as: String,
    /// The value a node reports when the agent did not set this output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// A validation regex that keeps its source text, so definitions round-trip.
///
/// A definition read from a document (an agent's file, a node's answer) has every regex
/// compiled as it is read, so a bad one refuses the document. The definitions shipped in the
/// binary ([`Definition::from_builtin_json`]) are compiled at their first use instead: they are
/// known to compile and to accept their own defaults (`tests/ddl.rs` checks each), and an idle node that never validates an
/// input then never touches the regex engine (its code and its compiled programs, 0.9 MiB of
/// batond's idle resident memory, docs/PERFORMANCE.md).
#[derive(Clone)]
pub struct Validation {
    source: String,
    regex: OnceLock<Regex>,
}

thread_local! {
    /// Set while [`Definition::from_builtin_json`] reads a shipped definition: its regexes are
    /// compiled at first use.
    static DEFER_COMPILING: Cell<bool> = const { Cell::new(false) };
}

fn compile(source: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(source).size_limit(VALIDATION_REGEX_SIZE_LIMIT).build()
}

impl Validation {
    /// Compiles `source` with the size limit that applies to every definition.
    pub fn new(source: &str) -> Result<Validation, regex::Error> {
        let regex = compile(source)?;
        Ok(Validation { source: source.to_owned(), regex: OnceLock::from(regex) })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regex, compiled now if this is a shipped definition's first use of it.
    ///
    /// # Panics
    /// If a shipped definition's regex does not compile: a programming error that
    /// `tests/ddl.rs` catches.
    fn regex(&self) -> &Regex {
        self.regex.get_or_init(|| {
            compile(&self.source).expect("built-in definitions' regexes compile (checked by tests/ddl.rs)")
        })
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex().is_match(text)
    }

    /// Whether the regex has been compiled (at reading, or by a first use).
    pub fn is_compiled(&self) -> bool {
        self.regex.get().is_some()
    }
}

impl fmt::Debug for Validation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "/{}/", self.as_str())
    }
}

impl PartialEq for Validation {
    fn eq(&self, other: &Validation) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Validation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Validation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Validation, D::Error> {
        let source = String::deserialize(deserializer)?;
        if DEFER_COMPILING.get() {
            return Ok(Validation { source, regex: OnceLock::new() });
        }
        Validation::new(&source).map_err(|error| {
            serde::de::Error::custom(format!("validation regex {source:?} is invalid: {error}"))
        })
    }
}

/// Why a definition document was refused. `origin` says where it came from (a file path,
/// "built-in", a node's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("definition {origin} is {size} bytes, over the {MAX_DEFINITION_BYTES}-byte limit")]
    TooLarge { origin: String, size: usize },
    #[error("definition {origin} is not valid JSON for an agent definition: {reason}")]
    Syntax { origin: String, reason: String },
    #[error("definition {origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

impl Definition {
    /// Parses and checks a definition document. `origin` names it in errors.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Definition, DefinitionError> {
        if bytes.len() > MAX_DEFINITION_BYTES {
            return Err(DefinitionError::TooLarge { origin: origin.to_owned(), size: bytes.len() });
        }
        let definition: Definition = serde_json::from_slice(bytes).map_err(|error| {
            DefinitionError::Syntax { origin: origin.to_owned(), reason: error.to_string() }
        })?;
        definition
            .check()
            .map_err(|reason| DefinitionError::Invalid { origin: origin.to_owned(), reason })?;
        Ok(definition)
    }

    /// [`Definition::from_json`] for a definition shipped in the binary, whose validation
    /// regexes are compiled at their first use rather than now (see [`Validation`]).
    pub fn from_builtin_json(bytes: &[u8], origin: &str) -> Result<Definition, DefinitionError> {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                DEFER_COMPILING.set(false);
            }
        }
        DEFER_COMPILING.set(true);
        let _reset = Reset;
        Definition::from_json(bytes, origin)
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// An action by name.
    pub fn action(&self, name: &str) -> Option<&ActionDefinition> {
        self.actions.get(name)
    }

    /// Action names, sorted.
    pub fn action_names(&self) -> Vec<String> {
        self.actions.keys().cloned().collect()
    }

    /// The action, or an error naming the actions there are.
    pub fn require_action(&self, name: &str) -> Result<&ActionDefinition, String> {
        self.action(name).ok_or_else(|| {
            format!(
                "agent \"{}\" has no action \"{name}\" (actions: {})",
                self.metadata.name,
                self.action_names().join(", ")
            )
        })
    }

    /// Checks everything serde's types cannot express; returns the first problem found.
    fn check(&self) -> Result<(), String> {
        let metadata = &self.metadata;
        if !is_agent_name(&metadata.name) {
            return Err(format!(
                "agent name {:?} must be lowercase letters, digits and '_', starting with a letter \
                 (it becomes part of routing keys)",
                metadata.name
            ));
        }
        if metadata.timeout == 0 || metadata.timeout > MAX_TIMEOUT_SECS {
            return Err(format!(
                "metadata.timeout is {} s; it must be between 1 and {MAX_TIMEOUT_SECS}",
                metadata.timeout
            ));
        }
        if self.actions.is_empty() {
            return Err("an agent must declare at least one action".to_owned());
        }
        for (action_name, action) in &self.actions {
            if !is_agent_name(action_name) {
                return Err(format!(
                    "action name {action_name:?} must be lowercase letters, digits and '_', starting \
                     with a letter"
                ));
            }
            action.check().map_err(|reason| format!("action \"{action_name}\": {reason}"))?;
        }
        Ok(())
    }
}

impl ActionDefinition {
    fn check(&self) -> Result<(), String> {
        for (name, input) in &self.inputs {
            if !is_input_name(name) {
                return Err(format!("input name {name:?} must be letters, digits and '_'"));
            }
            input.check(name)?;
        }
        let mut summarised = Vec::new();
        for aggregate in &self.aggregate {
            let output = aggregate.output();
            if !self.outputs.contains_key(output) {
                return Err(format!(
                    "aggregate {} names output \"{output}\", which is not declared",
                    aggregate.function()
                ));
            }
            if summarised.contains(&output) {
                return Err(format!("output \"{output}\" has more than one aggregate"));
            }
            summarised.push(output);
        }
        Ok(())
    }
    /// Output keys the action does not declare, sorted.
    pub fn undeclared_outputs(&self, data: &Map<String, Value>) -> Vec<String> {
        data.keys().filter(|key| !self.outputs.contains_key(*key)).cloned().collect()
    }

    /// Sets each declared output the agent left out to its default, when it has one.
    pub fn fill_output_defaults(&self, data: &mut Map<String, Value>) {
        for (name, output) in &self.outputs {
            if let Some(default) = &output.default
                && !data.contains_key(name)
            {
                data.insert(name.clone(), default.clone());
            }
        }
    }
}

impl InputDefinition {
    fn check(&self, name: &str) -> Result<(), String> {
        let string_like = matches!(self.kind, InputType::String);
        if (self.validation.is_some() || self.maxlength.is_some()) && !string_like {
            return Err(format!("input \"{name}\": validation and maxlength apply to strings only"));
        }
        match (&self.kind, &self.list) {
            (InputType::List, None) => {
                return Err(format!("input \"{name}\": type list needs a \"list\" of values"));
            }
            (InputType::List, Some(values)) if values.is_empty() => {
                return Err(format!("input \"{name}\": the list of values is empty"));
            }
            (InputType::List, Some(_)) => {}
            (_, Some(_)) => return Err(format!("input \"{name}\": \"list\" applies to type list only")),
            (_, None) => {}
        }
        if let Some(default) = &self.default {
            let check = |input: &InputDefinition| {
                input
                    .check_value(name, default)
                    .map_err(|error| format!("the default breaks its own rules: {error}"))
            };
            match &self.validation {
                // A shipped definition's regex is compiled at first use, not to check its own
                // default (`tests/ddl.rs` checks the shipped defaults against their regexes).
                Some(validation) if !validation.is_compiled() => {
                    check(&InputDefinition { validation: None, ..self.clone() })?;
                }
                _ => check(self)?,
            }
        }
        Ok(())
    }
}

/// Agent and action names: they end up in routing keys and file names.
pub fn is_agent_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 64
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

fn is_input_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}
