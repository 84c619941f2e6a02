//! Rendering: what people see on a terminal, and what scripts read as JSON.
//!
//! Human output goes to stdout, with the progress bar on stderr and only when stderr is a
//! terminal. `--json` prints exactly one document on stdout, on success and failure alike;
//! `--jsonl` prints one line per event as it happens, then a summary line.

use std::io::Write;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::args::{Display, OutputArgs};
use super::exit::Failure;
use crate::client::discovery::Discovered;
use crate::client::{CallOutcome, Event, NodeReply, RequestSpec};

/// Renders one command's results in the format the user asked for.
pub struct Renderer {
    output: OutputArgs,
    verbose: u8,
    progress: Option<ProgressBar>,
}

impl Renderer {
    pub fn new(output: &OutputArgs, verbose: u8) -> Renderer {
        Renderer { output: output.clone(), verbose, progress: None }
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
        let style = ProgressStyle::with_template(" * [ {bar:60} ] {pos} / {len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        self.progress = Some(bar);
    }

    fn finish_progress(&mut self) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
    }

    /// Advances the progress bar; streams a line per reply with `--jsonl`.
    pub fn progress_event(&mut self, event: &Event<'_>) {
        match event {
            Event::Reply(_) | Event::Unreachable(_) => {
                if let Some(bar) = &self.progress {
                    bar.inc(1);
                }
            }
            Event::Sent { .. } | Event::Unexpected(_) => {}
        }
    }

