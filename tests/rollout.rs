//! Rollout planning, result sets and the CLI's script-facing edges, without a broker.

use baton::cli::exit::Exit;
use baton::client::discovery::{ResultSet, parse_node_input};
use baton::client::rollout::{Ordered, order_targets, plan_batches, plan_rollout};
use baton::client::{Amount, CallOutcome, RolloutOutcome, Stopped};
use serde_json::json;

fn check_amount(text: &str, expected: Result<Amount, &str>) {
    match (text.parse::<Amount>(), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{text:?}"),
        (Err(error), Err(fragment)) => {
            assert!(error.to_string().contains(fragment), "{text:?}: {error} should contain {fragment:?}")
        }
        (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn amounts_parse_as_counts_or_percentages() {
    check_amount("5", Ok(Amount::Count(5)));
    check_amount("0", Ok(Amount::Count(0)));
    check_amount(" 12 ", Ok(Amount::Count(12)));
    check_amount("20%", Ok(Amount::Percent(20)));
    check_amount("100%", Ok(Amount::Percent(100)));
    check_amount("0%", Ok(Amount::Percent(0)));
    check_amount("101%", Err("between 0 and 100"));
    check_amount("-1", Err("not a number of nodes"));
    check_amount("five", Err("not a number of nodes"));
    check_amount("%", Err("not a number of nodes"));
    check_amount("1.5", Err("not a number of nodes"));
}

fn check_share(amount: Amount, total: usize, at_least_one: usize, at_most: usize) {
    assert_eq!(amount.at_least_one_of(total), at_least_one, "{amount} of {total}, rounded up");
    assert_eq!(amount.at_most_of(total), at_most, "{amount} of {total}, rounded down");
}

#[test]
fn percentages_round_up_for_batches_and_down_for_tolerated_failures() {
    check_share(Amount::Count(3), 10, 3, 3);
    check_share(Amount::Count(30), 10, 10, 30);
    check_share(Amount::Count(0), 10, 1, 0);
    check_share(Amount::Percent(10), 15, 2, 1);
    check_share(Amount::Percent(10), 5, 1, 0);
    check_share(Amount::Percent(50), 3, 2, 1);
    check_share(Amount::Percent(100), 7, 7, 7);
    check_share(Amount::Percent(1), 0, 0, 0);
}

fn nodes(count: usize) -> Vec<String> {
    (1..=count).map(|index| format!("n{index:02}")).collect()
}

#[test]
fn without_a_seed_targets_are_sorted_and_deduplicated() {
    let given = vec!["web02".to_string(), "db01".to_string(), "web01".to_string(), "db01".to_string()];
    assert_eq!(
        order_targets(&given, None, None),
        Ordered { nodes: vec!["db01".into(), "web01".into(), "web02".into()], seed: None, candidates: 3 }
    );
}

#[test]
fn a_seed_gives_the_same_order_every_time_and_on_every_machine() {
    let all = nodes(10);
    let first = order_targets(&all, None, Some(42));
    assert_eq!(first, order_targets(&all, None, Some(42)));
    // Pinned (and checked against an independent SplitMix64 + Fisher-Yates): the shuffle algorithm is part of the CLI contract (`--limit-seed` reproduces a
    // subset across versions), so a change to it must show up here.
    assert_eq!(first.nodes, ["n09", "n04", "n07", "n06", "n05", "n01", "n10", "n03", "n02", "n08"]);
    let mut sorted = first.nodes.clone();
    sorted.sort();
    assert_eq!(sorted, all, "a shuffle is a permutation");
    assert_ne!(order_targets(&all, None, Some(43)).nodes, first.nodes);
    // The order does not depend on the order the targets were given in.
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(order_targets(&reversed, None, Some(42)), first);
}

#[test]
fn a_limit_takes_the_first_nodes_of_the_seeded_order_and_reports_its_seed() {
    let all = nodes(10);
    let limited = order_targets(&all, Some(Amount::Count(3)), Some(42));
    assert_eq!(limited.nodes, ["n09", "n04", "n07"]);
    assert_eq!((limited.seed, limited.candidates), (Some(42), 10));
    let percent = order_targets(&all, Some(Amount::Percent(25)), Some(42));
    assert_eq!(percent.nodes.len(), 3, "25% of 10 rounds up to 3");
    let unseeded = order_targets(&all, Some(Amount::Count(4)), None);
    let seed = unseeded.seed.expect("a limit without a seed draws one");
    assert_eq!(
        order_targets(&all, Some(Amount::Count(4)), Some(seed)),
        unseeded,
        "the drawn seed reproduces it"
    );
    assert_eq!(order_targets(&all, Some(Amount::Count(40)), Some(1)).nodes.len(), 10);
}

fn check_batches(total: usize, batch: Option<Amount>, sizes: &[usize]) {
    let all = nodes(total);
    let plan = plan_batches(&all, batch);
    let got: Vec<usize> = plan.iter().map(Vec::len).collect();
    assert_eq!(got, sizes, "{total} nodes, batch {batch:?}");
    assert_eq!(plan.concat(), all, "batches keep the order");
}

#[test]
fn batches_are_consecutive_slices_of_the_order() {
    check_batches(10, None, &[10]);
    check_batches(10, Some(Amount::Count(3)), &[3, 3, 3, 1]);
    check_batches(10, Some(Amount::Count(10)), &[10]);
    check_batches(10, Some(Amount::Count(50)), &[10]);
    check_batches(10, Some(Amount::Percent(20)), &[2, 2, 2, 2, 2]);
    check_batches(10, Some(Amount::Percent(25)), &[3, 3, 3, 1]);
    check_batches(3, Some(Amount::Percent(1)), &[1, 1, 1]);
    check_batches(0, Some(Amount::Count(2)), &[]);
}

#[test]
fn a_canary_is_a_first_batch_of_its_own_and_the_rest_follow_in_batch_sizes() {
    let sizes = |total: usize, canary: Option<usize>, batch: Option<Amount>| {
        let all = nodes(total);
        let plan = plan_rollout(&all, canary, batch);
        assert_eq!(plan.concat(), all, "the plan keeps the order");
        plan.iter().map(Vec::len).collect::<Vec<usize>>()
    };
    assert_eq!(sizes(10, Some(1), Some(Amount::Count(3))), [1, 3, 3, 3]);
    assert_eq!(sizes(10, Some(2), None), [2, 8], "without --batch the rest go at once");
    assert_eq!(sizes(10, Some(1), Some(Amount::Percent(20))), [1, 2, 2, 2, 2, 1], "20% of all 10");
    assert_eq!(sizes(3, Some(5), Some(Amount::Count(2))), [3], "a canary as large as the targets");
    assert_eq!(sizes(10, None, Some(Amount::Count(4))), [4, 4, 2], "no canary: plain batches");
}

/// The JSON of an earlier `baton rpc --json` run: web01 OK, web02 failed, web03 silent,
/// web04 and web05 skipped.
fn earlier_run() -> String {
    json!({
        "request_id": "6f1c2c52-4a8e-4f7e-9d55-3b0f0f0f0f0f",
        "targeted": ["web01", "web02", "web03", "web04", "web05"],
        "replies": [
            {"node": "web01", "status": 0, "status_text": "OK", "message": "", "data": {}, "ms": 1.0},
            {"node": "web02", "status": 1, "status_text": "Request Aborted", "message": "no", "data": {}, "ms": 2.0}
        ],
        "no_response": ["web03"],
        "unexpected": [{"node": "other", "status": 0}],
        "skipped": ["web04", "web05"],
    })
    .to_string()
}

/// The same run as `--jsonl` lines.
const EARLIER_JSONL: &str = r#"{"type":"batch_started","index":1,"of":2,"nodes":["web01","web02","web03"]}
{"type":"reply","node":"web01","status":0,"status_text":"OK","message":"","data":{},"ms":1.0}
{"type":"reply","node":"web02","status":1,"status_text":"Request Aborted","message":"no","data":{},"ms":2.0}
{"type":"unexpected","node":"other","status":0}
{"type":"stopped","skipped":2}
{"type":"skipped","node":"web04"}
{"type":"skipped","node":"web05"}
{"type":"no_response","node":"web03","unreachable":false}
{"type":"summary","targeted":5}
"#;

fn check_select(text: &str, only: &[ResultSet], expected: Result<&[&str], &str>) {
    match (parse_node_input(text, only), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{only:?} of {text}"),
        (Err(error), Err(fragment)) => {
            assert!(error.contains(fragment), "{only:?}: {error} should contain {fragment:?}")
        }
        (got, want) => panic!("{only:?} of {text}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn only_picks_result_sets_from_rpc_json_and_jsonl() {
    use ResultSet::{Failed, NoResponse, NotOk, Skipped};
    for text in [earlier_run(), EARLIER_JSONL.to_string()] {
        check_select(&text, &[], Ok(&["web01", "web02", "web03", "web04", "web05"]));
        check_select(&text, &[ResultSet::Ok], Ok(&["web01"]));
        check_select(&text, &[Failed], Ok(&["web02"]));
        check_select(&text, &[NoResponse], Ok(&["web03"]));
        check_select(&text, &[Skipped], Ok(&["web04", "web05"]));
        check_select(&text, &[Failed, NoResponse], Ok(&["web02", "web03"]));
        check_select(&text, &[NotOk], Ok(&["web02", "web03", "web04", "web05"]));
    }
    let all_ok =
        json!({"targeted": ["a"], "replies": [{"node": "a", "status": 0}], "no_response": []}).to_string();
    check_select(&all_ok, &[ResultSet::Failed], Ok(&[]));
    let replies = json!({"queue": "q", "requests": [serde_json::from_str::<serde_json::Value>(&earlier_run()).expect("json")]}).to_string();
    check_select(&replies, &[ResultSet::Failed], Ok(&["web02"]));
}

#[test]
fn only_refuses_input_without_results() {
    let only = &[ResultSet::Failed];
    check_select("web01\nweb02\n", only, Err("not a plain list"));
    check_select(r#"{"nodes": ["web01"], "stats": {}}"#, only, Err("has none"));
    check_select(r#"["web01"]"#, only, Err("has none"));
    check_select("{not json", &[], Err("does not parse"));
    check_select(r#"{"error": "broker down", "exit_code": 5}"#, &[], Err("no node list"));
}

#[test]
fn plain_and_discovery_input_still_work() {
    check_select("web02\n# comment\nweb01 # trailing\n\n", &[], Ok(&["web01", "web02"]));
    check_select(r#"{"nodes": ["b", "a"], "stats": {"discovered": 2}}"#, &[], Ok(&["a", "b"]));
    check_select(
        "{\"type\":\"node\",\"node\":\"b\"}\n{\"type\":\"node\",\"node\":\"a\"}\n{\"type\":\"summary\"}",
        &[],
        Ok(&["a", "b"]),
    );
}

fn outcome(replies: &[(&str, u8)], no_response: &[&str], skipped: &[&str]) -> CallOutcome {
    CallOutcome {
        request_id: uuid::Uuid::nil(),
        agent: "a".into(),
        action: "b".into(),
        targeted: Some(
            replies
                .iter()
                .map(|(node, _)| *node)
                .chain(no_response.iter().copied())
                .chain(skipped.iter().copied())
                .map(String::from)
                .collect(),
        ),
        replies: replies
            .iter()
            .map(|(node, status)| baton::client::NodeReply {
                node: node.to_string(),
                status: *status,
                status_text: "",
                message: String::new(),
                data: Default::default(),
                ms: 0.0,
            })
            .collect(),
        no_response: no_response.iter().map(|node| node.to_string()).collect(),
        unreachable: Vec::new(),
        unexpected: Vec::new(),
        skipped: skipped.iter().map(|node| node.to_string()).collect(),
        first_reply_ms: None,
        last_reply_ms: None,
        total_ms: 0,
        aggregates: Default::default(),
    }
}

fn check_exit(call: CallOutcome, stopped: bool, expected: Exit) {
    let stopped = stopped.then_some(Stopped { failures: 1, max_failures: 0, after_batch: 1 });
    let rollout =
        RolloutOutcome { call, batches: Vec::new(), planned_batches: 2, stopped, nodes: Default::default() };
    assert_eq!(Exit::for_rollout(&rollout), expected, "{rollout:?}");
}

#[test]
fn rollout_exit_codes() {
    check_exit(outcome(&[("a", 0), ("b", 0)], &[], &[]), false, Exit::Ok);
    check_exit(outcome(&[("a", 0), ("b", 1)], &[], &[]), false, Exit::Failed);
    check_exit(outcome(&[("a", 0)], &["b"], &[]), false, Exit::NoResponse);
    check_exit(outcome(&[("a", 1)], &["b"], &[]), false, Exit::Failed);
    // Regression guard: a rollout stopped by silent nodes alone still exits 1, because the
    // skipped nodes never got the request.
    check_exit(outcome(&[("a", 0)], &["b"], &["c"]), true, Exit::Failed);
    check_exit(outcome(&[], &[], &[]), false, Exit::NothingMatched);
}

fn check_colour(terminal: bool, no_color: Option<&str>, expected: bool) {
    let value = no_color.map(std::ffi::OsStr::new);
    assert_eq!(
        baton::cli::render::colour_allowed(terminal, value),
        expected,
        "terminal {terminal}, NO_COLOR {no_color:?}"
    );
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    check_colour(true, None, true);
    check_colour(true, Some(""), true);
    check_colour(true, Some("1"), false);
    check_colour(false, None, false);
    check_colour(false, Some("1"), false);
}

fn check_usage_json(args: &[&str], expected: Option<&str>) {
    use clap::Parser;
    let mut argv = vec!["baton"];
    argv.extend_from_slice(args);
    let error = baton::cli::args::Cli::try_parse_from(&argv).expect_err("the command line is wrong");
    let owned: Vec<String> = argv.iter().map(|arg| arg.to_string()).collect();
    let got = baton::cli::usage_error_json(&owned, &error);
    match (got, expected) {
        (None, None) => {}
        (Some(text), Some(fragment)) => {
            let document: serde_json::Value = serde_json::from_str(&text).expect("one JSON document");
            assert_eq!(document["exit_code"], 2, "{text}");
            assert!(
                document["error"].as_str().is_some_and(|error| error.contains(fragment)),
                "{text} lacks {fragment:?}"
            );
        }
        (got, want) => panic!("{args:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn command_line_errors_are_json_when_json_was_asked_for() {
    check_usage_json(&["rpc", "a", "b", "--batch", "x", "--json"], Some("--batch"));
    check_usage_json(&["rpc", "a", "--json"], Some("required"));
    check_usage_json(&["rpc", "a", "b", "--bogus", "--jsonl"], Some("--bogus"));
    check_usage_json(&["rpc", "a", "b", "--limit", "101%", "--json"], Some("between 0 and 100"));
    check_usage_json(&["rpc", "a", "b", "--batch", "x"], None);
    check_usage_json(&["rpc", "--help", "--json"], None);
}

#[test]
fn a_rollout_record_is_saved_as_each_node_changes_and_resumes_only_what_did_not_succeed() {
    use baton::client::Event;
    use baton::client::NodeState;
    use baton::client::journal::{Journal, RolloutRequest, RolloutStatus};

    let dir = tempfile::tempdir().expect("state dir");
    let order = nodes(4);
    let request = RolloutRequest {
        agent: "hello".into(),
        action: "greet".into(),
        inputs: vec![("name".into(), "ci".into())],
        batch: Some("2".into()),
        ..RolloutRequest::default()
    };
    let mut journal = Journal::create(dir.path(), "baton", request.clone(), &order).expect("create");
    let id = journal.record().rollout_id.to_string();
    for (node, state) in [("n01", NodeState::Ok), ("n02", NodeState::CheckFailed), ("n03", NodeState::Sent)] {
        journal.observe(&Event::NodeState { node, state }).expect("observe");
    }
    // `sent` alone is not written (it is, with the batch's request going out); the others are.
    let reopened = Journal::open(dir.path(), &id).expect("open");
    let record = reopened.record();
    assert_eq!(record.request, request);
    assert_eq!(record.status, RolloutStatus::Running);
    assert_eq!(record.nodes_in(NodeState::Ok), ["n01"]);
    assert_eq!(record.nodes_in(NodeState::CheckFailed), ["n02"]);
    assert_eq!(record.remaining(), ["n02", "n03", "n04"], "every node but the one that succeeded, in order");
    let files = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // The record as last rewritten, and the states since appended to its log; no partial file.
    assert_eq!(files(dir.path()), [format!("{id}.json"), format!("{id}.json.log")]);

    // A client killed in the middle of a line leaves it partial: the read skips it.
    let log = dir.path().join(format!("{id}.json.log"));
    let mut text = std::fs::read_to_string(&log).expect("log");
    text.push_str(r#"{"node":"n04","sta"#);
    std::fs::write(&log, text).expect("write log");
    let record = Journal::open(dir.path(), &id).expect("open").record().clone();
    assert_eq!(record.nodes_in(NodeState::Ok), ["n01"]);
    // n03's `sent` was not written (see above), and n04's line is the partial one.
    assert_eq!(record.nodes_in(NodeState::Pending), ["n03", "n04"]);

    let mut resumed = Journal::open(dir.path(), &id).expect("open");
    assert_eq!(resumed.resume().expect("resume"), ["n02", "n03", "n04"]);
    // A rewrite takes in what the log held and removes it.
    assert_eq!(files(dir.path()), [format!("{id}.json")]);
    // A line of the first run, left by a client killed just as the resume rewrote the record,
    // is not replayed over the second run's states.
    // (The second line, of this run, shows that such lines are read.)
    let lines = concat!(
        r#"{"node":"n02","state":"failed","ms":1,"run":1}"#,
        "\n",
        r#"{"node":"n03","state":"ok","ms":2,"run":2}"#,
        "\n"
    );
    std::fs::write(&log, lines).expect("write log");
    let record = Journal::open(dir.path(), &id).expect("open").record().clone();
    assert_eq!(record.nodes_in(NodeState::Ok), ["n01", "n03"]);
    assert_eq!(record.nodes_in(NodeState::Pending), ["n02", "n04"]);
    std::fs::remove_file(&log).expect("remove log");
    let record = Journal::open(dir.path(), &id).expect("open").record().clone();
    assert_eq!(record.runs, 2);
    assert_eq!(record.nodes_in(NodeState::Pending), ["n02", "n03", "n04"]);
    assert_eq!(record.nodes_in(NodeState::Ok), ["n01"]);

    let error = Journal::open(dir.path(), "not-an-id").expect_err("not a uuid");
    assert!(error.to_string().contains("is not a rollout id"), "{error}");
    let error = Journal::open(dir.path(), "0b6f2c3e-0000-4000-8000-000000000000").expect_err("unknown");
    assert!(error.to_string().contains("no rollout 0b6f2c3e-0000-4000-8000-000000000000"), "{error}");
}

/// The events of a rollout, as published (`--events`), rebuild the record its journal keeps:
/// what a machine without the journal resumes from, and what the console shows.
#[test]
fn a_rollout_is_rebuilt_from_its_events_run_by_run() {
    use baton::client::NodeState;
    use baton::client::events::{Rollouts, sign_event};
    use baton::client::journal::{RolloutRequest, RolloutStatus};
    use baton::security::{Ed25519, Security};

    // The client that ran the rollout, a client that trusts it, and one that does not.
    let runner = Security::Ed25519(Box::new(Ed25519::from_keys("ci-runner", [7; 32], []).expect("keys")));
    let runner_public = match &runner {
        Security::Ed25519(keys) => keys.public_key(),
        _ => unreachable!(),
    };
    let other_runner = Security::Ed25519(Box::new(
        Ed25519::from_keys("ci-runner-2", [8; 32], [("ci-runner".to_owned(), runner_public)]).expect("keys"),
    ));
    let stranger = Security::Ed25519(Box::new(Ed25519::from_keys("ci-runner", [9; 32], []).expect("keys")));
    let signed = |event: &serde_json::Value| sign_event(&runner, event.to_string()).into_bytes();

    let id = "0b6f2c3e-0000-4000-8000-000000000001";
    let key = |kind: &str| format!("rollout.{id}.{kind}");
    let request = RolloutRequest {
        agent: "hello".into(),
        action: "greet".into(),
        inputs: vec![("name".into(), "ci".into())],
        batch: Some("2".into()),
        max_failures: Some("0".into()),
        check: Some("health check".into()),
        events: true,
        ..RolloutRequest::default()
    };
    let started = |run: u32, nodes: &[&str]| {
        json!({"type": "started", "rollout_id": id, "collective": "baton", "run": run, "request": request,
               "order": ["n01", "n02", "n03", "n04"], "nodes": nodes, "created_ms": 1, "agent": "hello",
               "action": "greet", "state_file": "/elsewhere"})
    };
    let node = |node: &str, state: &str| json!({"type": "node", "node": node, "state": state});
    let first_run = [
        started(1, &["n01", "n02", "n03", "n04"]),
        json!({"type": "batch_started", "index": 1, "of": 2, "nodes": ["n01", "n02"]}),
        node("n01", "sent"),
        node("n02", "sent"),
        node("n01", "checking"),
        node("n01", "ok"),
        node("n02", "check_failed"),
        json!({"type": "check_result", "index": 1, "check": "health check", "attempts": 1, "request_ids": [],
               "ok": ["n01"], "failed": [{"node": "n02"}], "no_response": []}),
        json!({"type": "stopped", "skipped": 2}),
        node("n03", "skipped"),
        node("n04", "skipped"),
        json!({"type": "summary"}),
    ];
    let mut rollouts = Rollouts::default();
    for event in &first_run {
        rollouts.take(&runner, &key(event["type"].as_str().expect("type")), &signed(event));
    }
    // Another rollout's events, and what is not an event at all, change nothing of this one.
    rollouts.take(
        &runner,
        "rollout.0b6f2c3e-0000-4000-8000-000000000002.node",
        &signed(&node("n01", "failed")),
    );
    rollouts.take(&runner, &key("node"), b"not json");
    let uuid = id.parse().expect("uuid");
    let view = rollouts.get(uuid).expect("rebuilt");
    let record = &view.record;
    assert_eq!(record.request, request);
    assert_eq!(record.status, RolloutStatus::Stopped);
    assert_eq!(record.nodes_in(NodeState::Ok), ["n01"]);
    assert_eq!(record.nodes_in(NodeState::CheckFailed), ["n02"]);
    assert_eq!(record.nodes_in(NodeState::Skipped), ["n03", "n04"]);
    assert_eq!(record.remaining(), ["n02", "n03", "n04"]);
    assert_eq!((view.checks_passed, view.checks_failed), (1, 1));
    assert_eq!(view.batch.map(|batch| (batch.index, batch.of)), Some((1, 2)));

    // The second run's `started` puts its nodes back to pending; its summary, without a
    // `stopped` before it, finishes the rollout.
    rollouts.take(&runner, &key("started"), &signed(&started(2, &["n02", "n03", "n04"])));
    let record = &rollouts.get(uuid).expect("rebuilt").record;
    assert_eq!((record.runs, record.status), (2, RolloutStatus::Running));
    assert_eq!(record.nodes_in(NodeState::Pending), ["n02", "n03", "n04"]);
    for name in ["n02", "n03", "n04"] {
        rollouts.take(&runner, &key("node"), &signed(&node(name, "ok")));
    }
    rollouts.take(&runner, &key("summary"), &signed(&json!({"type": "summary"})));
    let record = &rollouts.get(uuid).expect("rebuilt").record;
    assert_eq!(record.status, RolloutStatus::Finished);
    assert!(record.remaining().is_empty(), "{record:?}");

    // Events read from the second run on (the first run's gone from the broker): the nodes
    // that run did not send to had succeeded before it.
    let mut late = Rollouts::default();
    late.take(&runner, &key("started"), &signed(&started(2, &["n02", "n04"])));
    let record = &late.get(uuid).expect("rebuilt").record;
    assert_eq!(record.nodes_in(NodeState::Ok), ["n01", "n03"]);
    assert_eq!(record.remaining(), ["n02", "n04"]);

    // Another runner that trusts the first one's key rebuilds the same rollout.
    let mut elsewhere = Rollouts::default();
    elsewhere.take(&other_runner, &key("started"), &signed(&started(2, &["n02", "n04"])));
    assert_eq!(elsewhere.get(uuid).expect("trusted").record.remaining(), ["n02", "n04"]);
    assert_eq!(elsewhere.refused(), 0);

    // A resume runs what `started` says under the resumer's key: an unsigned `started`, one
    // signed by a key of the same name the reader does not trust, and a signed one whose
    // request was changed afterwards are all passed over, and counted.
    let mut forged = Rollouts::default();
    forged.take(&other_runner, &key("started"), started(1, &["n01"]).to_string().as_bytes());
    forged.take(
        &other_runner,
        &key("started"),
        sign_event(&stranger, started(1, &["n01"]).to_string()).as_bytes(),
    );
    let mut tampered: serde_json::Value =
        serde_json::from_slice(&signed(&started(1, &["n01"]))).expect("a signed line is JSON");
    tampered["request"]["action"] = json!("erase");
    forged.take(&other_runner, &key("started"), tampered.to_string().as_bytes());
    assert!(forged.get(uuid).is_none(), "nothing rebuilt from forged events");
    assert_eq!(forged.refused(), 3);
}

/// A broadcast that expects the registry's nodes: an expected node that answers is counted, a
/// node the registry did not know is counted as a target too, and an expected node that stays
/// silent is listed as not responding.
#[test]
fn a_broadcast_expecting_known_nodes_accounts_for_unknown_and_silent_ones() {
    use baton::client::{Tally, Targets};
    use baton::protocol::filter::FilterSpec;
    use baton::protocol::{Reply, Request, StatusCode};
    use std::time::{Duration, Instant};

    let request = Request {
        id: uuid::Uuid::new_v4(),
        sender: "tester".into(),
        caller: "user=tester".into(),
        collective: "baton".into(),
        agent: "rpcutil".into(),
        action: "ping".into(),
        filter: FilterSpec::default(),
        time_ms: 0,
        ttl_secs: 60,
        reply_to: "baton.reply.x".into(),
        data: serde_json::Map::new(),
        once: None,
    };
    let reply = |node: &str| Reply {
        request_id: request.id,
        sender: node.into(),
        agent: "rpcutil".into(),
        action: "ping".into(),
        time_ms: 0,
        status: StatusCode::Ok,
        status_message: String::new(),
        data: serde_json::Map::new(),
    };
    let targets = Targets::Expected { nodes: vec!["db01".into(), "web01".into()], grace: Duration::ZERO };
    let mut tally = Tally::new(&request, &targets);
    let started = Instant::now();
    let _ = tally.record(reply("web01"), Duration::from_millis(3));
    assert!(!tally.complete(), "db01 is still expected");
    let _ = tally.record(reply("new01"), Duration::from_millis(4));
    let outcome = tally.finish(started);
    assert_eq!(outcome.targeted, Some(vec!["db01".to_string(), "new01".to_string(), "web01".to_string()]));
    let replied: Vec<&str> = outcome.replies.iter().map(|reply| reply.node.as_str()).collect();
    assert_eq!(replied, ["new01", "web01"]);
    assert_eq!(outcome.no_response, ["db01"]);
    assert!(outcome.unexpected.is_empty());
    assert_eq!(Exit::for_outcome(&outcome), Exit::NoResponse);

    // Regression (issue 15, cluster-storm.sh): a node reported unreachable whose reply came
    // after all (the first of two publish attempts reached its queue) was listed both as
    // replied and as not responding, so replies + no response exceeded the targets.
    let mut tally = Tally::new(&request, &Targets::Nodes(vec!["db01".into(), "web01".into()]));
    tally.unreachable("web01");
    let _ = tally.record(reply("web01"), Duration::from_millis(5));
    let outcome = tally.finish(started);
    let replied: Vec<&str> = outcome.replies.iter().map(|reply| reply.node.as_str()).collect();
    assert_eq!(replied, ["web01"]);
    assert_eq!(outcome.no_response, ["db01"], "web01 once, as replied");
    assert!(outcome.unreachable.is_empty(), "{:?}", outcome.unreachable);
}
