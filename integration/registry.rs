//! The registry on the broker: real `batond` processes register into their collective's
//! RabbitMQ stream, and the real `baton` reads it. A broadcast then knows whom to expect: every
//! expected node is counted, a silent one is reported (exit 3), a node the registry does not
//! know yet still counts when it answers within the grace, and `--dm registry` answers from
//! the registry alone.

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, RetainedStream, run_baton};

fn three_registered_nodes() -> Fleet {
    Fleet::start_with_registry(vec![
        NodeSpec::new("web01", json!({"role": "web"}), &["nginx"]),
        NodeSpec::new("web02", json!({"role": "web"}), &["nginx"]),
        NodeSpec::new("db01", json!({"role": "db"}), &["postgresql"]),
    ])
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
