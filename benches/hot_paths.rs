//! criterion benchmarks for the hot paths of a request's round trip: sealing and opening a
//! request and a reply (PSK and ed25519), filter evaluation on a node, counting a request in the
//! node's metrics, and the client's reply accounting (verify, route, tally). Run with `cargo bench --bench hot_paths`; the numbers
//! in docs/PERFORMANCE.md come from here.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

use baton::agents::AgentRegistry;
use baton::client::{Tally, Targets};
use baton::node::emulator::profile;
use baton::node::facts::{Classes, Facts, NodeInventory};
use baton::node::stats::Stats;
use baton::protocol::filter::{Filter, FilterSpec};
use baton::protocol::{Reply, Request, StatusCode, new_request_id, now_ms};
use baton::security::{Ed25519, Psk, Security};

const LIMIT: usize = 1 << 20;

fn psk() -> Security {
    Security::Psk(Psk::from_bytes(b"0f1e2d3c4b5a69788796a5b4c3d2e1f0", "bench").expect("bench key"))
}

/// Client and node each signing with their own ed25519 key and trusting the other's.
fn ed25519_pair() -> (Security, Security) {
    let client_secret = [7u8; 32];
    let node_secret = [9u8; 32];
    let public = |secret: [u8; 32]| Ed25519::from_keys("x", secret, []).expect("key").public_key();
    let client =
        Ed25519::from_keys("user-alice", client_secret, [("emu-00001".to_string(), public(node_secret))])
            .expect("client key");
    let node =
        Ed25519::from_keys("emu-00001", node_secret, [("user-alice".to_string(), public(client_secret))])
            .expect("node key");
    (Security::Ed25519(Box::new(client)), Security::Ed25519(Box::new(node)))
}

fn request() -> Request {
    Request {
        id: new_request_id(),
        sender: "bench-client".to_string(),
        caller: "user-alice".to_string(),
        collective: "baton".to_string(),
        agent: "rpcutil".to_string(),
        action: "ping".to_string(),
        filter: FilterSpec { fact: vec!["role=web".to_string()], ..FilterSpec::default() },
        time_ms: now_ms(),
        ttl_secs: 60,
        reply_to: "baton.reply.0123456789abcdef0123456789abcdef".to_string(),
        data: Map::new(),
        once: None,
    }
}

fn reply(request_id: uuid::Uuid, sender: &str) -> Reply {
    let Value::Object(data) = json!({ "pong": now_ms() }) else { unreachable!("an object literal") };
    Reply {
        request_id,
        sender: sender.to_string(),
        agent: "rpcutil".to_string(),
        action: "ping".to_string(),
        time_ms: now_ms(),
        status: StatusCode::Ok,
        status_message: String::new(),
        data,
    }
}

