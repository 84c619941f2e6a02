//! The aggregate summaries in words: what `baton rpc` prints under the replies for each
//! aggregate the action's definition declares. The maths is `protocol::ddl::aggregate`'s; the
//! results arrive computed, in the outcome (`CallOutcome::aggregates`).

use serde_json::{Map, Value};

use crate::protocol::ddl::plain_text;

/// Human lines for every computed aggregate of a call, each followed by a blank line; none for
/// a summary with nothing to count.
pub fn aggregate_lines(aggregates: &Map<String, Value>) -> Vec<String> {
    let mut lines = Vec::new();
    for (output, result) in aggregates {
        let summary = summary_lines(output, result);
        if !summary.is_empty() {
            lines.extend(summary);
            lines.push(String::new());
        }
    }
    lines
}

/// Human lines for one computed aggregate (as `ActionDefinition::summarize` returned it, which
/// carries its function and the output's `display_as` label), from the result alone.
pub fn summary_lines(output: &str, result: &Value) -> Vec<String> {
    let label = result.get("display_as").and_then(Value::as_str).unwrap_or(output);
    match result.get("function").and_then(Value::as_str) {
        Some(function @ ("sum" | "average")) => {
            let noun = if function == "sum" { "Sum" } else { "Average" };
            let value = match result.get("value") {
                Some(Value::Number(number)) if number.is_f64() => {
                    format!("{:.2}", number.as_f64().unwrap_or_default())
                }
                Some(Value::Null) | None => "(no numeric values)".to_owned(),
                Some(other) => plain_text(other),
            };
            vec![format!("{noun} of {label}: {value}")]
        }
        // Both summaries render their counts the same way; the labels are already applied.
        _ => {
            let counts = result.get("counts").and_then(Value::as_object);
            // Every node failed, or none returned the output: a header over nothing says
            // nothing (regression: an empty "Summary of ..." was printed).
            if counts.is_none_or(Map::is_empty) {
                return Vec::new();
            }
            let mut lines = vec![format!("Summary of {label}:")];
            let width =
                counts.map_or(0, |counts| counts.keys().map(|key| key.chars().count()).max().unwrap_or(0));
            for (value, count) in counts.into_iter().flatten() {
                lines.push(format!("   {value:>width$} = {count}"));
            }
            lines
        }
    }
}
