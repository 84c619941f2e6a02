//! Integration tests: real RabbitMQ and ActiveMQ (the private instances of `bin/broker`), real
//! `batond` processes, the real `baton` CLI. Run by `bin/test`, or alone with
//! `cargo test --test integration` (the harness starts the private brokers if needed), or one
//! part with `cargo test --test integration MODULE` (e.g. `hostile`).
//!
//! One binary, so the brokers are started once. What each module covers:
//!
//! - `harness`: not tests: private brokers, a collective per test, `batond` processes owned by
//!   the test (dropping it stops them), the `baton` CLI, and one test body run on every transport.
//! - `agents`: external agents (shell, Python) through the broker; a hanging one killed with its
//!   children at its timeout, a crashing one reporting its stderr; input checks on the client
//!   (exit 2) and on the node (status 3 and 4).
//! - `console`: the web console in headless Chromium (Playwright) against real nodes: login,
//!   filtering, actions, cloning a user, Puppet; signing as the logged-in user with ed25519;
//!   following registrations; refusing to listen beyond loopback without a login.
//! - `ed25519`: callers proven by their own keys: unknown callers refused, policies per caller,
//!   re-signed requests refused, replies accepted only from trusted nodes.
//! - `emulator`: fifty virtual nodes of `baton-emulator` answering through RabbitMQ as `batond`s.
//! - `fanout`: filters, discovery, ping and rpc reach exactly the right nodes, with the documented
//!   JSON and exit codes, over every transport.
//! - `hostile`: wrong keys, replays, expired, oversized and random messages: refused, counted,
//!   audited, and the node keeps answering.
//! - `puppet`: the `puppet` agent over the real Puppet: a run of a local manifest, status, last
//!   run summary, disable and enable.
//! - `registry`: the registry stream on RabbitMQ: discovery, ping and rpc that know whom to
//!   expect, a silent expected node reported, a node not yet registered counted within the
//!   grace, `--dm registry` without a broadcast.
//! - `reload`: a running node picks up new facts and classes without a restart, and stops cleanly.
//! - `resilience`: unreachable identities, killed nodes, a stopped broker.
//! - `resource`: the `resource` agent browsing and cloning users, groups and host entries.
//! - `rollout`: batches in order, `--max-failures` (silent nodes count), one JSON document per
//!   exit code, `--jsonl` streaming, discover-then-act and retries, the terminal, fire-and-forget.
//! - `stomp`: AMQP and STOMP on one RabbitMQ reaching each other, ActiveMQ restarts, missing
//!   heart-beats, malformed frames from a fake peer.
//! - `tls`: AMQPS and STOMP over TLS with certificate and host name verification.

mod harness;

mod agents;
mod broker_amqp;
mod console;
mod ed25519;
mod emulator;
mod fanout;
mod hostile;
mod puppet;
mod registry;
mod reload;
mod resilience;
mod resource;
mod rollout;
mod stomp;
mod tls;
