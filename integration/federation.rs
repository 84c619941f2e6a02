//! Two sites joined by RabbitMQ federation (`bin/broker start rabbitmq-site2`, the definitions
//! of rabbitmq/federation/, docs/OPERATIONS.md "Two sites"): three `batond`s connected only to
//! site B, in its sub-collective (`dc2`, or `BATON_SITE2_COLLECTIVE`), answer a client
//! connected only to site A (ping, discovery, a directed rpc). With the link between the sites
//! cut (`bin/broker link-down rabbitmq-site2`) they are reported as not responding within the
//! timeout, exit 3; once it is restored they answer again, the same processes, and nothing sent
//! during the cut ran twice, nor at all once its ttl had passed. And the node's part in it: a
//! reply whose queue appears only after the node answered (as a federated reply queue's twin
//! may) still arrives.

use std::time::{Duration, Instant};

use baton::protocol::{FilterSpec, Request, new_request_id, now_ms};
use baton::security::{Psk, Security};
use serde_json::json;

use crate::harness::{
    BatonOutput, Fleet, NodeSpec, RawClient, Wire, exclusive_sites, rabbitmq_site2, run_broker_args,
    shared_broker,
};

/// The sub-collective that rabbitmq/federation/ federates, site B's: `dc2` unless site B was
/// first started with another `BATON_SITE2_COLLECTIVE` (`bin/broker env rabbitmq-site2` says).
fn site_b() -> String {
    rabbitmq_site2().var("BATON_SITE2_COLLECTIVE")
}

#[test]
fn site_b_nodes_answer_a_client_in_site_a_and_a_cut_link_is_reported_within_the_timeout() {
    let _site_a = shared_broker();
    let _sites = exclusive_sites();
    let site_b = site_b();
    let site_b = site_b.as_str();
    let specs: Vec<NodeSpec> = (1..=3)
        .map(|n| NodeSpec::new(&format!("siteb{n:02}"), json!({"site": "b"}), &[]).also_in(site_b))
        .collect();
    let identities: Vec<String> = specs.iter().map(|spec| spec.identity.clone()).collect();
    // The nodes connect to site B only (their own collective's exchanges declared there).
    let mut fleet = Fleet::start_unguarded(Wire::amqp_site2(), specs);
    let pids: Vec<u32> = fleet.nodes.iter().map(|node| node.child.id()).collect();
    let site_a = Wire::amqp();
    let from_a = |args: &[&str]| fleet.baton_on(&site_a, args);

    // The federation links learn the nodes' queues and bindings as the nodes declare them.
    wait_until_answering_from_a(&fleet, &site_a, site_b, &identities);
    let ping = from_a(&["ping", "-T", site_b, "--json"]);
    assert_eq!(ping.code, 0, "{ping:?}");
    assert_eq!(ping.nodes("replies"), identities, "{ping:?}");
    let discover = from_a(&["discover", "-T", site_b, "--json"]);
    assert_eq!(discover.code, 0, "{discover:?}");
    assert_eq!(discover.nodes("nodes"), identities, "{discover:?}");
    let rpc = from_a(&["rpc", "rpcutil", "ping", "-T", site_b, "-I", "siteb02", "--json"]);
    assert_eq!(rpc.code, 0, "{rpc:?}");
    assert_eq!(rpc.nodes("replies"), ["siteb02"], "{rpc:?}");

    run_broker_args(&["link-down", "rabbitmq-site2"]);
    let restore = LinkRestorer;
    // A short ttl: what waits at site A for the link expires before the link is back.
    let short_ttl = fleet.client_config_with(&site_a, "ttl_secs = 5", "");
    let started = Instant::now();
    let directed = crate::harness::run_baton(
        &short_ttl,
        &["rpc", "rpcutil", "ping", "-T", site_b, "-I", "siteb01", "-I", "siteb03", "-t", "5", "--json"],
        None,
    );
    let waited = started.elapsed();
    assert_eq!(directed.code, 3, "exit 3: targeted nodes did not respond: {directed:?}");
    assert_eq!(directed.nodes("no_response"), ["siteb01", "siteb03"], "{directed:?}");
    assert!(waited < Duration::from_secs(60), "reported within the timeout, not waited on: {waited:?}");
    // The default ttl (60 s): this one may still be waiting at site A when the link returns.
    let late = from_a(&["rpc", "rpcutil", "ping", "-T", site_b, "-I", "siteb02", "-t", "3", "--json"]);
    assert_eq!(late.code, 3, "{late:?}");
    assert_eq!(late.nodes("no_response"), ["siteb02"], "{late:?}");
    // Site A's registry knows site B's nodes (their registrations came across before the
    // cut), so a broadcast expects them and reports them.
    let broadcast = from_a(&["ping", "-T", site_b, "--json"]);
    assert_eq!(broadcast.code, 3, "no node of site B can answer while the link is down: {broadcast:?}");
    assert!(broadcast.nodes("replies").is_empty(), "{broadcast:?}");
    let silent = broadcast.nodes("no_response");
    assert!(identities.iter().all(|node| silent.contains(node)), "{broadcast:?}");

    drop(restore);
    wait_until_answering_from_a(&fleet, &site_a, site_b, &identities);
    let rpc = from_a(&["rpc", "rpcutil", "ping", "-T", site_b, "-I", "siteb01", "--json"]);
    assert_eq!(rpc.code, 0, "{rpc:?}");

    // What waited at site A during the cut: the expired request never ran, the other at most
    // once; nothing ran twice. (A node still refuses an expired request that reaches it.)
    let expired = request_id(&directed);
    let stale = request_id(&late);
    for node in &fleet.nodes {
        let audit = node.audit_lines();
        let accepted = |id: &str| {
            audit
                .iter()
                .filter(|line| line["outcome"] == json!("accepted") && line["request_id"] == json!(id))
                .count()
        };
        assert_eq!(accepted(&expired), 0, "{} ran a request after its ttl: {audit:?}", node.spec.identity);
        assert!(accepted(&stale) <= 1, "{} ran a request twice: {audit:?}", node.spec.identity);
        eprintln!(
            "federation: {} ran the request sent during the cut with the default ttl {} time(s) after the link returned",
            node.spec.identity,
            accepted(&stale)
        );
    }
    // Nobody restarted the nodes: the same processes answered before, during and after.
    for (node, pid) in fleet.nodes.iter_mut().zip(pids) {
        assert_eq!(node.child.id(), pid);
        assert!(
            node.child.try_wait().expect("node status").is_none(),
            "{} exited:\n{}",
            node.spec.identity,
            node.log()
        );
    }
}

