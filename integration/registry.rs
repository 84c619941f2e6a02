//! The registry on the broker: real `batond` processes register into their collective's
//! RabbitMQ stream, and the real `baton` reads it. A broadcast then knows whom to expect: every
//! expected node is counted, a silent one is reported (exit 3), a node the registry does not
//! know yet still counts when it answers within the grace, and `--dm registry` answers from
//! the registry alone. The same over RabbitMQ's STOMP plugin; ActiveMQ has no registry and
//! keeps the quiet window. A `baton console` started after the nodes lists them from the
//! registry without asking them, and asks for inventories where there is no registry.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::console::ConsoleProcess;
use crate::harness::{Fleet, NodeSpec, RetainedStream, Wire, run_baton};
use crate::metrics::http_get;

fn three_registered_nodes() -> Fleet {
    three_registered_nodes_on(Wire::amqp())
}

fn three_registered_nodes_on(wire: Wire) -> Fleet {
    let fleet = Fleet::start_with_registry_on(
        wire,
        vec![
            NodeSpec::new("web01", json!({"role": "web"}), &["nginx"]),
            NodeSpec::new("web02", json!({"role": "web"}), &["nginx"]),
            NodeSpec::new("db01", json!({"role": "db"}), &["postgresql"]),
        ],
    );
    // A node registers as it starts; answering a ping does not prove its registration is
    // already in the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = fleet.baton(&["discover", "--dm", "registry", "--json"]);
        if output.code == 0 && output.nodes("nodes") == ["db01", "web01", "web02"] {
            return fleet;
        }
        assert!(Instant::now() < deadline, "the registry never held all three nodes: {output:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn with_a_registry_discovery_ping_and_rpc_reach_exactly_the_matching_nodes() {
    let fleet = three_registered_nodes();
    for (filter, expected) in [
        (&[][..], &["db01", "web01", "web02"][..]),
        (&["-F", "role=web"][..], &["web01", "web02"][..]),
        (&["-C", "postgresql"][..], &["db01"][..]),
    ] {
        let mut args = vec!["discover", "--json"];
        args.extend_from_slice(filter);
        let output = fleet.baton(&args);
        assert_eq!(output.code, 0, "discover {filter:?}: {output:?}");
        assert_eq!(output.nodes("nodes"), expected, "discover {filter:?}: {output:?}");
        assert_eq!(output.json()["no_response"], json!([]), "discover {filter:?}: {output:?}");

        let mut args = vec!["ping", "--json"];
        args.extend_from_slice(filter);
        let output = fleet.baton(&args);
        assert_eq!(output.code, 0, "ping {filter:?}: {output:?}");
        let replied: Vec<String> = output.nodes("replies");
        assert_eq!(replied, expected, "ping {filter:?}: {output:?}");

        let mut args = vec!["rpc", "rpcutil", "ping", "--json"];
        args.extend_from_slice(filter);
        let output = fleet.baton(&args);
        assert_eq!(output.code, 0, "rpc {filter:?}: {output:?}");
        assert_eq!(output.nodes("targeted"), expected, "rpc {filter:?}: {output:?}");
    }
    let output = fleet.baton(&["discover", "-F", "role=nothing", "--json"]);
    assert_eq!(output.code, 4, "nothing matched: {output:?}");
    let output = fleet.baton(&["rpc", "rpcutil", "ping", "-F", "role=nothing", "--json"]);
    assert_eq!(output.code, 4, "rpc, nothing matched: {output:?}");
}

/// How many times each node's audit log shows `rpcutil ACTION`.
fn audited_count(fleet: &Fleet, action: &str) -> Vec<(String, usize)> {
    fleet
        .nodes
        .iter()
        .map(|node| {
            let lines = node.audit_lines();
            let count =
                lines.iter().filter(|line| line["agent"] == "rpcutil" && line["action"] == action).count();
            (node.spec.identity.clone(), count)
        })
        .collect()
}

#[test]
fn with_a_registry_a_read_only_rpc_is_one_broadcast_and_a_limited_one_discovers_first() {
    let fleet = three_registered_nodes();
    let discovered = audited_count(&fleet, "discover");
    let pinged = audited_count(&fleet, "ping");

    // A read-only action: sent as the one broadcast that expects the registry's nodes, so no
    // node is asked to be discovered first, and each runs the action once.
    let output = fleet.baton(&["rpc", "rpcutil", "ping", "--json"]);
    assert_eq!(output.code, 0, "rpc: {output:?}");
    assert_eq!(output.nodes("targeted"), ["db01", "web01", "web02"], "rpc: {output:?}");
    let request_id = output.json()["request_id"].as_str().expect("request id").to_owned();
    assert_eq!(audited_count(&fleet, "discover"), discovered, "no discovery before the broadcast");
    let once_more: Vec<(String, usize)> =
        pinged.iter().map(|(node, count)| (node.clone(), count + 1)).collect();
    assert_eq!(audited_count(&fleet, "ping"), once_more, "every node ran the ping once");
    for node in &fleet.nodes {
        let lines = node.audit_lines();
        assert!(
            lines.iter().any(|line| line["request_id"] == request_id.as_str()),
            "{} audited the rpc's own request {request_id}",
            node.spec.identity
        );
    }

    // --limit picks among the nodes found: it discovers first, then asks the ones picked.
    let output = fleet.baton(&["rpc", "rpcutil", "ping", "--limit", "2", "--json"]);
    assert_eq!(output.code, 0, "rpc --limit 2: {output:?}");
    assert_eq!(output.nodes("targeted").len(), 2, "rpc --limit 2: {output:?}");
    let discovered_again: Vec<(String, usize)> =
        discovered.iter().map(|(node, count)| (node.clone(), count + 1)).collect();
    assert_eq!(audited_count(&fleet, "discover"), discovered_again, "--limit discovers every node first");
}

#[test]
fn an_expected_node_that_stays_silent_is_reported_as_no_response() {
    let mut fleet = three_registered_nodes();
    fleet.kill("db01");

    let output = fleet.baton(&["discover", "--json"]);
    assert_eq!(output.code, 3, "discover: {output:?}");
    assert_eq!(output.nodes("nodes"), ["web01", "web02"], "discover: {output:?}");
    assert_eq!(output.nodes("no_response"), ["db01"], "discover: {output:?}");

    let output = fleet.baton(&["discover"]);
    assert_eq!(output.code, 3, "discover for people: {output:?}");
    assert!(output.stderr.contains("did not answer: db01"), "discover for people: {output:?}");

    let output = fleet.baton(&["ping", "--json"]);
    assert_eq!(output.code, 3, "ping: {output:?}");
    assert_eq!(output.nodes("no_response"), ["db01"], "ping: {output:?}");
    assert_eq!(output.nodes("replies"), ["web01", "web02"], "ping: {output:?}");

    // The rpc still targets it (it was expected) and reports it as not responding.
    let output = fleet.baton(&["rpc", "rpcutil", "ping", "--json", "-t", "2"]);
    assert_eq!(output.code, 3, "rpc: {output:?}");
    assert_eq!(output.nodes("no_response"), ["db01"], "rpc: {output:?}");

    // A filter that does not match the silent node expects nothing of it.
    let output = fleet.baton(&["ping", "-F", "role=web", "--json"]);
    assert_eq!(output.code, 0, "ping role=web: {output:?}");
}

#[test]
fn a_node_the_registry_does_not_know_yet_counts_when_it_answers_within_the_grace() {
    let mut fleet = three_registered_nodes();
    // Empty the registry: the running nodes registered at start, so until their next
    // registration (300 s) only a node started now is known.
    let collective = fleet.collective.clone();
    drop(fleet.registry.take());
    fleet.registry = Some(RetainedStream::registry(&collective));
    fleet.spawn(NodeSpec::new("new01", json!({"role": "web"}), &["nginx"]));
    fleet.wait_until_answering(&["new01".to_string()]);

    let registry_only = fleet.baton(&["discover", "--dm", "registry", "--json"]);
    assert_eq!(registry_only.nodes("nodes"), ["new01"], "the registry knows only new01: {registry_only:?}");

    // A generous grace, so that the unknown nodes' replies are within it however loaded the
    // machine is; what is checked is that they are counted, not how fast.
    let config = fleet.client_config_with(&fleet.wire, "registry_grace_ms = 5000", "");
    let output = run_baton(&config, &["discover", "--json"], None);
    assert_eq!(output.code, 0, "discover: {output:?}");
    assert_eq!(output.nodes("nodes"), ["db01", "new01", "web01", "web02"], "discover: {output:?}");

    let output = run_baton(&config, &["ping", "--json"], None);
    assert_eq!(output.code, 0, "ping: {output:?}");
    assert_eq!(output.nodes("replies"), ["db01", "new01", "web01", "web02"], "ping: {output:?}");
    assert_eq!(output.json()["stats"]["no_response"], json!(0), "ping: {output:?}");

    // A read-only rpc goes as one broadcast expecting new01 alone: the others are targets too.
    let discovered = audited_count(&fleet, "discover");
    let output = run_baton(&config, &["rpc", "rpcutil", "ping", "--json"], None);
    assert_eq!(output.code, 0, "rpc: {output:?}");
    assert_eq!(output.nodes("targeted"), ["db01", "new01", "web01", "web02"], "rpc: {output:?}");
    assert_eq!(output.json()["stats"]["ok"], json!(4), "rpc: {output:?}");
    assert_eq!(output.json()["stats"]["no_response"], json!(0), "rpc: {output:?}");
    assert_eq!(output.json()["batches"].as_array().map(Vec::len), Some(1), "one batch: {output:?}");
    let batch = output.json()["batches"][0]["nodes"].clone();
    assert_eq!(batch, json!(["db01", "new01", "web01", "web02"]), "the batch lists every target: {output:?}");

    // With a filter, an unregistered node that does not match (db01) is neither asked nor
    // counted; the unregistered ones that match are.
    let output = run_baton(&config, &["rpc", "rpcutil", "ping", "-F", "role=web", "--json"], None);
    assert_eq!(output.code, 0, "rpc -F role=web: {output:?}");
    assert_eq!(output.nodes("targeted"), ["new01", "web01", "web02"], "rpc -F role=web: {output:?}");
    assert_eq!(audited_count(&fleet, "discover"), discovered, "neither rpc discovered first");
}

#[test]
fn registry_discovery_trusts_the_registry_alone() {
    let mut fleet = three_registered_nodes();
    let output = fleet.baton(&["discover", "--dm", "registry", "-F", "role=web", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("nodes"), ["web01", "web02"], "{output:?}");

    // Nothing is asked: a node that is gone is still listed until its registration ages out,
    // and the rpc that follows reports it as not responding.
    fleet.kill("web02");
    let output = fleet.baton(&["discover", "--dm", "registry", "-F", "role=web", "--json"]);
    assert_eq!(output.nodes("nodes"), ["web01", "web02"], "{output:?}");
    let output =
        fleet.baton(&["rpc", "rpcutil", "ping", "--dm", "registry", "-F", "role=web", "--json", "-t", "2"]);
    assert_eq!(output.code, 3, "{output:?}");
    assert_eq!(output.nodes("no_response"), ["web02"], "{output:?}");

    // Registrations older than the window are not trusted.
    let config = fleet.client_config_with(&fleet.wire, "registry_window_secs = 1", "");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let output = run_baton(&config, &["discover", "--dm", "registry", "--json"], None);
    assert_eq!(output.code, 4, "every registration is older than the window: {output:?}");
}

#[test]
fn registry_discovery_without_a_registry_is_a_usage_error() {
    // A collective whose broker keeps no registry (no stream declared).
    let fleet = Fleet::start(vec![NodeSpec::new("web01", json!({}), &[])]);
    let output = fleet.baton(&["discover", "--dm", "registry"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("registration"), "names the stream to declare: {output:?}");
    // Broadcast discovery falls back to the quiet window and still finds the node.
    let output = fleet.baton(&["discover", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("nodes"), ["web01"], "{output:?}");
}

#[test]
fn over_rabbitmqs_stomp_the_registry_is_read_and_a_broadcast_ends_at_the_last_expected_reply() {
    // Nodes and client on RabbitMQ's STOMP plugin: the nodes register through
    // `/exchange/C.registration`, the client reads the stream from `/amq/queue/C.registration`.
    let mut fleet = three_registered_nodes_on(Wire::stomp_rabbitmq());
    let output = fleet.baton(&["discover", "--dm", "registry", "-F", "role=web", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("nodes"), ["web01", "web02"], "{output:?}");

    // An expected node that stays silent is reported: only a broadcast that knows whom to
    // expect can say so (the quiet window knows nobody to miss).
    fleet.kill("db01");
    let output = fleet.baton(&["discover", "--json"]);
    assert_eq!(output.code, 3, "discover: {output:?}");
    assert_eq!(output.nodes("nodes"), ["web01", "web02"], "discover: {output:?}");
    assert_eq!(output.nodes("no_response"), ["db01"], "discover: {output:?}");
    let output = fleet.baton(&["ping", "--json"]);
    assert_eq!(output.code, 3, "ping: {output:?}");
    assert_eq!(output.nodes("replies"), ["web01", "web02"], "ping: {output:?}");
    assert_eq!(output.nodes("no_response"), ["db01"], "ping: {output:?}");
}

#[test]
fn over_rabbitmqs_stomp_without_a_stream_a_broadcast_waits_for_quiet_as_before() {
    let fleet = Fleet::start_on(Wire::stomp_rabbitmq(), vec![NodeSpec::new("web01", json!({}), &[])]);
    let output = fleet.baton(&["discover", "--dm", "registry"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains(".registration"), "names the stream to declare: {output:?}");
    // The refused read cost the client its connection (RabbitMQ closes a STOMP connection
    // after any ERROR); the broadcast goes on over the next one.
    for command in ["discover", "ping"] {
        let output = fleet.baton(&[command, "--json"]);
        assert_eq!(output.code, 0, "{command}: {output:?}");
        let field = if command == "discover" { "nodes" } else { "replies" };
        assert_eq!(output.nodes(field), ["web01"], "{command}: {output:?}");
    }
}

#[test]
fn activemq_keeps_no_registry_and_a_broadcast_waits_for_quiet() {
    let fleet = Fleet::start_on(Wire::stomp_activemq(), vec![NodeSpec::new("web01", json!({}), &[])]);
    let output = fleet.baton(&["discover", "--dm", "registry"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("not possible over STOMP to ActiveMQ"), "{output:?}");
    let output = fleet.baton(&["discover", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("nodes"), ["web01"], "{output:?}");
}

/// The console's `/api/nodes` once its node list has been filled at start (`filled_from` is
/// no longer `starting`, nor waiting for inventories).
fn nodes_once_filled(console: &ConsoleProcess) -> Value {
    let address: SocketAddr =
        console.url.trim_start_matches("http://").parse().expect("the console's address");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(address, "/api/nodes");
        assert_eq!(status, 200, "{body}\n{}", console.log());
        let document: Value = serde_json::from_str(&body).expect("JSON");
        let filled = &document["filled_from"];
        if filled["source"] != "starting" && !(filled["source"] == "inventories" && filled["nodes"].is_null())
        {
            return document;
        }
        assert!(Instant::now() < deadline, "the node list was never filled: {document}\n{}", console.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn identities(document: &Value) -> Vec<String> {
    let nodes = document["nodes"].as_array().expect("a list of nodes");
    nodes.iter().map(|node| node["identity"].as_str().expect("an identity").to_owned()).collect()
}

#[test]
fn a_console_started_after_the_nodes_lists_them_from_the_registry_without_asking_them() {
    let mut fleet = three_registered_nodes();
    // Two of them no longer answer anything: only the registry can name them now.
    fleet.kill("db01");
    fleet.kill("web02");
    let before_console_ms = baton::protocol::now_ms();
    let config = fleet.client_config("");
    let console = ConsoleProcess::start(&config, fleet.dir.path(), &[]);
    let document = nodes_once_filled(&console);
    assert_eq!(document["filled_from"]["source"], "registry", "{document}");
    assert_eq!(document["filled_from"]["nodes"], 3, "{document}");
    assert_eq!(identities(&document), ["db01", "web01", "web02"], "{document}");
    for node in document["nodes"].as_array().expect("nodes") {
        // As of when each registered, before the console started: its age, not the read's.
        let last_seen = node["last_seen_ms"].as_u64().expect("last_seen_ms");
        assert!(last_seen < before_console_ms, "{node}");
        assert_eq!(node["state"], "live", "registered within the quiet time: {node}");
    }
    assert_eq!(document["nodes"][0]["facts"]["role"], "db", "{document}");
    let log = console.log();
    assert!(log.contains("node list filled from the registry"), "{log}");
    assert!(!log.contains("inventories"), "nothing asked of the fleet: {log}");
    // The live node was not asked either.
    let asked = fleet.node("web01").audit_lines();
    assert!(!asked.iter().any(|line| line["action"] == "inventory"), "web01 was asked: {asked:?}");
}

#[test]
fn without_a_registry_the_console_asks_the_fleet_for_its_inventories() {
    let fleet = Fleet::start(vec![NodeSpec::new("web01", json!({"role": "web"}), &["nginx"])]);
    let config = fleet.client_config("");
    let console = ConsoleProcess::start(&config, fleet.dir.path(), &[]);
    let document = nodes_once_filled(&console);
    let filled = &document["filled_from"];
    assert_eq!(filled["source"], "inventories", "{document}");
    assert_eq!(filled["nodes"], 1, "{document}");
    assert!(filled["no_registry"].as_str().is_some_and(|why| why.contains(".registration")), "{document}");
    assert_eq!(identities(&document), ["web01"], "{document}");
    let log = console.log();
    assert!(log.contains("no registry to read: asking the fleet for its inventories"), "{log}");
    assert!(log.contains("node list filled from the fleet's inventories"), "{log}");
}
