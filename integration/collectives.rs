//! Preparing a RabbitMQ the team already runs: `rabbitmq/baton-rabbitmq definitions` prepares
//! a vhost with least-privilege users that a node and a client then use; `add-collective` adds
//! a sub-collective to the running private broker, a node in `collectives = [main, sub]` that
//! refused to start before starts after, and `-T sub` reaches exactly the nodes in it.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, Wire, broker, repo_root, shared_broker, unique_collective};

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
    assert!(log.contains(&format!("collective \"{sub}\" does not exist on this broker")), "{log}");
    assert!(log.contains(&format!("exchange \"{sub}.broadcast\" is missing")), "{log}");

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

#[test]
fn baton_rabbitmq_definitions_prepare_a_vhost_with_least_privilege_users() {
    let _shared = shared_broker();
    let env = broker();
    let vhost = unique_collective();
    let (node_user, client_user) = (format!("{vhost}-node"), format!("{vhost}-client"));
    let (node_password, client_password) =
        (uuid::Uuid::new_v4().simple().to_string(), uuid::Uuid::new_v4().simple().to_string());
    let port = env.var("BATON_RABBITMQ_AMQP_PORT");
    let mut wire = Wire::amqp();
    wire.node_url = format!("amqp://{node_user}:{node_password}@127.0.0.1:{port}/{vhost}");
    wire.client_url = format!("amqp://{client_user}:{client_password}@127.0.0.1:{port}/{vhost}");
    let mut fleet = Fleet::start_unguarded(wire, vec![]);
    let dir = fleet.dir.path().to_path_buf();
    std::fs::write(dir.join("node.pw"), &node_password).expect("write password");
    std::fs::write(dir.join("client.pw"), &client_password).expect("write password");

    let output = Command::new(repo_root().join("rabbitmq/baton-rabbitmq"))
        .args(["definitions", "--vhost", &vhost, "--collective", &fleet.collective, "--users"])
        .args(["--node-user", &node_user, "--client-user", &client_user])
        .arg("--node-password-file")
        .arg(dir.join("node.pw"))
        .arg("--client-password-file")
        .arg(dir.join("client.pw"))
        .output()
        .expect("run rabbitmq/baton-rabbitmq");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let definitions = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!definitions.contains(&node_password), "passwords are stored hashed");
    std::fs::write(dir.join("definitions.json"), &definitions).expect("write definitions");
    let ctl = env.var("BATON_RABBITMQ_CTL");
    let imported = Command::new(&ctl).arg("import_definitions").arg(dir.join("definitions.json")).output();
    let imported = imported.expect("run rabbitmqctl");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));

    // A node and a client with only those users and that vhost work end to end.
    fleet.spawn(NodeSpec::new("prod01", json!({}), &[]));
    fleet.wait_until_answering(&["prod01".to_string()]);
    let output = fleet.baton(&["ping", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("replies"), ["prod01"]);

    drop(fleet);
    for args in [["delete_vhost", vhost.as_str()], ["delete_user", &node_user], ["delete_user", &client_user]]
    {
        let _ = Command::new(&ctl).args(args).output();
    }
}
