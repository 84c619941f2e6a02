//! The wire protocol: message types, their CBOR encoding, and the filter language.
//!
//! This module does no I/O and knows nothing of tokio, lapin or STOMP: it turns bytes into
//! typed messages and back, and decides whether a filter matches a node. Everything here is
//! safe to call on bytes an attacker chose; decoding never panics.

pub mod filter;
pub mod message;

pub use filter::{Filter, FilterError, FilterSpec, NodeView};
pub use message::*;
