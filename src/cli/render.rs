//! Rendering: what people see on a terminal, and what scripts read as JSON.
//!
//! Human output goes to stdout, with the progress bar on stderr and only when stderr is a
//! terminal. `--json` prints exactly one document on stdout, on success and failure alike;
//! `--jsonl` prints one line per event as it happens, then a summary line.

use std::collections::{BTreeSet, HashSet};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use uuid::Uuid;

use super::args::{Display, OutputArgs};
use super::exit::{Exit, Failure};
use super::report::{
    BatchFinishedLine, BatchStartedLine, CallSummary, CheckResultLine, CollectionReport, CollectionStats,
    CollectionSummary, DetachedReport, DiscoverReport, DiscoverStats, ErrorReport, FactReport,
    InterruptedReport, InterruptedStats, InventoryReport, NoResponseLine, NodeLine, NodeStateLine,
    NothingMatchedLine, NothingMatchedReport, NothingMatchedStats, PingReport, PingTime,
    RequestNoResponseLine, RolloutReport, RolloutStatusReport, RolloutSummary, Selection, SentLine,
    StartedLine, StoppedLine, StoppedReport, line, nodes_by_state, print_as, print_document, print_line,
    print_text_line, stop_reason,
};
use super::targets::NothingFound;
use crate::client::detached::{Collection, DetachedRequest};
use crate::client::discovery::Discovered;
use crate::client::events::EventPublisher;
use crate::client::journal::RolloutRecord;
use crate::client::report::{OutcomeReport, Stats, round2};
use crate::client::rollout::Ordered;
use crate::client::{CallOutcome, Event, NodeState, RolloutOutcome};
use crate::logging::escape_terminal_controls as shown;
use crate::protocol::ddl::plain_text;

/// ANSI colours used on a terminal.
const RED: &str = "31";
const YELLOW: &str = "33";
const GREEN: &str = "32";

/// Renders one command's results in the format the user asked for.
pub struct Renderer {
    output: OutputArgs,
    verbose: u8,
    progress: Option<ProgressBar>,
    /// Print a line as each batch starts (when the user asked for batches).
    show_batches: bool,
    /// Colour human output: stdout is a terminal and NO_COLOR is not set.
    colour: bool,
    /// A tracked rollout's events, published to the broker as the `--jsonl` lines are printed.
    events: Option<EventPublisher>,
    /// The agent `baton rpc AGENT` added to the filter, for the `--json` documents.
    added_agent_filter: Option<String>,
    /// The replies and unreachable nodes seen so far, for what Ctrl-C prints.
    seen_replies: Vec<crate::client::NodeReply>,
    seen_unreachable: Vec<String>,
    /// The nodes of the batch in flight that have not answered yet, named beside the bar (kept
    /// only with a bar; a set, since each of thousands of replies takes one out).
    awaited: BTreeSet<String>,
    /// Where the batch in flight's replies start in `seen_replies` (batches run one after the
    /// other), so that a finished batch's line looks at its own replies only.
    batch_replies: usize,
}

/// Up to this many nodes still awaited are named beside the progress bar; more are counted.
const AWAITED_NAMED: usize = 5;

