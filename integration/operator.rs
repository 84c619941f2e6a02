//! What an operator meets in the first hour (issue 14, the CLI half), against real nodes and
//! the private RabbitMQ: discovery reports only nodes that answered, `baton rpc AGENT` asks
//! only the nodes that have the agent and says so, an empty `--only` selection says what was
//! empty, broker refusals are worded once by Baton (no library log lines), a collective typo is
//! named as such, SIGHUP follows a changed `agents.dir`, `baton replies` shows what the live
//! command showed and prunes its records, Ctrl-C prints what is known, and the progress bar is
//! cleared before the first result line.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::agents::install_agents;
use crate::harness::{Fleet, NodeSpec, broker, run_baton};

/// Regression: `baton discover -I ghost01` printed `ghost01` and exited 0, as if it existed.
#[test]
fn discover_reports_only_the_named_nodes_that_answered() {
    let fleet = Fleet::start(vec![NodeSpec::new("real01", json!({}), &[])]);
    let output = fleet.baton(&["discover", "-I", "real01", "-I", "ghost01"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.stdout, "real01\n", "{output:?}");

    let output = fleet.baton(&["discover", "-I", "ghost01"]);
    assert_eq!(output.code, 4, "nothing answered: {output:?}");
    assert_eq!(output.stdout, "", "{output:?}");
    assert!(output.stderr.contains("None of the named nodes answered"), "{output:?}");

    let output = fleet.baton(&["discover", "-I", "ghost01", "-I", "real01", "--json"]);
    assert_eq!(output.nodes("nodes"), ["real01"], "{output:?}");

    // Regression: every discovery added an `rpcutil ping` line to every node's audit log, not
    // to be told from a person's ping. Discovery, named or broadcast, is audited as such.
    let output = fleet.baton(&["discover", "-F", "role=none", "-I", "/real/"]);
    assert_eq!(output.code, 4, "{output:?}");
    let output = fleet.baton(&["discover"]);
    assert_eq!(output.stdout, "real01\n", "{output:?}");
    let audit = fleet.node("real01").audit_lines();
    let discoveries = audit
        .iter()
        .filter(|line| {
            line["agent"] == "rpcutil" && line["action"] == "discover" && line["caller"] == "user=tester"
        })
        .count();
    // Asked by name twice, and one broadcast that matched (a filter that does not match is
    // dropped before the audit).
    assert_eq!(discoveries, 3, "{audit:#?}");
    // The harness's own `baton ping`s, waiting for the node to start, stay pings.
    assert!(audit.iter().any(|line| line["action"] == "ping"), "{audit:#?}");
}

/// Regression: with an agent on only some nodes, `baton rpc AGENT` asked every node, and all the
/// others failed with "unknown agent" (exit 1). Now only nodes with the agent are discovered,
/// the operator is told so, and the nodes without it never see the request.
#[test]
fn rpc_asks_only_the_nodes_that_have_the_agent_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = install_agents(dir.path(), &["hello"]);
    let with_hello = format!("[agents]\ndir = {:?}\n", agents.display().to_string());
    let fleet = Fleet::start_in(
        dir,
        None,
        vec![
            NodeSpec::new("has01", json!({}), &[]).with_config(&with_hello),
            NodeSpec::new("lacks01", json!({}), &[]),
        ],
    );
    let output = fleet.baton(&["rpc", "hello", "greet", "name=ops"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        output
            .stderr
            .contains("Asking only the nodes that have the agent \"hello\" (-A hello added to the filter)"),
        "{output:?}"
    );
    assert!(output.stdout.contains("Finished processing 1 / 1 nodes"), "{output:?}");

    let output = fleet.baton(&["rpc", "hello", "greet", "name=ops", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    let document = output.json();
    assert_eq!(document["selection"]["added_agent_filter"], "hello", "{document}");
    assert_eq!(output.nodes("targeted"), ["has01"], "{document}");
    let asked: Vec<_> =
        fleet.node("lacks01").audit_lines().into_iter().filter(|line| line["agent"] == "hello").collect();
    assert!(asked.is_empty(), "lacks01 was asked for hello: {asked:?}");

    // An -A naming the agent already is not added twice; named nodes are asked as given.
    let output = fleet.baton(&["rpc", "hello", "greet", "name=ops", "-A", "hello", "--json"]);
    assert!(output.json()["selection"].get("added_agent_filter").is_none(), "{output:?}");
    let output = fleet.baton(&["rpc", "hello", "greet", "name=ops", "-I", "lacks01", "--json"]);
    assert_eq!(output.code, 1, "a named node without the agent says so: {output:?}");
    assert!(output.json()["selection"].get("added_agent_filter").is_none(), "{output:?}");
}

/// Regression: an `--only` that picked no node from earlier results said "No nodes matched
/// the filter ... raise --dt", which points at the wrong thing.
#[test]
fn an_empty_only_selection_says_what_was_empty() {
    let fleet = Fleet::start(vec![NodeSpec::new("fine01", json!({}), &[])]);
    let earlier = fleet.baton(&["rpc", "rpcutil", "ping", "-I", "fine01", "--json"]);
    assert_eq!(earlier.code, 0, "{earlier:?}");
    let output = fleet
        .baton_with_stdin(&["rpc", "rpcutil", "ping", "--dm", "stdin", "--only", "failed"], &earlier.stdout);
    assert_eq!(output.code, 4, "{output:?}");
    assert!(output.stderr.contains("--only failed selected no node from the results given"), "{output:?}");
    assert!(!output.stderr.contains("--dt"), "{output:?}");
}

/// Regression: lapin's own ERROR lines reached stderr before Baton's message (a wrong password,
/// a wrong `-T`), and a collective typo read as a refusal of an exchange.
#[test]
fn broker_refusals_are_worded_once_and_a_wrong_collective_is_named() {
    let fleet = Fleet::start(vec![NodeSpec::new("here01", json!({}), &[])]);
    let output = fleet.baton(&["ping", "-T", "nosuchcollective"]);
    assert_eq!(output.code, 5, "{output:?}");
    assert_eq!(output.stderr.lines().count(), 1, "only Baton's own message: {output:?}");
    assert!(
        output
            .stderr
            .starts_with("baton: error: collective \"nosuchcollective\" does not exist on this broker"),
        "{output:?}"
    );

    let url = broker().var("BATON_RABBITMQ_CLIENT_URL");
    let (credentials, host) = url.split_once('@').expect("URL with credentials");
    let user = credentials.rsplit_once(':').expect("user:password").0;
    let wrong = fleet.dir.path().join("wrong-password.toml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(fleet.client_config(""))
            .expect("client config")
            .replace(&url, &format!("{user}:wrong@{host}")),
    )
    .expect("write config");
    let output = run_baton(&wrong, &["ping"], None);
    assert_eq!(output.code, 5, "{output:?}");
    assert_eq!(output.stderr.lines().count(), 1, "only Baton's own message: {output:?}");
    assert!(output.stderr.contains("broker refused login for user"), "{output:?}");
}

/// Regression: SIGHUP reloaded the agents from the directory the node started with; a changed
/// `agents.dir` in the configuration was ignored until a restart.
#[test]
fn sighup_follows_a_changed_agents_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = install_agents(&dir.path().join("first"), &["hello"]);
    let second = install_agents(&dir.path().join("second"), &["diskfree"]);
    let agents_table =
        |agents: &std::path::Path| format!("[agents]\ndir = {:?}\n", agents.display().to_string());
    let fleet = Fleet::start_in(
        dir,
        None,
        vec![NodeSpec::new("moved01", json!({}), &[]).with_config(&agents_table(&first))],
    );
    let output = fleet.baton(&["rpc", "diskfree", "usage", "-I", "moved01", "--json"]);
    assert_eq!(output.code, 1, "not there yet: {output:?}");

    let config = fleet.node("moved01").dir.join("node.toml");
    let text = std::fs::read_to_string(&config).expect("node config");
    std::fs::write(&config, text.replace(&agents_table(&first), &agents_table(&second)))
        .expect("rewrite config");
    let pid = fleet.node("moved01").child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = fleet.baton(&["rpc", "diskfree", "usage", "-I", "moved01", "--json"]);
        if output.code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents.dir not followed: {output:?}\n{}",
            fleet.node("moved01").log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(fleet.node("moved01").log().contains("agents.dir changed"), "{}", fleet.node("moved01").log());
    let output = fleet.baton(&["rpc", "hello", "greet", "name=x", "-I", "moved01", "--json"]);
    assert_eq!(output.code, 1, "the old directory's agent is gone: {output:?}");
}

/// Runs `baton` for `fleet` with its request records under `state`.
fn baton_with_state(fleet: &Fleet, state: &std::path::Path, args: &[&str]) -> crate::harness::BatonOutput {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--config")
        .arg(fleet.client_config(""))
        .args(args)
        .env_remove("BATON_LOG")
        .env("XDG_STATE_HOME", state)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run baton");
    crate::harness::BatonOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sends `rpcutil get_fact fact=role` to later01 and later02 with replies to the queue
/// `later`, and returns the request id.
fn send_to_both(fleet: &Fleet, state: &std::path::Path) -> String {
    let sent = baton_with_state(
        fleet,
        state,
        &["rpc", "rpcutil", "get_fact", "fact=role", "-I", "later01", "-I", "later02", "--reply-to", "later"],
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    let id = sent.stdout.lines().find_map(|line| line.strip_prefix("Request sent with id: "));
    id.unwrap_or_else(|| panic!("no request id: {sent:?}")).to_owned()
}

/// Regression: `baton replies --request ID` lost what the live command showed (no per-node
/// lines, no summaries, `aggregates: {}`, the display policy ignored), and request records
/// were never removed.
#[test]
fn collected_replies_show_what_the_live_command_showed_and_records_go_away() {
    let fleet = Fleet::start(vec![
        NodeSpec::new("later01", json!({"role": "web"}), &[]),
        NodeSpec::new("later02", json!({"role": "db"}), &[]),
    ]);
    let state = tempfile::tempdir().expect("state dir");
    let records = state.path().join("baton/requests");
    std::fs::create_dir_all(&records).expect("records dir");
    // A record from long ago, whose replies nobody will collect: expired by the next collection.
    let stale = records.join(format!("{}.json", uuid::Uuid::new_v4()));
    let stale_record = json!({"request_id": stale.file_stem().and_then(|stem| stem.to_str()), "name": "old",
        "queue": "x.reply.old", "collective": "x", "agent": "rpcutil", "action": "ping",
        "targets": ["gone01"], "unreachable": [], "sent_ms": 1});
    std::fs::write(&stale, stale_record.to_string()).expect("stale record");

    let request_id = send_to_both(&fleet, state.path());
    let record = records.join(format!("{request_id}.json"));
    assert!(record.is_file(), "the request is recorded");

    let collected = baton_with_state(
        &fleet,
        state.path(),
        &["replies", "later", "--request", &request_id, "--wait", "20"],
    );
    assert_eq!(collected.code, 0, "{collected:?}");
    for line in ["later01", "later02", "web", "db", "Summary of Value:", "Finished processing 2 / 2 nodes"] {
        assert!(collected.stdout.contains(line), "{line:?} missing: {collected:?}");
    }
    assert!(!record.exists(), "every expected reply was collected: the record is removed");
    assert!(!stale.exists(), "a record older than request_records_days is removed");

    // The same in JSON: the aggregates the definition declares.
    let request_id = send_to_both(&fleet, state.path());
    let collected = baton_with_state(
        &fleet,
        state.path(),
        &["replies", "later", "--request", &request_id, "--wait", "20", "--json"],
    );
    assert_eq!(collected.code, 0, "{collected:?}");
    let document = collected.json();
    assert_eq!(
        document["requests"][0]["aggregates"]["value"]["counts"],
        json!({"db": 1, "web": 1}),
        "{document}"
    );

    // A node that is down still owes its reply: the record keeps only that node.
    let mut fleet = fleet;
    fleet.kill("later02");
    let request_id = send_to_both(&fleet, state.path());
    let collected = baton_with_state(
        &fleet,
        state.path(),
        &["replies", "later", "--request", &request_id, "--wait", "3"],
    );
    assert_eq!(collected.code, 3, "later02 did not answer: {collected:?}");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(records.join(format!("{request_id}.json"))).expect("the record stays"),
    )
    .expect("record JSON");
    assert_eq!(record["targets"], json!(["later02"]), "{record}");
}

/// Starts `baton` for `fleet` with stdout piped, as a person or a script would run it.
fn spawn_baton(fleet: &Fleet, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--config")
        .arg(fleet.client_config(""))
        .args(args)
        .env_remove("BATON_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn baton")
}

fn interrupt(child: &std::process::Child) {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
}

/// Regression: Ctrl-C during a wait killed baton with nothing printed; it now prints what is
/// known, names the nodes still awaited and exits with the matching code (3: they did not
/// reply).
#[test]
fn ctrl_c_during_a_wait_prints_what_is_known_and_the_nodes_still_awaited() {
    let mut fleet = Fleet::start(vec![
        NodeSpec::new("quick01", json!({}), &[]),
        NodeSpec::new("asleep01", json!({}), &[]),
    ]);
    fleet.kill("asleep01");
    let args = ["rpc", "rpcutil", "daemon_stats", "-I", "quick01", "-I", "asleep01", "-t", "120"];

    // A script: the reply streams, then Ctrl-C ends the wait with an `interrupted` line.
    let mut jsonl_args = args.to_vec();
    jsonl_args.push("--jsonl");
    let mut child = spawn_baton(&fleet, &jsonl_args);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().expect("stdout")));
    let reply =
        lines.by_ref().map(|line| line.expect("a line")).find(|line| line.contains("\"type\":\"reply\""));
    assert!(reply.is_some_and(|line| line.contains("quick01")), "quick01's reply streams first");
    interrupt(&child);
    let rest: Vec<String> = lines.map(|line| line.expect("a line")).collect();
    let status = child.wait().expect("baton ends");
    assert_eq!(status.code(), Some(3), "{rest:?}");
    let last: serde_json::Value = serde_json::from_str(rest.last().expect("a last line")).expect("JSON line");
    assert_eq!(last["type"], "interrupted", "{last}");
    assert_eq!(last["awaited"], json!(["asleep01"]), "{last}");
    assert_eq!(last["stats"]["ok"], 1, "{last}");

    // A person: once quick01 has run the request, Ctrl-C prints the summary so far (whether
    // quick01's reply is in by then is a race, so only asleep01 is certain to be awaited).
    let audited = || {
        let audit = fleet.node("quick01").audit_lines();
        audit.iter().filter(|line| line["action"] == "daemon_stats").count()
    };
    let before = audited();
    let child = spawn_baton(&fleet, &args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while audited() == before {
        assert!(Instant::now() < deadline, "quick01 never got the request");
        std::thread::sleep(Duration::from_millis(100));
    }
    interrupt(&child);
    let output = child.wait_with_output().expect("baton ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("Interrupted: ") && stdout.contains("/ 2 nodes answered, 0 failed"), "{stdout}");
    let awaited = stdout.split_once("Still awaited, ").map(|(_, rest)| rest).unwrap_or_default();
    assert!(awaited.contains("asleep01"), "{stdout}");
}

/// Regression: on a terminal the finished progress bar was left in place, and the first result
/// line was written after it. The bar is drawn at its final count, then cleared (the console
/// crate's `\r\x1b[2K`) before the first result line.
#[test]
fn the_progress_bar_is_cleared_before_the_first_result_line() {
    let fleet =
        Fleet::start(vec![NodeSpec::new("bar01", json!({}), &[]), NodeSpec::new("bar02", json!({}), &[])]);
    let (code, terminal) =
        crate::rollout::in_terminal(&fleet, &["rpc", "rpcutil", "ping", "-I", "bar01", "-I", "bar02"], true);
    assert_eq!(code, 0, "{terminal:?}");
    let bar = terminal.rfind("] 2 / 2").unwrap_or_else(|| panic!("the bar reaches 2 / 2: {terminal:?}"));
    let result_line = format!("{:<40} OK", "bar01");
    let first_result = terminal.find(&result_line).unwrap_or_else(|| panic!("a line per node: {terminal:?}"));
    assert!(bar < first_result, "{terminal:?}");
    assert!(terminal[bar..first_result].contains("\r\x1b[2K"), "the bar is cleared first: {terminal:?}");
}

/// Regression: a rollout showed nothing per node until the end. Each batch's results are
/// printed as it finishes, naming the nodes that failed or did not respond.
#[test]
fn a_rollout_shows_each_batch_as_it_finishes() {
    let mut fleet = Fleet::start(vec![
        NodeSpec::new("step01", json!({}), &[]),
        NodeSpec::new("step02", json!({}), &[]),
        NodeSpec::new("step03", json!({}), &[]),
    ]);
    fleet.kill("step03");
    let output = fleet.baton(&[
        "rpc",
        "rpcutil",
        "ping",
        "-I",
        "step01",
        "-I",
        "step02",
        "-I",
        "step03",
        "--batch",
        "1",
        "--batch-sleep",
        "0",
        "-t",
        "2",
    ]);
    assert_eq!(output.code, 3, "{output:?}");
    let first = output.stdout.find("Batch 1/3 done in").unwrap_or_else(|| panic!("{output:?}"));
    let second = output.stdout.find("Batch 2/3: step02").unwrap_or_else(|| panic!("{output:?}"));
    assert!(first < second, "batch 1's results come before batch 2 starts: {output:?}");
    assert!(output.stdout.contains(": 1 ok, 0 failed, 0 no response"), "{output:?}");
    assert!(output.stdout.contains("Batch 3/3 done in"), "{output:?}");
    assert!(output.stdout.contains(": 0 ok, 0 failed, 1 no response; no response: step03"), "{output:?}");
}

/// Regression: on a terminal nothing said which nodes a wait was for; beside the progress bar
/// the nodes still awaited are named.
#[test]
fn a_terminal_names_the_nodes_still_awaited() {
    let mut fleet = Fleet::start(vec![
        NodeSpec::new("wake01", json!({}), &[]),
        NodeSpec::new("sleepy01", json!({}), &[]),
    ]);
    fleet.kill("sleepy01");
    let (code, terminal) = crate::rollout::in_terminal(
        &fleet,
        &["rpc", "rpcutil", "ping", "-I", "wake01", "-I", "sleepy01", "-t", "3"],
        true,
    );
    assert_eq!(code, 3, "{terminal:?}");
    assert!(terminal.contains("] 1 / 2 waiting for: sleepy01"), "{terminal:?}");
}
