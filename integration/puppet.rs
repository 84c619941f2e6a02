//! The `puppet` agent wrapping the real Puppet (Debian's `puppet` package): a real run of a
//! local manifest, and status, last_run_summary, disable and enable reflecting the real
//! agent's lock and summary files. Puppet's directories live in the test's temporary tree.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{BatonOutput, Fleet, NodeSpec};

fn data(output: &BatonOutput) -> Value {
    let document = output.json();
    document["replies"][0]["data"].clone()
}

fn puppet_config(dir: &Path) -> String {
    let puppet = dir.join("puppet");
    let args: Vec<String> = ["confdir", "vardir", "codedir", "logdir", "rundir", "publicdir"]
        .iter()
        .flat_map(|setting| [format!("--{setting}"), puppet.join(setting).display().to_string()])
        .collect();
    format!(
        "[agents.puppet]\nmanifest = {:?}\nextra_args = {:?}\n",
        dir.join("site.pp").display().to_string(),
        args
    )
}

#[test]
fn puppet_runs_once_and_reports_the_real_agent_state() {
    assert!(
        std::process::Command::new("puppet")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success()),
        "puppet is not installed: apt-get install puppet (bin/test installs it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let made = dir.path().join("made-by-puppet");
    std::fs::write(
        dir.path().join("site.pp"),
        format!("file {{ {:?}: content => \"managed\\n\" }}\n", made.display().to_string()),
    )
    .expect("manifest");
    let config = puppet_config(dir.path());
    let fleet = Fleet::start_in(dir, None, vec![NodeSpec::new("pup01", json!({}), &[]).with_config(&config)]);
    let puppet = |args: &[&str]| {
        let mut full = vec!["rpc", "puppet"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-I", "pup01", "-t", "300", "--json"]);
        fleet.baton(&full)
    };

    let status = puppet(&["status"]);
    assert_eq!(status.code, 0, "{status:?}");
    let state = data(&status);
    assert_eq!(state["status"], "idling", "{state}");
    assert_eq!(state["enabled"], true, "{state}");
    assert_eq!(state["lastrun"], 0, "never ran: {state}");

    let run = puppet(&["runonce"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(data(&run)["changed"], true, "{run:?}");
    assert_eq!(std::fs::read_to_string(&made).expect("puppet made the file"), "managed\n");

    let summary = puppet(&["last_run_summary"]);
    assert_eq!(summary.code, 0, "{summary:?}");
    let summary = data(&summary);
    assert_eq!(summary["changed_resources"], 1, "{summary}");
    assert_eq!(summary["failed_resources"], 0, "{summary}");
    assert!(summary["lastrun"].as_u64().is_some_and(|lastrun| lastrun > 0), "{summary}");

    let disable = puppet(&["disable", "message=kernel upgrade in progress"]);
    assert_eq!(disable.code, 0, "{disable:?}");
    let state = data(&puppet(&["status"]));
    assert_eq!(state["status"], "disabled", "{state}");
    assert_eq!(state["disable_message"], "kernel upgrade in progress", "{state}");

    let refused = puppet(&["runonce"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    let message = refused.json()["replies"][0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("Puppet is disabled, not running it: kernel upgrade in progress"), "{message}");

    let enable = puppet(&["enable"]);
    assert_eq!(enable.code, 0, "{enable:?}");
    assert_eq!(data(&enable)["status"], "idling", "{enable:?}");

    // A second run finds nothing to change.
    let run = puppet(&["runonce"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(data(&run)["changed"], false, "{run:?}");
}

/// Regression (issue 12, finding 1): the disable message was passed as its own argument after
/// `--disable`, so `message=--agent_disabled_lockfile=/PATH` made the real Puppet create that
/// file as root and `message=--logdest=/PATH` append its log to any file. Tags had the same
/// shape. Now the message is only ever a message, and tags must be Puppet tags.
#[test]
fn a_disable_message_or_tags_never_become_puppet_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = dir.path().join("made-by-puppet");
    std::fs::write(
        dir.path().join("site.pp"),
        format!("file {{ {:?}: content => \"managed\\n\" }}\n", made.display().to_string()),
    )
    .expect("manifest");
    let planted_lock = dir.path().join("planted-lock");
    let planted_log = dir.path().join("planted-log");
    let config = puppet_config(dir.path());
    let fleet = Fleet::start_in(dir, None, vec![NodeSpec::new("pup02", json!({}), &[]).with_config(&config)]);
    let puppet = |args: &[&str]| {
        let mut full = vec!["rpc", "puppet"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-I", "pup02", "-t", "300", "--json"]);
        fleet.baton(&full)
    };

    for (message, planted) in [
        (format!("--agent_disabled_lockfile={}", planted_lock.display()), &planted_lock),
        (format!("--logdest={}", planted_log.display()), &planted_log),
    ] {
        let disable = puppet(&["disable", &format!("message={message}")]);
        assert_eq!(disable.code, 0, "{disable:?}");
        assert!(!planted.exists(), "Puppet read the message {message:?} as an option and wrote {planted:?}");
        let state = data(&puppet(&["status"]));
        assert_eq!(state["status"], "disabled", "{state}");
        assert_eq!(state["disable_message"], message.as_str(), "the message is kept verbatim: {state}");
        let enable = puppet(&["enable"]);
        assert_eq!(enable.code, 0, "{enable:?}");
        assert_eq!(data(&enable)["status"], "idling", "{enable:?}");
    }

    for tags in ["--noop", "-d", "web,--noop", "a,,b"] {
        let refused = puppet(&["runonce", &format!("tags={tags}")]);
        assert_eq!(refused.code, 2, "tags {tags:?} must be refused before anything runs: {refused:?}");
        let error = refused.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains("input \"tags\" must match"), "{refused:?}");
    }
    assert!(!made.exists(), "no run happened");
    let run = puppet(&["runonce", "tags=file,site"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(made.exists(), "a run with valid tags applies the tagged resources: {run:?}");
}
