//! Agent definitions (DDL): what an agent declares about itself, and the checks that follow.
//!
//! A definition is one JSON document per agent (the format is documented in `docs/AGENTS.md`):
//! metadata, then each action with its typed inputs, its outputs, the aggregates a client
//! computes over every node's outputs, and when a node's reply is worth showing. The same
//! definition drives three things, so they can never disagree:
//!
//! - [`definition`]: the schema itself, parsed and checked ([`Definition::from_json`]); output
//!   defaults and undeclared outputs ([`ActionDefinition::undeclared_outputs`]);
//! - [`input`]: the client converts typed text by declared type and refuses bad inputs before
//!   sending ([`ActionDefinition::parse_cli_value`], [`ActionDefinition::validate_inputs`]); the
//!   node runs the same checks again, because a request may come from anything that holds a key;
//! - [`aggregate`]: the maths that turns every node's output into one summary
//!   ([`ActionDefinition::summarize`]).
//!
//! Definitions come from files an operator installed, and (through `rpcutil definition`) from
//! nodes, so parsing is bounded: regular expressions have a size limit and every name is
//! checked. The English a person reads about a definition (help text, summary sentences) is
//! `cli`'s. This module does no I/O.

pub mod aggregate;
pub mod definition;
pub mod input;

pub use aggregate::{Aggregate, plain_text};
pub use definition::{
    ActionDefinition, Definition, DefinitionError, DisplayPolicy, InputDefinition, InputType,
    MAX_DEFINITION_BYTES, MAX_TIMEOUT_SECS, Metadata, OutputDefinition, VALIDATION_REGEX_SIZE_LIMIT,
    Validation, is_agent_name,
};
pub use input::{InputError, parse_boolean};
