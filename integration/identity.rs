//! Duplicate identities: a second `batond` with the identity of a live node (a cloned machine, an
//! old process still running) is refused and says why, and the first keeps answering every
//! request sent to that identity, on every transport.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, RunningNode, Wire};

crate::on_every_transport!(a_second_process_with_a_live_identity_is_refused_and_the_first_answers);

fn a_second_process_with_a_live_identity_is_refused_and_the_first_answers(wire: Wire) {
    let mut fleet = Fleet::start_on(wire, vec![NodeSpec::new("twin01", json!({}), &[])]);
    let first = fleet.node("twin01");

    // The clone: the first node's configuration (identity, collective, key, broker), with its
    // own audit log, so that any request it took would show there.
    let clone_dir = fleet.dir.path().join("twin01-clone");
    std::fs::create_dir_all(&clone_dir).expect("clone dir");
    let config = std::fs::read_to_string(first.dir.join("node.toml")).expect("first node's config");
    let first_audit = format!("{:?}", first.dir.join("audit.log"));
    assert!(config.contains(&first_audit), "the audit path is in the config: {config}");
    let config = config.replace(&first_audit, &format!("{:?}", clone_dir.join("audit.log")));
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
    let spec = fleet.node("twin01").spec.clone();
    // Owned by the fleet, so that it is killed if it was not refused.
    fleet.nodes.push(RunningNode { spec, child, dir: clone_dir.clone() });

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
