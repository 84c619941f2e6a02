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
//! - `broker_amqp`: the AMQP transport against the private RabbitMQ: routing, unroutable and
//!   oversized messages, ttl, login and permission errors named, failover, reconnection.
//! - `cluster`: ten nodes on the three-member RabbitMQ cluster answer again, without a restart,
//!   after the member they use stops (twice, another member each time), and a batched rollout
//!   across each loss accounts for every node once and runs nothing twice; a node whose queue
//!   the broker lost under its consumer (what a cluster's cleanup of a lost member can do to a
//!   queue declared again meanwhile) declares it again.
//! - `collectives`: `rabbitmq/baton-rabbitmq` prepares a vhost with least-privilege users that
//!   nodes and clients use, and adds a sub-collective to the running broker; a node in it
//!   starts once it is declared and `-T` reaches exactly its nodes.
//! - `console`: the web console in headless Chromium (Playwright) against real nodes: login,
//!   filtering, actions, cloning a user, Puppet; signing as the logged-in user with ed25519;
//!   following registrations; refusing to listen beyond loopback without a login; the
//!   rollouts view read back from the events stream and following a resume live.
//! - `deploy`: a log file without escape codes; systemd's READY/RELOADING notifications; the
//!   Puppet module writing a working node and client, adding an agent, rotating a caller's key.
//! - `ed25519`: callers proven by their own keys: unknown callers refused, policies per caller,
//!   re-signed requests refused, replies accepted only from trusted nodes.
//! - `emulator`: fifty virtual nodes of `baton-emulator` answering through RabbitMQ as `batond`s;
//!   all in the registry once ready, and all counted when their replies come late.
//! - `fanout`: filters, discovery, ping and rpc reach exactly the right nodes, with the documented
//!   JSON and exit codes, over every transport.
//! - `federation`: two sites joined by RabbitMQ federation: nodes on site B answer a client on
//!   site A through the sub-collective `dc2` (ping, discovery, a directed rpc); with the link
//!   cut they are reported as not responding within the timeout, and answer again once it is
//!   back, nothing run twice nor after its ttl.
//! - `hostile`: wrong keys, replays, expired, oversized and random messages: refused, counted,
//!   audited, and the node keeps answering.
//! - `identity`: a second `batond` with a live node's identity is refused, naming it and what
//!   to do, and the first answers all 20 directed requests, over every transport.
//! - `metrics`: a node's `/metrics` checked by `promtool`, counters after a ping, `/healthz`
//!   while the node's broker connection is cut and after it returns.
//! - `operator`: what an operator meets in the first hour: discovery reports only nodes that
//!   answered, `rpc AGENT` asks only nodes with the agent, an empty `--only` named, broker
//!   refusals worded once, a wrong collective named, SIGHUP following a changed `agents.dir`,
//!   collected replies shown as live, Ctrl-C printing what is known, the bar cleared first.
//! - `puppet`: the `puppet` agent over the real Puppet: a run of a local manifest, status, last
//!   run summary, disable and enable.
//! - `registry`: the registry stream on RabbitMQ: discovery, ping and rpc that know whom to
//!   expect, a silent expected node reported, a node not yet registered counted within the
//!   grace, `--dm registry` without a broadcast; the same over RabbitMQ's STOMP, the quiet
//!   window on ActiveMQ and without a stream; the console filled from the registry at start
//!   (nodes that no longer answer listed by age), or from inventories without one.
//! - `reload`: a running node picks up new facts and classes without a restart, and stops cleanly.
//! - `resilience`: unreachable identities, killed nodes, a stopped broker.
//! - `resource`: the `resource` agent browsing and cloning users, groups and host entries.
//! - `rollout`: batches in order, `--max-failures` (silent nodes count), one JSON document per
//!   exit code, `--jsonl` streaming, discover-then-act and retries, the terminal, fire-and-forget.
//! - `rollout_ci`: rollouts for CI: a canary batch, a health check (an external agent) between
//!   batches that stops the rollout, its retries; `baton rollout status` and `resume` after a
//!   fix and after the client was SIGKILLed; a plain AMQP consumer of `C.events` receiving the
//!   `--jsonl` stream in order; the CI examples of docs/CLI.md run as written; a stopped
//!   rollout shown and resumed on another runner (empty state dir) from the events stream;
//!   a second run of a running rollout refused by its locks, here and on another runner.
//! - `stomp`: AMQP and STOMP on one RabbitMQ reaching each other, ActiveMQ restarts, missing
//!   heart-beats, malformed frames from a fake peer.
//! - `tls`: AMQPS and STOMP over TLS with certificate and host name verification.

mod harness;

mod agents;
mod broker_amqp;
mod cluster;
mod collectives;
mod console;
mod deploy;
mod ed25519;
mod emulator;
mod fanout;
mod federation;
mod hostile;
mod identity;
mod metrics;
mod operator;
mod puppet;
mod registry;
mod reload;
mod resilience;
mod resource;
mod rollout;
mod rollout_ci;
mod stomp;
mod tls;
