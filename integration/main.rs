//! Integration tests: real RabbitMQ (the private instance of `bin/broker`), real `batond`
//! processes, the real `baton` CLI. Run by `bin/test`, or alone with
//! `cargo test --test integration` (the harness starts the private broker if needed).

mod harness;

mod agents;
mod ed25519;
mod fanout;
mod hostile;
mod puppet;
mod reload;
mod resilience;
mod resource;
mod tls;
