//! Agents on real nodes: external agents in shell and Python answering through the broker,
//! one that hangs killed at its timeout with its children, one that crashes reporting its
//! stderr, input checks on the client (exit 2) and on the node (status 3 and 4), every status
//! code from a real path, aggregates summarised across nodes, policies, and SIGHUP reloads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton::protocol::{FilterSpec, Request, StatusCode, new_request_id, now_ms};
use baton::security::{Psk, Security};
use serde_json::{Value, json};

use crate::harness::{BatonOutput, Fleet, NodeSpec, RawClient, repo_root, run_baton};

/// Copies agents (from `deploy/agents` or `tests/fixtures/agents`) into `dir/agents`.
pub fn install_agents(dir: &Path, names: &[&str]) -> PathBuf {
    let agents = dir.join("agents");
    for name in names {
        let source = [
            repo_root().join("deploy/agents").join(name),
            repo_root().join("tests/fixtures/agents").join(name),
        ]
        .into_iter()
        .find(|path| path.is_dir())
        .unwrap_or_else(|| panic!("no agent {name} in deploy/agents or tests/fixtures/agents"));
        copy_agent(&source, &agents.join(name));
    }
    agents
}

fn copy_agent(source: &Path, target: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(target).expect("agent dir");
    for file in ["definition.json", "agent"] {
        std::fs::copy(source.join(file), target.join(file)).expect("copy agent file");
    }
    std::fs::set_permissions(target.join("agent"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod agent");
}

fn agents_config(agents: &Path) -> String {
    format!("[agents]\ndir = {:?}\n", agents.display().to_string())
}

/// A reply's field from a `--json` document, by node.
fn reply<'a>(document: &'a Value, node: &str) -> &'a Value {
    document["replies"]
        .as_array()
        .and_then(|replies| replies.iter().find(|reply| reply["node"] == node))
        .unwrap_or_else(|| panic!("no reply from {node} in {document}"))
}

fn fleet_with_agents(names: &[&str], nodes: &[(&str, Value)]) -> (Fleet, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = install_agents(dir.path(), names);
    let specs = nodes
        .iter()
        .map(|(identity, facts)| {
            NodeSpec::new(identity, facts.clone(), &[]).with_config(&agents_config(&agents))
        })
        .collect();
    (Fleet::start_in(dir, None, specs), agents)
}

/// `baton` with `definitions_dir` pointing at the agents, as an operator who copied them would.
fn baton_with_definitions(fleet: &Fleet, agents: &Path, args: &[&str]) -> BatonOutput {
    let config = fleet.client_config_with(
        &fleet.wire,
        &format!("definitions_dir = {:?}\n", agents.display().to_string()),
        "",
    );
    run_baton(&config, args, None)
}

