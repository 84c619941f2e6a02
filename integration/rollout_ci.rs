//! Rollouts a CI pipeline can trust, against real nodes: a canary batch, a health check
//! between batches (the external `health` agent of `tests/fixtures/agents`, unhealthy on a node
//! while a marker file exists), stopping on a failed check.
//!
//! Which nodes received the action is read from the nodes' own audit logs.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::agents::install_agents;
use crate::harness::{BatonOutput, Fleet, NodeSpec, RetainedStream};
use crate::rollout::{audited, nodes_that_saw, strings};

/// Ten nodes, r01 to r10, with the `hello` and `health` agents, and a client configuration
/// that knows their definitions.
pub(crate) struct HealthFleet {
    pub(crate) fleet: Fleet,
    agents: PathBuf,
    pub(crate) config: PathBuf,
    /// `XDG_STATE_HOME` of every `baton` run here, unless a run names its own.
    state: tempfile::TempDir,
    /// The collective's events, retained as rabbitmq/definitions.json retains them.
    _events: RetainedStream,
}

impl HealthFleet {
    pub(crate) fn start() -> HealthFleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let agents = install_agents(dir.path(), &["hello", "health"]);
        let agents_config = format!("[agents]\ndir = {:?}\n", agents.display().to_string());
        let specs = (1..=10)
            .map(|index| {
                NodeSpec::new(&format!("r{index:02}"), json!({"index": index}), &[])
                    .with_config(&agents_config)
            })
            .collect();
        let fleet = Fleet::start_in(dir, None, specs);
        let config = fleet.client_config_with(
            &fleet.wire,
            &format!("definitions_dir = {:?}\n", agents.display().to_string()),
            "",
        );
        let events = RetainedStream::events(&fleet.collective);
        HealthFleet { fleet, agents, config, state: tempfile::tempdir().expect("state dir"), _events: events }
    }

    /// Makes `node`'s health check fail, saying `why`.
    pub(crate) fn break_node(&self, node: &str, why: &str) {
        std::fs::write(self.agents.join("health").join(format!("unhealthy-{node}")), why).expect("marker");
    }

    /// Makes `node`'s health check wait (up to a minute) until [`HealthFleet::release_node`].
    fn hold_node(&self, node: &str) {
        std::fs::write(self.agents.join("health").join(format!("hold-{node}")), "").expect("marker");
    }

    fn release_node(&self, node: &str) {
        std::fs::remove_file(self.agents.join("health").join(format!("hold-{node}"))).expect("remove marker");
    }

    pub(crate) fn fix_node(&self, node: &str) {
        std::fs::remove_file(self.agents.join("health").join(format!("unhealthy-{node}")))
            .expect("remove marker");
    }

    /// How many times `node` ran `hello greet`, by its audit log.
    pub(crate) fn greets(&self, node: &str) -> usize {
        self.audited_as(node, "hello", "greet", "accepted")
    }

    /// How many `agent action` requests `node`'s audit log holds as `outcome`: `accepted`
    /// (it ran), or `remembered` (answered with an earlier run's success; nothing ran).
    pub(crate) fn audited_as(&self, node: &str, agent: &str, action: &str, outcome: &str) -> usize {
        self.fleet
            .node(node)
            .audit_lines()
            .iter()
            .filter(|line| line["agent"] == agent && line["action"] == action && line["outcome"] == outcome)
            .count()
    }

    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        self.command_in(self.state.path(), args)
    }

    /// `baton ARGS` as run on another machine: its own `XDG_STATE_HOME`, `state`.
    pub(crate) fn command_in<S: AsRef<std::ffi::OsStr>>(
        &self,
        state: &std::path::Path,
        args: &[S],
    ) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("BATON_LOG")
            .env("XDG_STATE_HOME", state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    pub(crate) fn baton<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> BatonOutput {
        self.baton_in(self.state.path(), args)
    }

    /// `baton ARGS` with its own `XDG_STATE_HOME`, `state`, as on another CI runner.
    pub(crate) fn baton_in<S: AsRef<std::ffi::OsStr>>(
        &self,
        state: &std::path::Path,
        args: &[S],
    ) -> BatonOutput {
        let output = self.command_in(state, args).output().expect("run baton");
        BatonOutput {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `baton rpc hello greet name=NAME`, checked by `health check` and stopping at the first
/// failure, with `flags` (the batches, the output).
pub(crate) fn greet_rollout(name: &str, flags: &[&str]) -> Vec<String> {
    let common =
        ["rpc", "hello", "greet", &format!("name={name}"), "--check", "health check", "--max-failures", "0"]
            .map(str::to_owned);
    common.into_iter().chain(flags.iter().map(|flag| flag.to_string())).collect()
}

pub(crate) fn names(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|index| format!("r{index:02}")).collect()
}

fn jsonl(output: &BatonOutput) -> Vec<Value> {
    output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}")))
        .collect()
}

/// Every batch's request id and nodes, from `--jsonl` `batch_finished` lines.
fn finished_batches(lines: &[Value]) -> Vec<(String, Vec<String>)> {
    lines
        .iter()
        .filter(|line| line["type"] == "batch_finished")
        .map(|line| (line["request_id"].as_str().expect("request id").to_string(), strings(&line["nodes"])))
        .collect()
}

#[test]
fn a_failed_health_check_stops_the_rollout_and_later_nodes_never_get_the_action() {
    let ci = HealthFleet::start();
    ci.break_node("r05", "disk full");
    let output = ci.baton(&greet_rollout("rollout", &["--batch", "2", "--batch-sleep", "0", "--json"]));
    assert_eq!(output.code, 1, "{output:?}");
    let document = output.json();
    let batches = document["batches"].as_array().expect("batches");
    assert_eq!(batches.len(), 3, "stopped after the batch holding r05: {document}");
    assert_eq!(strings(&batches[2]["nodes"]), ["r05", "r06"]);
    assert_eq!(batches[2]["ok"], 2, "the action itself succeeded on r05: {document}");
    let check = &batches[2]["check"];
    assert_eq!(check["check"], "health check");
    assert_eq!(strings(&check["ok"]), ["r06"]);
    assert_eq!(check["failed"][0]["node"], "r05", "{check}");
    assert_eq!(check["failed"][0]["message"], "unhealthy: disk full", "{check}");
    assert_eq!(document["stopped"]["failures"], 1, "{document}");
    assert_eq!(document["stopped"]["after_batch"], 3, "{document}");
    assert_eq!(strings(&document["nodes"]["ok"]), ["r01", "r02", "r03", "r04", "r06"]);
    assert_eq!(strings(&document["nodes"]["check_failed"]), ["r05"]);
    assert_eq!(strings(&document["nodes"]["skipped"]), names(7..=10));
    assert_eq!(strings(&document["skipped"]), names(7..=10));

    // The nodes' own audit logs: nobody after r06 received the action, or the check.
    assert_eq!(nodes_that_saw(&ci.fleet, "hello", "greet"), names(1..=6));
    assert_eq!(nodes_that_saw(&ci.fleet, "health", "check"), names(1..=6));
    for batch in batches {
        let request_id = batch["request_id"].as_str().expect("request id");
        let seen: Vec<String> = audited(&ci.fleet, request_id).into_keys().collect();
        assert_eq!(seen, strings(&batch["nodes"]), "batch {} went to exactly its nodes", batch["index"]);
    }

    // The rollout's saved state: what succeeded, what failed and what never started.
    let rollout_id = document["rollout_id"].as_str().expect("a tracked rollout has an id").to_string();
    let status = ci.baton(&["rollout", "status", &rollout_id, "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["status"], "stopped", "{status}");
    assert_eq!(strings(&status["nodes"]["ok"]), ["r01", "r02", "r03", "r04", "r06"]);
    assert_eq!(strings(&status["nodes"]["check_failed"]), ["r05"]);
    assert_eq!(strings(&status["nodes"]["skipped"]), names(7..=10));
    assert_eq!(strings(&status["remaining"]), ["r05", "r07", "r08", "r09", "r10"]);

    // Fixed, and resumed: the remaining nodes get the action, the ones that succeeded do not
    // get it again (their audit logs hold one `hello greet` each). r05's action had succeeded
    // (its check had not): it is sent again, answers with that success without running it
    // (`remembered`), and is checked again.
    ci.fix_node("r05");
    let resumed = ci.baton(&["rollout", "resume", &rollout_id, "--json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let resumed = resumed.json();
    assert_eq!(resumed["rollout_id"], rollout_id.as_str());
    assert_eq!(strings(&resumed["targeted"]), ["r05", "r07", "r08", "r09", "r10"], "{resumed}");
    assert_eq!(strings(&resumed["nodes"]["ok"]), names(1..=10), "the whole rollout is done: {resumed}");
    for node in names(1..=10) {
        assert_eq!(ci.greets(&node), 1, "{node} ran the action once in all");
        let expected = usize::from(node == "r05");
        assert_eq!(ci.audited_as(&node, "hello", "greet", "remembered"), expected, "{node}");
    }
    assert_eq!(ci.audited_as("r05", "health", "check", "accepted"), 2, "r05 was checked again");
    let status = ci.baton(&["rollout", "status", &rollout_id]);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(status.stdout.contains("finished after 2 run(s), 10 node(s)"), "{status:?}");
    assert!(status.stdout.contains("Every node succeeded; nothing is left to resume."), "{status:?}");
    let again = ci.baton(&["rollout", "resume", &rollout_id, "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["remaining"], json!([]), "{again:?}");
    assert_eq!(ci.greets("r07"), 1, "a finished rollout sends nothing");
    let unknown = ci.baton(&["rollout", "status", "0b6f2c3e-0000-4000-8000-000000000000", "--json"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");

    // People see each check, the failing node with its message, and why it stopped.
    ci.break_node("r02", "out of memory");
    let human = ci.baton(&greet_rollout(
        "people",
        &["-I", "r01", "-I", "r02", "-I", "r03", "--batch", "2", "--batch-sleep", "0"],
    ));
    assert_eq!(human.code, 1, "{human:?}");
    assert!(human.stdout.contains("Check of batch 1 (health check): 1 ok, 1 failed: r02"), "{human:?}");
    assert!(human.stdout.contains("Health check failed on 1 node(s):"), "{human:?}");
    assert!(human.stdout.contains("unhealthy: out of memory"), "{human:?}");
    assert!(
        human.stdout.contains("Rollout stopped: 1 failure(s) after batch 1 exceed --max-failures 0"),
        "{human:?}"
    );
}

#[test]
fn a_canary_goes_first_and_a_check_is_retried_before_it_counts() {
    let ci = HealthFleet::start();
    // r04 stays unhealthy: with --check-retries 2 its check is asked three times before it
    // counts as a failure.
    ci.break_node("r04", "still starting");
    let output = ci.baton(&[
        "rpc",
        "hello",
        "greet",
        "name=canary",
        "--canary",
        "1",
        "--batch",
        "3",
        "--batch-sleep",
        "0",
        "--check",
        "health check",
        "--check-retries",
        "2",
        "--check-wait",
        "0.2",
        "--max-failures",
        "0",
        "--jsonl",
    ]);
    assert_eq!(output.code, 1, "{output:?}");
    let lines = jsonl(&output);
    let batches = finished_batches(&lines);
    let planned: Vec<Vec<String>> = batches.iter().map(|(_, nodes)| nodes.clone()).collect();
    assert_eq!(planned, [names(1..=1), names(2..=4)], "a canary of 1, then batches of 3: {lines:?}");
    for (request_id, nodes) in &batches {
        let seen: Vec<String> = audited(&ci.fleet, request_id).into_keys().collect();
        assert_eq!(&seen, nodes, "the audit logs show batch {request_id} reached exactly its nodes");
    }
    assert_eq!(nodes_that_saw(&ci.fleet, "hello", "greet"), names(1..=4));
    let checks: Vec<&Value> = lines.iter().filter(|line| line["type"] == "check_result").collect();
    assert_eq!(checks.len(), 2, "{lines:?}");
    assert_eq!(checks[0]["attempts"], 1, "the canary's check passed at once: {}", checks[0]);
    assert_eq!(checks[1]["attempts"], 3, "r04's check was retried twice: {}", checks[1]);
    assert_eq!(strings(&checks[1]["ok"]), ["r02", "r03"]);
    assert_eq!(checks[1]["failed"][0]["node"], "r04");
    // The check's retries reached only r04: three check requests in its audit log, one in
    // each of the others'.
    let check_lines = |node: &str| {
        ci.fleet.node(node).audit_lines().iter().filter(|line| line["agent"] == "health").count()
    };
    assert_eq!(check_lines("r04"), 3);
    assert_eq!(check_lines("r03"), 1);
    let summary = lines.last().expect("summary");
    assert_eq!(summary["type"], "summary", "{summary}");
    assert_eq!(summary["skipped"], 6, "{summary}");

    // A check that is not an agent and action is a usage error, before anything is sent.
    let bad = ci.baton(&["rpc", "hello", "greet", "name=x", "--check", "health", "--json"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.json()["error"].as_str().is_some_and(|error| error.contains("--check")), "{bad:?}");
}

/// The rest of a running rollout's `--jsonl` output. Keep it while the rollout must go on: a
/// `baton` whose stdout is closed fails at its next line.
type JsonlLines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Reads a running rollout's `--jsonl` lines from `child` until one satisfies `until`; returns
/// the rollout's id, from its `started` line, and the lines still to come.
fn read_jsonl_until(child: &mut std::process::Child, until: impl Fn(&Value) -> bool) -> (String, JsonlLines) {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut rollout_id = None;
    loop {
        let line = lines.next().expect("a line before the end").expect("read line");
        let parsed: Value = serde_json::from_str(&line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
        if parsed["type"] == "started" {
            rollout_id = parsed["rollout_id"].as_str().map(str::to_owned);
        }
        if until(&parsed) {
            return (rollout_id.expect("a started line came first"), lines);
        }
    }
}

#[test]
fn a_rollout_whose_client_was_killed_is_finished_by_another_process() {
    let ci = HealthFleet::start();
    let mut child = ci
        .command(&greet_rollout("killed", &["--batch", "2", "--batch-sleep", "3", "--jsonl"]))
        .spawn()
        .expect("spawn baton");
    let (rollout_id, _lines) =
        read_jsonl_until(&mut child, |parsed| parsed["type"] == "batch_finished" && parsed["index"] == 2);
    // SIGKILL, in the pause before batch 3: nothing of baton's gets to run after this.
    child.kill().expect("SIGKILL baton");
    child.wait().expect("wait");

    let status = ci.baton(&["rollout", "status", &rollout_id, "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["status"], "running", "a killed rollout never said it ended: {status}");
    let done_before = strings(&status["nodes"]["ok"]);
    assert!(done_before.starts_with(&names(1..=4)), "batches 1 and 2 were saved before their line: {status}");

    let resumed = ci.baton(&["rollout", "resume", &rollout_id, "--jsonl"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let lines = jsonl(&resumed);
    assert_eq!(lines[0]["type"], "started", "{lines:?}");
    assert_eq!(lines[0]["run"], 2, "{lines:?}");
    let sent_again = strings(&lines[0]["nodes"]);
    assert!(sent_again.iter().all(|node| !done_before.contains(node)), "{sent_again:?} vs {done_before:?}");
    let status = ci.baton(&["rollout", "status", &rollout_id, "--json"]).json();
    assert_eq!(status["status"], "finished", "{status}");
    assert_eq!(strings(&status["nodes"]["ok"]), names(1..=10), "{status}");
    for node in &done_before {
        assert_eq!(ci.greets(node), 1, "{node} succeeded before the kill and never got the action again");
    }
    assert_eq!(nodes_that_saw(&ci.fleet, "hello", "greet"), names(1..=10));
}

/// A client killed while a node is still running its batch's action: that node's answer is
/// lost with the client, so the rollout's record (here, and on the broker) has it as `sent`. A
/// resume from another runner sends to it again; the node, still running the first request,
/// answers the second with that run's outcome when it ends, and never runs it twice.
#[test]
fn a_node_whose_answer_was_lost_with_a_killed_client_is_not_run_twice_by_the_resume() {
    let ci = HealthFleet::start();
    ci.hold_node("r03");
    let mut child = ci
        .command(&["rpc", "health", "check", "--batch", "2", "--batch-sleep", "0", "--events", "--jsonl"])
        .spawn()
        .expect("spawn baton");
    // Batch 2 is r03 (held in its action) and r04: once r04 answered, r03 is mid-action.
    let (rollout_id, _lines) =
        read_jsonl_until(&mut child, |parsed| parsed["type"] == "reply" && parsed["node"] == "r04");
    child.kill().expect("SIGKILL baton");
    child.wait().expect("wait");

    // Another runner, from the broker's events: r03 was sent the action, its answer is unknown.
    let other = tempfile::tempdir().expect("other runner's state");
    let status = status_in(&ci, other.path(), &rollout_id);
    // (The last events before the kill may not have reached the broker: a node shown as sent
    // or pending that did succeed is sent again, and answers from its first run too.)
    assert_eq!(status["status"], "running", "{status}");
    assert!(strings(&status["remaining"]).contains(&"r03".to_owned()), "{status}");

    // Resumed while r03 still runs the first request; released a moment later.
    let resume = ci
        .command_in(other.path(), &["rollout", "resume", &rollout_id, "--json"])
        .spawn()
        .expect("spawn the resume");
    std::thread::sleep(std::time::Duration::from_secs(2));
    ci.release_node("r03");
    let resumed = resume.wait_with_output().expect("the resume ends");
    let document: Value = serde_json::from_slice(&resumed.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&resumed.stderr)));
    assert_eq!(resumed.status.code(), Some(0), "{document}");
    assert_eq!(strings(&document["nodes"]["ok"]), names(1..=10), "{document}");
    assert_eq!(ci.audited_as("r03", "health", "check", "accepted"), 1, "r03 ran the action once");
    assert_eq!(ci.audited_as("r03", "health", "check", "remembered"), 1, "the resume got that run's answer");
    for node in names(1..=10) {
        assert_eq!(ci.audited_as(&node, "health", "check", "accepted"), 1, "{node} ran the action once");
    }
}

/// The command lines of the `yaml` blocks of docs/CLI.md's "Rollouts from CI" chapter, block by
/// block: every line that is (or whose `- ` item is) a `baton` command.
fn ci_examples() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(crate::harness::repo_root().join("docs/CLI.md")).expect("docs/CLI.md");
    let start = doc.find("\n## Rollouts from CI\n").expect("the chapter is in docs/CLI.md");
    let chapter = &doc[start + 1..];
    let chapter = &chapter[..chapter.find("\n## ").unwrap_or(chapter.len())];
    chapter
        .split("```yaml\n")
        .skip(1)
        .map(|block| {
            let block = &block[..block.find("```").expect("a closed block")];
            block
                .lines()
                .map(|line| line.trim().trim_start_matches("- ").to_string())
                .filter(|line| line.starts_with("baton "))
                .collect()
        })
        .collect()
}

#[test]
fn the_ci_examples_of_the_docs_run_as_written() {
    let ci = HealthFleet::start();
    let examples = ci_examples();
    let sizes: Vec<usize> = examples.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 3], "GitHub Actions and GitLab CI, as the chapter shows them: {examples:?}");
    let workspace = tempfile::tempdir().expect("workspace");
    let baton_dir = PathBuf::from(env!("CARGO_BIN_EXE_baton")).parent().expect("bin dir").to_path_buf();
    let path = format!("{}:{}", baton_dir.display(), std::env::var("PATH").unwrap_or_default());
    // One job step: bash with pipefail, as GitHub's `shell: bash` and GitLab's runner do.
    let step = |line: &str| {
        let output = Command::new("bash")
            .args(["-eo", "pipefail", "-c", line])
            .current_dir(workspace.path())
            .env("PATH", &path)
            .env("BATON_CONFIG", &ci.config)
            .env("XDG_STATE_HOME", workspace.path().join(".baton-state"))
            .env_remove("BATON_LOG")
            .output()
            .expect("run bash");
        let code = output.status.code().unwrap_or(-1);
        (
            code,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    // GitHub Actions: the rollout stops at the unhealthy r03 (exit 1), and the failure step
    // shows what is left.
    ci.break_node("r03", "migrations pending");
    let (code, stdout, stderr) = step(&examples[0][0]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let lines: Vec<Value> =
        stdout.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
    let planned: Vec<Vec<String>> = finished_batches(&lines).into_iter().map(|(_, nodes)| nodes).collect();
    assert_eq!(planned, [names(1..=1), names(2..=3)], "{stdout}");
    assert!(workspace.path().join("rollout.jsonl").exists(), "tee kept the stream");
    let (code, stdout, stderr) = step(&examples[0][1]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("check_failed      1  r03"), "{stdout}");
    assert!(stdout.contains("8 node(s) remain: baton rollout resume "), "{stdout}");
    ci.fix_node("r03");

    // GitLab CI: the deploy job fails at r05, the manual resume job finishes the rollout.
    ci.break_node("r05", "port 443 closed");
    let (code, stdout, stderr) = step(&examples[1][0]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let deployed: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace.path().join("rollout.json")).expect("rollout.json"),
    )
    .expect("one JSON document");
    assert_eq!(strings(&deployed["nodes"]["check_failed"]), ["r05"], "{deployed}");
    ci.fix_node("r05");
    let (code, stdout, stderr) = step(&examples[1][1]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let resumed: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace.path().join("resumed.json")).expect("resumed.json"),
    )
    .expect("one JSON document");
    assert_eq!(strings(&resumed["nodes"]["ok"]), names(1..=10), "{resumed}");
    let (code, stdout, stderr) = step(&examples[1][2]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("finished after 2 run(s), 10 node(s)"), "{stdout}");
}

/// A consumer of `<collective>.events` that is not Baton's code: a queue of its own, declared
/// and bound with plain lapin calls under the client account (which may read `C.events`), as a
/// dashboard would.
struct EventsConsumer {
    runtime: tokio::runtime::Runtime,
    _connection: lapin::Connection,
    consumer: lapin::Consumer,
}

impl EventsConsumer {
    fn bind(fleet: &Fleet, key: &str) -> EventsConsumer {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let queue = format!("{}.reply.dashboard{}", fleet.collective, uuid::Uuid::new_v4().simple());
        let exchange = format!("{}.events", fleet.collective);
        let url = crate::harness::Wire::amqp().client_url;
        let (connection, consumer) = runtime.block_on(async {
            let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                .await
                .expect("consumer connection");
            let channel = connection.create_channel().await.expect("channel");
            let options = lapin::options::QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            };
            channel
                .queue_declare(queue.as_str().into(), options, Default::default())
                .await
                .expect("declare queue");
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.into(),
                    Default::default(),
                    Default::default(),
                )
                .await
                .expect("bind to C.events");
            let options = lapin::options::BasicConsumeOptions { no_ack: true, ..Default::default() };
            let consumer = channel
                .basic_consume(queue.as_str().into(), "dashboard".into(), options, Default::default())
                .await
                .expect("consume");
            (connection, consumer)
        });
        EventsConsumer { runtime, _connection: connection, consumer }
    }

    /// The next `count` events as (routing key, body), in the order the broker delivered them;
    /// fewer if the queue stays empty for `quiet`.
    fn take(&mut self, count: usize, quiet: std::time::Duration) -> Vec<(String, String)> {
        use futures_util::StreamExt;
        let consumer = &mut self.consumer;
        self.runtime.block_on(async {
            let mut events = Vec::new();
            while events.len() < count {
                match tokio::time::timeout(quiet, consumer.next()).await {
                    Ok(Some(Ok(delivery))) => events.push((
                        delivery.routing_key.to_string(),
                        String::from_utf8(delivery.data).expect("a UTF-8 JSON event"),
                    )),
                    _ => break,
                }
            }
            events
        })
    }
}

#[test]
fn a_consumer_of_the_events_exchange_sees_the_jsonl_stream_in_order() {
    let ci = HealthFleet::start();
    let mut dashboard = EventsConsumer::bind(&ci.fleet, "rollout.#");
    ci.break_node("r04", "too slow");
    let output = ci.baton(&greet_rollout(
        "events",
        &["--canary", "1", "--batch", "3", "--batch-sleep", "0", "--events", "--jsonl"],
    ));
    assert_eq!(output.code, 1, "{output:?}");
    let printed: Vec<&str> = output.stdout.lines().collect();
    let events = dashboard.take(printed.len() + 1, std::time::Duration::from_secs(10));
    let bodies: Vec<&str> = events.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(bodies, printed, "the same events, byte for byte, in the same order");
    let lines = jsonl(&output);
    let kinds: Vec<&str> = lines.iter().map(|line| line["type"].as_str().expect("type")).collect();
    for kind in [
        "started",
        "batch_started",
        "reply",
        "check_result",
        "batch_finished",
        "stopped",
        "skipped",
        "summary",
    ] {
        assert!(kinds.contains(&kind), "a {kind} event: {kinds:?}");
    }
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"summary"));
    let rollout_id = lines[0]["rollout_id"].as_str().expect("rollout id");
    for ((key, _), kind) in events.iter().zip(&kinds) {
        assert_eq!(
            key,
            &format!("rollout.{rollout_id}.{kind}"),
            "routing keys name the rollout and the event"
        );
    }

    // Without --jsonl the events still go to the broker (a resume publishes them as the
    // rollout's --events asked), the same kinds in the same order.
    let human = ci.baton(&["rollout", "resume", rollout_id]);
    assert_eq!(human.code, 1, "r04 is still unhealthy: {human:?}");
    let events = dashboard.take(1000, std::time::Duration::from_secs(3));
    let kinds: Vec<String> = events
        .iter()
        .map(|(_, body)| {
            serde_json::from_str::<Value>(body).expect("JSON")["type"].as_str().expect("type").to_string()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("started"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("summary"), "{kinds:?}");
    let started: Value = serde_json::from_str(&events[0].1).expect("JSON");
    assert_eq!(started["run"], 2, "{started}");
    assert_eq!(strings(&started["nodes"]), names(4..=10), "{started}");
}

/// What `baton rollout status --json` says of `id` when run with `XDG_STATE_HOME` `state`.
fn status_in(ci: &HealthFleet, state: &std::path::Path, rollout_id: &str) -> Value {
    let status = ci.baton_in(state, &["rollout", "status", rollout_id, "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    status.json()
}

#[test]
fn a_rollout_stopped_on_one_runner_is_resumed_from_the_broker_on_another() {
    let ci = HealthFleet::start();
    ci.break_node("r05", "disk full");
    let output =
        ci.baton(&greet_rollout("elsewhere", &["--batch", "2", "--batch-sleep", "0", "--events", "--json"]));
    assert_eq!(output.code, 1, "{output:?}");
    let rollout_id = output.json()["rollout_id"].as_str().expect("rollout id").to_owned();
    ci.fix_node("r05");

    // Another runner: its own, empty, state directory; what it knows comes from the broker.
    let other = tempfile::tempdir().expect("other runner's state");
    let status = status_in(&ci, other.path(), &rollout_id);
    assert_eq!(status["status"], "stopped", "{status}");
    assert_eq!(strings(&status["nodes"]["ok"]), ["r01", "r02", "r03", "r04", "r06"], "{status}");
    assert_eq!(strings(&status["nodes"]["check_failed"]), ["r05"], "{status}");
    assert_eq!(strings(&status["nodes"]["skipped"]), names(7..=10), "{status}");
    assert_eq!(strings(&status["remaining"]), ["r05", "r07", "r08", "r09", "r10"], "{status}");
    assert!(
        !other.path().join("baton/rollouts").join(format!("{rollout_id}.json")).exists(),
        "status only reads"
    );

    let resumed = ci.baton_in(other.path(), &["rollout", "resume", &rollout_id, "--json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let document = resumed.json();
    assert_eq!(strings(&document["nodes"]["ok"]), names(1..=10), "{document}");
    for node in names(1..=10) {
        // r05's action succeeded the first time but its check did not: it is sent again,
        // and answers with that success from another runner's request without running it.
        assert_eq!(ci.greets(&node), 1, "{node}: how many times it ran the action");
        let expected = usize::from(node == "r05");
        assert_eq!(ci.audited_as(&node, "hello", "greet", "remembered"), expected, "{node}");
    }
    let here = status_in(&ci, other.path(), &rollout_id);
    assert_eq!(here["status"], "finished", "the other runner keeps its record now: {here}");
    assert_eq!(here["runs"], 2, "{here}");
    // The first runner's record is of the first run; its status shows the broker's later one.
    let first_status = ci.baton(&["rollout", "status", &rollout_id, "--json"]);
    assert_eq!(first_status.code, 0, "{first_status:?}");
    let first_status = first_status.json();
    assert_eq!(first_status["status"], "finished", "not the stale record here: {first_status}");
    assert_eq!(first_status["runs"], 2, "{first_status}");
    // The first runner's own record is older; a resume there catches up with the broker's
    // and finds nothing left to do.
    let first = ci.baton(&["rollout", "resume", &rollout_id, "--json"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.json()["status"], "finished", "{first:?}");
    assert_eq!(nodes_that_saw(&ci.fleet, "hello", "greet"), names(1..=10));
    for node in names(1..=10) {
        assert_eq!(ci.greets(&node), 1, "{node} did not run the action again");
    }
}

#[test]
fn a_second_run_of_a_running_rollout_is_refused_here_and_on_another_runner() {
    let ci = HealthFleet::start();
    // r03's health check waits: the rollout stays in its second batch while the locks are tried.
    ci.hold_node("r03");
    let mut child = ci
        .command(&greet_rollout("locked", &["--batch", "2", "--batch-sleep", "0", "--events", "--jsonl"]))
        .env("BATON_TIMEOUT_SECS", "120")
        .spawn()
        .expect("spawn baton");
    let (rollout_id, _lines) = read_jsonl_until(&mut child, |parsed| {
        parsed["type"] == "node" && parsed["node"] == "r03" && parsed["state"] == "checking"
    });

    let here = ci.baton(&["rollout", "resume", &rollout_id]);
    assert_eq!(here.code, 2, "{here:?}");
    assert!(
        here.stderr.contains(&format!("rollout {rollout_id} is running in another process on this machine")),
        "{here:?}"
    );
    let other = tempfile::tempdir().expect("other runner's state");
    let elsewhere = ci.baton_in(other.path(), &["rollout", "resume", &rollout_id]);
    assert_eq!(elsewhere.code, 2, "{elsewhere:?}");
    assert!(
        elsewhere.stderr.contains(&format!(
            "rollout {rollout_id} is running in another process (the broker holds its lock, queue \"{}.reply.rollout-{rollout_id}\"",
            ci.fleet.collective
        )),
        "{elsewhere:?}"
    );
    assert!(
        !other.path().join("baton/rollouts").join(format!("{rollout_id}.json")).exists(),
        "a refused resume leaves no record behind"
    );
    assert_eq!(nodes_that_saw(&ci.fleet, "hello", "greet"), names(1..=4), "the refused runs sent nothing");

    // The runner dies in the middle of the check: the broker drops its lock with its
    // connection, and the other runner finishes the rollout from the broker's events.
    child.kill().expect("SIGKILL baton");
    child.wait().expect("wait");
    ci.release_node("r03");
    let resumed = ci.baton_in(other.path(), &["rollout", "resume", &rollout_id, "--json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    assert_eq!(nodes_that_saw(&ci.fleet, "hello", "greet"), names(1..=10));
    for node in names(1..=10) {
        // r03 and r04 were being checked when the runner died: not known to be healthy, they
        // are sent the action again, and answer with their first run's success without
        // running it; the nodes of the first batch are not sent it at all.
        assert_eq!(ci.greets(&node), 1, "{node}: how many times it ran the action");
        let expected = usize::from(node == "r03" || node == "r04");
        assert_eq!(ci.audited_as(&node, "hello", "greet", "remembered"), expected, "{node}");
    }
}

/// A STOMP frame's command, headers and body.
type StompFrame = (String, Vec<(String, String)>, String);

/// A plain STOMP 1.2 subscriber, frames written by hand (not Baton's code), for what a
/// dashboard on ActiveMQ would see.
struct StompSubscriber {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl StompSubscriber {
    /// Connects with the credentials of `url` (`stomp://USER:PASSWORD@HOST:PORT`) and
    /// subscribes to `destination`, waiting for the broker's receipt.
    fn subscribe(url: &str, destination: &str) -> StompSubscriber {
        use std::io::Write;
        let rest = url.strip_prefix("stomp://").expect("a stomp:// URL");
        let (credentials, address) = rest.split_once('@').expect("credentials in the URL");
        let (login, passcode) = credentials.split_once(':').expect("user:password");
        let address = address.split('/').next().expect("host:port");
        let stream = std::net::TcpStream::connect(address).expect("connect to ActiveMQ");
        stream.set_read_timeout(Some(std::time::Duration::from_secs(1))).expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut subscriber = StompSubscriber { stream: std::io::BufReader::new(stream) };
        write!(
            writer,
            "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:{login}\npasscode:{passcode}\nheart-beat:0,0\n\n\0"
        )
        .expect("CONNECT");
        let (command, headers, _) = subscriber.frame(std::time::Duration::from_secs(10)).expect("an answer");
        assert_eq!(command, "CONNECTED", "{headers:?}");
        write!(writer, "SUBSCRIBE\nid:0\ndestination:{destination}\nack:auto\nreceipt:subscribed\n\n\0")
            .expect("SUBSCRIBE");
        let (command, headers, _) = subscriber.frame(std::time::Duration::from_secs(10)).expect("a receipt");
        assert_eq!(command, "RECEIPT", "{headers:?}");
        subscriber
    }

    /// The next frame's command, headers and body, or `None` after `wait` without one.
    fn frame(&mut self, wait: std::time::Duration) -> Option<StompFrame> {
        use std::io::Read;
        let deadline = std::time::Instant::now() + wait;
        let mut command = String::new();
        // Between frames a broker may send end-of-lines; a read timeout retries until the deadline.
        while command.trim().is_empty() {
            command.clear();
            match self.stream.read_line(&mut command) {
                Ok(0) => panic!("ActiveMQ closed the connection"),
                Ok(_) => {}
                Err(_) if std::time::Instant::now() < deadline => {}
                Err(_) => return None,
            }
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("a header line");
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("name:value");
            headers.push((name.to_owned(), value.to_owned()));
        }
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map(|(_, value)| value.parse().expect("a length"));
        let mut body = Vec::new();
        match length {
            Some(length) => {
                body.resize(length, 0);
                self.stream.read_exact(&mut body).expect("the body");
                let mut nul = [0u8];
                self.stream.read_exact(&mut nul).expect("the frame's end");
            }
            None => {
                self.stream.read_until(0, &mut body).expect("the body");
                body.pop();
            }
        }
        Some((command.trim().to_owned(), headers, String::from_utf8(body).expect("UTF-8 body")))
    }
}

/// Over STOMP to ActiveMQ, which keeps no events: a rollout's events reach a plain STOMP
/// subscriber of the topics `C.events.>` byte for byte and in order, each on the topic named
/// after its rollout and type. (Over AMQP, see the test above; deploy/activemq/activemq.xml
/// lets clients write and read these topics.)
#[test]
fn over_activemq_a_stomp_subscriber_of_the_events_sees_the_jsonl_stream_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = install_agents(dir.path(), &["hello"]);
    let agents_config = format!("[agents]\ndir = {:?}\n", agents.display().to_string());
    let specs = (1..=3)
        .map(|index| NodeSpec::new(&format!("s{index:02}"), json!({}), &[]).with_config(&agents_config))
        .collect();
    let fleet = Fleet::start_on(crate::harness::Wire::stomp_activemq(), specs);
    let config = fleet.client_config_with(
        &fleet.wire,
        &format!("definitions_dir = {:?}\n", agents.display().to_string()),
        "",
    );
    let mut dashboard =
        StompSubscriber::subscribe(&fleet.wire.client_url, &format!("/topic/{}.events.>", fleet.collective));
    let state = tempfile::tempdir().expect("state");
    let output = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--config")
        .arg(&config)
        .args([
            "rpc",
            "hello",
            "greet",
            "name=stomp",
            "--batch",
            "1",
            "--batch-sleep",
            "0",
            "--events",
            "--jsonl",
        ])
        .env_remove("BATON_LOG")
        .env("XDG_STATE_HOME", state.path())
        .stdin(Stdio::null())
        .output()
        .expect("run baton");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let printed: Vec<&str> = stdout.lines().collect();
    let mut received = Vec::new();
    while received.len() < printed.len() + 1 {
        let Some((command, headers, body)) = dashboard.frame(std::time::Duration::from_secs(5)) else {
            break;
        };
        assert_eq!(command, "MESSAGE", "{headers:?} {body}");
        let destination =
            headers.iter().find(|(name, _)| name == "destination").expect("destination").1.clone();
        received.push((destination, body));
    }
    let bodies: Vec<&str> = received.iter().map(|(_, body)| body.as_str()).collect();
    assert_eq!(bodies, printed, "the same events, byte for byte, in the same order");
    let lines = jsonl(&BatonOutput { code: 0, stdout: stdout.to_string(), stderr: String::new() });
    let rollout_id = lines[0]["rollout_id"].as_str().expect("a started line first");
    for ((destination, _), line) in received.iter().zip(&lines) {
        let kind = line["type"].as_str().expect("type");
        assert_eq!(destination, &format!("/topic/{}.events.rollout.{rollout_id}.{kind}", fleet.collective));
        assert!(line["signature"]["value"].is_string(), "every event is signed: {line}");
    }
    assert_eq!(lines.last().map(|line| line["type"].clone()), Some(json!("summary")));
}
