//! The node's request pipeline without a broker: each step in the documented order, what it
//! answers, what it counts and what it audits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use baton::agents::{ActionContext, AgentRegistry};
use baton::broker::Destination;
use baton::config::UnconfiguredPolicy;
use baton::node::audit::AuditLog;
use baton::node::facts::{Classes, Facts, NodeInventory};
use baton::node::filter_cache::FilterCache;
use baton::node::pipeline::{NodeSnapshot, Pipeline, PipelineSettings};
use baton::node::policy::{Authorization, Policy};
use baton::node::stats::Stats;
use baton::protocol::filter::{FilterErrorReason, REGEX_COMPILE_BUDGET};
use baton::protocol::{Filter, FilterSpec, Reply, Request, StatusCode, new_request_id, now_ms};
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
    node_with(1000, None)
}

/// A node with a replay window of `replay_capacity` ids and, when given, `rpcutil_policy` as
/// the rpcutil agent's policy file (other agents allowed).
fn node_with(replay_capacity: usize, rpcutil_policy: Option<&str>) -> Node {
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
    let authorization = match rpcutil_policy {
        Some(text) => {
            let policy = Policy::parse(text, Path::new("/etc/baton/policy/rpcutil.policy")).expect("policy");
            Authorization::from_policies(
                BTreeMap::from([("rpcutil".to_owned(), policy)]),
                UnconfiguredPolicy::Allow,
            )
        }
        None => Authorization::default(),
    };
    let snapshot = NodeSnapshot { inventory, context, registry, authorization: Arc::new(authorization) };
    let settings = PipelineSettings {
        identity: "node01".to_string(),
        max_message_bytes: 64 * 1024,
        clock_skew: Duration::from_secs(30),
        replay_capacity,
        max_ttl_secs: 3600,
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
        once: None,
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

/// `baton_requests_total` as `/metrics` shows it: a series for each agent, action and status
/// that counted something (none made in advance), and any agent or action the node does not
/// have folded into "unknown". The series are resolved once per load of the agents, not per
/// request; this is the output that must not change with that.
#[test]
fn requests_are_counted_by_known_agent_action_and_status() {
    let node = node();
    let send = |request: Request| answer(&node, &security(KEY).seal_request(&request));
    for _ in 0..2 {
        send(request("rpcutil", "ping", json!({})));
    }
    send(request("rpcutil", "get_fact", json!({})));
    send(request("nosuch", "ping", json!({})));
    send(request("rpcutil", "reboot", json!({})));
    send(request("rpcutil", "reboot", json!({})));

    let families = node.stats.registry().gather();
    let text = prometheus::TextEncoder::new().encode_to_string(&families).expect("encodes");
    let requests: Vec<&str> = text.lines().filter(|line| line.starts_with("baton_requests_total{")).collect();
    assert_eq!(
        requests,
        [
            r#"baton_requests_total{action="get_fact",agent="rpcutil",status="3"} 1"#,
            r#"baton_requests_total{action="ping",agent="rpcutil",status="0"} 2"#,
            r#"baton_requests_total{action="unknown",agent="rpcutil",status="2"} 2"#,
            r#"baton_requests_total{action="unknown",agent="unknown",status="2"} 1"#,
        ],
        "{text}"
    );
    let durations: Vec<&str> =
        text.lines().filter(|line| line.starts_with("baton_action_duration_seconds_count{")).collect();
    assert_eq!(
        durations,
        [r#"baton_action_duration_seconds_count{action="ping",agent="rpcutil"} 2"#],
        "only actions that ran have durations: {text}"
    );
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

fn sealed(request: &Request) -> Vec<u8> {
    security(KEY).seal_request(request)
}

fn from(caller: &str, mut request: Request) -> Request {
    request.caller = caller.to_string();
    request
}

fn audit_lines(node: &Node) -> Vec<Value> {
    let audit = std::fs::read_to_string(&node.audit_path).expect("audit log");
    audit.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect()
}

/// Regression, security review finding 3: request ids entered the replay window before the
/// filter and authorization, so a caller allowed nothing, sending long-ttl requests that
/// matched no node or were refused, filled the window and every other caller was refused
/// ("replay window is full") fleet-wide. Now only requests that passed both are remembered,
/// and even an allowed caller holds at most its share of the window.
#[test]
fn a_caller_without_permissions_cannot_fill_the_replay_window_for_others() {
    let policy = "policy default allow\ndeny\tuser=mallory\t*\t*\t*\n";
    let node = node_with(64, Some(policy));
    for _ in 0..200 {
        let mut elsewhere = from("user=mallory", request("rpcutil", "ping", json!({})));
        elsewhere.ttl_secs = 3600;
        elsewhere.filter.fact.push("role=db".to_string());
        assert!(answer(&node, &sealed(&elsewhere)).is_none());
        let mut denied = from("user=mallory", request("rpcutil", "ping", json!({})));
        denied.ttl_secs = 3600;
        let reply = answer(&node, &sealed(&denied)).expect("a refusal is answered");
        assert_eq!(reply.status, StatusCode::Aborted, "{reply:?}");
    }
    // An allowed caller flooding the node is held to its share: 64 / 8 ids. Past it, each
    // request is answered with the reason, not run and not left without a reply.
    let mut flood_ran = 0;
    for _ in 0..100 {
        let flood = from("user=flood", request("rpcutil", "ping", json!({})));
        let reply = answer(&node, &sealed(&flood)).expect("every flood request is answered");
        match reply.status {
            StatusCode::Ok => flood_ran += 1,
            StatusCode::UnknownError => {
                assert!(reply.status_message.contains("its share of the replay window"), "{reply:?}");
                assert!(reply.status_message.contains("refused by"), "{reply:?}");
            }
            other => panic!("unexpected status {other:?}: {reply:?}"),
        }
    }
    assert_eq!(flood_ran, 8, "user=flood holds its share of the window and no more");
    assert_eq!(counter(&node, "replay_window_full"), 92);

    let alice = from("user=alice", request("rpcutil", "ping", json!({})));
    let reply = answer(&node, &sealed(&alice)).expect("another caller is still answered");
    assert_eq!(reply.status, StatusCode::Ok, "{reply:?}");
    assert_eq!(counter(&node, "unauthorized"), 200);
    assert_eq!(counter(&node, "filtered"), 200);
}

/// A replay is still refused, whether the first copy ran or was refused by policy: the
/// window remembers allowed requests, and refusing a denied request again costs nothing.
#[test]
fn a_replay_of_an_admitted_request_is_still_refused() {
    let node = node_with(64, None);
    let bytes = sealed(&request("rpcutil", "ping", json!({})));
    assert!(answer(&node, &bytes).is_some());
    assert!(answer(&node, &bytes).is_none());
    assert_eq!(counter(&node, "replayed"), 1);
}

/// Regression, finding 3: a request may ask for a ttl up to a day, and holds its place in the
/// replay window that long. A node now accepts at most `requests.max_ttl_secs` (an hour by
/// default) and says so.
#[test]
fn a_ttl_over_the_node_maximum_is_refused_with_a_message() {
    let node = node();
    let mut long = request("rpcutil", "ping", json!({}));
    long.ttl_secs = 3601;
    let reply = answer(&node, &sealed(&long)).expect("answered");
    assert_eq!(reply.status, StatusCode::InvalidData, "{reply:?}");
    assert!(reply.status_message.contains("over this node's maximum of 3600 s"), "{reply:?}");
    assert!(reply.status_message.contains("requests.max_ttl_secs"), "{reply:?}");
    let mut hour = request("rpcutil", "ping", json!({}));
    hour.ttl_secs = 3600;
    assert_eq!(answer(&node, &sealed(&hour)).map(|reply| reply.status), Some(StatusCode::Ok));
}

/// Regression, security review finding 10: a node published its reply into whatever queue
/// `reply_to` named, other nodes' queues included. Now only a client reply queue of the
/// request's collective is answered; anything else is counted, audited, and not answered.
#[test]
fn replies_go_only_to_a_client_reply_queue_of_the_collective() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let node = node();
    let hostile = [
        ("baton.node.node02", "baton"),
        ("baton.reply.x,baton.node.node02", "baton"),
        ("other.reply.abc", "baton"),
        ("other.reply.abc", "other"),
        ("baton.broadcast", "baton"),
        ("", "baton"),
    ];
    for (reply_to, collective) in hostile {
        let mut misdirected = request("rpcutil", "ping", json!({}));
        misdirected.reply_to = reply_to.to_string();
        misdirected.collective = collective.to_string();
        let sealed_reply = runtime.block_on(node.pipeline.handle(&sealed(&misdirected)));
        assert!(sealed_reply.is_none(), "{reply_to:?} in {collective:?} was answered");
    }
    assert_eq!(counter(&node, "bad_reply_to"), hostile.len() as u64);
    assert_eq!(counter(&node, "ok"), 0);
    let refusals = audit_lines(&node);
    assert!(
        refusals.iter().all(|line| line["outcome"] == "refused"
            && line["reason"].as_str().is_some_and(|reason| reason.contains("not a client reply queue"))),
        "{refusals:?}"
    );
    // A good one still is.
    assert!(answer(&node, &sealed(&request("rpcutil", "ping", json!({})))).is_some());
}

/// Regression, security review finding 11: a refused caller learned the node's agent list
/// and the policy rule's file, line and conditions. It now gets "not authorized" or
/// "unknown agent"; the rule goes to the audit log.
#[test]
fn a_refused_caller_learns_neither_the_agents_nor_the_rule() {
    let policy = "policy default allow\ndeny\tuser=mallory\tget_fact\trole=web\tnginx\n";
    let node = node_with(64, Some(policy));
    let denied = from("user=mallory", request("rpcutil", "get_fact", json!({"fact": "role"})));
    let reply = answer(&node, &sealed(&denied)).expect("answered");
    assert_eq!(reply.status, StatusCode::Aborted);
    assert_eq!(reply.status_message, "not authorized: user=mallory may not run rpcutil#get_fact on node01");
    let unknown = answer(&node, &sealed(&request("nosuch", "ping", json!({})))).expect("answered");
    assert_eq!(unknown.status, StatusCode::UnknownAction);
    assert_eq!(unknown.status_message, "unknown agent \"nosuch\" on node01");

    let audit = audit_lines(&node);
    let refusal = audit.iter().find(|line| line["status"] == 1).expect("the refusal is audited");
    let reason = refusal["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rpcutil.policy line 2 (deny user=mallory get_fact role=web nginx)"), "{reason}");
}

/// The design gap of the review: policies can restrict by input value, with the filter
/// language's comparisons and regexes, against the inputs as validated.
#[test]
fn policies_restrict_by_input_value() {
    let policy = "\
policy default deny
deny\t*\tget_fact\t*\t*\tfact=/^secret/
allow\tuser=ops\tget_fact\t*\t*\tfact=/^(role|rack)$/
allow\t*\tping\t*\t*\t*
";
    let node = node_with(64, Some(policy));
    let status = |caller: &str, action: &str, data: Value| {
        answer(&node, &sealed(&from(caller, request("rpcutil", action, data)))).map(|reply| reply.status)
    };
    assert_eq!(status("user=ops", "get_fact", json!({"fact": "role"})), Some(StatusCode::Ok));
    assert_eq!(status("user=ops", "get_fact", json!({"fact": "rack"})), Some(StatusCode::Ok));
    assert_eq!(status("user=ops", "get_fact", json!({"fact": "roles"})), Some(StatusCode::Aborted));
    assert_eq!(status("user=ops", "get_fact", json!({"fact": "secret_role"})), Some(StatusCode::Aborted));
    assert_eq!(status("user=dev", "get_fact", json!({"fact": "role"})), Some(StatusCode::Aborted));
    // No input to match: no rule with input conditions matches, so the default denies.
    assert_eq!(status("user=ops", "get_fact", json!({})), Some(StatusCode::Aborted));
    assert_eq!(status("user=dev", "ping", json!({})), Some(StatusCode::Ok));

    for (text, fragment) in [
        ("allow\t*\t*\t*\t*\tfact=~", "input condition \"fact=~\""),
        ("allow\t*\t*\t*\t*\tfact=/(/", "input condition"),
        ("allow\t*\t*\t*\t*\t*\textra", "expected 4 to 6"),
    ] {
        let error = Policy::parse(text, Path::new("x.policy")).expect_err(text).to_string();
        assert!(error.contains(fragment), "{text:?}: {error}");
    }
}

/// Regression, security review finding 8: 32 regexes near the size limit cost every node about
/// 160 ms of CPU per request, before authorization. A filter's regexes now share a compile
/// budget, the same on client and node: ordinary regexes fit many times over, big ones do not.
#[test]
fn a_filter_cannot_spend_more_than_its_regex_compile_budget() {
    let ordinary: Vec<String> =
        (0..32).map(|index| format!("/^web{index}[0-9]+\\.example\\.com$/")).collect();
    let spec = FilterSpec { identity: ordinary, ..FilterSpec::default() };
    let filter = Filter::compile(&spec).expect("32 ordinary regexes fit the budget");
    assert!(filter.compile_cost() <= REGEX_COMPILE_BUDGET);

    // Each of these needs more than a quarter of the per-regex size limit (a Unicode \\w is
    // big): three fit the budget, a fourth does not.
    let big: Vec<String> = (0..4).map(|index| format!("/\\w{{10}}{index}/")).collect();
    let fits = FilterSpec { identity: big[..3].to_vec(), ..FilterSpec::default() };
    Filter::compile(&fits).expect("three big regexes fit the budget");
    let spec = FilterSpec { identity: big, ..FilterSpec::default() };
    let error = Filter::compile(&spec).expect_err("four big regexes are over the budget");
    assert!(matches!(error.reason, FilterErrorReason::RegexBudget { .. }), "{error}");
    assert!(error.to_string().contains("compile budget"), "{error}");

    // The node compiles each distinct filter once.
    let mut cache = FilterCache::default();
    let spec = FilterSpec { class: vec!["/^role::web/".to_string()], ..FilterSpec::default() };
    let first = cache.compile(&spec).expect("compiles");
    let second = cache.compile(&spec).expect("compiles");
    assert!(Arc::ptr_eq(&first, &second), "the second request reuses the compiled filter");
    assert_eq!(cache.len(), 1);
}
