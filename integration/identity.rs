//! Duplicate identities: a second `batond` with the identity of a live node (a cloned machine, an
//! old process still running) is refused and says why, and the first keeps answering every
//! request sent to that identity, on every transport. And a node whose identity was taken while
//! it was cut off from the broker takes no requests once it is back, and says what to do.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, RunningNode, SeveringProxy, Wire};

crate::on_every_transport!(a_second_process_with_a_live_identity_is_refused_and_the_first_answers);

fn a_second_process_with_a_live_identity_is_refused_and_the_first_answers(wire: Wire) {
    let mut fleet = Fleet::start_on(wire, vec![NodeSpec::new("twin01", json!({}), &[])]);

    let clone_dir = spawn_clone(&mut fleet, "twin01", None);

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let clone = fleet.nodes.last_mut().expect("the clone");
        if let Some(status) = clone.child.try_wait().expect("wait for the clone") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the clone was not refused within 60 s; its log:\n{}",
            clone.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let clone_log = std::fs::read_to_string(clone_dir.join("batond.log")).expect("clone log");
    assert_eq!(status.code(), Some(2), "the clone exits 2 (configuration); its log:\n{clone_log}");
    assert!(
        clone_log
            .contains("identity \"twin01\" is already in use by another process connected to the broker"),
        "the refusal names the identity: {clone_log}"
    );
    assert!(
        clone_log.contains("Stop the other process") && clone_log.contains("its own `identity` in node.toml"),
        "the refusal says what to do: {clone_log}"
    );

    let audited_before = fleet.node("twin01").audit_lines().len();
    for round in 1..=20 {
        let output = fleet.baton(&["rpc", "rpcutil", "ping", "-I", "twin01", "--json"]);
        assert_eq!(output.code, 0, "directed request {round} of 20: {output:?}");
        assert_eq!(output.nodes("replies"), ["twin01"], "directed request {round} of 20: {output:?}");
    }
    // Every one of them reached the first process: one audit line each.
    assert_eq!(fleet.node("twin01").audit_lines().len() - audited_before, 20);
    let clone_audit = std::fs::read_to_string(clone_dir.join("audit.log")).unwrap_or_default();
    assert_eq!(clone_audit, "", "the refused clone took no request");
}

/// Starts a clone of `identity`: its configuration (identity, collective, key, broker URLs, or
/// `urls` instead), with its own audit log, so that any request it took would show there. The
/// fleet owns it (it is killed with the fleet); returns its directory.
fn spawn_clone(fleet: &mut Fleet, identity: &str, urls: Option<(&str, &str)>) -> std::path::PathBuf {
    let first = fleet.node(identity);
    let clone_dir = fleet.dir.path().join(format!("{identity}-clone"));
    std::fs::create_dir_all(&clone_dir).expect("clone dir");
    let config = std::fs::read_to_string(first.dir.join("node.toml")).expect("first node's config");
    let first_audit = format!("{:?}", first.dir.join("audit.log"));
    assert!(config.contains(&first_audit), "the audit path is in the config: {config}");
    let mut config = config.replace(&first_audit, &format!("{:?}", clone_dir.join("audit.log")));
    if let Some((from, to)) = urls {
        assert!(config.contains(from), "the URL {from} is in the config: {config}");
        config = config.replace(from, to);
    }
    std::fs::write(clone_dir.join("node.toml"), config).expect("write clone config");
    let log = std::fs::File::create(clone_dir.join("batond.log")).expect("clone log");
    let child = Command::new(env!("CARGO_BIN_EXE_batond"))
        .arg("--config")
        .arg(clone_dir.join("node.toml"))
        .env_remove("BATON_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the clone");
    let spec = first.spec.clone();
    fleet.nodes.push(RunningNode { spec, child, dir: clone_dir.clone() });
    clone_dir
}

/// Regression: a node that reconnected and found its identity claimed by another process
/// logged "cannot restore a subscription; will retry" and set up its queue again all the same,
/// so the two took turns with its requests: the round robin the claim exists to prevent. Now it
/// takes no requests until the claim is its own again, and says why and what to do. AMQP: over
/// STOMP the claim is the connection itself (ActiveMQ's client-id), refused before anything is
/// consumed, or a subscription that comes first as here.
#[test]
fn a_node_whose_identity_was_taken_while_it_was_cut_off_takes_no_requests_and_says_so() {
    let proxy = SeveringProxy::to_rabbitmq();
    let direct = Wire::amqp();
    let mut fleet = Fleet::start_on(proxy.nodes_of(&direct), vec![NodeSpec::new("taken01", json!({}), &[])]);
    let identity = ["taken01".to_string()];
    fleet.wait_until_answering(&identity);

    // Cut off: the broker sees the connection close and releases the claim at once; the node
    // keeps trying to reconnect through the proxy.
    proxy.sever();
    let proxied_url = proxy.nodes_of(&direct).node_url;
    let clone_dir = spawn_clone(&mut fleet, "taken01", Some((&proxied_url, &direct.node_url)));
    fleet.wait_until_answering(&identity);
    let clone = fleet.nodes.len() - 1;
    assert!(
        fleet.nodes[clone].child.try_wait().expect("clone status").is_none(),
        "the clone took the free identity:\n{}",
        fleet.nodes[clone].log()
    );

    // Back: the first node reconnects, finds its identity claimed, and says so.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !fleet.nodes[0].log().contains("identity claimed by another connection since this node reconnected")
    {
        assert!(Instant::now() < deadline, "no word of the taken identity within 60 s:\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = fleet.nodes[0].log();
    assert!(
        log.contains("taking no requests") && log.contains("stop it, or give this node its own `identity`"),
        "says what it does and what to do:\n{log}"
    );

    let first_audited = fleet.nodes[0].audit_lines().len();
    for round in 1..=20 {
        let output = fleet.baton(&["rpc", "rpcutil", "ping", "-I", "taken01", "--json"]);
        assert_eq!(output.code, 0, "directed request {round} of 20: {output:?}");
    }
    assert_eq!(fleet.nodes[0].audit_lines().len(), first_audited, "the first node took none of them");
    let clone_audit = std::fs::read_to_string(clone_dir.join("audit.log")).expect("clone audit");
    let clone_rpcs = clone_audit.lines().filter(|line| line.contains("\"ping\"")).count();
    assert!(clone_rpcs >= 20, "the clone took all 20: {clone_audit}");
    assert!(fleet.nodes[0].child.try_wait().expect("node status").is_none(), "the first node keeps running");
}
