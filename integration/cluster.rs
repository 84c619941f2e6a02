//! A three-member RabbitMQ cluster (`bin/broker start rabbitmq-cluster`) losing the member its
//! nodes use: ten `batond`s fail over along their URL list and answer again without a restart,
//! and a batched rollout running across the loss accounts for every node exactly once, with no
//! node running its request twice. Then the member comes back and another one is stopped.
//! A client whose own member stops while its requests are in flight accounts for every node
//! and goes on with its next batch on the member it fails over to.
//! And many virtual nodes of the emulator on a few shared connections, failing over at once,
//! all answer again; a node whose queue the broker lost under its consumer, as a cluster's
//! cleanup of a lost member can do to a queue declared again meanwhile, notices and sets it up
//! again.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{
    BatonOutput, Fleet, NodeSpec, Wire, broker, exclusive_cluster, run_baton, run_broker_args,
};

/// Stops and starts a member of the cluster.
fn member(command: &str, number: u32) {
    run_broker_args(&[command, "rabbitmq-cluster", &number.to_string()]);
}

#[test]
fn ten_nodes_answer_again_after_their_member_stops_and_a_rollout_across_the_loss_accounts_for_all() {
    let _cluster = exclusive_cluster();
    let specs: Vec<NodeSpec> =
        (1..=10).map(|n| NodeSpec::new(&format!("member{n:02}"), json!({}), &[])).collect();
    let identities: Vec<String> = specs.iter().map(|spec| spec.identity.clone()).collect();
    // Nodes list the members 1, 2, 3 and connect to member 1; the client lists 3, 1, 2.
    let mut fleet = Fleet::start_unguarded(Wire::amqp_cluster(), specs);
    let pids: Vec<u32> = fleet.nodes.iter().map(|node| node.child.id()).collect();

    // Member 1 is the nodes' member; once it is back, the nodes are on member 2 (the next URL).
    for stopped in [1, 2] {
        let rollout = {
            let config = fleet.client_config("");
            let mut args: Vec<String> =
                ["rpc", "rpcutil", "ping", "--batch", "1", "--batch-sleep", "2", "-t", "5", "--json"]
                    .map(String::from)
                    .to_vec();
            for identity in &identities {
                args.extend(["-I".to_string(), identity.clone()]);
            }
            std::thread::spawn(move || {
                run_baton(&config, &args.iter().map(String::as_str).collect::<Vec<_>>(), None)
            })
        };
        // Let the first batches go out on the member that is about to stop.
        std::thread::sleep(Duration::from_secs(1));
        let stopping = Instant::now();
        let stopper = std::thread::spawn(move || member("stop-member", stopped));
        let outage = watch_outage(&fleet, &identities, &stopper);
        stopper.join().expect("stop-member");
        // Started again at the end of this round, or when the test fails, so that the tests
        // after it find the whole cluster.
        let _stopped = StoppedMember(stopped);
        let stop_took = stopping.elapsed();
        // The bound: every node answers again, the same processes, no restart.
        fleet.wait_until_answering(&identities);
        // Figures for docs/PERFORMANCE.md.
        match outage {
            Some(outage) => eprintln!(
                "cluster: member {stopped} stopped in {stop_took:?}; the nodes were out for {outage:?} (first failed ping to all answering)"
            ),
            None => eprintln!(
                "cluster: member {stopped} stopped in {stop_took:?}; no ping saw the nodes out (back within one ping)"
            ),
        }

        let output = rollout.join().expect("the rollout thread");
        let (replied, silent) = check_accounting(&fleet, &output, &identities);
        eprintln!(
            "cluster: the rollout across the loss: {replied} replied, {silent} no response, 0 unaccounted"
        );
    }

    // Nobody restarted the nodes: the same processes answered throughout.
    for (node, pid) in fleet.nodes.iter_mut().zip(pids) {
        assert_eq!(node.child.id(), pid);
        assert!(
            node.child.try_wait().expect("node status").is_none(),
            "{} exited:\n{}",
            node.spec.identity,
            node.log()
        );
    }
}

