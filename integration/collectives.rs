//! Preparing a RabbitMQ the team already runs: `rabbitmq/baton-rabbitmq` adds a sub-collective
//! to the running private broker, a node in `collectives = [main, sub]` that refused to start
//! before starts after, and `-T sub` reaches exactly the nodes in it.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, broker, repo_root, unique_collective};

#[test]
fn a_sub_collective_added_with_baton_rabbitmq_is_served_and_reached_with_dash_t() {
    let mut fleet = Fleet::start(vec![NodeSpec::new("main01", json!({}), &[])]);
    let sub = unique_collective();

    // Not declared yet: the node says what is missing and where to declare it, and stops.
    fleet.spawn(NodeSpec::new("early01", json!({}), &[]).also_in(&sub));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = fleet.node_mut("early01").child.try_wait().expect("wait for batond") {
            break status;
        }
        assert!(Instant::now() < deadline, "batond kept running:\n{}", fleet.node("early01").log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = fleet.node("early01").log();
    assert!(!status.success(), "{log}");
    assert!(log.contains(&format!("exchange \"{sub}.broadcast\" does not exist")), "{log}");

    let output = Command::new(repo_root().join("rabbitmq/baton-rabbitmq"))
        .args(["add-collective", &sub, "--vhost", &broker().var("BATON_RABBITMQ_VHOST")])
        .args(["--rabbitmqctl", &broker().var("BATON_RABBITMQ_CTL")])
        .output()
        .expect("run rabbitmq/baton-rabbitmq");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains(&format!("exchanges {sub}.broadcast and {sub}.registration declared")),
        "{stdout}"
    );

    fleet.spawn(NodeSpec::new("dc201", json!({}), &[]).also_in(&sub));
    fleet.wait_until_answering(&["dc201".to_string()]);

    // -T: only the sub-collective's node, by broadcast and by directed request.
    let output = fleet.baton(&["ping", "-T", &sub, "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("replies"), ["dc201"]);
    let output = fleet.baton(&["rpc", "rpcutil", "ping", "-T", &sub, "-I", "dc201", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    // The main collective has both.
    let output = fleet.baton(&["ping", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("replies"), ["dc201", "main01"]);
}
