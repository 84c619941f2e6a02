//! Agent definitions (DDL): what an agent declares about itself, and the checks that follow.
//!
//! A definition is one JSON document per agent (the format is documented in `docs/AGENTS.md`):
//! metadata, then each action with its typed inputs, its outputs, the aggregates a client
//! computes over every node's outputs, and when a node's reply is worth showing. The same
//! definition drives three things, so they can never disagree:
//!
//! - input checks: the client converts `KEY=VALUE` arguments by declared type and refuses bad
//!   inputs before sending ([`ActionDefinition::parse_cli_value`] and
//!   [`ActionDefinition::validate_inputs`]); the node runs the same checks again, because a
//!   request may come from anything that holds a key;
//! - outputs: defaults fill what an agent left out, and an external agent's undeclared outputs
//!   are refused ([`ActionDefinition::undeclared_outputs`]);
//! - summaries: [`Aggregate::compute`] turns every node's output into one summary.
//!
//! Definitions come from files an operator installed, and (through `rpcutil definition`) from
//! nodes, so parsing is bounded: regular expressions have a size limit and every name is
//! checked. This module does no I/O.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::protocol::StatusCode;

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
    /// The type as a person reads it in an error message.
    pub fn noun(self) -> &'static str {
        match self {
            InputType::String => "a string",
            InputType::Integer => "an integer",
            InputType::Float => "a float",
            InputType::Number => "a number",
            InputType::Boolean => "a boolean (true/false, yes/no, 1/0)",
            InputType::List => "one of the listed values",
            InputType::Array => "an array",
            InputType::Object => "an object",
        }
    }

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

/// A summary the client computes over one output of every node that replied OK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "function", rename_all = "snake_case", deny_unknown_fields)]
pub enum Aggregate {
    /// How many nodes reported each value.
    Summary { output: String },
    /// The total of the numeric values.
    Sum { output: String },
    /// The mean of the numeric values.
    Average { output: String },
    /// How many nodes reported true and how many false, under the given labels.
    BooleanSummary {
        output: String,
        #[serde(rename = "true", default = "default_true_label")]
        true_label: String,
        #[serde(rename = "false", default = "default_false_label")]
        false_label: String,
    },
}

fn default_true_label() -> String {
    "true".to_owned()
}

fn default_false_label() -> String {
    "false".to_owned()
}

/// A compiled validation regex that keeps its source text, so definitions round-trip.
#[derive(Clone)]
pub struct Validation(Regex);

