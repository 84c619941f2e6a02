//! The wire protocol: message types, their CBOR encoding, and the filter language.
//!
//! This module does no I/O and knows nothing of tokio, lapin or STOMP: it turns bytes into
//! typed messages and back, decides whether a filter matches a node, and holds agent
//! definitions (DDL) with the input checks and summaries they drive. Everything here is
//! safe to call on bytes an attacker chose; decoding never panics.

pub mod claims;
pub mod ddl;
pub mod filter;
pub mod message;

pub use ddl::{Definition, DefinitionError, InputError};
pub use filter::{Filter, FilterError, FilterSpec, NodeView};
pub use message::*;
