//! Aggregates: the maths of the summaries a definition declares over one output of every node
//! that replied OK (counts of each value, true/false counts, sums and averages). The results
//! are JSON so they travel in `--json` documents and the console's API; how they read in
//! English is the front ends' business (`cli`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ActionDefinition, parse_boolean};

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

impl ActionDefinition {
    /// passes only replies that succeeded). Keyed by output name; each result also carries the
    /// output's `display_as` label, so a front end can render it alone.
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

/// A value as a person reads it: strings without quotes.
pub fn plain_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
