//! Fuzz target for agent definitions: `baton doc` accepts definitions from nodes
//! (`rpcutil definition`), so parsing one, and checking inputs, converting `KEY=VALUE` text
//! and computing summaries with it, must never panic, whatever the bytes.
//!
//! The input is split at its first NUL byte: the definition document, then a JSON value used
//! as every action's inputs and as one reply's outputs (and, as text, as every input's
//! command-line value).
#![no_main]

use baton::protocol::ddl::Definition;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|bytes: &[u8]| {
    let (document, rest) = match bytes.iter().position(|byte| *byte == 0) {
        Some(nul) => (&bytes[..nul], &bytes[nul + 1..]),
        None => (bytes, &[][..]),
    };
    let Ok(definition) = Definition::from_json(document, "fuzz") else { return };
    let data: Map<String, Value> = match serde_json::from_slice::<Value>(rest) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let text = String::from_utf8_lossy(rest);
    for (name, action) in &definition.actions {
        let _ = action.validate_inputs(definition.name(), name, &data);
        for input in action.inputs.keys() {
            let _ = action.parse_cli_value(definition.name(), name, input, &text);
        }
        let mut outputs = data.clone();
        action.fill_output_defaults(&mut outputs);
        let _ = action.undeclared_outputs(&outputs);
        let summary = action.summarize(&[&outputs, &data]);
        for (output, result) in &summary {
            let _ = baton::cli::summary::summary_lines(output, result);
        }
    }
    // What parses must serialize and parse back to the same definition.
    let again = serde_json::to_vec(&definition).expect("a parsed definition serializes");
    assert_eq!(Definition::from_json(&again, "again").ok(), Some(definition));
});
