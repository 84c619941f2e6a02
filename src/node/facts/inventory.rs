//! What a node looks like to a filter ([`NodeInventory`]): identity, facts, classes and agents.

use serde_json::Value;

use super::{Classes, Facts};
use crate::protocol::filter::NodeView;

/// What a node looks like to a filter: identity, facts, classes and agents.
#[derive(Debug, Clone, Default)]
pub struct NodeInventory {
    identity: String,
    facts: Facts,
    classes: Classes,
    /// Sorted, for binary search.
    agents: Vec<String>,
}

impl NodeInventory {
    pub fn new(
        identity: impl Into<String>,
        facts: Facts,
        classes: Classes,
        agents: impl IntoIterator<Item = String>,
    ) -> NodeInventory {
        let mut agents: Vec<String> = agents.into_iter().collect();
        agents.sort();
        agents.dedup();
        NodeInventory { identity: identity.into(), facts, classes, agents }
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub fn class_list(&self) -> &Classes {
        &self.classes
    }

    /// Replaces facts and classes after a successful reload; identity and agents stay.
    pub fn replace_facts(&mut self, facts: Facts, classes: Classes) {
        self.facts = facts;
        self.classes = classes;
    }
}

impl NodeView for NodeInventory {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn has_class(&self, class: &str) -> bool {
        self.classes.contains(class)
    }

    fn classes(&self) -> &[String] {
        self.classes.as_slice()
    }

    fn fact(&self, dotted_key: &str) -> Option<&Value> {
        self.facts.lookup(dotted_key)
    }

    fn has_agent(&self, agent: &str) -> bool {
        self.agents.binary_search_by(|name| name.as_str().cmp(agent)).is_ok()
    }

    fn agents(&self) -> &[String] {
        &self.agents
    }
}