    pub fn rpc_event(&mut self, event: &Event<'_>) {
        self.progress_event(event);
        if !self.output.jsonl {
            return;
        }
        let line = match event {
            Event::Sent { request_id, targets } => {
                json!({"type": "sent", "request_id": request_id, "targets": targets})
            }
            Event::Reply(reply) => reply_line("reply", reply),
            Event::Unreachable(node) => json!({"type": "unreachable", "node": node}),
            Event::Unexpected(reply) => reply_line("unexpected", reply),
        };
        print_line(&line);
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
            let replies: Vec<Value> =
                outcome.replies.iter().map(|reply| json!({"node": reply.node, "ms": reply.ms})).collect();
            print_document(&json!({
                "request_id": outcome.request_id,
                "replies": replies,
                "no_response": outcome.no_response,
                "unreachable": outcome.unreachable,
                "unexpected": outcome.unexpected.iter().map(|reply| &reply.node).collect::<Vec<_>>(),
                "stats": stats_json(outcome, None),
            }));
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

    pub fn discovered(&mut self, discovered: &Discovered) {
        let discovery_ms = discovered.elapsed.as_secs_f64() * 1000.0;
        if self.is_machine() {
            let document = json!({
                "nodes": discovered.nodes,
                "stats": {"discovered": discovered.nodes.len(), "discovery_ms": round2(discovery_ms)},
            });
            if self.output.jsonl {
                for node in &discovered.nodes {
                    print_line(&json!({"type": "node", "node": node}));
                }
                print_line(
                    &json!({"type": "summary", "discovered": discovered.nodes.len(), "discovery_ms": round2(discovery_ms)}),
                );
            } else {
                print_document(&document);
            }
            return;
        }
        for node in &discovered.nodes {
            println!("{node}");
        }
        if discovered.nodes.is_empty() {
            eprintln!("No nodes matched (check the filter, or raise --dt if the fleet is slow to answer)");
        }
        if self.verbose > 0 {
            eprintln!("\nDiscovered {} nodes in {discovery_ms:.2} ms", discovered.nodes.len());
        }
    }

    pub fn nothing_matched(&mut self, request: &RequestSpec, discovered: &Discovered) {
        let discovery_ms = round2(discovered.elapsed.as_secs_f64() * 1000.0);
        let message = "No nodes matched the filter; nothing was sent";
        if self.output.json {
            print_document(&json!({
                "request_id": Value::Null,
                "agent": request.agent,
                "action": request.action,
                "targeted": [],
                "replies": [],
                "no_response": [],
                "unexpected": [],
                "message": message,
                "stats": {"targeted": 0, "ok": 0, "failed": 0, "no_response": 0, "discovery_ms": discovery_ms, "total_ms": discovery_ms},
            }));
        } else if self.output.jsonl {
            print_line(
                &json!({"type": "summary", "targeted": 0, "ok": 0, "failed": 0, "no_response": 0, "message": message}),
            );
        } else {
            eprintln!("{message} (check the filter, or raise --dt if the fleet is slow to answer)");
        }
    }

    pub fn rpc_summary(&mut self, outcome: &CallOutcome, discovered: &Discovered) {
        self.finish_progress();
        let discovery_ms = discovered.elapsed.as_secs_f64() * 1000.0;
        if self.output.json {
            print_document(&outcome_json(outcome, Some(discovery_ms)));
            return;
        }
        if self.output.jsonl {
            self.trailer_lines(outcome, Some(discovery_ms));
            return;
        }
        let mut stdout = std::io::stdout().lock();
        for reply in &outcome.replies {
            let shown = match self.output.display.unwrap_or_default() {
                Display::All => true,
                Display::Ok => reply.is_ok(),
                Display::Failed => !reply.is_ok(),
                Display::None => false,
            };
            if shown {
                let _ = write_reply(&mut stdout, reply);
            }
        }
        drop(stdout);
        let counts = outcome.counts();
        if !outcome.aggregates.is_empty() {
            println!();
            for line in super::agents::aggregate_lines(&outcome.aggregates) {
                println!("{line}");
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
            println!("{} of them failed", counts.failed);
        }
        self.silent_and_unexpected(outcome);
        if self.verbose > 0 {
            println!();
            println!("---- rpc stats ----");
            println!("           Nodes: {} / {}", counts.ok + counts.failed, counts.targeted);
            println!("     Pass / Fail: {} / {}", counts.ok, counts.failed);
            println!("     Discovery: {discovery_ms:.2} ms");
            if let (Some(first), Some(last)) = (outcome.first_reply_ms, outcome.last_reply_ms) {
                println!("     First reply: {first:.2} ms");
                println!("      Last reply: {last:.2} ms");
            }
            println!("           Total: {} ms", outcome.total_ms);
        }
    }

    pub fn inventory(&mut self, node: &str, inventory: &CallOutcome, stats: &CallOutcome) {
        let inventory_data = inventory.replies.first().filter(|reply| reply.is_ok()).map(|reply| &reply.data);
        let stats_data = stats.replies.first().filter(|reply| reply.is_ok()).map(|reply| &reply.data);
        if self.is_machine() {
            let document = json!({
                "node": node,
                "inventory": inventory_data,
                "daemon_stats": stats_data,
                "no_response": inventory.no_response,
                "errors": inventory.replies.iter().chain(stats.replies.iter()).filter(|reply| !reply.is_ok()).map(|reply| &reply.message).collect::<Vec<_>>(),
            });
            if self.output.jsonl {
                print_line(&document);
            } else {
                print_document(&document);
            }
            return;
        }
        let Some(data) = inventory_data else {
            match inventory.replies.first() {
                Some(reply) => eprintln!("{node} answered {}: {}", reply.status_text, reply.message),
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
                println!("      {key:>20}: {}", plain(value));
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
                println!("      {key} => {value}");
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
            let mut document = outcome_json(outcome, Some(discovered.elapsed.as_secs_f64() * 1000.0));
            document["fact"] = json!(fact);
            document["values"] = json!(
                values
                    .iter()
                    .map(|(value, nodes)| (value.clone(), json!(nodes.len())))
                    .collect::<serde_json::Map<_, _>>()
            );
            document["nodes_by_value"] = json!(values);
            if self.output.jsonl {
                print_line(&document);
            } else {
                print_document(&document);
            }
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
            println!("{:<40} {}: {}", reply.node, reply.status_text, reply.message);
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
            println!("No response from {} node(s):", outcome.no_response.len());
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

    fn trailer_lines(&self, outcome: &CallOutcome, discovery_ms: Option<f64>) {
        for node in &outcome.no_response {
            print_line(
                &json!({"type": "no_response", "node": node, "unreachable": outcome.unreachable.contains(node)}),
            );
        }
        let mut summary = json!({"type": "summary", "request_id": outcome.request_id});
        if let (Value::Object(summary), Value::Object(stats)) =
            (&mut summary, stats_json(outcome, discovery_ms))
        {
            summary.extend(stats);
        }
        print_line(&summary);
    }
}

/// Prints a failure: to stderr for people, as the one JSON document (or line) for scripts.
pub fn failure(output: &OutputArgs, failure: &Failure) {
    let message = format!("{:#}", failure.error);
    if output.json || output.jsonl {
        let document = json!({"type": "error", "error": message, "exit_code": failure.exit.code()});
        if output.json {
            print_document(&document);
        } else {
            print_line(&document);
        }
    } else {
        eprintln!("baton: error: {message}");
    }
}

fn outcome_json(outcome: &CallOutcome, discovery_ms: Option<f64>) -> Value {
    json!({
        "request_id": outcome.request_id,
        "agent": outcome.agent,
        "action": outcome.action,
        "targeted": outcome.targeted,
        "replies": outcome.replies,
        "no_response": outcome.no_response,
        "unreachable": outcome.unreachable,
        "unexpected": outcome.unexpected,
        "aggregates": outcome.aggregates,
        "stats": stats_json(outcome, discovery_ms),
    })
}

fn stats_json(outcome: &CallOutcome, discovery_ms: Option<f64>) -> Value {
    let counts = outcome.counts();
    json!({
        "targeted": counts.targeted,
        "ok": counts.ok,
        "failed": counts.failed,
        "no_response": counts.no_response,
        "unexpected": outcome.unexpected.len(),
        "discovery_ms": discovery_ms.map(round2),
        "first_reply_ms": outcome.first_reply_ms,
        "last_reply_ms": outcome.last_reply_ms,
        "total_ms": outcome.total_ms,
    })
}

fn reply_line(kind: &str, reply: &NodeReply) -> Value {
    let mut line = json!({"type": kind});
    if let (Value::Object(line), Ok(Value::Object(fields))) = (&mut line, serde_json::to_value(reply)) {
        line.extend(fields);
    }
    line
}

fn write_reply(out: &mut impl Write, reply: &NodeReply) -> std::io::Result<()> {
    if reply.is_ok() {
        writeln!(out, "{}", reply.node)?;
    } else {
        writeln!(out, "{:<40} {}", reply.node, reply.status_text)?;
        writeln!(out, "   {}", reply.message)?;
    }
    let width = reply.data.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in &reply.data {
        writeln!(out, "   {key:>width$}: {}", plain(value))?;
    }
    writeln!(out)
}

/// A JSON value as a person reads it: strings without quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
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

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn print_document(document: &Value) {
    let text = serde_json::to_string_pretty(document).unwrap_or_else(|_| "{}".to_string());
    println!("{text}");
}

fn print_line(line: &Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