/// Restores the link between the sites, also when the test fails half way.
struct LinkRestorer;

impl Drop for LinkRestorer {
    fn drop(&mut self) {
        run_broker_args(&["link-up", "rabbitmq-site2"]);
    }
}

fn request_id(output: &BatonOutput) -> String {
    output.json()["request_id"].as_str().unwrap_or_else(|| panic!("no request_id in {output:?}")).to_string()
}

/// Polls with directed pings from site A, through site B's sub-collective, until every node answers, or fails
/// after 60 s with the nodes' logs.
fn wait_until_answering_from_a(fleet: &Fleet, site_a: &Wire, site_b: &str, identities: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut args = vec!["ping", "-T", site_b, "--json"];
    for identity in identities {
        args.extend(["-I", identity.as_str()]);
    }
    loop {
        let output = fleet.baton_on(site_a, &args);
        if output.code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "site B's nodes did not answer from site A within 60 s: {output:?}\n{}",
            fleet.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The race a federated reply queue runs: its twin at the nodes' site appears a moment after
/// the client declared it, and a quick node may answer first. On one broker, with the timing in
/// the test's hands: the reply queue is declared only once the node has found it missing, and
/// the node's next attempt delivers the reply.
#[test]
fn a_reply_queue_declared_after_the_node_answered_still_gets_the_reply() {
    let node = NodeSpec::new("late01", json!({}), &[]).with_env("BATON_LOG", "info,baton::node=debug");
    let fleet = Fleet::start(vec![node]);
    let security = Security::Psk(Psk::from_file(&fleet.dir.path().join("psk")).expect("fleet psk"));
    let mut raw = RawClient::connect_without_reply_queue(&fleet);
    let request = Request {
        id: new_request_id(),
        sender: "raw-tester".to_string(),
        caller: "user=raw".to_string(),
        collective: fleet.collective.clone(),
        agent: "rpcutil".to_string(),
        action: "ping".to_string(),
        filter: FilterSpec::default(),
        time_ms: now_ms(),
        ttl_secs: 60,
        reply_to: raw.reply_queue.clone(),
        data: serde_json::Map::new(),
        once: None,
    };
    raw.publish_to_node(&fleet, "late01", &security.seal_request(&request));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fleet.node("late01").log().contains("reply unroutable; publishing it again") {
        assert!(Instant::now() < deadline, "the node never found the reply queue missing:\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    raw.declare_reply_queue();
    let reply = raw.next_reply(Duration::from_secs(10)).expect("the reply, published again");
    let reply = security.open_reply(&reply, 1 << 20).expect("reply verifies").into_inner();
    assert_eq!(reply.request_id, request.id);
    let stats = fleet.daemon_stats("late01");
    assert_eq!(stats["replies_unroutable"], json!(0), "{stats:?}");
}
