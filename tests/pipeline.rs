//! The node's request pipeline without a broker: each step in the documented order, what it
//! answers, what it counts and what it audits.

use std::sync::Arc;
use std::time::Duration;

use baton::agents::{ActionContext, AgentRegistry};
use baton::broker::Destination;
use baton::node::audit::AuditLog;
use baton::node::facts::{Classes, Facts, NodeInventory};
use baton::node::pipeline::{NodeSnapshot, Pipeline, PipelineSettings};
use baton::node::stats::Stats;
use baton::protocol::{FilterSpec, Reply, Request, StatusCode, new_request_id, now_ms};
use baton::security::{Psk, Security};
use serde_json::{Value, json};

const KEY: &[u8] = b"0f3a9c2e71d84b56a0c1e9f27b3d5a68";

fn security(key: &[u8]) -> Security {
    Security::Psk(Psk::from_bytes(key, "test key").expect("test key is acceptable"))
}

struct Node {
    pipeline: Pipeline,
    stats: Arc<Stats>,
    _dir: tempfile::TempDir,
    audit_path: std::path::PathBuf,
}

fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.log");
    let audit = Arc::new(AuditLog::open(&audit_path).expect("audit log"));
    let registry = AgentRegistry::builtin();
    let facts = Facts::from_map(json!({"role": "web", "rack": 3}).as_object().cloned().unwrap_or_default());
    let classes = Classes::from_names(["nginx"]);
    let inventory = NodeInventory::new("node01", facts.clone(), classes.clone(), registry.names());
    let stats = Arc::new(Stats::default());
    let context = ActionContext {
        identity: "node01".to_string(),
        collectives: vec!["baton".to_string()].into(),
        facts: Arc::new(facts.as_map().clone()),
        classes: classes.as_slice().into(),
        agents: registry.summaries().into(),
        stats: stats.clone(),
    };
    let snapshot = NodeSnapshot { inventory, context, registry, authorization: Default::default() };
    let settings = PipelineSettings {
        identity: "node01".to_string(),
        max_message_bytes: 64 * 1024,
        clock_skew: Duration::from_secs(30),
        replay_capacity: 1000,
        action_timeout: Duration::from_secs(5),
    };
    let pipeline = Pipeline::new(settings, Arc::new(security(KEY)), snapshot, stats.clone(), Some(audit));
    Node { pipeline, stats, _dir: dir, audit_path }
}

fn request(agent: &str, action: &str, data: Value) -> Request {
    Request {
        id: new_request_id(),
        sender: "tester".to_string(),
        caller: "user=tester".to_string(),
        collective: "baton".to_string(),
        agent: agent.to_string(),
        action: action.to_string(),
        filter: FilterSpec::default(),
        time_ms: now_ms(),
        ttl_secs: 60,
        reply_to: "baton.reply.test".to_string(),
        data: data.as_object().cloned().unwrap_or_default(),
    }
}

fn answer(node: &Node, bytes: &[u8]) -> Option<Reply> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let sealed = runtime.block_on(node.pipeline.handle(bytes))?;
    assert_eq!(sealed.destination, Destination::Reply("baton.reply.test".to_string()));
    Some(security(KEY).open_reply(&sealed.bytes, 1 << 20).expect("replies are signed").into_inner())
}

fn counter(node: &Node, name: &str) -> u64 {
    use baton::agents::StatsSource;
    node.stats.snapshot()[name].as_u64().unwrap_or(0)
}

/// Sends one sealed request and checks the status of the reply (or that there is none) and
/// which counter moved.
fn check(request: Request, expected: Option<StatusCode>, counted: &str) {
    let node = node();
    let bytes = security(KEY).seal_request(&request);
    let reply = answer(&node, &bytes);
    assert_eq!(reply.as_ref().map(|reply| reply.status), expected, "{request:?} -> {reply:?}");
    assert_eq!(counter(&node, counted), 1, "{counted} for {request:?}");
    assert_eq!(counter(&node, "received"), 1);
}

