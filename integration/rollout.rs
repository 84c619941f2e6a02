//! Rollouts, exit codes, streaming, pipelines, the terminal and fire-and-forget, against a
//! real broker and real nodes.
//!
//! The failing action is a real failure path on the nodes: `service status` (or `restart`) of
//! a service that is not installed, so every node that receives it answers status 1 (aborted,
//! "no such service") without changing anything, and writes an audit line. (An unknown action
//! no longer reaches the nodes: the client checks actions against agent definitions first.)
//! Silent nodes are real too: killed `batond` processes whose queues remain on the broker.
//! Which nodes received a request is read from the nodes' own audit logs, never inferred from
//! the client's output.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{BatonOutput, Fleet, NodeSpec};

/// Twelve nodes, n01 to n12, in one collective.
fn twelve_nodes() -> Fleet {
    Fleet::start(
        (1..=12)
            .map(|index| {
                let role = if index % 3 == 0 { "db" } else { "web" };
                NodeSpec::new(&format!("n{index:02}"), json!({"role": role, "index": index}), &["base"])
            })
            .collect(),
    )
}

/// A node list file naming every node of the fleet, so that killed nodes stay targeted
/// (broadcast discovery would simply not find them).
fn all_nodes_file(fleet: &Fleet) -> String {
    let path = fleet.dir.path().join(format!("all-{}.txt", uuid::Uuid::new_v4().simple()));
    let names: Vec<&str> = fleet.nodes.iter().map(|node| node.spec.identity.as_str()).collect();
    std::fs::write(&path, names.join("\n")).expect("write node list");
    path.to_str().expect("utf-8 path").to_string()
}

fn three_nodes() -> Fleet {
    Fleet::start(vec![
        NodeSpec::new("web01", json!({"role": "web"}), &["nginx"]),
        NodeSpec::new("web02", json!({"role": "web"}), &["nginx"]),
        NodeSpec::new("db01", json!({"role": "db"}), &["postgresql"]),
    ])
}

