//! Baton: fleet orchestration over a message broker.
//!
//! A node daemon (`batond`) runs on every machine, connects out to a broker (RabbitMQ over AMQP,
//! or a STOMP broker), and answers signed requests for the actions its agents declare. Clients
//! (`baton`, the console, the tests) discover nodes, fan requests out and account for every
//! reply. The modules below depend on each other in one direction only; `docs/ARCHITECTURE.md`
//! has the table of which may import which (checked by `tests/tidy.rs`), the code map and each
//! module's invariants.

pub mod agents;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
#[cfg(feature = "console")]
pub mod console;
pub mod logging;
pub mod node;
pub mod protocol;
pub mod security;