impl Validation {
    /// Compiles `source` with the size limit that applies to every definition.
    pub fn new(source: &str) -> Result<Validation, regex::Error> {
        RegexBuilder::new(source).size_limit(VALIDATION_REGEX_SIZE_LIMIT).build().map(Validation)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
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

/// Why inputs were refused. [`InputError::status`] says which status a node answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("input \"{input}\" is required by {agent}#{action} and was not given")]
    Missing { agent: String, action: String, input: String },
    #[error("{agent}#{action} has no input \"{input}\" (inputs: {declared})")]
    Undeclared { agent: String, action: String, input: String, declared: String },
    #[error("input \"{input}\" must be {expected}, got {got}")]
    WrongType { input: String, expected: &'static str, got: String },
    #[error("input \"{input}\" must be one of {allowed}, got {got:?}")]
    NotInList { input: String, allowed: String, got: String },
    #[error("input \"{input}\" is {length} characters, over its maximum length of {max}")]
    TooLong { input: String, length: usize, max: usize },
    #[error("input \"{input}\" must match /{pattern}/, got {got:?}")]
    NoMatch { input: String, pattern: String, got: String },
}

impl InputError {
    /// Status 3 for a missing input, 4 for any other problem.
    pub fn status(&self) -> StatusCode {
        match self {
            InputError::Missing { .. } => StatusCode::MissingData,
            _ => StatusCode::InvalidData,
        }
    }

    /// The input the error is about.
    pub fn input(&self) -> &str {
        match self {
            InputError::Missing { input, .. }
            | InputError::Undeclared { input, .. }
            | InputError::WrongType { input, .. }
            | InputError::NotInList { input, .. }
            | InputError::TooLong { input, .. }
            | InputError::NoMatch { input, .. } => input,
        }
    }
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

    /// Declared input names, sorted, for messages.
    fn declared_inputs(&self) -> String {
        if self.inputs.is_empty() {
            "none".to_owned()
        } else {
            self.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// Converts one `KEY=VALUE` argument's text by the input's declared type: numbers and
    /// booleans are parsed, arrays and objects are JSON (an array may also be comma-separated
    /// words), everything else stays a string. `agent` and `action` name the call in errors.
    pub fn parse_cli_value(
        &self,
        agent: &str,
        action: &str,
        key: &str,
        text: &str,
    ) -> Result<Value, InputError> {
        let Some(input) = self.inputs.get(key) else {
            return Err(InputError::Undeclared {
                agent: agent.to_owned(),
                action: action.to_owned(),
                input: key.to_owned(),
                declared: self.declared_inputs(),
            });
        };
        let wrong = || InputError::WrongType {
            input: key.to_owned(),
            expected: input.kind.noun(),
            got: format!("{text:?}"),
        };
        let value = match input.kind {
            InputType::String | InputType::List => Value::String(text.to_owned()),
            InputType::Integer => Value::from(text.trim().parse::<i64>().map_err(|_| wrong())?),
            InputType::Float => finite(text).map(Value::from).ok_or_else(wrong)?,
            InputType::Number => match text.trim().parse::<i64>() {
                Ok(integer) => Value::from(integer),
                Err(_) => finite(text).map(Value::from).ok_or_else(wrong)?,
            },
            InputType::Boolean => Value::Bool(parse_boolean(text).ok_or_else(wrong)?),
            InputType::Array => {
                if text.trim_start().starts_with('[') {
                    match serde_json::from_str::<Value>(text) {
                        Ok(array @ Value::Array(_)) => array,
                        _ => return Err(wrong()),
                    }
                } else if text.is_empty() {
                    Value::Array(Vec::new())
                } else {
                    Value::Array(text.split(',').map(|item| Value::String(item.trim().to_owned())).collect())
                }
            }
            InputType::Object => match serde_json::from_str::<Value>(text) {
                Ok(object @ Value::Object(_)) => object,
                _ => return Err(wrong()),
            },
        };
        Ok(value)
    }

    /// Checks every input against its declaration and returns the inputs with defaults filled
    /// in. Refuses undeclared inputs: a node runs only what is declared.
    pub fn validate_inputs(
        &self,
        agent: &str,
        action: &str,
        data: &Map<String, Value>,
    ) -> Result<Map<String, Value>, InputError> {
        for key in data.keys() {
            if !self.inputs.contains_key(key) {
                return Err(InputError::Undeclared {
                    agent: agent.to_owned(),
                    action: action.to_owned(),
                    input: key.clone(),
                    declared: self.declared_inputs(),
                });
            }
        }
        let mut checked = Map::new();
        for (name, input) in &self.inputs {
            match data.get(name).filter(|value| !value.is_null()) {
                Some(value) => {
                    input.check_value(name, value)?;
                    checked.insert(name.clone(), value.clone());
                }
                None => match &input.default {
                    Some(default) => {
                        checked.insert(name.clone(), default.clone());
                    }
                    None if input.optional => {}
                    None => {
                        return Err(InputError::Missing {
                            agent: agent.to_owned(),
                            action: action.to_owned(),
                            input: name.clone(),
                        });
                    }
                },
            }
        }
        Ok(checked)
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

    /// Computes every declared aggregate over the outputs of the replies given (the caller
    /// passes only replies that succeeded). Keyed by output name; each result also carries the
    /// output's `display_as` label, so [`describe_summary`] can render it alone.
    pub fn summarize(&self, outputs: &[&Map<String, Value>]) -> Map<String, Value> {
        self.aggregate
            .iter()
            .map(|aggregate| {
                let values = outputs.iter().filter_map(|data| data.get(aggregate.output()));
                let mut result = aggregate.compute(values);
                let label = self
                    .outputs
                    .get(aggregate.output())
                    .map_or_else(|| aggregate.output().to_owned(), |output| output.display_as.clone());
                if let Value::Object(fields) = &mut result {
                    fields.insert("display_as".to_owned(), Value::String(label));
                }
                (aggregate.output().to_owned(), result)
            })
            .collect()
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
            self.check_value(name, default)
                .map_err(|error| format!("the default breaks its own rules: {error}"))?;
        }
        Ok(())
    }

    /// Checks one present value against this declaration.
    pub fn check_value(&self, name: &str, value: &Value) -> Result<(), InputError> {
        let wrong = || InputError::WrongType {
            input: name.to_owned(),
            expected: self.kind.noun(),
            got: describe_value(value),
        };
        match self.kind {
            InputType::String => {
                let Value::String(text) = value else { return Err(wrong()) };
                let length = text.chars().count();
                if let Some(max) = self.maxlength
                    && length > max
                {
                    return Err(InputError::TooLong { input: name.to_owned(), length, max });
                }
                if let Some(validation) = &self.validation
                    && !validation.is_match(text)
                {
                    return Err(InputError::NoMatch {
                        input: name.to_owned(),
                        pattern: validation.as_str().to_owned(),
                        got: text.clone(),
                    });
                }
            }
            InputType::Integer if !(value.is_i64() || value.is_u64()) => return Err(wrong()),
            InputType::Float | InputType::Number if !value.is_number() => return Err(wrong()),
            InputType::Boolean if !value.is_boolean() => return Err(wrong()),
            InputType::List => {
                let allowed = self.list.as_deref().unwrap_or_default();
                let Value::String(text) = value else {
                    return Err(InputError::NotInList {
                        input: name.to_owned(),
                        allowed: allowed.join(", "),
                        got: describe_value(value),
                    });
                };
                if !allowed.iter().any(|item| item == text) {
                    return Err(InputError::NotInList {
                        input: name.to_owned(),
                        allowed: allowed.join(", "),
                        got: text.clone(),
                    });
                }
            }
            InputType::Array if !value.is_array() => return Err(wrong()),
            InputType::Object if !value.is_object() => return Err(wrong()),
            _ => {}
        }
        Ok(())
    }
}

impl Aggregate {
    /// The output this aggregate summarises.
    pub fn output(&self) -> &str {
        match self {
            Aggregate::Summary { output }
            | Aggregate::Sum { output }
            | Aggregate::Average { output }
            | Aggregate::BooleanSummary { output, .. } => output,
        }
    }

    /// The function's name as written in definitions.
    pub fn function(&self) -> &'static str {
        match self {
            Aggregate::Summary { .. } => "summary",
            Aggregate::Sum { .. } => "sum",
            Aggregate::Average { .. } => "average",
            Aggregate::BooleanSummary { .. } => "boolean_summary",
        }
    }

    /// Summarises the values of this aggregate's output, one per node. The result is a JSON
    /// object with `function` and either `counts` (summaries) or `value` and `count` (sum and
    /// average, over the numeric values only; `ignored` counts the rest).
    pub fn compute<'a>(&self, values: impl Iterator<Item = &'a Value>) -> Value {
        match self {
            Aggregate::Summary { .. } => {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for value in values {
                    *counts.entry(plain_text(value)).or_default() += 1;
                }
                serde_json::json!({ "function": "summary", "counts": counts })
            }
            Aggregate::BooleanSummary { true_label, false_label, .. } => {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for value in values {
                    let label = match truthiness(value) {
                        Some(true) => true_label.clone(),
                        Some(false) => false_label.clone(),
                        None => plain_text(value),
                    };
                    *counts.entry(label).or_default() += 1;
                }
                serde_json::json!({ "function": "boolean_summary", "counts": counts })
            }
            Aggregate::Sum { .. } | Aggregate::Average { .. } => {
                let (mut total, mut count, mut ignored, mut all_integers) = (0.0_f64, 0_u64, 0_u64, true);
                for value in values {
                    match value.as_f64() {
                        Some(number) => {
                            total += number;
                            count += 1;
                            all_integers &= value.is_i64() || value.is_u64();
                        }
                        None => ignored += 1,
                    }
                }
                let result = match self {
                    Aggregate::Sum { .. } if all_integers => Value::from(total as i64),
                    Aggregate::Sum { .. } => Value::from(total),
                    _ if count == 0 => Value::Null,
                    _ => Value::from(total / count as f64),
                };
                serde_json::json!({ "function": self.function(), "value": result, "count": count, "ignored": ignored })
            }
        }
    }

    /// Human lines for a computed aggregate (`result` as [`Aggregate::compute`] returned it),
    /// under the output's display label.
    pub fn describe(&self, label: &str, result: &Value) -> Vec<String> {
        match self {
            Aggregate::Summary { .. } | Aggregate::BooleanSummary { .. } => {
                let mut lines = vec![format!("Summary of {label}:")];
                let counts = result.get("counts").and_then(Value::as_object);
                let width = counts
                    .map_or(0, |counts| counts.keys().map(|key| key.chars().count()).max().unwrap_or(0));
                for (value, count) in counts.into_iter().flatten() {
                    lines.push(format!("   {value:>width$} = {count}"));
                }
                lines
            }
            Aggregate::Sum { .. } | Aggregate::Average { .. } => {
                let noun = if matches!(self, Aggregate::Sum { .. }) { "Sum" } else { "Average" };
                let value = match result.get("value") {
                    Some(Value::Number(number)) if number.is_f64() => {
                        format!("{:.2}", number.as_f64().unwrap_or_default())
                    }
                    Some(Value::Null) | None => "(no numeric values)".to_owned(),
                    Some(other) => plain_text(other),
                };
                vec![format!("{noun} of {label}: {value}")]
            }
        }
    }
}

/// Human lines for one result of [`ActionDefinition::summarize`], from the result alone.
pub fn describe_summary(output: &str, result: &Value) -> Vec<String> {
    let label = result.get("display_as").and_then(Value::as_str).unwrap_or(output);
    let aggregate = match result.get("function").and_then(Value::as_str) {
        Some("sum") => Aggregate::Sum { output: output.to_owned() },
        Some("average") => Aggregate::Average { output: output.to_owned() },
        // Both summaries render their counts the same way; the labels are already applied.
        _ => Aggregate::Summary { output: output.to_owned() },
    };
    aggregate.describe(label, result)
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

/// MCollective's boolean words: true/t/yes/y/1 and false/f/no/n/0, in any case.
pub fn parse_boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

fn truthiness(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => parse_boolean(text),
        Value::Number(number) => number.as_i64().and_then(|integer| match integer {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }),
        _ => None,
    }
}

fn finite(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|number| number.is_finite())
}

/// A value as a person reads it: strings without quotes.
pub fn plain_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A value for an error message: its type and, when short, the value itself.
fn describe_value(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let text = value.to_string();
    if text.chars().count() <= 40 { format!("{kind} ({text})") } else { kind.to_owned() }
}
