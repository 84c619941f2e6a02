//! Inputs: converting the text a person typed (`KEY=VALUE` on the command line, a form field
//! in the console) by the type its definition declares, and validating inputs against the
//! declaration. The client runs these checks before sending; the node runs them again, because
//! a request may come from anything that holds a key. An [`InputError`] says which status a
//! node answers with.

use serde_json::{Map, Value};

use super::{ActionDefinition, InputDefinition, InputType};
use crate::protocol::StatusCode;

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
}

impl ActionDefinition {
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
}

impl InputDefinition {
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

/// MCollective's boolean words: true/t/yes/y/1 and false/f/no/n/0, in any case.
pub fn parse_boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

fn finite(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|number| number.is_finite())
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
