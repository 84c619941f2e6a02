//! Fuzz target: the cost of compiling filter text, which arrives from the network on every node.
//!
//! Compiling must stay bounded whatever the text: anything over the documented limits
//! ([`MAX_EXPRESSION_BYTES`] per flag, [`MAX_FILTER_BYTES`] in all) is refused, and whatever is
//! accepted compiles and matches within libFuzzer's per-input `-timeout` (the fuzz step of
//! `bin/test` sets it), which reports a slow input as a crash; no clock is read here.
//!
//! The input is read by [`baton_fuzz::filter_spec`], with a repeat count per flag so that small
//! inputs reach texts past the limits.
#![no_main]

use baton::protocol::filter::{Filter, MAX_EXPRESSION_BYTES, MAX_FILTER_BYTES, NodeView};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A node with many classes, agents and a deep fact, so that matching has work to do.
struct Node {
    classes: Vec<String>,
    facts: Value,
}

impl NodeView for Node {
    fn identity(&self) -> &str {
        "node0042.example.com"
    }
    fn has_class(&self, class: &str) -> bool {
        self.classes.iter().any(|own| own == class)
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn fact(&self, dotted_key: &str) -> Option<&Value> {
        baton::protocol::filter::dotted_fact(&self.facts, dotted_key)
    }
    fn has_agent(&self, agent: &str) -> bool {
        self.classes.iter().any(|own| own == agent)
    }
    fn agents(&self) -> &[String] {
        &self.classes
    }
}

fuzz_target!(|data: &[u8]| {
    let spec = baton_fuzz::filter_spec(data, true);
    let texts = || [&spec.identity, &spec.class, &spec.fact, &spec.agent, &spec.select].into_iter().flatten();
    let longest = texts().map(String::len).max().unwrap_or(0);
    let total: usize = texts().map(String::len).sum();

    match Filter::compile(&spec) {
        Ok(filter) => {
            assert!(longest <= MAX_EXPRESSION_BYTES, "a {longest}-byte flag compiled");
            assert!(total <= MAX_FILTER_BYTES, "a {total}-byte filter compiled");
            let classes: Vec<String> = (0..200).map(|index| format!("role::web{index}")).collect();
            let mut facts = Value::String("leaf".repeat(64));
            for depth in 0..32 {
                facts = serde_json::json!({ "k": facts, "n": depth, "list": [depth, "x"] });
            }
            let _ = filter.matches(&Node { classes, facts });
            let _ = filter.describe();
        }
        Err(error) => {
            let _ = error.to_string();
            let _ = error.caret();
        }
    }
});