#[test]
fn each_step_answers_and_counts() {
    check(request("rpcutil", "ping", json!({})), Some(StatusCode::Ok), "ok");
    check(request("rpcutil", "get_fact", json!({"fact": "role"})), Some(StatusCode::Ok), "ok");
    check(request("rpcutil", "get_fact", json!({})), Some(StatusCode::MissingData), "invalid_input");
    check(request("rpcutil", "get_fact", json!({"fact": 7})), Some(StatusCode::InvalidData), "invalid_input");
    check(request("nosuch", "ping", json!({})), Some(StatusCode::UnknownAction), "unknown_action");
    check(request("rpcutil", "reboot", json!({})), Some(StatusCode::UnknownAction), "unknown_action");

    let mut stale = request("rpcutil", "ping", json!({}));
    stale.time_ms -= 120_000;
    check(stale, None, "expired");
    let mut future = request("rpcutil", "ping", json!({}));
    future.time_ms += 120_000;
    check(future, None, "expired");
    let mut no_ttl = request("rpcutil", "ping", json!({}));
    no_ttl.ttl_secs = 0;
    check(no_ttl, None, "expired");

    let mut elsewhere = request("rpcutil", "ping", json!({}));
    elsewhere.filter.fact.push("role=db".to_string());
    check(elsewhere, None, "filtered");
    let mut here = request("rpcutil", "ping", json!({}));
    here.filter.class.push("nginx".to_string());
    check(here, Some(StatusCode::Ok), "ok");
    let mut broken_filter = request("rpcutil", "ping", json!({}));
    broken_filter.filter.fact.push("role".to_string());
    check(broken_filter, Some(StatusCode::InvalidData), "invalid_input");
}

#[test]
fn get_fact_answers_the_value() {
    let node = node();
    let reply =
        answer(&node, &security(KEY).seal_request(&request("rpcutil", "get_fact", json!({"fact": "rack"}))));
    let reply = reply.expect("answered");
    assert_eq!(reply.sender, "node01");
    assert_eq!(Value::Object(reply.data), json!({"fact": "rack", "value": 3}));
}

#[test]
fn bytes_that_do_not_open_are_refused_counted_and_audited() {
    let node = node();
    let valid = security(KEY).seal_request(&request("rpcutil", "ping", json!({})));
    assert!(answer(&node, &valid).is_some());
    // The same bytes again: a replay.
    assert!(answer(&node, &valid).is_none());
    // Another key.
    let other =
        security(b"9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b").seal_request(&request("rpcutil", "ping", json!({})));
    assert!(answer(&node, &other).is_none());
    // Over the limit, before any decoding.
    assert!(answer(&node, &vec![0u8; 64 * 1024 + 1]).is_none());
    // Garbage of every length up to a few hundred bytes never panics and is never answered.
    for length in 0..300usize {
        let noise: Vec<u8> = (0..length).map(|i| (i * 31 + length * 7) as u8).collect();
        assert!(answer(&node, &noise).is_none());
    }
    assert_eq!(counter(&node, "ok"), 1);
    assert_eq!(counter(&node, "replayed"), 1);
    assert_eq!(counter(&node, "bad_signature"), 1);
    assert_eq!(counter(&node, "too_large"), 1);
    assert_eq!(counter(&node, "malformed"), 300);

    let audit = std::fs::read_to_string(&node.audit_path).expect("audit log");
    let lines: Vec<Value> =
        audit.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
    assert_eq!(lines.len(), 304, "one line per request accepted or refused");
    let bad_signature =
        lines.iter().find(|line| line["reason"].as_str().is_some_and(|r| r.contains("signature")));
    let bad_signature = bad_signature.expect("the bad signature is audited");
    assert_eq!(bad_signature["outcome"], "refused");
    assert_eq!(bad_signature["unverified"], true, "claims of an unverified message are marked");
    assert_eq!(bad_signature["caller"], "user=tester");
}