/// Runs `baton` with extra environment variables (and `NO_COLOR`, `XDG_STATE_HOME` removed
/// unless given), optionally feeding stdin.
pub fn baton_env(fleet: &Fleet, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> BatonOutput {
    let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
    command
        .arg("--config")
        .arg(fleet.client_config(""))
        .args(args)
        .env_remove("BATON_LOG")
        .env_remove("NO_COLOR")
        .env_remove("XDG_STATE_HOME");
    for (name, value) in env {
        command.env(name, value);
    }
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn baton");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("baton output");
    BatonOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The audit lines of every node for one request id, as (node, time) pairs.
pub fn audited(fleet: &Fleet, request_id: &str) -> BTreeMap<String, String> {
    let mut seen = BTreeMap::new();
    for node in &fleet.nodes {
        for line in node.audit_lines() {
            if line["request_id"] == request_id {
                seen.insert(
                    node.spec.identity.clone(),
                    line["time"].as_str().expect("audit time").to_string(),
                );
            }
        }
    }
    seen
}

/// Every node that has an audit line for `agent#action` at all.
pub fn nodes_that_saw(fleet: &Fleet, agent: &str, action: &str) -> Vec<String> {
    fleet
        .nodes
        .iter()
        .filter(|node| {
            node.audit_lines().iter().any(|line| line["agent"] == agent && line["action"] == action)
        })
        .map(|node| node.spec.identity.clone())
        .collect()
}

/// Milliseconds since the epoch of an audit time (`2024-05-01T12:00:00.123Z`).
fn audit_ms(time: &str) -> i64 {
    let (date, clock) = time.trim_end_matches('Z').split_once('T').expect("RFC 3339 time");
    let parts: Vec<i64> = date.split('-').map(|part| part.parse().expect("date")).collect();
    let (year, month, day) = (parts[0], parts[1], parts[2]);
    // Days from civil (Howard Hinnant's algorithm), enough for comparing times.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (hms, millis) = clock.split_once('.').unwrap_or((clock, "0"));
    let hms: Vec<i64> = hms.split(':').map(|part| part.parse().expect("time")).collect();
    ((days * 24 + hms[0]) * 60 + hms[1]) * 60_000 + hms[2] * 1000 + millis.parse::<i64>().expect("millis")
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn batches_run_in_the_shown_order_with_the_sleep_between_them() {
    let fleet = twelve_nodes();
    let output = fleet.baton(&[
        "rpc",
        "rpcutil",
        "ping",
        "--batch",
        "4",
        "--batch-sleep",
        "1",
        "--limit-seed",
        "7",
        "--json",
    ]);
    assert_eq!(output.code, 0, "{output:?}");
    let document = output.json();
    let all: Vec<String> = fleet.nodes.iter().map(|node| node.spec.identity.clone()).collect();
    let expected_order = baton::client::rollout::order_targets(&all, None, Some(7)).nodes;
    let batches = document["batches"].as_array().expect("batches");
    assert_eq!(batches.len(), 3, "{document}");
    let shown: Vec<String> = batches.iter().flat_map(|batch| strings(&batch["nodes"])).collect();
    assert_eq!(shown, expected_order, "batches follow the seed's order");
    assert_ne!(shown, all, "seed 7 does not happen to leave the nodes sorted");
    assert_eq!(document["selection"]["seed"], 7);

    // The nodes' audit logs: every node of batch k decided before any node of batch k+1, and
    // at least most of the batch sleep lies between them (the audit line is written around
    // the reply, a little after the client may have started sleeping).
    let mut previous_last: Option<i64> = None;
    for batch in batches {
        let request_id = batch["request_id"].as_str().expect("request id");
        let seen = audited(&fleet, request_id);
        let mut nodes: Vec<String> = seen.keys().cloned().collect();
        nodes.sort();
        let mut planned = strings(&batch["nodes"]);
        planned.sort();
        assert_eq!(nodes, planned, "exactly the batch's nodes got batch {}", batch["index"]);
        let times: Vec<i64> = seen.values().map(|time| audit_ms(time)).collect();
        let first = *times.iter().min().expect("times");
        let last = *times.iter().max().expect("times");
        if let Some(previous_last) = previous_last {
            assert!(
                first - previous_last >= 500,
                "batch {} started {} ms after the previous batch's last audit line; the sleep is 1000 ms",
                batch["index"],
                first - previous_last
            );
        }
        previous_last = Some(last);
    }

    // People see the same order, one line per batch.
    let human =
        fleet.baton(&["rpc", "rpcutil", "ping", "--batch", "4", "--batch-sleep", "0", "--limit-seed", "7"]);
    assert_eq!(human.code, 0, "{human:?}");
    for (index, chunk) in expected_order.chunks(4).enumerate() {
        let line = format!("Batch {}/3: {}", index + 1, chunk.join(" "));
        assert!(human.stdout.contains(&line), "missing {line:?}:\n{}", human.stdout);
    }
    assert!(human.stdout.contains("Finished processing 12 / 12 nodes in"), "{human:?}");
}

#[test]
fn max_failures_stops_the_rollout_and_later_batches_never_receive_the_request() {
    let fleet = twelve_nodes();
    // Batch 1 fails on all 3 nodes: 3 failures exceed 2, so batches 2 to 4 are never sent.
    let output = fleet.baton(&[
        "rpc",
        "service",
        "status",
        "service=baton-absent",
        "--batch",
        "3",
        "--batch-sleep",
        "0",
        "--max-failures",
        "2",
        "--json",
    ]);
    assert_eq!(output.code, 1, "{output:?}");
    let document = output.json();
    assert_eq!(document["batches"].as_array().map(Vec::len), Some(1), "{document}");
    assert_eq!(document["stopped"]["failures"], 3, "{document}");
    assert_eq!(document["stopped"]["max_failures"], 2, "{document}");
    assert_eq!(document["stats"]["failed"], 3);
    assert_eq!(document["stats"]["skipped"], 9);
    assert_eq!(document["stats"]["planned_batches"], 4);
    let first_batch = strings(&document["batches"][0]["nodes"]);
    assert_eq!(first_batch, ["n01", "n02", "n03"], "without a seed batches follow the sorted targets");
    let skipped = strings(&document["skipped"]);
    assert_eq!(skipped, ["n04", "n05", "n06", "n07", "n08", "n09", "n10", "n11", "n12"]);
    assert_eq!(strings(&document["targeted"]).len(), 12);
    for reply in document["replies"].as_array().expect("replies") {
        assert_eq!(reply["status"], 1, "{reply}");
    }
    assert_eq!(
        nodes_that_saw(&fleet, "service", "status"),
        first_batch,
        "only batch 1 ever received the request"
    );

    // A percentage, and failures counted across batches: 25% of 12 tolerates 3; batch 1
    // brings 2 failures, batch 2 brings the 4th, so batch 3 is never sent.
    let output = fleet.baton(&[
        "rpc",
        "service",
        "restart",
        "service=baton-absent",
        "--yes",
        "--batch",
        "2",
        "--batch-sleep",
        "0",
        "--max-failures",
        "25%",
        "--json",
    ]);
    assert_eq!(output.code, 1, "{output:?}");
    let document = output.json();
    assert_eq!(document["batches"].as_array().map(Vec::len), Some(2), "{document}");
    assert_eq!(document["stopped"]["failures"], 4);
    assert_eq!(document["stopped"]["max_failures"], 3);
    assert_eq!(nodes_that_saw(&fleet, "service", "restart"), ["n01", "n02", "n03", "n04"]);

    // People see why it stopped, and which nodes were skipped.
    let human = fleet.baton(&[
        "rpc",
        "service",
        "stop",
        "service=baton-absent",
        "--yes",
        "--batch",
        "6",
        "--batch-sleep",
        "0",
        "--max-failures",
        "0",
    ]);
    assert_eq!(human.code, 1, "{human:?}");
    assert!(human.stdout.contains("Batch 1/2: n01 n02 n03 n04 n05 n06"), "{human:?}");
    assert!(!human.stdout.contains("Batch 2/2"), "{human:?}");
    assert!(
        human.stdout.contains("Rollout stopped: 6 failure(s) after batch 1 exceed --max-failures 0"),
        "{human:?}"
    );
    assert!(human.stdout.contains("Skipped 6 node(s), never sent the request"), "{human:?}");
    assert!(human.stdout.contains("n07") && human.stdout.contains("n12"), "{human:?}");
    assert!(human.stdout.contains("Request Aborted"), "failures are listed per node: {human:?}");
    assert!(human.stdout.contains("Finished processing 6 / 12 nodes in"), "{human:?}");
}

#[test]
fn silent_nodes_count_as_failures_for_max_failures() {
    let mut fleet = twelve_nodes();
    fleet.kill("n02");
    let all = all_nodes_file(&fleet);
    let output = fleet.baton(&[
        "rpc",
        "rpcutil",
        "ping",
        "--nodes",
        &all,
        "--batch",
        "4",
        "--batch-sleep",
        "0",
        "--max-failures",
        "0",
        "-t",
        "2",
        "--json",
    ]);
    assert_eq!(output.code, 1, "a stopped rollout exits 1 even when no reply failed: {output:?}");
    let document = output.json();
    assert_eq!(strings(&document["no_response"]), ["n02"]);
    assert_eq!(document["stats"]["failed"], 0);
    assert_eq!(document["stats"]["ok"], 3);
    assert_eq!(document["stats"]["skipped"], 8);
}

#[test]
fn every_exit_code_comes_with_one_valid_json_document() {
    let mut fleet = three_nodes();
    let check = |output: &BatonOutput, code: i32, what: &str| {
        assert_eq!(output.code, code, "{what}: {output:?}");
        let document = output.json();
        if code == 2 || code == 5 {
            assert_eq!(document["exit_code"], code, "{what}: {document}");
            assert!(document["error"].as_str().is_some_and(|error| !error.is_empty()), "{what}: {document}");
        } else {
            assert!(document["stats"].is_object(), "{what}: {document}");
            assert!(document["aggregates"].is_object(), "{what}: {document}");
        }
        document
    };
    check(&fleet.baton(&["rpc", "rpcutil", "ping", "--json"]), 0, "all OK");
    check(
        &fleet.baton(&["rpc", "service", "status", "service=baton-absent", "-I", "web01", "--json"]),
        1,
        "a failure",
    );
    check(
        &fleet.baton(&[
            "rpc",
            "rpcutil",
            "ping",
            "--batch",
            "1",
            "--batch-sleep",
            "0",
            "--max-failures",
            "0",
            "-I",
            "nosuchnode",
            "-I",
            "web01",
            "--json",
        ]),
        1,
        "a stopped rollout",
    );
    check(&fleet.baton(&["rpc", "rpcutil", "ping", "-S", "role=web and (", "--json"]), 2, "a bad filter");
    check(&fleet.baton(&["rpc", "rpcutil", "ping", "--batch", "lots", "--json"]), 2, "a bad --batch (clap)");
    check(&fleet.baton(&["rpc", "rpcutil", "ping", "--batch", "0", "--json"]), 2, "--batch 0");
    check(
        &fleet.baton_with_stdin(
            &["rpc", "rpcutil", "ping", "--dm", "stdin", "--only", "failed", "--json"],
            "web01\n",
        ),
        2,
        "--only on a plain list",
    );
    check(
        &fleet.baton(&["rpc", "rpcutil", "ping", "--only", "failed", "--json"]),
        2,
        "--only without results",
    );
    check(&fleet.baton(&["rpc", "rpcutil", "ping", "--reply-to", "a.b", "--json"]), 2, "a bad queue name");
    check(&fleet.baton(&["rpc", "rpcutil", "ping", "-F", "role=mainframe", "--json"]), 4, "nothing matched");
    fleet.kill("db01");
    let silent = check(
        &fleet.baton(&["rpc", "rpcutil", "ping", "-I", "web01", "-I", "db01", "-t", "2", "--json"]),
        3,
        "a silent node",
    );
    assert_eq!(silent["no_response"], json!(["db01"]));

    let unreachable_broker = fleet.dir.path().join("down.toml");
    let config = std::fs::read_to_string(fleet.client_config("")).expect("client config");
    let url = fleet.wire.client_url.clone();
    let down = url.replacen(
        url.split('@').nth(1).and_then(|rest| rest.split('/').next()).expect("host:port"),
        "127.0.0.1:1",
        1,
    );
    std::fs::write(&unreachable_broker, config.replace(&url, &down)).expect("write config");
    let output = crate::harness::run_baton(&unreachable_broker, &["rpc", "rpcutil", "ping", "--json"], None);
    check(&output, 5, "the broker is down");
    let output = crate::harness::run_baton(&unreachable_broker, &["rpc", "rpcutil", "ping", "--jsonl"], None);
    assert_eq!(output.code, 5, "{output:?}");
    for line in output.stdout.lines() {
        let line: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
        assert_eq!(line["exit_code"], 5);
    }
}

#[test]
fn jsonl_lines_arrive_as_the_replies_arrive() {
    let fleet = twelve_nodes();
    // Six batches with a pause between them: the first reply line must be readable while
    // baton is still running, long before the summary line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--config")
        .arg(fleet.client_config(""))
        .args(["rpc", "rpcutil", "ping", "--batch", "2", "--batch-sleep", "1", "--jsonl"])
        .env_remove("BATON_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut before_first_reply = Vec::new();
    loop {
        let line = lines.next().expect("a line before the end").expect("read line");
        let parsed: Value = serde_json::from_str(&line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
        if parsed["type"] == "reply" {
            break;
        }
        before_first_reply.push(parsed);
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "baton had already exited when its first reply line was read"
    );
    assert!(
        before_first_reply.iter().any(|line| line["type"] == "batch_started" && line["index"] == 1),
        "{before_first_reply:?}"
    );
    let rest: Vec<Value> =
        lines.map(|line| serde_json::from_str(&line.expect("read line")).expect("JSON line")).collect();
    assert!(child.wait().expect("wait").success());
    let kinds: Vec<&str> = rest.iter().map(|line| line["type"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds.iter().filter(|kind| **kind == "reply").count(), 11, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|kind| **kind == "batch_finished").count(), 6, "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"summary"), "{kinds:?}");
    let summary = rest.last().expect("summary");
    assert_eq!((summary["ok"].as_u64(), summary["batches"].as_u64()), (Some(12), Some(6)), "{summary}");
}

#[test]
fn discover_then_act_and_retry_only_what_failed() {
    let mut fleet = twelve_nodes();
    // Discover, then act on exactly what was discovered.
    let discovered = fleet.baton(&["discover", "-F", "role=db", "--json"]);
    assert_eq!(discovered.code, 0, "{discovered:?}");
    let acted =
        fleet.baton_with_stdin(&["rpc", "rpcutil", "ping", "--dm", "stdin", "--json"], &discovered.stdout);
    assert_eq!(acted.code, 0, "{acted:?}");
    assert_eq!(acted.nodes("targeted"), ["n03", "n06", "n09", "n12"]);

    // A rollout that stops: 3 failed, 9 skipped. Retry each set on its own.
    let stopped = fleet.baton(&[
        "rpc",
        "service",
        "status",
        "service=baton-absent",
        "--batch",
        "3",
        "--batch-sleep",
        "0",
        "--max-failures",
        "0",
        "--json",
    ]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    let cases: &[(&str, &[&str])] = &[
        ("failed", &["n01", "n02", "n03"]),
        ("skipped", &["n04", "n05", "n06", "n07", "n08", "n09", "n10", "n11", "n12"]),
        ("ok", &[]),
    ];
    for (set, expected) in cases {
        let retry = fleet.baton_with_stdin(
            &["rpc", "rpcutil", "ping", "--dm", "stdin", "--only", set, "--json"],
            &stopped.stdout,
        );
        let expected_code = if expected.is_empty() { 4 } else { 0 };
        assert_eq!(retry.code, expected_code, "--only {set}: {retry:?}");
        assert_eq!(retry.nodes("targeted"), *expected, "--only {set}");
    }
    let not_ok = fleet.baton_with_stdin(
        &["rpc", "rpcutil", "ping", "--dm", "stdin", "--only", "not_ok", "--json"],
        &stopped.stdout,
    );
    assert_eq!(not_ok.nodes("targeted").len(), 12, "{not_ok:?}");

    // Silent nodes, retried from a file of --jsonl output.
    fleet.kill("n05");
    fleet.kill("n11");
    let all = all_nodes_file(&fleet);
    let partial = fleet.baton(&["rpc", "rpcutil", "ping", "--nodes", &all, "-t", "2", "--jsonl"]);
    assert_eq!(partial.code, 3, "{partial:?}");
    let saved = fleet.dir.path().join("partial.jsonl");
    std::fs::write(&saved, &partial.stdout).expect("save run");
    let saved = saved.to_str().expect("utf-8 path");
    let retry = fleet.baton(&[
        "rpc",
        "rpcutil",
        "ping",
        "--nodes",
        saved,
        "--only",
        "no_response",
        "-t",
        "2",
        "--json",
    ]);
    assert_eq!(retry.code, 3, "{retry:?}");
    assert_eq!(retry.nodes("targeted"), ["n05", "n11"]);
    let healthy = fleet.baton(&["rpc", "rpcutil", "ping", "--nodes", saved, "--only", "ok", "--json"]);
    assert_eq!(healthy.code, 0, "{healthy:?}");
    assert_eq!(healthy.nodes("targeted").len(), 10);
}

/// Runs `baton` inside a real pseudo-terminal with `script` and returns what the terminal
/// received.
pub(crate) fn in_terminal(fleet: &Fleet, args: &[&str], no_color: bool) -> (i32, String) {
    in_terminal_typing(fleet, args, no_color, None)
}

/// As [`in_terminal`], with `typed` typed at the terminal (`script` passes its stdin on).
pub(crate) fn in_terminal_typing(
    fleet: &Fleet,
    args: &[&str],
    no_color: bool,
    typed: Option<&str>,
) -> (i32, String) {
    let config = fleet.client_config("");
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_baton").to_string())
        .chain(["--config".to_string(), config.display().to_string()])
        .chain(args.iter().map(|arg| arg.to_string()))
        .map(|arg| format!("'{}'", arg.replace('\'', "'\\''")))
        .collect();
    let mut command = Command::new("script");
    command
        .args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"])
        .env_remove("BATON_LOG")
        .env("TERM", "xterm");
    if no_color {
        command.env("NO_COLOR", "1");
    } else {
        command.env_remove("NO_COLOR");
    }
    command.stdin(if typed.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped());
    let mut child = command.spawn().expect("run script (util-linux)");
    if let Some(text) = typed {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("type at the terminal");
    }
    let output = child.wait_with_output().expect("script's output");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `baton rpc` of an action not declared read-only, on more than `confirm_above` nodes (10 by
/// default), asks first at a terminal; without one it refuses unless given `--yes`. What was
/// sent is read from the nodes' audit logs.
#[test]
fn a_change_to_many_nodes_is_confirmed_first() {
    let fleet = twelve_nodes();
    let change = ["rpc", "service", "restart", "service=baton-absent", "--no-progress"];

    // A pipe (CI) and no --yes: exit 2, nothing sent, and the message says what to add.
    let refused = fleet.baton(&change);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("would run on 12 nodes"), "{refused:?}");
    assert!(refused.stderr.contains("add --yes"), "{refused:?}");
    let json = fleet.baton(&[&change[..], &["--json"]].concat());
    assert_eq!(json.code, 2, "{json:?}");
    assert_eq!(json.json()["exit_code"], 2, "{json:?}");
    assert!(nodes_that_saw(&fleet, "service", "restart").is_empty(), "nothing was sent");

    // Read-only actions never ask; nor does a change to at most confirm_above nodes.
    let status = fleet.baton(&["rpc", "service", "status", "service=baton-absent", "--no-progress"]);
    assert_eq!(status.code, 1, "sent to all 12 without asking: {status:?}");
    assert_eq!(nodes_that_saw(&fleet, "service", "status").len(), 12);
    let few = fleet.baton(&[&change[..], &["--limit", "10"]].concat());
    assert_eq!(few.code, 1, "10 nodes are not more than confirm_above: {few:?}");
    assert_eq!(nodes_that_saw(&fleet, "service", "restart").len(), 10);

    // At a terminal: the question names the action and the count; anything but yes sends
    // nothing.
    let (code, terminal) =
        in_terminal_typing(&fleet, &["rpc", "service", "stop", "service=baton-absent"], true, Some("n\n"));
    assert_eq!(code, 2, "{terminal}");
    assert!(terminal.contains("Run service stop on 12 nodes? [y/N]"), "{terminal:?}");
    assert!(terminal.contains("not confirmed; nothing was sent"), "{terminal:?}");
    assert!(nodes_that_saw(&fleet, "service", "stop").is_empty(), "declined, nothing sent");
    let (code, terminal) =
        in_terminal_typing(&fleet, &["rpc", "service", "stop", "service=baton-absent"], true, Some("y\n"));
    assert_eq!(code, 1, "sent, and every node answers that the service is absent: {terminal}");
    assert!(terminal.contains("Run service stop on 12 nodes? [y/N]"), "{terminal:?}");
    assert_eq!(nodes_that_saw(&fleet, "service", "stop").len(), 12);

    // --yes answers for the person, at a terminal or not.
    let yes = fleet.baton(&["rpc", "service", "start", "service=baton-absent", "--yes", "--no-progress"]);
    assert_eq!(yes.code, 1, "{yes:?}");
    assert_eq!(nodes_that_saw(&fleet, "service", "start").len(), 12);
}

#[test]
fn a_terminal_gets_the_progress_bar_and_colour_and_a_pipe_gets_plain_text() {
    let fleet = twelve_nodes();
    let args = ["rpc", "rpcutil", "ping", "--batch", "4", "--batch-sleep", "0.5"];
    let (code, terminal) = in_terminal(&fleet, &args, false);
    assert_eq!(code, 0, "{terminal}");
    assert!(terminal.contains("] 12 / 12"), "the terminal shows the finished bar:\n{terminal:?}");
    assert!(terminal.contains("[ ===="), "the terminal shows the bar:\n{terminal:?}");
    assert!(terminal.contains('\x1b'), "the bar redraws with escape codes:\n{terminal:?}");
    assert!(terminal.contains("Finished processing 12 / 12 nodes in"), "{terminal:?}");
    assert!(terminal.contains("Batch 3/3: n09 n10 n11 n12"), "{terminal:?}");

    let piped = fleet.baton(&args);
    assert_eq!(piped.code, 0, "{piped:?}");
    for text in [&piped.stdout, &piped.stderr] {
        assert!(!text.contains('\x1b'), "escape codes in piped output: {text:?}");
        assert!(!text.contains("] 12 / 12") && !text.contains("[ ="), "a bar in piped output: {text:?}");
    }
    assert!(piped.stdout.contains("Finished processing 12 / 12 nodes in"), "{piped:?}");

    // Failures are red on a terminal, and plain with NO_COLOR.
    let failing = ["rpc", "service", "status", "service=baton-absent", "-I", "n01", "--no-progress"];
    let (code, coloured) = in_terminal(&fleet, &failing, false);
    assert_eq!(code, 1, "{coloured}");
    assert!(coloured.contains("\x1b[31mRequest Aborted\x1b[0m"), "{coloured:?}");
    let (code, plain) = in_terminal(&fleet, &failing, true);
    assert_eq!(code, 1, "{plain}");
    assert!(plain.contains("Request Aborted") && !plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn fire_and_forget_replies_are_collected_later() {
    let mut fleet = three_nodes();
    let state = tempfile::tempdir().expect("state dir");
    let state_home = state.path().to_str().expect("utf-8");
    let env = [("XDG_STATE_HOME", state_home)];
    let sent = baton_env(&fleet, &["rpc", "rpcutil", "ping", "--reply-to", "later", "--json"], &env, None);
    assert_eq!(sent.code, 0, "{sent:?}");
    let sent = sent.json();
    let request_id = sent["request_id"].as_str().expect("request id").to_string();
    assert_eq!(strings(&sent["targeted"]), ["db01", "web01", "web02"]);
    assert!(Path::new(sent["state_file"].as_str().expect("state file")).starts_with(state.path()), "{sent}");
    assert_eq!(sent["queue"], format!("{}.reply.later", fleet.collective));

    // A second request to the same queue. Collecting it first means reading past the first
    // request's three replies, which must stay in the queue for their own collection.
    let second = baton_env(
        &fleet,
        &["rpc", "service", "status", "service=baton-absent", "-I", "web01", "--reply-to", "later", "--json"],
        &env,
        None,
    );
    assert_eq!(second.code, 0, "{second:?}");
    let second_id = second.json()["request_id"].as_str().expect("request id").to_string();
    let collected = baton_env(
        &fleet,
        &["replies", "later", "--request", &second_id, "--wait", "10", "--json"],
        &env,
        None,
    );
    assert_eq!(collected.code, 1, "the reply is a failure: {collected:?}");
    let document = collected.json();
    assert_eq!(document["stats"]["put_back"], 3, "{document}");
    assert_eq!(document["requests"][0]["replies"][0]["status"], 1, "{document}");

    let collected = baton_env(
        &fleet,
        &["replies", "later", "--request", &request_id, "--wait", "10", "--json"],
        &env,
        None,
    );
    assert_eq!(collected.code, 0, "{collected:?}");
    let document = collected.json();
    let requests = document["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 1, "{document}");
    assert_eq!(requests[0]["request_id"], request_id.as_str());
    assert_eq!(strings(&requests[0]["targeted"]), ["db01", "web01", "web02"]);
    assert_eq!(requests[0]["stats"]["ok"], 3, "{document}");
    assert_eq!(requests[0]["no_response"], json!([]));

    // Collected replies are gone; without a state file nobody knows whom a request was sent
    // to, but its replies are still reported and set the exit code.
    let third = baton_env(
        &fleet,
        &["rpc", "service", "status", "service=baton-absent", "-I", "web02", "--reply-to", "later", "--json"],
        &env,
        None,
    );
    let third_id = third.json()["request_id"].as_str().expect("request id").to_string();
    let other_state = tempfile::tempdir().expect("state dir");
    let without_record = [("XDG_STATE_HOME", other_state.path().to_str().expect("utf-8"))];
    let collected = baton_env(
        &fleet,
        &["replies", "later", "--request", &third_id, "--wait", "10", "--json"],
        &without_record,
        None,
    );
    assert_eq!(collected.code, 1, "{collected:?}");
    let document = collected.json();
    let requests = document["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 1, "{document}");
    assert_eq!(requests[0]["targeted"], Value::Null);
    assert_eq!(
        strings(&json!(
            requests[0]["replies"]
                .as_array()
                .expect("replies")
                .iter()
                .map(|reply| reply["node"].clone())
                .collect::<Vec<_>>()
        )),
        ["web02"]
    );
    let empty = baton_env(&fleet, &["replies", "later", "--wait", "1", "--json"], &env, None);
    assert_eq!(empty.code, 4, "nothing left to collect: {empty:?}");
    assert_eq!(empty.json()["requests"], json!([]));

    // With the state file, a node that never answers is listed.
    let all = all_nodes_file(&fleet);
    fleet.kill("db01");
    let sent = baton_env(
        &fleet,
        &["rpc", "rpcutil", "ping", "--nodes", &all, "--reply-to", "later", "--json"],
        &env,
        None,
    );
    assert_eq!(sent.code, 0, "db01's queue still exists, so the request is routed: {sent:?}");
    let request_id = sent.json()["request_id"].as_str().expect("request id").to_string();
    let collected = baton_env(
        &fleet,
        &["replies", "later", "--request", &request_id, "--wait", "3", "--json"],
        &env,
        None,
    );
    assert_eq!(collected.code, 3, "{collected:?}");
    assert_eq!(collected.json()["requests"][0]["no_response"], json!(["db01"]));

    let human =
        baton_env(&fleet, &["rpc", "rpcutil", "ping", "-I", "web01", "--reply-to", "later"], &env, None);
    assert!(human.stdout.contains("Request sent with id: "), "{human:?}");
    assert!(human.stdout.contains("baton replies later --request "), "{human:?}");
}