fn sealing(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("seal+open");
    let psk = psk();
    let (client, node) = ed25519_pair();
    let request = request();
    let reply = reply(request.id, "emu-00001");
    group.bench_function("request/psk", |bench| {
        bench.iter(|| {
            let bytes = psk.seal_request(black_box(&request));
            psk.open_request(&bytes, LIMIT).expect("opens")
        })
    });
    group.bench_function("reply/psk", |bench| {
        bench.iter(|| {
            let bytes = psk.seal_reply(black_box(&reply));
            psk.open_reply(&bytes, LIMIT).expect("opens")
        })
    });
    group.bench_function("request/ed25519", |bench| {
        bench.iter(|| {
            let bytes = client.seal_request(black_box(&request));
            node.open_request(&bytes, LIMIT).expect("opens")
        })
    });
    group.bench_function("reply/ed25519", |bench| {
        bench.iter(|| {
            let bytes = node.seal_reply(black_box(&reply));
            client.open_reply(&bytes, LIMIT).expect("opens")
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("open");
    let sealed = psk.seal_request(&request);
    group.bench_function("request/psk", |bench| bench.iter(|| psk.open_request(black_box(&sealed), LIMIT)));
    let sealed = psk.seal_reply(&reply);
    group.bench_function("reply/psk", |bench| bench.iter(|| psk.open_reply(black_box(&sealed), LIMIT)));
    group.finish();
}

/// A node as the emulator makes them: built-in-like facts with a generated profile on top.
fn inventory() -> NodeInventory {
    let identity = "emu-00042";
    let profile = profile(identity, 1, 42);
    let mut facts = Facts::from_map(Map::new());
    facts.merge(profile.facts);
    let agents = ["package", "puppet", "resource", "rpcutil", "service"].map(String::from);
    NodeInventory::new(identity, facts, Classes::from_names(profile.classes), agents)
}

fn filters(criterion: &mut Criterion) {
    let node = inventory();
    let role = node.facts().lookup("role").and_then(Value::as_str).unwrap_or("web").to_string();
    let cases = [
        ("empty", FilterSpec::default()),
        ("fact", FilterSpec { fact: vec![format!("role={role}")], ..FilterSpec::default() }),
        ("class", FilterSpec { class: vec![format!("role::{role}")], ..FilterSpec::default() }),
        (
            "identity-regex",
            FilterSpec { identity: vec!["/^emu-000[0-9]+$/".to_string()], ..FilterSpec::default() },
        ),
        (
            "compound",
            FilterSpec {
                select: vec![format!(
                    "(role={role} or os.family=RedHat) and not environment=development and processors.count>=2"
                )],
                ..FilterSpec::default()
            },
        ),
    ];
    let mut group = criterion.benchmark_group("filter");
    for (name, spec) in &cases {
        let compiled = Filter::compile(spec).expect("filter compiles");
        assert!(compiled.matches(&node) || *name == "compound", "{name} matches the bench node");
        group.bench_function(format!("evaluate/{name}"), |bench| {
            bench.iter(|| black_box(&compiled).matches(&node))
        });
        // What a node does per request: the filter travels as text and is compiled there.
        group.bench_function(format!("compile+evaluate/{name}"), |bench| {
            bench.iter(|| Filter::compile(black_box(spec)).expect("compiles").matches(&node))
        });
    }
    group.finish();
}

fn accounting(criterion: &mut Criterion) {
    const REPLIES: usize = 1000;
    let psk = psk();
    let request = request();
    let nodes: Vec<String> = (1..=REPLIES).map(|index| format!("emu-{index:05}")).collect();
    let sealed: Vec<Vec<u8>> = nodes.iter().map(|node| psk.seal_reply(&reply(request.id, node))).collect();
    let targets = Targets::Nodes(nodes.clone());
    let mut group = criterion.benchmark_group("accounting");
    group.throughput(Throughput::Elements(REPLIES as u64));
    group.bench_function("tally/1000 directed replies", |bench| {
        bench.iter_batched(
            || {
                let replies: Vec<Reply> = nodes.iter().map(|node| reply(request.id, node)).collect();
                (Tally::new(&request, &targets), replies)
            },
            |(mut tally, replies)| {
                for reply in replies {
                    black_box(tally.record(reply, Duration::from_millis(3)));
                }
                tally.finish(std::time::Instant::now())
            },
            BatchSize::LargeInput,
        )
    });
    // What the client does with every reply off the queue: verify, decode, account.
    group.bench_function("open+tally/1000 directed replies (psk)", |bench| {
        bench.iter_batched(
            || Tally::new(&request, &targets),
            |mut tally| {
                for bytes in &sealed {
                    let reply = psk.open_reply(bytes, LIMIT).expect("verifies").into_inner();
                    black_box(tally.record(reply, Duration::from_millis(3)));
                }
                tally.finish(std::time::Instant::now())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// What the node's pipeline does for metrics with every request it answers: count it by agent,
/// action and status. The series table is the path in use; the label lookup is what it
/// replaced (the agent and action checked against the registry, then `prometheus` hashing
/// the three labels under its lock), kept here as the baseline.
fn request_metrics(criterion: &mut Criterion) {
    let stats = Stats::default();
    let registry = AgentRegistry::builtin();
    let table = stats.actions.series(&registry);
    let mut group = criterion.benchmark_group("request metrics");
    group.bench_function("series table/rpcutil ping", |bench| {
        bench.iter(|| table.of(black_box("rpcutil"), black_box("ping")).answered(StatusCode::Ok))
    });
    let requests = prometheus::IntCounterVec::new(
        prometheus::Opts::new("baseline_requests_total", "The replaced per-request lookup."),
        &["agent", "action", "status"],
    )
    .expect("a valid metric");
    group.bench_function("label lookup (replaced)/rpcutil ping", |bench| {
        bench.iter(|| {
            let (agent, action) = (black_box("rpcutil"), black_box("ping"));
            let known =
                registry.agent(agent).is_some_and(|found| found.definition().action(action).is_some());
            let labels = if known { [agent, action, "0"] } else { ["unknown", "unknown", "0"] };
            requests.with_label_values(&labels).inc();
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = sealing, filters, accounting, request_metrics
}
criterion_main!(benches);
