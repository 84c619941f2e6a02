//! Nodes and brokers that go away: unreachable identities, killed nodes, a stopped broker.

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, Wire, exclusive_broker, repo_root, run_baton};

#[test]
fn a_directed_request_to_an_identity_without_a_queue_is_unreachable() {
    let fleet = Fleet::start(vec![NodeSpec::new("real01", json!({}), &[])]);
    // A long timeout: the answer must come from the broker returning the message, not from
    // waiting it out. If the return were lost, the test would wait a minute and then fail on
    // the "unreachable" list below.
    let output =
        fleet.baton(&["rpc", "rpcutil", "ping", "-I", "real01", "-I", "ghost01", "-t", "60", "--json"]);
    assert_eq!(output.code, 3, "{output:?}");
    let document = output.json();
    assert_eq!(document["no_response"], json!(["ghost01"]), "{output:?}");
    assert_eq!(document["unreachable"], json!(["ghost01"]), "{output:?}");
    assert_eq!(output.nodes("replies"), ["real01"]);

    let human = fleet.baton(&["rpc", "rpcutil", "ping", "-I", "ghost01", "-t", "60"]);
    assert_eq!(human.code, 3, "{human:?}");
    assert!(human.stdout.contains("ghost01  (unreachable: no queue on the broker)"), "{human:?}");
}

crate::on_every_transport!(a_killed_node_is_reported_as_not_responding_and_the_others_answer);

fn a_killed_node_is_reported_as_not_responding_and_the_others_answer(wire: Wire) {
    let mut fleet = Fleet::start_on(
        wire,
        vec![
            NodeSpec::new("alive01", json!({}), &[]),
            NodeSpec::new("alive02", json!({}), &[]),
            NodeSpec::new("doomed01", json!({}), &[]),
        ],
    );
    fleet.kill("doomed01");
    let nodes = fleet.dir.path().join("nodes.txt");
    std::fs::write(&nodes, "alive01\nalive02\ndoomed01\n").expect("write nodes");
    let output = fleet.baton(&[
        "rpc",
        "rpcutil",
        "ping",
        "--nodes",
        nodes.to_str().expect("utf-8"),
        "-t",
        "3",
        "--json",
    ]);
    assert_eq!(output.code, 3, "{output:?}");
    let document = output.json();
    assert_eq!(document["no_response"], json!(["doomed01"]));
    // Its queue outlives it, so the broker cannot say it is unreachable: it is silent.
    assert_eq!(document["unreachable"], json!([]));
    assert_eq!(output.nodes("replies"), ["alive01", "alive02"]);
    assert_eq!(document["stats"]["ok"], 2);
}

#[test]
fn an_unreachable_broker_exits_5_with_a_clear_message() {
    let fleet = Fleet::start(vec![]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let config = fleet.client_config("");
    let text = std::fs::read_to_string(&config).expect("read config");
    let dead = text.replace(&fleet.wire.client_url, &format!("amqp://baton-client:x@127.0.0.1:{port}/baton"));
    std::fs::write(&config, dead).expect("write config");
    for args in [&["ping"][..], &["rpc", "rpcutil", "ping", "--json"][..]] {
        let output = run_baton(&config, args, None);
        assert_eq!(output.code, 5, "{args:?}: {output:?}");
        let text = if args.contains(&"--json") {
            output.json()["error"].as_str().unwrap_or_default().to_string()
        } else {
            output.stderr.clone()
        };
        assert!(text.contains(&format!("127.0.0.1:{port}")), "the message names the broker: {output:?}");
        assert!(!text.contains(":x@"), "the password is redacted: {output:?}");
    }
}

#[test]
fn nodes_reconnect_after_the_broker_restarts() {
    let _exclusive = exclusive_broker();
    let fleet = Fleet::start_unguarded(
        Wire::amqp(),
        vec![NodeSpec::new("phoenix01", json!({}), &[]), NodeSpec::new("phoenix02", json!({}), &[])],
    );
    let broker = repo_root().join("bin/broker");
    let stop = std::process::Command::new(&broker).args(["stop", "rabbitmq"]).output().expect("stop broker");
    assert!(stop.status.success(), "{stop:?}");

    let down = fleet.baton(&["ping", "-I", "phoenix01"]);
    assert_eq!(down.code, 5, "{down:?}");
    assert!(down.stderr.contains("cannot reach"), "{down:?}");

    let start =
        std::process::Command::new(&broker).args(["start", "rabbitmq"]).output().expect("start broker");
    assert!(start.status.success(), "{start:?}");
    // The nodes were never restarted: they must find the broker again on their own.
    fleet.wait_until_answering(&["phoenix01".to_string(), "phoenix02".to_string()]);
    let output = fleet.baton(&["rpc", "rpcutil", "ping", "-I", "phoenix01", "-I", "phoenix02", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
}
