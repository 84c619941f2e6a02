//! Integration tests: real RabbitMQ and ActiveMQ (the private instances of `bin/broker`), real
//! `batond` processes, the real `baton` CLI. Run by `bin/test`, or alone with
//! `cargo test --test integration` (the harness starts the private brokers if needed).

mod harness;

mod agents;
mod broker_amqp;
mod console;
mod ed25519;
mod emulator;
mod fanout;
mod hostile;
mod puppet;
mod reload;
mod resilience;
mod resource;
mod rollout;
mod stomp;
mod tls;