#[test]
fn shell_and_python_agents_answer_through_the_broker_and_are_summarised() {
    let (fleet, agents) = fleet_with_agents(
        &["hello", "diskfree"],
        &[
            ("web01", json!({"role": "web"})),
            ("web02", json!({"role": "web"})),
            ("db01", json!({"role": "db"})),
        ],
    );

    let output = baton_with_definitions(
        &fleet,
        &agents,
        &["rpc", "hello", "greet", "name=world", "shout=yes", "-F", "role=web", "--json"],
    );
    assert_eq!(output.code, 0, "{output:?}");
    let document = output.json();
    assert_eq!(output.nodes("replies"), ["web01", "web02"]);
    assert_eq!(reply(&document, "web01")["data"]["greeting"], "HELLO, WORLD, FROM WEB01");
    // Aggregates from the definition, computed by the client across both nodes.
    assert_eq!(document["aggregates"]["length"]["value"], 48, "{document}");
    assert_eq!(document["aggregates"]["greeting"]["counts"]["HELLO, WORLD, FROM WEB02"], 1, "{document}");

    let output = baton_with_definitions(&fleet, &agents, &["rpc", "diskfree", "usage", "path=/", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    let document = output.json();
    assert_eq!(output.nodes("replies"), ["db01", "web01", "web02"]);
    assert!(
        reply(&document, "db01")["data"]["total_mb"].as_u64().is_some_and(|total| total > 0),
        "{document}"
    );
    assert_eq!(document["aggregates"]["used_percent"]["count"], 3, "{document}");
    assert_eq!(document["aggregates"]["full"]["counts"], json!({"ok": 3}), "{document}");

    // The Python agent's own failure: status 1 with its message and outputs, and exit 1.
    let output = baton_with_definitions(
        &fleet,
        &agents,
        &["rpc", "diskfree", "usage", "warn_percent=0.001", "-I", "db01", "--json"],
    );
    assert_eq!(output.code, 1, "{output:?}");
    let document = output.json();
    assert_eq!(reply(&document, "db01")["status"], 1);
    assert!(
        reply(&document, "db01")["message"].as_str().is_some_and(|message| message.contains("% full")),
        "{document}"
    );

    // Human output: the summaries the definition declares, before the totals.
    let output =
        baton_with_definitions(&fleet, &agents, &["rpc", "hello", "greet", "name=ops", "-F", "role=web"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.contains("Summary of Greeting:"), "{}", output.stdout);
    assert!(output.stdout.contains("Sum of Length: 44"), "{}", output.stdout);

    // A built-in agent's aggregate needs no local definitions at all.
    let output = fleet.baton(&["rpc", "rpcutil", "get_fact", "fact=role", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.json()["aggregates"]["value"]["counts"], json!({"db": 1, "web": 2}));
}

/// Whether a process is gone: no /proc entry, or a zombie waiting for its reaper.
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn a_hanging_agent_is_killed_at_its_timeout_with_its_children() {
    let (fleet, agents) = fleet_with_agents(&["hang"], &[("slow01", json!({}))]);
    let output = fleet.baton(&["rpc", "hang", "forever", "-I", "slow01", "-t", "30", "--json"]);
    assert_eq!(output.code, 1, "{output:?}");
    let document = output.json();
    let answer = reply(&document, "slow01");
    assert_eq!(answer["status"], 5, "{document}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not finish within 2 s; its process group was killed"), "{message}");
    assert!(message.contains("hang: started sleep"), "the stderr tail is reported: {message}");

    // The script and the sleep it started are both gone.
    let pids = std::fs::read_to_string(agents.join("hang/pids")).expect("the agent recorded its pids");
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids.iter().all(|pid| process_gone(pid)) {
        assert!(Instant::now() < deadline, "processes {pids:?} outlived the timeout");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = fleet.daemon_stats("slow01");
    assert_eq!(stats["failed"], 1, "{stats:?}");
}

#[test]
fn broken_agents_fail_with_a_clear_status_and_their_stderr() {
    let (fleet, _agents) = fleet_with_agents(&["broken"], &[("fragile01", json!({}))]);
    let cases = [
        (
            "crash",
            5,
            "exited with status 3; stderr: broken: connecting to the inventory database\nbroken: fatal: database unreachable at 10.9.9.9:5432",
        ),
        ("garbage", 5, "did not print a valid reply: standard output is not one JSON document"),
        ("undeclared", 5, "returned outputs its definition does not declare: secret_extra"),
        ("refuse", 1, "the widget is locked by another operator"),
    ];
    for (action, status, fragment) in cases {
        let output = fleet.baton(&["rpc", "broken", action, "-I", "fragile01", "--json"]);
        assert_eq!(output.code, 1, "{action}: {output:?}");
        let document = output.json();
        let answer = reply(&document, "fragile01");
        assert_eq!(answer["status"], status, "{action}: {document}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(fragment), "{action}: {message:?} lacks {fragment:?}");
    }
}

fn psk(fleet: &Fleet) -> Security {
    Security::Psk(Psk::from_file(&fleet.dir.path().join("psk")).expect("fleet psk"))
}

/// Sends a request built without the client's checks and returns the node's reply.
fn raw_call(fleet: &Fleet, node: &str, agent: &str, action: &str, data: Value) -> baton::protocol::Reply {
    let security = psk(fleet);
    let mut raw = RawClient::connect(fleet);
    let request = Request {
        id: new_request_id(),
        sender: "raw-tester".to_owned(),
        caller: "user=raw".to_owned(),
        collective: fleet.collective.clone(),
        agent: agent.to_owned(),
        action: action.to_owned(),
        filter: FilterSpec::default(),
        time_ms: now_ms(),
        ttl_secs: 60,
        reply_to: raw.reply_queue.clone(),
        data: data.as_object().cloned().unwrap_or_default(),
        once: None,
    };
    raw.publish_to_node(fleet, node, &security.seal_request(&request));
    let bytes = raw.next_reply(Duration::from_secs(15)).expect("the node answers");
    security.open_reply(&bytes, 1 << 20).expect("the reply verifies").into_inner()
}

#[test]
fn every_status_code_comes_from_a_real_path_with_a_useful_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = install_agents(dir.path(), &["hello", "broken", "hang"]);
    let policies = dir.path().join("policy");
    std::fs::create_dir_all(&policies).expect("policy dir");
    std::fs::write(policies.join("broken.policy"), "policy default allow\ndeny\tuser=tester\tcrash\t*\t*\n")
        .expect("policy");
    let config = format!(
        "{}\n[authorization]\npolicy_dir = {:?}\n",
        agents_config(&agents),
        policies.display().to_string()
    );
    let fleet =
        Fleet::start_in(dir, None, vec![NodeSpec::new("status01", json!({}), &[]).with_config(&config)]);

    let status_of = |args: &[&str]| {
        let mut full = vec!["rpc"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-I", "status01", "--json"]);
        let output = fleet.baton(&full);
        let document = output.json();
        let answer = reply(&document, "status01").clone();
        (answer["status"].as_u64().unwrap_or(99), answer["message"].as_str().unwrap_or_default().to_owned())
    };
    let check = |args: &[&str], status: u64, fragment: &str| {
        let (got, message) = status_of(args);
        assert_eq!(got, status, "{args:?}: {message}");
        assert!(message.contains(fragment), "{args:?}: {message:?} lacks {fragment:?}");
    };
    check(&["hello", "greet", "name=ok"], 0, "");
    check(&["broken", "crash"], 1, "not authorized: user=tester may not run broken#crash on status01");
    check(&["broken", "refuse"], 1, "the widget is locked");
    // The client fetches `broken`'s definition from the node and refuses the unknown action
    // itself (exit 2); a request built without the client's checks reaches the node, which
    // answers 2 in the same words.
    let unknown_action =
        "agent \"broken\" has no action \"explode\" (actions: crash, garbage, refuse, undeclared)";
    let output = fleet.baton(&["rpc", "broken", "explode", "-I", "status01", "--json"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert_eq!(output.json()["error"], unknown_action, "{output:?}");
    let explode = raw_call(&fleet, "status01", "broken", "explode", json!({}));
    assert_eq!(explode.status, StatusCode::UnknownAction, "{explode:?}");
    assert!(explode.status_message.contains(unknown_action), "{explode:?}");
    check(&["nosuchagent", "run"], 2, "unknown agent \"nosuchagent\" on status01");
    check(&["hang", "forever"], 5, "did not finish within 2 s");

    // Status 3 and 4 come from the node's own checks, for a request built without the client's.
    let missing = raw_call(&fleet, "status01", "hello", "greet", json!({}));
    assert_eq!(missing.status, StatusCode::MissingData, "{missing:?}");
    assert!(missing.status_message.contains("input \"name\" is required by hello#greet"), "{missing:?}");
    let invalid = raw_call(&fleet, "status01", "hello", "greet", json!({"name": "R2-D2; rm -rf /"}));
    assert_eq!(invalid.status, StatusCode::InvalidData, "{invalid:?}");
    assert!(invalid.status_message.contains("input \"name\" must match /^[A-Za-z]+$/"), "{invalid:?}");
    let wrong_type = raw_call(&fleet, "status01", "hello", "greet", json!({"name": "ok", "shout": "loud"}));
    assert_eq!(wrong_type.status, StatusCode::InvalidData, "{wrong_type:?}");
    assert!(wrong_type.status_message.contains("input \"shout\" must be a boolean"), "{wrong_type:?}");
    let undeclared = raw_call(&fleet, "status01", "hello", "greet", json!({"name": "ok", "command": "id"}));
    assert_eq!(undeclared.status, StatusCode::InvalidData, "{undeclared:?}");

    let stats = fleet.daemon_stats("status01");
    assert_eq!(stats["unauthorized"], 1, "{stats:?}");
    assert_eq!(stats["invalid_input"], 4, "{stats:?}");

    // The refusal's audit line names the caller, agent, action and rule.
    let refusal = fleet
        .node("status01")
        .audit_lines()
        .into_iter()
        .find(|line| line["outcome"] == "refused" && line["action"] == "crash")
        .expect("the refusal is audited");
    assert_eq!(refusal["caller"], "user=tester");
    assert_eq!(refusal["agent"], "broken");
    assert_eq!(refusal["status"], 1);
    assert!(
        refusal["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("broken.policy line 2 (deny user=tester crash * *)")),
        "{refusal}"
    );
}

#[test]
fn the_client_refuses_bad_inputs_before_sending() {
    let (fleet, agents) = fleet_with_agents(&["hello"], &[("check01", json!({}))]);
    let cases: &[(&[&str], &str)] = &[
        (&["rpc", "hello", "greet"], "input \"name\" is required by hello#greet"),
        (&["rpc", "hello", "greet", "name=R2D2"], "input \"name\" must match /^[A-Za-z]+$/, got \"R2D2\""),
        (&["rpc", "hello", "greet", "name=ok", "shout=loudly"], "input \"shout\" must be a boolean"),
        (
            &["rpc", "hello", "greet", "name=ok", "colour=red"],
            "hello#greet has no input \"colour\" (inputs: name, shout)",
        ),
        (&["rpc", "hello", "wave"], "agent \"hello\" has no action \"wave\" (actions: greet)"),
        (&["rpc", "rpcutil", "get_fact", "fact=a b"], "input \"fact\" must match"),
    ];
    for (args, fragment) in cases {
        let output = baton_with_definitions(&fleet, &agents, args);
        assert_eq!(output.code, 2, "{args:?}: {output:?}");
        assert!(output.stderr.contains(fragment), "{args:?}: {:?} lacks {fragment:?}", output.stderr);
    }
    // Nothing was sent: the node saw only the harness's pings.
    let stats = fleet.daemon_stats("check01");
    assert_eq!(stats["invalid_input"], 0, "{stats:?}");
    assert_eq!(stats["unknown_action"], 0, "{stats:?}");
}

fn sighup(fleet: &Fleet, identity: &str) {
    let pid = fleet.node(identity).child.id().to_string();
    let status = std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("run kill");
    assert!(status.success());
}

#[test]
fn sighup_loads_new_agents_and_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = install_agents(dir.path(), &["hello"]);
    let policies = dir.path().join("policy");
    std::fs::create_dir_all(&policies).expect("policy dir");
    std::fs::write(policies.join("hello.policy"), "policy default deny\n").expect("policy");
    let config = format!(
        "{}\n[authorization]\npolicy_dir = {:?}\n",
        agents_config(&agents),
        policies.display().to_string()
    );
    let fleet = Fleet::start_in(dir, None, vec![NodeSpec::new("hup01", json!({}), &[]).with_config(&config)]);

    let output = fleet.baton(&["rpc", "hello", "greet", "name=x", "-I", "hup01", "--json"]);
    assert_eq!(reply(&output.json(), "hup01")["status"], 1, "{output:?}");
    let output = fleet.baton(&["rpc", "diskfree", "usage", "-I", "hup01", "--json"]);
    assert_eq!(reply(&output.json(), "hup01")["status"], 2, "{output:?}");

    copy_agent(&repo_root().join("deploy/agents/diskfree"), &agents.join("diskfree"));
    std::fs::write(policies.join("hello.policy"), "policy default deny\nallow\tuser=tester\tgreet\t*\t*\n")
        .expect("policy");
    sighup(&fleet, "hup01");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let greet = fleet.baton(&["rpc", "hello", "greet", "name=x", "-I", "hup01", "--json"]);
        let usage = fleet.baton(&["rpc", "diskfree", "usage", "-I", "hup01", "--json"]);
        if greet.code == 0 && usage.code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reload not seen: {greet:?} {usage:?}\n{}",
            fleet.node("hup01").log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The new agent is bound for broadcasts too: a broadcast request for it is answered.
    let config = baton::config::ClientConfig::load(Some(&fleet.client_config(""))).expect("client config");
    let outcome = crate::harness::block_on(async {
        let client = baton::client::Client::connect(&config).await.expect("connect");
        let spec = baton::client::RequestSpec {
            agent: "diskfree".to_owned(),
            action: "usage".to_owned(),
            data: serde_json::Map::new(),
            filter: baton::protocol::filter::Filter::default(),
            once: None,
        };
        let outcome = client
            .call(
                &spec,
                &baton::client::Targets::Broadcast,
                Duration::from_secs(10),
                Some(Duration::from_secs(2)),
                &mut |_| {},
            )
            .await
            .expect("broadcast");
        client.close().await;
        outcome
    });
    assert_eq!(outcome.replies.len(), 1, "{outcome:?}");
    assert!(outcome.replies[0].is_ok(), "{outcome:?}");

    // A policy with a mistake is not loaded: the previous policy stays in force.
    std::fs::write(policies.join("hello.policy"), "policy default maybe\n").expect("policy");
    sighup(&fleet, "hup01");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fleet.node("hup01").log().contains("policies not reloaded") {
        assert!(Instant::now() < deadline, "{}", fleet.node("hup01").log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let greet = fleet.baton(&["rpc", "hello", "greet", "name=x", "-I", "hup01", "--json"]);
    assert_eq!(greet.code, 0, "the previous policy still allows: {greet:?}");
}

#[test]
fn agents_and_doc_describe_what_the_nodes_have() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = install_agents(dir.path(), &["hello"]);
    let fleet = Fleet::start_in(
        dir,
        None,
        vec![
            NodeSpec::new("with01", json!({"role": "web"}), &[]).with_config(&agents_config(&agents)),
            NodeSpec::new("without01", json!({"role": "db"}), &[]),
        ],
    );

    let listed = fleet.baton(&["agents", "--json"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let document = listed.json();
    let entry = |name: &str| {
        document["agents"]
            .as_array()
            .and_then(|agents| agents.iter().find(|agent| agent["agent"] == name).cloned())
    };
    assert_eq!(entry("hello").expect("hello is listed")["nodes"], json!(["with01"]));
    assert_eq!(entry("rpcutil").expect("rpcutil is listed")["nodes"], json!(["with01", "without01"]));
    for builtin in ["service", "package", "resource", "puppet"] {
        assert!(entry(builtin).is_some(), "{builtin} missing from {document}");
    }
    let human = fleet.baton(&["agents", "-F", "role=web"]);
    assert_eq!(human.code, 0, "{human:?}");
    assert!(human.stdout.contains("Agents on 1 of 1 node(s):"), "{}", human.stdout);
    assert!(human.stdout.contains("Greets people"), "{}", human.stdout);
    let nobody = fleet.baton(&["agents", "-F", "role=mainframe", "--json"]);
    assert_eq!(nobody.code, 4, "nothing matched: {nobody:?}");
    assert_eq!(nobody.json()["action"], "agent_inventory", "{nobody:?}");

    // The client has no definition of hello: doc asks a node that has it.
    let doc = fleet.baton(&["doc", "hello"]);
    assert_eq!(doc.code, 0, "{doc:?}");
    assert!(doc.stdout.contains("ACTION greet: Says hello to someone, from this node"), "{}", doc.stdout);
    assert!(
        doc.stdout.contains("(string, required, at most 32 characters, matching /^[A-Za-z]+$/)"),
        "{}",
        doc.stdout
    );
    assert!(doc.stdout.contains("Example: baton rpc hello greet name=NAME"), "{}", doc.stdout);
    let missing = fleet.baton(&["doc", "nosuchagent"]);
    assert_eq!(missing.code, 4, "{missing:?}");
    assert!(missing.stderr.contains("no definition of agent \"nosuchagent\""), "{missing:?}");

    // The display policy of the definition decides which replies get a line: get_fact shows
    // every node, unless --display says otherwise.
    let shown = fleet.baton(&["rpc", "rpcutil", "get_fact", "fact=role"]);
    assert!(shown.stdout.contains("with01") && shown.stdout.contains("without01"), "{}", shown.stdout);
    let hidden = fleet.baton(&["rpc", "rpcutil", "get_fact", "fact=role", "--display", "failed"]);
    assert!(!hidden.stdout.contains("without01"), "{}", hidden.stdout);
}

#[test]
fn package_and_service_agents_query_the_real_system() {
    let fleet = Fleet::start(vec![NodeSpec::new("sys01", json!({}), &[])]);
    let installed = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "bash"])
        .output()
        .expect("dpkg-query runs");
    let version = String::from_utf8_lossy(&installed.stdout).into_owned();
    let output = fleet.baton(&["rpc", "package", "status", "package=bash", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    let document = output.json();
    assert_eq!(reply(&document, "sys01")["data"]["ensure"], json!(version), "{document}");
    assert_eq!(document["aggregates"]["ensure"]["counts"][&version], 1, "{document}");
    let absent = fleet.baton(&["rpc", "package", "status", "package=no-such-package-baton", "--json"]);
    assert_eq!(reply(&absent.json(), "sys01")["data"]["ensure"], "absent", "{absent:?}");

    // A service name that exists nowhere is a failure that says so, not "stopped".
    let output = fleet.baton(&["rpc", "service", "status", "service=no-such-service-baton", "--json"]);
    assert_eq!(output.code, 1, "{output:?}");
    let answer = reply(&output.json(), "sys01").clone();
    assert_eq!(answer["status"], 1, "{answer}");
    assert!(
        answer["message"].as_str().is_some_and(|message| message.contains("no-such-service-baton")),
        "{answer}"
    );
    // And the client refuses a service name that is not one before sending.
    let bad = fleet.baton(&["rpc", "service", "status", "service=nginx;reboot"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

/// Regression (issue 12, finding 6): an external agent's files were checked only at load, so
/// one replaced afterwards by someone who could write it ran as root. A real node now checks
/// the executable before every run and refuses to run it, saying what to fix.
#[test]
fn a_node_refuses_to_run_an_agent_that_became_untrusted_after_load() {
    use std::os::unix::fs::PermissionsExt;
    let (fleet, agents) = fleet_with_agents(&["hello"], &[("trust01", json!({}))]);
    let greet =
        || baton_with_definitions(&fleet, &agents, &["rpc", "hello", "greet", "name=world", "--json"]);
    let output = greet();
    assert_eq!(output.code, 0, "{output:?}");

    let executable = agents.join("hello/agent");
    let original = std::fs::read_to_string(&executable).expect("agent");
    let marker = fleet.dir.path().join("replaced-agent-ran");
    std::fs::write(&executable, format!("#!/bin/sh\ntouch {:?}\n{}", marker.display().to_string(), original))
        .expect("replace");
    std::fs::set_permissions(&executable, std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let output = greet();
    assert_eq!(output.code, 1, "{output:?}");
    let document = output.json();
    let refused = reply(&document, "trust01");
    assert_eq!(refused["status"], 5, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("agent hello not run")
            && message.contains(&format!("chmod go-w {}", executable.display())),
        "{message}"
    );
    assert!(!marker.exists(), "the replaced agent ran");

    std::fs::set_permissions(&executable, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = greet();
    assert_eq!(output.code, 0, "trusted again, it runs: {output:?}");
    assert!(marker.exists(), "the (now trusted) replacement ran");
}

#[test]
fn definitions_travel_from_the_nodes_to_a_client_without_them() {
    let (fleet, agents) = fleet_with_agents(&["loadcheck"], &[("load01", json!({})), ("load02", json!({}))]);
    let cache = fleet.dir.path().join("xdg-cache/baton/definitions/loadcheck");
    assert!(!cache.exists(), "nothing cached before the first call");

    // No definitions_dir: the definition comes from a node, so "0.5" goes out as a float.
    let output = fleet.baton(&["rpc", "loadcheck", "check", "max_load=0.5", "--json", "-vv"]);
    assert_eq!(output.code, 0, "{output:?}");
    // Regression: the definition was asked on a broker connection of its own, then the
    // request sent on a second one. One command, one connection (each logs its connect).
    let connections = output.stderr.matches("connected to the broker").count();
    assert_eq!(connections, 1, "one connection for the fetch and the call: {}", output.stderr);
    let document = output.json();
    assert_eq!(reply(&document, "load01")["data"]["threshold"], json!(0.5), "{document}");
    // Aggregates from the fetched definition.
    assert_eq!(document["aggregates"]["threshold"]["value"], json!(1.0), "{document}");
    let cached: Vec<_> = std::fs::read_dir(&cache).expect("cache dir").filter_map(Result::ok).collect();
    assert_eq!(cached.len(), 1, "one cached definition, named by its hash: {cached:?}");
    let name = cached[0].file_name().to_string_lossy().into_owned();
    assert!(name.len() == 37 && name.ends_with(".json"), "{name}");

    // From the cache: typed inputs are checked before sending, and outputs get their labels.
    let output = fleet.baton(&["rpc", "loadcheck", "check", "max_load=lots"]);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("must be a float"), "{}", output.stderr);
    let output = fleet.baton(&["rpc", "loadcheck", "check", "max_load=2", "-I", "load01"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stdout.contains("Threshold"), "{}", output.stdout);
    assert!(output.stdout.contains("Sum of Threshold: 2"), "{}", output.stdout);

    // A local definitions_dir still wins, even when it disagrees with the nodes: here it
    // declares max_load a string, so the node refuses it (status 4), as before definitions
    // travelled.
    let local = fleet.dir.path().join("local-definitions/loadcheck");
    std::fs::create_dir_all(&local).expect("local definitions dir");
    let definition = std::fs::read_to_string(agents.join("loadcheck/definition.json")).expect("definition");
    std::fs::write(
        local.join("definition.json"),
        definition.replace("\"type\": \"float\"", "\"type\": \"string\""),
    )
    .expect("write local definition");
    let output = baton_with_definitions(
        &fleet,
        local.parent().expect("definitions dir"),
        &["rpc", "loadcheck", "check", "max_load=0.5", "-I", "load01", "--json"],
    );
    let document = output.json();
    assert_eq!(reply(&document, "load01")["status"], 4, "{document}");
    let message = reply(&document, "load01")["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("input \"max_load\" must be a float"), "{message}");
}

/// What batond's own environment holds for it alone: systemd's notification socket, socket
/// activation, watchdog, invocation and journal variables, and a `BATON_*` variable.
const DAEMON_ONLY: [(&str, &str); 8] = [
    ("NOTIFY_SOCKET", "/run/systemd/notify-of-batond"),
    ("LISTEN_FDS", "1"),
    ("LISTEN_PID", "1"),
    ("WATCHDOG_USEC", "60000000"),
    ("WATCHDOG_PID", "1"),
    ("INVOCATION_ID", "6e2d1c0b5a4f4e3d8c7b6a5948372615"),
    ("JOURNAL_STREAM", "8:123456"),
    ("BATON_DEPLOY_TOKEN", "a secret of the daemon's environment"),
];

/// Regression, review of issue 13 (finding 11): the programs batond starts inherited its whole
/// environment, `NOTIFY_SOCKET` included, so Puppet, apt-get or anything they ran could tell
/// systemd READY, STOPPING or another MAINPID for batond; and `BATON_*` configuration (broker
/// URLs with passwords) reached them too. Two children record what they get: an external
/// agent, and the puppet agent's `puppet` (a script standing in for it: what is under test is
/// what batond passes on, not Puppet). Neither gets a daemon-only variable; `puppet` keeps
/// the rest of the environment (a proxy setting, which apt-get and Puppet need).
#[test]
fn programs_a_node_starts_get_none_of_its_daemon_only_variables() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = install_agents(dir.path(), &["printenv"]);
    let state = dir.path().join("puppet-state");
    std::fs::create_dir_all(&state).expect("state dir");
    let recorded = state.join("puppet.env");
    let puppet = dir.path().join("puppet");
    std::fs::write(
        &puppet,
        format!(
            "#!/bin/sh\nenv > '{recorded}'\necho 'agent_disabled_lockfile = {state}/disabled.lock'\n\
             echo 'agent_catalog_run_lockfile = {state}/running.lock'\necho 'lastrunfile = {state}/summary.yaml'\n",
            recorded = recorded.display(),
            state = state.display()
        ),
    )
    .expect("write the puppet stand-in");
    std::fs::set_permissions(&puppet, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut spec = NodeSpec::new("env01", json!({}), &[])
        .with_config(&agents_config(&agents))
        .with_config(&format!("[agents.puppet]\ncommand = {:?}\n", puppet.display().to_string()))
        .with_env("HTTP_PROXY", "http://proxy.invalid:3128");
    for (name, value) in DAEMON_ONLY {
        spec = spec.with_env(name, value);
    }
    let fleet = Fleet::start_in(dir, None, vec![spec]);

    let shown =
        baton_with_definitions(&fleet, &agents, &["rpc", "printenv", "show", "-I", "env01", "--json"]);
    assert_eq!(shown.code, 0, "{shown:?}\n{}", fleet.logs());
    let environment = reply(&shown.json(), "env01")["data"]["environment"].clone();
    let environment = environment.as_object().expect("an object of variables");
    for (name, _) in DAEMON_ONLY {
        assert!(!environment.contains_key(name), "the external agent got {name}: {environment:?}");
    }
    assert_eq!(environment.get("BATON_IDENTITY"), Some(&json!("env01")), "{environment:?}");

    let status = fleet.baton(&["rpc", "puppet", "status", "-I", "env01", "--json"]);
    assert_eq!(status.code, 0, "{status:?}\n{}", fleet.logs());
    let seen = std::fs::read_to_string(&recorded).expect("the puppet stand-in ran");
    let names: Vec<&str> =
        seen.lines().filter_map(|line| line.split_once('=').map(|(name, _)| name)).collect();
    for (name, _) in DAEMON_ONLY {
        assert!(!names.contains(&name), "puppet got {name}:\n{seen}");
    }
    assert!(
        seen.lines().any(|line| line == "HTTP_PROXY=http://proxy.invalid:3128"),
        "puppet lost the rest:\n{seen}"
    );
}