/// Whether human output may be coloured: only on a terminal, and never with `NO_COLOR` set
/// to anything (<https://no-color.org>).
pub fn colour_allowed(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

impl Renderer {
    pub fn new(output: &OutputArgs, verbose: u8) -> Renderer {
        let colour = !(output.json || output.jsonl)
            && colour_allowed(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
        Renderer {
            output: output.clone(),
            verbose,
            progress: None,
            show_batches: false,
            colour,
            events: None,
            added_agent_filter: None,
            seen_replies: Vec::new(),
            seen_unreachable: Vec::new(),
            awaited: BTreeSet::new(),
            batch_replies: 0,
        }
    }

    /// Publishes every event line to the broker too, from now on.
    pub fn publish_events(&mut self, events: EventPublisher) {
        self.events = Some(events);
    }

    /// Stops publishing events, handing back the publisher so the caller can wait for the last.
    pub fn take_events(&mut self) -> Option<EventPublisher> {
        self.events.take()
    }

    /// One event line: printed with `--jsonl`, and published as is when the rollout's events
    /// go to the broker, so a consumer of `C.events` reads exactly what `--jsonl` prints.
    fn emit(&self, kind: &str, body: impl serde::Serialize) {
        if !self.output.jsonl && self.events.is_none() {
            return;
        }
        let mut text = serde_json::to_string(&line(kind, body)).unwrap_or_else(|_| "{}".to_string());
        if let Some(events) = &self.events {
            text = events.sign(text);
        }
        if self.output.jsonl {
            print_text_line(&text);
        }
        if let Some(events) = &self.events {
            events.publish(kind, &text);
        }
    }

    /// Says that only nodes with `agent` are discovered, because `baton rpc` added `-A agent`
    /// to the filter: on stderr for people, as `added_agent_filter` in the JSON documents.
    pub fn added_agent_filter(&mut self, agent: &str) {
        if !self.is_machine() {
            eprintln!(
                "Asking only the nodes that have the agent \"{agent}\" (-A {agent} added to the filter)"
            );
        }
        self.added_agent_filter = Some(agent.to_owned());
    }

    /// Prints a line as each batch starts.
    pub fn show_batches(&mut self, show: bool) {
        self.show_batches = show;
    }

    fn paint(&self, text: &str, colour: &str) -> String {
        if self.colour { format!("\x1b[{colour}m{text}\x1b[0m") } else { text.to_string() }
    }

    /// Prints a line to stdout without tearing the progress bar.
    fn say(&self, line: &str) {
        match &self.progress {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn is_machine(&self) -> bool {
        self.output.json || self.output.jsonl
    }

    /// Starts a progress bar for `total` replies, on a terminal only.
    pub fn start_progress(&mut self, total: usize) {
        if self.is_machine() || self.output.no_progress || !super::stderr_is_terminal() {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template(" {spinner} [ {bar:60} ] {pos} / {len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .tick_chars("|/-\\*")
            .progress_chars("=> ");
        bar.set_style(style);
        // A steady tick keeps the spinner turning while a slow batch or a batch sleep passes.
        bar.enable_steady_tick(Duration::from_millis(100));
        self.progress = Some(bar);
    }

    /// Draws the bar once more at its final count, then clears it, so the first result line
    /// starts on a clean line (regression: the results were printed after the bar's line).
    fn finish_progress(&mut self) {
        if let Some(bar) = self.progress.take() {
            bar.finish();
            bar.finish_and_clear();
        }
    }

    /// Advances the progress bar; streams a line per reply with `--jsonl`.
    pub fn progress_event(&mut self, event: &Event<'_>) {
        match event {
            Event::Reply(reply) => self.answered(&reply.node),
            Event::Unreachable(node) => self.answered(node),
            Event::BatchStarted { nodes, .. } => {
                self.batch_replies = self.seen_replies.len();
                if self.progress.is_some() {
                    self.awaited = nodes.iter().cloned().collect();
                }
                self.show_awaited();
            }
            Event::BatchFinished { .. } => {
                self.awaited.clear();
                self.show_awaited();
            }
            Event::Sent { .. }
            | Event::Unexpected(_)
            | Event::Skipped { .. }
            | Event::NodeState { .. }
            | Event::CheckFinished { .. } => {}
        }
    }

    /// Counts one more node accounted for, and names the ones still awaited.
    fn answered(&mut self, node: &str) {
        if let Some(bar) = &self.progress {
            // A broadcast's reply from a node it did not expect (not registered yet) is one more
            // target: the bar grows rather than counting past its end.
            if bar.length().is_some_and(|length| bar.position() >= length) {
                bar.inc_length(1);
            }
            bar.inc(1);
        }
        if self.awaited.remove(node) {
            self.show_awaited();
        }
    }

    /// Beside the bar, on a terminal: which nodes the batch in flight still waits for.
    fn show_awaited(&self) {
        let Some(bar) = &self.progress else { return };
        let message = match self.awaited.len() {
            0 => String::new(),
            count if count <= AWAITED_NAMED => {
                format!(
                    "waiting for: {}",
                    self.awaited.iter().map(String::as_str).collect::<Vec<_>>().join(" ")
                )
            }
            count => format!("waiting for {count} nodes"),
        };
        bar.set_message(message);
    }

    pub fn rpc_event(&mut self, event: &Event<'_>) {
        self.progress_event(event);
        match event {
            Event::Reply(reply) => self.seen_replies.push((*reply).clone()),
            Event::Unreachable(node) => self.seen_unreachable.push((*node).to_owned()),
            _ => {}
        }
        if !self.is_machine() {
            self.human_event(event);
        }
        match event {
            Event::Sent { request_id, targets } => {
                self.emit("sent", SentLine { request_id: *request_id, targets: *targets })
            }
            Event::Reply(reply) => self.emit("reply", reply),
            Event::Unreachable(node) => self.emit("unreachable", NodeLine { node }),
            Event::Unexpected(reply) => self.emit("unexpected", reply),
            Event::BatchStarted { index, of, nodes } => {
                self.emit("batch_started", BatchStartedLine { index: *index, of: *of, nodes })
            }
            Event::BatchFinished { batch, of } => {
                self.emit("batch_finished", BatchFinishedLine { of: *of, batch })
            }
            Event::Skipped { nodes, stopped } => {
                let stopped = StoppedReport::new(stopped);
                self.emit("stopped", StoppedLine { skipped: nodes.len(), stopped });
                for node in nodes.iter() {
                    self.emit("skipped", NodeLine { node });
                }
            }
            Event::CheckFinished { index, check } => {
                self.emit("check_result", CheckResultLine { index: *index, check })
            }
            // What the journal saves, so that a machine without it rebuilds it from the events.
            Event::NodeState { node, state } => self.emit("node", NodeStateLine { node, state: *state }),
        }
    }

    /// What people see while a rollout runs: each batch as it starts, and why it stopped.
    fn human_event(&mut self, event: &Event<'_>) {
        match event {
            Event::BatchStarted { index, of, nodes } if self.show_batches => {
                self.say(&format!("Batch {index}/{of}: {}", nodes.join(" ")));
            }
            // Each batch's results as they come, not only at the end of the rollout.
            Event::BatchFinished { batch, of } if self.show_batches => {
                // This batch's replies, and sets rather than scans: a batch of thousands.
                let replies = self.seen_replies.get(self.batch_replies..).unwrap_or_default();
                let in_batch: HashSet<&str> = batch.nodes.iter().map(String::as_str).collect();
                let replied: HashSet<&str> = replies.iter().map(|reply| reply.node.as_str()).collect();
                let failed: Vec<&str> = replies
                    .iter()
                    .filter(|reply| !reply.is_ok() && in_batch.contains(reply.node.as_str()))
                    .map(|reply| reply.node.as_str())
                    .collect();
                let silent: Vec<&str> =
                    batch.nodes.iter().map(String::as_str).filter(|node| !replied.contains(node)).collect();
                let mut line = format!(
                    "Batch {}/{of} done in {} ms: {} ok, {} failed, {} no response",
                    batch.index, batch.ms, batch.ok, batch.failed, batch.no_response
                );
                if !failed.is_empty() {
                    line.push_str(&format!("; failed: {}", failed.join(" ")));
                }
                if !silent.is_empty() {
                    line.push_str(&format!("; no response: {}", silent.join(" ")));
                }
                let colour = if failed.is_empty() && silent.is_empty() { GREEN } else { RED };
                self.say(&self.paint(&line, colour));
            }
            Event::Skipped { nodes, stopped } => {
                let line = format!("Stopping: {}; {} node(s) skipped", stop_reason(stopped), nodes.len());
                self.say(&self.paint(&line, RED));
            }
            Event::CheckFinished { index, check } => {
                let not_ok = check.not_ok();
                let mut line = format!(
                    "Check of batch {index} ({}): {} ok, {} failed",
                    check.check,
                    check.ok.len(),
                    not_ok.len()
                );
                if !not_ok.is_empty() {
                    line.push_str(&format!(": {}", not_ok.join(" ")));
                }
                let colour = if not_ok.is_empty() { GREEN } else { RED };
                self.say(&self.paint(&line, colour));
            }
            _ => {}
        }
    }

    pub fn ping_event(&mut self, event: &Event<'_>) {
        match event {
            Event::Reply(reply) if !self.is_machine() => {
                println!("{:<40} time={:.2} ms", reply.node, reply.ms)
            }
            _ => self.rpc_event(event),
        }
    }

    pub fn ping_summary(&mut self, outcome: &CallOutcome) {
        if self.output.json {
            print_document(&PingReport {
                request_id: outcome.request_id,
                replies: outcome
                    .replies
                    .iter()
                    .map(|reply| PingTime { node: &reply.node, ms: reply.ms })
                    .collect(),
                no_response: &outcome.no_response,
                unreachable: &outcome.unreachable,
                unexpected: outcome.unexpected.iter().map(|reply| reply.node.as_str()).collect(),
                stats: Stats::of(outcome, None),
            });
            return;
        }
        if self.output.jsonl {
            self.trailer_lines(outcome, None);
            return;
        }
        let times: Vec<f64> = outcome.replies.iter().map(|reply| reply.ms).collect();
        println!();
        println!("---- ping statistics ----");
        if times.is_empty() {
            println!("No nodes responded");
        } else {
            let max = times.iter().copied().fold(f64::MIN, f64::max);
            let min = times.iter().copied().fold(f64::MAX, f64::min);
            let avg = times.iter().sum::<f64>() / times.len() as f64;
            println!("{} replies max: {max:.2} min: {min:.2} avg: {avg:.2}", times.len());
        }
        self.silent_and_unexpected(outcome);
    }

    pub fn discovered(&mut self, discovered: &Discovered, nothing: &NothingFound) {
        let stats = DiscoverStats {
            discovered: discovered.nodes.len(),
            no_response: discovered.no_response.len(),
            discovery_ms: round2(discovered.elapsed.as_secs_f64() * 1000.0),
        };
        if self.output.jsonl {
            for node in &discovered.nodes {
                print_line(&line("node", NodeLine { node }));
            }
            for node in &discovered.no_response {
                print_line(&line("no_response", NodeLine { node }));
            }
            print_line(&line("summary", stats));
            return;
        }
        if self.output.json {
            print_document(&DiscoverReport {
                nodes: &discovered.nodes,
                no_response: &discovered.no_response,
                stats,
            });
            return;
        }
        for node in &discovered.nodes {
            println!("{node}");
        }
        if !discovered.no_response.is_empty() {
            eprintln!("Expected by the registry but did not answer: {}", discovered.no_response.join(", "));
        } else if discovered.nodes.is_empty() {
            eprintln!("{} ({})", nothing.message, nothing.next_step);
        }
        if self.verbose > 0 {
            eprintln!("\nDiscovered {} nodes in {:.2} ms", discovered.nodes.len(), stats.discovery_ms);
        }
    }

    /// What a command prints when no node matched the filter, for `agent#action`.
    pub fn nothing_matched(
        &mut self,
        agent: &str,
        action: &str,
        discovered: &Discovered,
        nothing: &NothingFound,
    ) {
        let discovery_ms = round2(discovered.elapsed.as_secs_f64() * 1000.0);
        let message = nothing.message.as_str();
        if self.output.json {
            print_document(&NothingMatchedReport {
                request_id: None,
                agent,
                action,
                targeted: [],
                replies: [],
                no_response: [],
                unexpected: [],
                skipped: [],
                batches: [],
                stopped: None,
                aggregates: serde_json::Map::new(),
                message,
                added_agent_filter: self.added_agent_filter.as_deref(),
                stats: NothingMatchedStats::new(Some(discovery_ms)),
            });
        } else if self.output.jsonl {
            print_line(&line(
                "summary",
                NothingMatchedLine { stats: NothingMatchedStats::new(None), message },
            ));
        } else {
            eprintln!("{message} ({})", nothing.next_step);
        }
    }

    /// What `baton rpc` prints when Ctrl-C ends the wait: the replies so far (by the display
    /// policy), and the targets still awaited. Returns the exit code of what is known: 1 when
    /// a node failed, else 3, since the awaited nodes did not reply.
    pub fn interrupted(&mut self, targets: &[String]) -> Exit {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
        // A broadcast's targets include the nodes that answered without being expected.
        let expected: std::collections::HashSet<&str> = targets.iter().map(String::as_str).collect();
        let unexpected = self
            .seen_replies
            .iter()
            .map(|reply| &reply.node)
            .filter(|node| !expected.contains(node.as_str()));
        let targets: Vec<String> = targets.iter().chain(unexpected).cloned().collect();
        let targets = targets.as_slice();
        let answered: std::collections::BTreeSet<&str> = self
            .seen_replies
            .iter()
            .map(|reply| reply.node.as_str())
            .chain(self.seen_unreachable.iter().map(String::as_str))
            .collect();
        let awaited: Vec<&str> =
            targets.iter().map(String::as_str).filter(|node| !answered.contains(node)).collect();
        let ok = self.seen_replies.iter().filter(|reply| reply.is_ok()).count();
        let failed = self.seen_replies.len() - ok;
        let exit = if failed > 0 { Exit::Failed } else { Exit::NoResponse };
        let stats = InterruptedStats {
            targeted: targets.len(),
            ok,
            failed,
            awaited: awaited.len(),
            unreachable: self.seen_unreachable.len(),
        };
        let report = InterruptedReport {
            interrupted: true,
            targeted: targets,
            replies: &self.seen_replies,
            unreachable: &self.seen_unreachable,
            awaited,
            stats,
        };
        if self.output.json {
            print_document(&report);
            return exit;
        }
        if self.output.jsonl {
            print_line(&line("interrupted", report));
            return exit;
        }
        self.write_replies(&self.seen_replies);
        println!();
        println!(
            "{}",
            self.paint(
                &format!("Interrupted: {} / {} nodes answered, {failed} failed", ok + failed, targets.len()),
                YELLOW
            )
        );
        if !report.awaited.is_empty() {
            println!("Still awaited, {} node(s):", report.awaited.len());
            println!();
            let awaited: Vec<String> = report.awaited.iter().map(|node| (*node).to_owned()).collect();
            print_columns(&awaited);
        }
        exit
    }

    /// The end of `baton rpc`: the whole rollout as one document, the trailer lines, or the
    /// summary for people.
    pub fn rollout_summary(
        &mut self,
        rollout: &RolloutOutcome,
        discovered: &Discovered,
        ordered: &Ordered,
        rollout_id: Option<Uuid>,
    ) {
        self.finish_progress();
        let discovery_ms = discovered.elapsed.as_secs_f64() * 1000.0;
        let selection = Selection {
            candidates: ordered.candidates,
            selected: ordered.nodes.len(),
            seed: ordered.seed,
            added_agent_filter: self.added_agent_filter.as_deref(),
        };
        let mut call = OutcomeReport::new(&rollout.call, Some(discovery_ms));
        call.stats.batches = Some(rollout.batches.len());
        call.stats.planned_batches = Some(rollout.planned_batches);
        let stopped = rollout.stopped.as_ref().map(StoppedReport::new);
        // The last lines of --jsonl, and the rollout's last events: silent nodes, the summary.
        self.no_response_lines(&rollout.call);
        let summary = RolloutSummary {
            request_id: rollout.call.request_id,
            rollout_id,
            stats: call.stats,
            stopped: rollout.stopped.as_ref().map(StoppedReport::new),
            selection,
        };
        self.emit("summary", summary);
        if self.output.json {
            print_document(&RolloutReport {
                rollout_id,
                call,
                nodes: nodes_by_state(&rollout.nodes),
                batches: &rollout.batches,
                stopped,
                selection,
            });
        }
        if self.is_machine() {
            return;
        }
        self.human_summary(&rollout.call, discovery_ms);
        if let Some(seed) = ordered.seed {
            println!();
            println!(
                "Picked {} of {} nodes with --limit-seed {seed}",
                ordered.nodes.len(),
                ordered.candidates
            );
        }
        self.check_failures(rollout);
        if let Some(stopped) = &rollout.stopped {
            println!();
            println!("{}", self.paint(&format!("Rollout stopped: {}", stop_reason(stopped)), RED));
            println!("Skipped {} node(s), never sent the request:", rollout.call.skipped.len());
            println!();
            print_columns(&rollout.call.skipped);
        }
        if let Some(id) = rollout_id
            && rollout.nodes.values().any(|state| *state != NodeState::Ok)
        {
            println!();
            println!("Nodes that did not succeed are left: baton rollout resume {id}");
        }
        if self.verbose > 0 {
            self.stats_block(&rollout.call, discovery_ms, Some(rollout));
        }
    }

    /// A tracked rollout starts (or resumes): its id, where its state is kept, and its nodes.
    pub fn rollout_started(&mut self, record: &RolloutRecord, nodes: &[String], state_file: &Path) {
        let started = StartedLine {
            agent: &record.request.agent,
            action: &record.request.action,
            start: record.start(nodes),
            state_file: &state_file.display().to_string(),
        };
        self.emit("started", started);
        if self.is_machine() {
            return;
        }
        let verb = if record.runs > 1 { "resumed" } else { "started" };
        self.say(&format!(
            "Rollout {} {verb} on {} node(s); see it with: baton rollout status {}",
            record.rollout_id,
            nodes.len(),
            record.rollout_id
        ));
    }

    /// `baton rollout status`: where every node of a rollout stands.
    pub fn rollout_status(&mut self, record: &RolloutRecord) {
        let remaining = record.remaining();
        if self.output.json || self.output.jsonl {
            let report = RolloutStatusReport {
                rollout_id: record.rollout_id,
                status: record.status.name(),
                agent: &record.request.agent,
                action: &record.request.action,
                collective: &record.collective,
                runs: record.runs,
                nodes: nodes_by_state(&record.nodes),
                remaining: &remaining,
                created_ms: record.created_ms,
                updated_ms: record.updated_ms,
            };
            print_as(&report, self.output.jsonl);
            return;
        }
        println!(
            "Rollout {}: {} {}, {} after {} run(s), {} node(s)",
            record.rollout_id,
            record.request.agent,
            record.request.action,
            record.status.name(),
            record.runs,
            record.order.len()
        );
        for state in NodeState::ALL {
            let nodes = record.nodes_in(state);
            if !nodes.is_empty() {
                println!("  {:<13} {:>5}  {}", state.name(), nodes.len(), nodes.join(" "));
            }
        }
        println!();
        if remaining.is_empty() {
            println!("Every node succeeded; nothing is left to resume.");
        } else {
            println!("{} node(s) remain: baton rollout resume {}", remaining.len(), record.rollout_id);
        }
    }

    /// The nodes whose action succeeded but whose health check did not, with the check's answer.
    fn check_failures(&self, rollout: &RolloutOutcome) {
        let checks: Vec<_> = rollout.batches.iter().filter_map(|batch| batch.check.as_ref()).collect();
        let failed: usize = checks.iter().map(|check| check.not_ok().len()).sum();
        if failed == 0 {
            return;
        }
        println!();
        println!("{}", self.paint(&format!("Health check failed on {failed} node(s):"), RED));
        for check in checks {
            for reply in &check.failed {
                println!("  {:<20} {}: {}", reply.node, reply.status_text, shown(&reply.message));
            }
            for node in &check.no_response {
                println!("  {node:<20} did not answer {}", check.check);
            }
        }
    }

    /// Failures (or every reply, per `--display`), the "Finished processing" line, silent and
    /// unexpected nodes.
    fn human_summary(&mut self, outcome: &CallOutcome, _discovery_ms: f64) {
        self.write_replies(&outcome.replies);
        let counts = outcome.counts();
        let summaries = super::summary::aggregate_lines(&outcome.aggregates);
        if !summaries.is_empty() {
            println!();
            // Aggregates are made of the nodes' values.
            for text in summaries {
                println!("{}", shown(&text));
            }
        }
        println!();
        println!(
            "Finished processing {} / {} nodes in {} ms",
            counts.ok + counts.failed,
            counts.targeted,
            outcome.total_ms
        );
        if counts.failed > 0 {
            println!("{}", self.paint(&format!("{} of them failed", counts.failed), RED));
        }
        self.silent_and_unexpected(outcome);
    }

    /// The `-v` block: counts and timings.
    fn stats_block(&self, outcome: &CallOutcome, discovery_ms: f64, rollout: Option<&RolloutOutcome>) {
        let counts = outcome.counts();
        println!();
        println!("---- {}#{} call stats ----", outcome.agent, outcome.action);
        println!("           Nodes: {} / {}", counts.ok + counts.failed, counts.targeted);
        println!("     Pass / Fail: {} / {}", counts.ok, counts.failed);
        if counts.no_response > 0 {
            println!("     No response: {}", counts.no_response);
        }
        if let Some(rollout) = rollout {
            println!("         Batches: {} / {}", rollout.batches.len(), rollout.planned_batches);
            if counts.skipped > 0 {
                println!("         Skipped: {}", counts.skipped);
            }
        }
        println!("       Discovery: {discovery_ms:.2} ms");
        match (outcome.first_reply_ms, outcome.last_reply_ms) {
            (Some(first), Some(last)) => {
                println!("     First reply: {first:.2} ms");
                println!("      Last reply: {last:.2} ms");
            }
            _ => println!("     First reply: (none)"),
        }
        println!("           Total: {} ms", outcome.total_ms);
    }

    /// What `baton rpc --reply-to` prints: the request id and how to collect the replies.
    pub fn detached(&mut self, sent: &DetachedRequest, state_file: Option<&Path>) {
        let document = DetachedReport {
            request_id: sent.request_id,
            agent: &sent.agent,
            action: &sent.action,
            reply_to: &sent.name,
            queue: &sent.queue,
            targeted: &sent.targets,
            unreachable: &sent.unreachable,
            state_file: state_file.map(|path| path.display().to_string()),
            collect: format!("baton replies {} --request {}", sent.name, sent.request_id),
        };
        if self.output.json {
            print_document(&document);
            return;
        }
        if self.output.jsonl {
            print_line(&line("sent", document));
            return;
        }
        println!("Request sent with id: {}", sent.request_id);
        println!(
            "Replies from {} node(s) go to queue {}; collect them with:",
            sent.targets.len(),
            sent.queue
        );
        println!();
        println!("    baton replies {} --request {}", sent.name, sent.request_id);
        if !sent.unreachable.is_empty() {
            println!();
            println!(
                "{}",
                self.paint(
                    &format!("Unreachable, will not answer ({} node(s)):", sent.unreachable.len()),
                    YELLOW
                )
            );
            print_columns(&sent.unreachable);
        }
    }

    /// What `baton replies` prints: each request's replies, as `baton rpc` would.
    /// The end of `baton replies`: per request, as `baton rpc` would have shown it, each with
    /// its action's display policy (`displays`, by request) unless `--display` was given.
    pub fn collection(&mut self, collection: &Collection, displays: &[Option<Display>]) {
        let mut totals = crate::client::outcome::Counts::default();
        let mut replies = 0;
        for outcome in &collection.requests {
            let counts = outcome.counts();
            totals.targeted += counts.targeted;
            totals.ok += counts.ok;
            totals.failed += counts.failed;
            totals.no_response += counts.no_response;
            replies += outcome.replies.len() + outcome.unexpected.len();
        }
        let stats = CollectionStats {
            requests: collection.requests.len(),
            replies,
            ok: totals.ok,
            failed: totals.failed,
            no_response: totals.no_response,
            dropped: collection.dropped,
            put_back: collection.put_back,
            total_ms: collection.total_ms,
        };
        if self.output.json {
            let requests =
                collection.requests.iter().map(|outcome| OutcomeReport::new(outcome, None)).collect();
            print_document(&CollectionReport { queue: &collection.queue, requests, stats });
            return;
        }
        if self.output.jsonl {
            for outcome in &collection.requests {
                for node in &outcome.no_response {
                    print_line(&line(
                        "no_response",
                        RequestNoResponseLine { request_id: outcome.request_id, node },
                    ));
                }
                let summary = CallSummary { request_id: outcome.request_id, stats: Stats::of(outcome, None) };
                print_line(&line("request_summary", summary));
            }
            print_line(&line("summary", CollectionSummary { queue: &collection.queue, stats }));
            return;
        }
        if collection.requests.is_empty() {
            println!("No replies in queue {}", collection.queue);
        }
        let given = self.output.display;
        for (index, outcome) in collection.requests.iter().enumerate() {
            self.output.display = given.or(displays.get(index).copied().flatten());
            println!("Replies to request {} ({}#{}):", outcome.request_id, outcome.agent, outcome.action);
            if outcome.targeted.is_none() {
                println!(
                    "(whom it was sent to is unknown here: no record of it, so silent nodes cannot be listed)"
                );
            }
            println!();
            self.human_summary(outcome, 0.0);
            println!();
        }
        self.output.display = given;
        if collection.put_back > 0 {
            println!("{} replies to other requests stay in the queue", collection.put_back);
        }
    }

    pub fn inventory(&mut self, node: &str, inventory: &CallOutcome, stats: &CallOutcome) {
        let inventory_data = inventory.replies.first().filter(|reply| reply.is_ok()).map(|reply| &reply.data);
        let stats_data = stats.replies.first().filter(|reply| reply.is_ok()).map(|reply| &reply.data);
        if self.is_machine() {
            let errors = inventory.replies.iter().chain(stats.replies.iter()).filter(|reply| !reply.is_ok());
            let document = InventoryReport {
                node,
                inventory: inventory_data,
                daemon_stats: stats_data,
                no_response: &inventory.no_response,
                errors: errors.map(|reply| reply.message.as_str()).collect(),
            };
            print_as(&document, self.output.jsonl);
            return;
        }
        let Some(data) = inventory_data else {
            match inventory.replies.first() {
                Some(reply) => eprintln!("{node} answered {}: {}", reply.status_text, shown(&reply.message)),
                None if !inventory.unreachable.is_empty() => {
                    eprintln!(
                        "{node} is unreachable: the broker has no queue for it (is batond running there, with that identity?)"
                    )
                }
                None => eprintln!("{node} did not respond within the timeout"),
            }
            return;
        };
        println!("Inventory for {node}:");
        println!();
        if let Some(stats) = stats_data {
            println!("   Server Statistics:");
            for (key, value) in stats {
                println!("      {:>20}: {}", shown(key), plain(value));
            }
            println!();
        }
        for (title, key) in [("Agents", "agents"), ("Collectives", "collectives"), ("Classes", "classes")] {
            println!("   {title}:");
            let items: Vec<String> =
                data.get(key).and_then(Value::as_array).into_iter().flatten().map(plain).collect();
            if items.is_empty() {
                println!("      (none)");
            }
            for item in items {
                println!("      {item}");
            }
            println!();
        }
        println!("   Facts:");
        if let Some(Value::Object(facts)) = data.get("facts") {
            let mut flat = Vec::new();
            flatten("", &Value::Object(facts.clone()), &mut flat);
            for (key, value) in flat {
                println!("      {} => {}", shown(&key), shown(&value));
            }
        }
    }

    pub fn fact_report(&mut self, fact: &str, outcome: &CallOutcome, discovered: &Discovered) {
        self.finish_progress();
        let mut values: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for reply in outcome.replies.iter().filter(|reply| reply.is_ok()) {
            let value = match reply.data.get("value") {
                None | Some(Value::Null) => "(missing)".to_string(),
                Some(value) => plain(value),
            };
            values.entry(value).or_default().push(reply.node.clone());
        }
        if self.is_machine() {
            let document = FactReport {
                call: OutcomeReport::new(outcome, Some(discovered.elapsed.as_secs_f64() * 1000.0)),
                fact,
                values: values.iter().map(|(value, nodes)| (value.as_str(), nodes.len())).collect(),
                nodes_by_value: &values,
            };
            print_as(&document, self.output.jsonl);
            return;
        }
        println!("Report for fact: {fact}");
        println!();
        let width = values.keys().map(String::len).max().unwrap_or(0);
        for (value, nodes) in &values {
            println!("        {value:<width$}  found {} times", nodes.len());
            if self.verbose > 0 {
                println!("            {}", nodes.join(" "));
            }
        }
        for reply in outcome.replies.iter().filter(|reply| !reply.is_ok()) {
            println!("{:<40} {}: {}", reply.node, reply.status_text, shown(&reply.message));
        }
        println!();
        let counts = outcome.counts();
        println!(
            "Finished processing {} / {} nodes in {} ms",
            counts.ok + counts.failed,
            counts.targeted,
            outcome.total_ms
        );
        self.silent_and_unexpected(outcome);
    }

    fn silent_and_unexpected(&self, outcome: &CallOutcome) {
        if !outcome.no_response.is_empty() {
            println!();
            println!(
                "{}",
                self.paint(&format!("No response from {} node(s):", outcome.no_response.len()), YELLOW)
            );
            println!();
            for node in &outcome.no_response {
                if outcome.unreachable.contains(node) {
                    println!("    {node}  (unreachable: no queue on the broker)");
                } else {
                    println!("    {node}");
                }
            }
        }
        if !outcome.unexpected.is_empty() {
            println!();
            println!("Replies from nodes that were not targeted:");
            for reply in &outcome.unexpected {
                println!("    {}  {}", reply.node, reply.status_text);
            }
        }
    }

    /// One `no_response` line per silent node.
    fn no_response_lines(&self, outcome: &CallOutcome) {
        for node in &outcome.no_response {
            let unreachable = outcome.unreachable.contains(node);
            self.emit("no_response", NoResponseLine { node, unreachable });
        }
    }

    /// The `--jsonl` end of a single call: one line per silent node, then the summary line.
    fn trailer_lines(&self, outcome: &CallOutcome, discovery_ms: Option<f64>) {
        self.no_response_lines(outcome);
        let summary = CallSummary { request_id: outcome.request_id, stats: Stats::of(outcome, discovery_ms) };
        print_line(&line("summary", summary));
    }

    /// A line for each reply the display policy (`--display`, or the action's) shows.
    fn write_replies(&self, replies: &[crate::client::NodeReply]) {
        let mut stdout = std::io::stdout().lock();
        for reply in replies {
            let shown = match self.output.display.unwrap_or_default() {
                Display::All => true,
                Display::Ok => reply.is_ok(),
                Display::Failed => !reply.is_ok(),
                Display::None => false,
            };
            if shown {
                let _ = self.write_reply(&mut stdout, reply);
            }
        }
    }

    fn write_reply(&self, out: &mut impl Write, reply: &crate::client::NodeReply) -> std::io::Result<()> {
        if reply.is_ok() {
            writeln!(out, "{:<40} {}", reply.node, self.paint(reply.status_text, GREEN))?;
        } else {
            writeln!(out, "{:<40} {}", reply.node, self.paint(reply.status_text, RED))?;
            writeln!(out, "   {}", shown(&reply.message))?;
        }
        let width = reply.data.keys().map(String::len).max().unwrap_or(0);
        for (key, value) in &reply.data {
            writeln!(out, "   {:>width$}: {}", shown(key), plain(value))?;
        }
        writeln!(out)
    }
}

/// A node-supplied value as human output shows it: plain text, with no terminal codes
/// ([`shown`]: a reply's message, data keys and values come from the node).
fn plain(value: &Value) -> String {
    shown(&plain_text(value)).into_owned()
}

/// Node names in columns, four to a line, as MCollective lists silent nodes.
fn print_columns(nodes: &[String]) {
    let width = nodes.iter().map(String::len).max().unwrap_or(0) + 2;
    for row in nodes.chunks(4) {
        let line: String = row.iter().map(|node| format!("{node:<width$}")).collect();
        println!("    {}", line.trim_end());
    }
}

/// Prints a failure: to stderr for people, as the one JSON document (or line) for scripts.
pub fn failure(output: &OutputArgs, failure: &Failure) {
    let message = format!("{:#}", failure.error);
    if output.json || output.jsonl {
        let document = line("error", ErrorReport { error: &message, exit_code: failure.exit.code() });
        print_as(&document, output.jsonl);
    } else {
        eprintln!("baton: error: {message}");
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&key, value, out);
            }
        }
        other => out.push((prefix.to_string(), plain(other))),
    }
}

#[cfg(test)]
mod terminal_tests {
    use super::*;

    /// A node's reply cannot drive the operator's terminal: its message, data keys and values
    /// reach human output with escape sequences and carriage returns written out.
    #[test]
    fn a_reply_shows_no_terminal_codes_from_the_node() {
        let output = OutputArgs::default();
        let renderer = Renderer::new(&output, 0);
        let reply = crate::client::NodeReply {
            node: "web01".to_owned(),
            status: crate::protocol::StatusCode::Aborted.code(),
            status_text: "Request Aborted",
            message: "\u{1b}]0;pwned\u{7}\u{1b}[2Jgone\r".to_owned(),
            data: serde_json::json!({"out\u{1b}[31m": "line 1\nline 2\u{1b}[8m"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ms: 1.0,
        };
        let mut out = Vec::new();
        renderer.write_reply(&mut out, &reply).expect("write");
        let text = String::from_utf8(out).expect("UTF-8");
        assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{7}'), "{text:?}");
        assert!(text.contains("\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jgone\\r"), "{text:?}");
        assert!(text.contains("line 1\nline 2\\u{1b}[8m"), "lines are kept: {text:?}");
        assert!(text.contains("out\\u{1b}[31m"), "{text:?}");
    }
}
