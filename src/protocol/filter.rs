//! The filter language: which nodes a request is for.
//!
//! PLACEHOLDER: the public API below is the contract; the parser and evaluator are being written.

use serde::{Deserialize, Serialize};

/// A filter as it travels in a request: the source text of each flag, unparsed. Every node
/// parses it with the same parser as the client, so the meaning cannot drift between them.
/// All lists are ANDed together; an empty spec matches every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSpec {
    /// `-I`: an identity or `/regex/`. Several `-I` are ORed among themselves (MCollective).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity: Vec<String>,
    /// `-C`: a class name or `/regex/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<String>,
    /// `-F`: `key<op>value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fact: Vec<String>,
    /// `-A`: an agent name or `/regex/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<String>,
    /// `-S`: compound expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<String>,
}

/// What a filter needs to know about a node.
pub trait NodeView {
    fn identity(&self) -> &str;
    fn has_class(&self, class: &str) -> bool;
    fn classes(&self) -> &[String];
    /// A fact by dotted key (`os.family` reaches into structured facts).
    fn fact(&self, dotted_key: &str) -> Option<&serde_json::Value>;
    fn has_agent(&self, agent: &str) -> bool;
    fn agents(&self) -> &[String];
}

/// A filter compiled from a [`FilterSpec`]: regexes built, expressions parsed.
#[derive(Debug, Clone)]
pub struct Filter {
    spec: FilterSpec,
}

/// Why a filter could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter {source_text:?}: {reason}")]
pub struct FilterError {
    pub source_text: String,
    pub reason: String,
}

impl Filter {
    pub fn compile(spec: &FilterSpec) -> Result<Filter, FilterError> {
        Ok(Filter { spec: spec.clone() })
    }
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }
    pub fn matches(&self, _node: &dyn NodeView) -> bool {
        true
    }
    /// The identities, when the filter is nothing but plain `-I` names (no regex, no other
    /// flag): the client can then address those nodes directly and skip discovery.
    pub fn plain_identities(&self) -> Option<Vec<String>> {
        None
    }
}
