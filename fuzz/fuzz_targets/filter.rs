//! Fuzz target for the filter language: filter text arrives from the network on every node,
//! so compiling it, matching it and explaining it must never panic, whatever the bytes.
//!
//! The input is split on NUL bytes into filter texts; the first byte of each picks the flag
//! (`-I`, `-C`, `-F`, `-A` or `-S`) and the rest, read as UTF-8 (lossily), is its text. A
//! filter that compiles is matched against a node with structured, array and numeric facts and
//! described in words; one that does not has its error message and caret rendered.
#![no_main]

use std::sync::OnceLock;

use baton::protocol::filter::{Filter, NodeView, dotted_fact};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

struct Node {
    identity: String,
    classes: Vec<String>,
    agents: Vec<String>,
    facts: Value,
}

impl NodeView for Node {
    fn identity(&self) -> &str {
        &self.identity
    }
    fn has_class(&self, class: &str) -> bool {
        self.classes.iter().any(|own| own == class)
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn fact(&self, dotted_key: &str) -> Option<&Value> {
        dotted_fact(&self.facts, dotted_key)
    }
    fn has_agent(&self, agent: &str) -> bool {
        self.agents.iter().any(|own| own == agent)
    }
    fn agents(&self) -> &[String] {
        &self.agents
    }
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| Node {
        identity: "web01.example.com".to_owned(),
        classes: ["apache", "ntp", "role::web"].map(str::to_owned).to_vec(),
        agents: ["rpcutil", "service", "puppet"].map(str::to_owned).to_vec(),
        facts: json!({
            "role": "web",
            "processorcount": 8,
            "load": 0.25,
            "big": 18446744073709551615u64,
            "tiny": -1e300,
            "is_virtual": true,
            "nothing": null,
            "tags": ["a", 1, true, null, ["nested"], {"k": "v"}],
            "os": { "family": "Debian", "release": { "major": "12" } },
            "os.flat": "x",
            "disks": [ { "size": 500 }, { "size": "2000" } ],
        }),
    })
}

fuzz_target!(|data: &[u8]| {
    let spec = baton_fuzz::filter_spec(data, false);
    match Filter::compile(&spec) {
        Ok(filter) => {
            let node: &dyn NodeView = node();
            let first = filter.matches(node);
            // Matching has no state: the same node gets the same answer.
            assert_eq!(first, filter.matches(node));
            let _ = filter.describe();
            if let Some(identities) = filter.plain_identities() {
                assert_eq!(identities.len(), spec.identity.len());
            }
        }
        Err(error) => {
            let _ = error.to_string();
            let _ = error.caret();
        }
    }
});
