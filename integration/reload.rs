//! A running node picks up new facts and classes without a restart, and stops cleanly.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Fleet, NodeSpec};

/// Polls `discover` with `filter` until it finds exactly `expected`, or fails after 30 s.
fn eventually_discovers(fleet: &Fleet, filter: &[&str], expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut args = vec!["discover", "--json"];
        args.extend_from_slice(filter);
        let output = fleet.baton(&args);
        if output.nodes("nodes") == expected {
            return;
        }
        assert!(Instant::now() < deadline, "discover {filter:?} never found {expected:?}: {output:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_changed_fact_file_is_reloaded_without_a_restart() {
    let fleet = Fleet::start(vec![NodeSpec::new("shifty01", json!({"role": "web"}), &[])]);
    eventually_discovers(&fleet, &["-F", "role=web"], &["shifty01"]);
    let facts = fleet.node("shifty01").dir.join("facts.json");
    std::fs::write(&facts, r#"{"role": "db", "extra": {"tier": 2}}"#).expect("rewrite facts");
    eventually_discovers(&fleet, &["-F", "role=db", "-F", "extra.tier>=2"], &["shifty01"]);
    eventually_discovers(&fleet, &["-F", "role=web"], &[]);
}

#[test]
fn a_broken_fact_file_keeps_the_previous_facts() {
    let fleet = Fleet::start(vec![NodeSpec::new("steady01", json!({"role": "web"}), &[])]);
    let facts = fleet.node("steady01").dir.join("facts.json");
    std::fs::write(&facts, "{ this is not json").expect("break facts");
    // Give the poller (1 s) several chances to trip over it, then check the node still
    // answers with its old facts.
    std::thread::sleep(Duration::from_secs(3));
    eventually_discovers(&fleet, &["-F", "role=web"], &["steady01"]);
    assert!(
        fleet.node("steady01").log().contains("keeping the previous facts"),
        "{}",
        fleet.node("steady01").log()
    );
}

#[test]
fn sighup_reloads_classes_and_sigterm_stops_the_daemon_cleanly() {
    let mut fleet = Fleet::start(vec![NodeSpec::new("signal01", json!({}), &["base"])]);
    let node = fleet.node("signal01");
    std::fs::write(node.dir.join("classes.txt"), "base\nfreshly_applied\n").expect("rewrite classes");
    let pid = node.child.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    assert!(hup.success());
    eventually_discovers(&fleet, &["-C", "freshly_applied"], &["signal01"]);

    let term = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
    assert!(term.success());
    let node = fleet.node_mut("signal01");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = node.child.try_wait().expect("wait batond") {
            break status;
        }
        assert!(Instant::now() < deadline, "batond did not stop after SIGTERM: {}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "batond exited with {status} after SIGTERM: {}", node.log());
    assert!(node.log().contains("draining"), "{}", node.log());
}