/// Issue 15: the member a client is connected to stops while its requests are in flight (the
/// nodes are on another member). Each node's health check is held (the `health` agent waits
/// while its hold file exists) until the member has stopped, so the first batch is in flight
/// across the loss for certain. Every node must be accounted for exactly once (replied or no
/// response, exit 0 or 3), the client says what happened, the batches after the loss are sent
/// on the connection it made again and answered, and no node ran a request twice.
#[test]
fn a_client_whose_member_stops_with_requests_in_flight_accounts_for_all_and_goes_on() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let _cluster = exclusive_cluster();
    let agents_dir = tempfile::tempdir().expect("tempdir");
    let agents = crate::agents::install_agents(agents_dir.path(), &["health"]);
    let agents_config = format!("[agents]\ndir = {:?}\n", agents.display().to_string());
    let specs: Vec<NodeSpec> = (1..=6)
        .map(|n| NodeSpec::new(&format!("inflight{n:02}"), json!({}), &[]).with_config(&agents_config))
        .collect();
    let identities: Vec<String> = specs.iter().map(|spec| spec.identity.clone()).collect();
    // Nodes list the members 1, 2, 3 (so they are on member 1); the client lists 3, 1, 2.
    let fleet = Fleet::start_unguarded(Wire::amqp_cluster(), specs);
    fleet.wait_until_answering(&identities);
    let config = fleet.client_config_with(
        &fleet.wire,
        &format!("definitions_dir = {:?}\n", agents.display().to_string()),
        "",
    );
    let hold = |node: &str| agents.join("health").join(format!("hold-{node}"));
    for identity in &identities {
        std::fs::write(hold(identity), "").expect("hold marker");
    }

    // Three batches of two; each check waits (at most a minute) while its node is held.
    let state = tempfile::tempdir().expect("state dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
    command
        .arg("--config")
        .arg(&config)
        .args(["rpc", "health", "check", "--batch", "2", "--batch-sleep", "1", "-t", "90", "--jsonl"])
        .env_remove("BATON_LOG")
        .env("XDG_STATE_HOME", state.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for identity in &identities {
        command.args(["-I", identity]);
    }
    let mut child = command.spawn().expect("spawn baton");
    let (lines_sender, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read a line of baton's output");
            let value = serde_json::from_str(&line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
            if lines_sender.send(value).is_err() {
                return;
            }
        }
    });
    let stderr = child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || std::io::read_to_string(stderr).expect("read stderr"));

    let mut seen = Vec::new();
    // The first batch is sent: its two checks are running, held.
    let first_batch: Vec<String> = loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("baton sends its first batch");
        seen.push(line.clone());
        if line["type"] == "sent" {
            let started = seen.iter().find(|line| line["type"] == "batch_started").expect("batch_started");
            break started["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .map(|node| node.as_str().expect("node").to_string())
                .collect();
        }
    };
    assert_eq!(first_batch.len(), 2, "{seen:?}");
    std::thread::sleep(Duration::from_secs(1));
    let stopped = StoppedMember::stop(3);
    // The member is down and the first batch's checks are still held: nothing answered yet.
    seen.extend(lines.try_iter());
    assert!(
        !seen.iter().any(|line| line["type"] == "reply"),
        "a reply came before the member had stopped (the hold lasts at most a minute; did the stop take longer?): {seen:?}"
    );
    for identity in &identities {
        std::fs::remove_file(hold(identity)).expect("release");
    }
    let status = child.wait().expect("wait for baton");
    reader.join().expect("the reader thread");
    seen.extend(lines.try_iter());
    let stderr = stderr_reader.join().expect("the stderr reader");

    let code = status.code().unwrap_or(-1);
    assert!(code == 0 || code == 3, "exit 0, or 3 for silent nodes: {code}\n{stderr}\n{seen:?}");
    assert!(
        stderr.contains("lost the connection to the broker"),
        "the client says that it lost its connection: {stderr}"
    );
    let of_type = |kind: &str| -> Vec<String> {
        seen.iter()
            .filter(|line| line["type"] == kind)
            .map(|line| line["node"].as_str().expect("node").to_string())
            .collect()
    };
    let (replies, silent) = (of_type("reply"), of_type("no_response"));
    let mut all: Vec<String> = replies.iter().chain(&silent).cloned().collect();
    all.sort();
    assert_eq!(all, identities, "each node accounted for exactly once: {seen:?}\n{stderr}");
    // The batches after the loss went out on the client's new connection and were answered.
    let later: Vec<&String> = identities.iter().filter(|node| !first_batch.contains(node)).collect();
    assert!(
        later.iter().all(|node| replies.contains(node)),
        "every node of the batches after the loss replied: {seen:?}\n{stderr}"
    );
    let request_ids: BTreeSet<String> = seen
        .iter()
        .filter(|line| line["type"] == "sent")
        .map(|line| line["request_id"].as_str().expect("request id").to_string())
        .collect();
    ran_once_at_most(&fleet, &identities, &request_ids, &replies);
    let first_replied = first_batch.iter().filter(|node| replies.contains(node)).count();
    eprintln!(
        "cluster: the client's member stopped with {} requests in flight: {first_replied} answered after the loss, {} no response; the later batches all answered",
        first_batch.len(),
        first_batch.len() - first_replied
    );
    // A new command, with its member still down, connects to the next one in its list.
    let output = fleet.baton(&["ping", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    drop(stopped);
}

/// Pings every node, again and again, until the member stop is over: from the first ping that
/// did not get every reply to the first one after it that did. `None` if no ping failed.
fn watch_outage(
    fleet: &Fleet,
    identities: &[String],
    stopper: &std::thread::JoinHandle<()>,
) -> Option<Duration> {
    let mut args = vec!["ping".to_string()];
    for identity in identities {
        args.extend(["-I".to_string(), identity.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut first_failure = None;
    loop {
        let sent = Instant::now();
        let output = fleet.baton(&args);
        let answered = output.code == 0;
        match (answered, first_failure) {
            (false, None) => first_failure = Some(sent),
            (true, Some(failed)) => return Some(Instant::now() - failed),
            (true, None) if stopper.is_finished() => return None,
            _ => {}
        }
        if Instant::now() > deadline {
            panic!(
                "the nodes did not all answer within 180 s of the member stop: {output:?}\n{}",
                fleet.logs()
            );
        }
    }
}

/// Every targeted node is in exactly one of replies, no response and skipped; a node that
/// replied ran the request once, and no node ran it twice. Returns how many replied and how
/// many did not.
fn check_accounting(fleet: &Fleet, output: &BatonOutput, identities: &[String]) -> (usize, usize) {
    let document = output.json();
    let listed = |field: &str| -> Vec<String> {
        document[field]
            .as_array()
            .unwrap_or_else(|| panic!("no {field} in {output:?}"))
            .iter()
            .map(|item| {
                item.as_str().map_or_else(|| item["node"].as_str().expect("node").to_string(), str::to_string)
            })
            .collect()
    };
    let (replies, silent, skipped) = (listed("replies"), listed("no_response"), listed("skipped"));
    let mut all: Vec<String> = replies.iter().chain(&silent).chain(&skipped).cloned().collect();
    all.sort();
    assert_eq!(all, identities, "each node accounted for exactly once: {output:?}");
    assert!(output.code == 0 || output.code == 3, "exit 0, or 3 for silent nodes: {output:?}");
    assert_eq!(document["stats"]["targeted"], json!(10), "{output:?}");

    let request_ids: BTreeSet<String> = document["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .map(|batch| batch["request_id"].as_str().expect("request id").to_string())
        .collect();
    ran_once_at_most(fleet, identities, &request_ids, &replies);
    assert!(skipped.is_empty(), "without --max-failures nothing is skipped: {output:?}");
    (replies.len(), silent.len())
}

/// From the nodes' audit logs: no node ran any of `request_ids` twice, and each node in
/// `replies` ran one exactly once.
fn ran_once_at_most(
    fleet: &Fleet,
    identities: &[String],
    request_ids: &BTreeSet<String>,
    replies: &[String],
) {
    for identity in identities {
        let ran = fleet
            .node(identity)
            .audit_lines()
            .iter()
            .filter(|line| {
                line["outcome"] == json!("accepted")
                    && line["request_id"].as_str().is_some_and(|id| request_ids.contains(id))
            })
            .count();
        assert!(ran <= 1, "{identity} ran the rollout's request {ran} times");
        if replies.contains(identity) {
            assert_eq!(ran, 1, "{identity} replied, so it ran the request once");
        }
    }
}

/// Regression (issue 15, `integration/cluster-storm.sh 1000`): after a member stopped, 231 of
/// 1,000 emulated nodes never answered again. Each surviving member deletes the lost member's
/// non-durable queues by name, in batches; a node that had already declared its queue again on
/// a surviving member lost the new queue's record and bindings that way while its consumer
/// stayed on the queue process, so it saw no error and no cancel (RabbitMQ issues 6271, 9798).
/// This puts a node in exactly that state, with the call RabbitMQ's cleanup makes
/// (`rabbit_amqqueue:internal_delete`, which removes the record and bindings and leaves the
/// process and its consumer alone), and expects the node to notice and answer again, without a
/// restart. Before the fix it never answered again.
#[test]
fn a_node_whose_queue_the_broker_lost_under_its_consumer_declares_it_again() {
    let mut fleet = Fleet::start(vec![NodeSpec::new("lost01", json!({}), &[])]);
    let identity = ["lost01".to_string()];
    fleet.wait_until_answering(&identity);
    let pid = fleet.nodes[0].child.id();

    let queue = format!("{}.node.lost01", fleet.collective);
    let delete = format!(
        "rabbit_amqqueue:internal_delete(rabbit_misc:r(<<\"baton\">>, queue, <<\"{queue}\">>), <<\"baton-test\">>)."
    );
    let output = Command::new(broker().var("BATON_RABBITMQ_CTL"))
        .args(["eval", &delete])
        .output()
        .expect("run rabbitmqctl eval");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.trim() == "ok",
        "rabbitmqctl eval {delete}: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The node checks its queue at doubling intervals of at most two minutes (jittered): the
    // bound is that, with room for a busy machine. Not a timing assertion: it only fails if the
    // node never comes back.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let output = fleet.baton(&["ping", "-I", "lost01", "--json"]);
        if output.code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lost01 did not answer again within 300 s after its queue was deleted: {output:?}\n{}",
            fleet.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let node = &mut fleet.nodes[0];
    assert_eq!(node.child.id(), pid);
    assert!(node.child.try_wait().expect("node status").is_none(), "lost01 exited:\n{}", node.log());
    assert!(
        node.log().contains("lost this queue under its consumer"),
        "the node says what happened:\n{}",
        node.log()
    );
}

/// Regression (issue 15): `integration/cluster-storm.sh 1000` found only 769 of 1,000 emulated
/// nodes answering again ten minutes after their member stopped (see the test below for why).
/// Here 300 virtual nodes on three shared connections, all on member 1, fail over at once when
/// it stops, and every one must answer again, in a bounded time, without a restart.
#[test]
fn three_hundred_emulated_nodes_on_three_connections_all_answer_again_after_their_member_stops() {
    const COUNT: usize = 300;
    let _cluster = exclusive_cluster();
    let emulated =
        crate::emulator::start_emulator(Fleet::start_unguarded(Wire::amqp_cluster(), Vec::new()), COUNT, 3);
    let fleet = &emulated.fleet;
    let nodes: String = (1..=COUNT).map(|index| format!("emu-{index:05}\n")).collect();
    let answered = || {
        let output = fleet
            .baton_with_stdin(&["rpc", "rpcutil", "ping", "--dm", "stdin", "-t", "10", "--json"], &nodes);
        (output.nodes("replies").len(), output)
    };
    let (before, output) = answered();
    assert_eq!(before, COUNT, "all answer before the stop: {output:?}");

    let _stopped = StoppedMember::stop(1);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (count, output) = answered();
        if count == COUNT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{count} of {COUNT} answer 300 s after member 1 stopped: {output:?}\n{}",
            emulated.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let lost = emulated.log().matches("lost this queue under its consumer").count();
    eprintln!(
        "cluster: {COUNT} emulated nodes all answer again; {lost} queues were found lost under their consumer"
    );
}

/// A stopped member, started again when dropped (also when the test fails), so that the tests
/// after it find the whole cluster.
struct StoppedMember(u32);

impl StoppedMember {
    fn stop(number: u32) -> StoppedMember {
        member("stop-member", number);
        StoppedMember(number)
    }
}

impl Drop for StoppedMember {
    fn drop(&mut self) {
        member("start-member", self.0);
    }
}
