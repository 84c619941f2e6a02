//! The `--json` and `--jsonl` contract: one serializable type per document and per line, so
//! what scripts read is declared here, not assembled by hand where it is printed. A call's
//! outcome is `client::report::OutcomeReport`, the same document the console's API serves.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::client::report::{OutcomeReport, Stats};
use crate::client::{BatchRecord, NodeReply, Stopped};

/// One `--jsonl` line: `{"type": KIND, ...the fields of body}`.
#[derive(Debug, Serialize)]
pub struct Line<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(flatten)]
    pub body: T,
}

/// A line with nothing but its type and the fields of `body`.
pub fn line<T: Serialize>(kind: &str, body: T) -> Line<'_, T> {
    Line { kind, body }
}

/// The document (or line) for any failure: `{"type": "error", "error", "exit_code"}`.
#[derive(Debug, Serialize)]
pub struct ErrorReport<'a> {
    pub error: &'a str,
    pub exit_code: i32,
}

/// `baton ping --json`.
#[derive(Debug, Serialize)]
pub struct PingReport<'a> {
    pub request_id: Uuid,
    pub replies: Vec<PingTime<'a>>,
    pub no_response: &'a [String],
    pub unreachable: &'a [String],
    /// The nodes that answered without being targeted.
    pub unexpected: Vec<&'a str>,
    pub stats: Stats,
}

/// How fast one node answered a ping.
#[derive(Debug, Serialize)]
pub struct PingTime<'a> {
    pub node: &'a str,
    pub ms: f64,
}

/// `baton discover --json`; piped into `baton rpc --dm stdin` it targets exactly these nodes.
#[derive(Debug, Serialize)]
pub struct DiscoverReport<'a> {
    pub nodes: &'a [String],
    /// Nodes the registry expected that did not answer.
    pub no_response: &'a [String],
    pub stats: DiscoverStats,
}

#[derive(Debug, Serialize)]
pub struct DiscoverStats {
    pub discovered: usize,
    pub no_response: usize,
    pub discovery_ms: f64,
}

/// The last `baton discover --jsonl` line.
#[derive(Debug, Serialize)]
pub struct DiscoverSummary {
    pub discovered: usize,
    pub no_response: usize,
    pub discovery_ms: f64,
}

/// `baton rpc --json` when no node matched: the shape of a rollout report, empty.
#[derive(Debug, Serialize)]
pub struct NothingMatchedReport<'a> {
    pub request_id: Option<Uuid>,
    pub agent: &'a str,
    pub action: &'a str,
    pub targeted: [String; 0],
    pub replies: [NodeReply; 0],
    pub no_response: [String; 0],
    pub unexpected: [NodeReply; 0],
    pub skipped: [String; 0],
    pub batches: [BatchRecord; 0],
    pub stopped: Option<StoppedReport>,
    pub aggregates: Map<String, Value>,
    pub message: &'a str,
    pub stats: NothingMatchedStats,
}

/// The counts of a run that sent nothing (all zero).
#[derive(Debug, Serialize)]
pub struct NothingMatchedStats {
    pub targeted: usize,
    pub ok: usize,
    pub failed: usize,
    pub no_response: usize,
    pub skipped: usize,
    /// In the `--json` document only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
}

impl NothingMatchedStats {
    pub fn new(discovery_ms: Option<f64>) -> NothingMatchedStats {
        NothingMatchedStats {
            targeted: 0,
            ok: 0,
            failed: 0,
            no_response: 0,
            skipped: 0,
            discovery_ms,
            total_ms: discovery_ms,
        }
    }
}

/// The `--jsonl` summary line when no node matched.
#[derive(Debug, Serialize)]
pub struct NothingMatchedLine<'a> {
    #[serde(flatten)]
    pub stats: NothingMatchedStats,
    pub message: &'a str,
}

/// `baton rpc --json`: the outcome of every batch as one call, and how the rollout went.
#[derive(Debug, Serialize)]
pub struct RolloutReport<'a> {
    #[serde(flatten)]
    pub call: OutcomeReport<'a>,
    pub batches: &'a [BatchRecord],
    pub stopped: Option<StoppedReport>,
    pub selection: Selection,
}

/// The last `baton rpc --jsonl` line: the stats, and how the rollout went.
#[derive(Debug, Serialize)]
pub struct RolloutSummary {
    pub request_id: Uuid,
    #[serde(flatten)]
    pub stats: Stats,
    pub stopped: Option<StoppedReport>,
    pub selection: Selection,
}

/// Why a rollout stopped.
#[derive(Debug, Serialize)]
pub struct StoppedReport {
    pub reason: String,
    pub failures: usize,
    pub max_failures: usize,
    pub after_batch: usize,
}

impl StoppedReport {
    pub fn new(stopped: &Stopped) -> StoppedReport {
        StoppedReport {
            reason: stop_reason(stopped),
            failures: stopped.failures,
            max_failures: stopped.max_failures,
            after_batch: stopped.after_batch,
        }
    }
}

/// Why a rollout stopped, in words.
pub fn stop_reason(stopped: &Stopped) -> String {
    format!(
        "{} failure(s) after batch {} exceed --max-failures {}",
        stopped.failures, stopped.after_batch, stopped.max_failures
    )
}

/// Which of the candidates were picked (`--limit`), and with which seed.
#[derive(Debug, Serialize)]
pub struct Selection {
    pub candidates: usize,
    pub selected: usize,
    pub seed: Option<u64>,
}

/// The `stopped` line of `--jsonl` when a rollout stops; a `skipped` line per node follows.
#[derive(Debug, Serialize)]
pub struct StoppedLine {
    pub skipped: usize,
    #[serde(flatten)]
    pub stopped: StoppedReport,
}

/// `baton rpc --reply-to NAME --json`: what was sent and how to collect the replies.
#[derive(Debug, Serialize)]
pub struct DetachedReport<'a> {
    pub request_id: Uuid,
    pub agent: &'a str,
    pub action: &'a str,
    pub reply_to: &'a str,
    pub queue: &'a str,
    pub targeted: &'a [String],
    pub unreachable: &'a [String],
    pub state_file: Option<String>,
    /// The command that collects the replies.
    pub collect: String,
}

/// `baton replies --json`: each request's outcome, and the totals.
#[derive(Debug, Serialize)]
pub struct CollectionReport<'a> {
    pub queue: &'a str,
    pub requests: Vec<OutcomeReport<'a>>,
    pub stats: CollectionStats,
}

/// The totals of `baton replies`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CollectionStats {
    pub requests: usize,
    pub replies: usize,
    pub ok: usize,
    pub failed: usize,
    pub no_response: usize,
    pub dropped: u64,
    pub put_back: usize,
    pub total_ms: u64,
}

/// `baton inventory NODE --json`.
#[derive(Debug, Serialize)]
pub struct InventoryReport<'a> {
    pub node: &'a str,
    pub inventory: Option<&'a Map<String, Value>>,
    pub daemon_stats: Option<&'a Map<String, Value>>,
    pub no_response: &'a [String],
    pub errors: Vec<&'a str>,
}

/// `baton facts FACT --json`: the call's outcome, and each value with its nodes.
#[derive(Debug, Serialize)]
pub struct FactReport<'a> {
    #[serde(flatten)]
    pub call: OutcomeReport<'a>,
    pub fact: &'a str,
    /// Value -> how many nodes have it.
    pub values: BTreeMap<&'a str, usize>,
    pub nodes_by_value: &'a BTreeMap<String, Vec<String>>,
}

/// `baton agents --json`.
#[derive(Debug, Serialize)]
pub struct AgentsReport<'a> {
    pub agents: Vec<AgentSummary<'a>>,
    pub targeted: Option<&'a [String]>,
    pub no_response: &'a [String],
    pub failed: Vec<&'a NodeReply>,
}

/// One agent found on the nodes.
#[derive(Debug, Serialize)]
pub struct AgentSummary<'a> {
    pub agent: &'a str,
    pub description: &'a str,
    pub versions: &'a std::collections::BTreeSet<String>,
    pub nodes: &'a std::collections::BTreeSet<String>,
}

/// Prints one document, pretty, on stdout.
pub fn print_document(document: &impl Serialize) {
    let text = serde_json::to_string_pretty(document).unwrap_or_else(|_| "{}".to_string());
    println!("{text}");
}

/// Prints one `--jsonl` line on stdout, flushed at once so a reader sees it as it happens.
pub fn print_line(line: &impl Serialize) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", serde_json::to_string(line).unwrap_or_else(|_| "{}".to_string()));
    let _ = stdout.flush();
}

/// Prints a document as `--json` (pretty) or `--jsonl` (one line) asks.
pub fn print_as(document: &impl Serialize, one_line: bool) {
    if one_line { print_line(document) } else { print_document(document) }
}

/// A `no_response` line of `--jsonl`: a targeted node that did not answer.
#[derive(Debug, Serialize)]
pub struct NoResponseLine<'a> {
    pub node: &'a str,
    pub unreachable: bool,
}

/// The last `--jsonl` line of a single call: its stats.
#[derive(Debug, Serialize)]
pub struct CallSummary {
    pub request_id: Uuid,
    #[serde(flatten)]
    pub stats: Stats,
}

/// A `--jsonl` line naming one node (`unreachable`, `skipped`, `node`).
#[derive(Debug, Serialize)]
pub struct NodeLine<'a> {
    pub node: &'a str,
}

/// The `sent` line of `--jsonl`: the request went out (to `targets` nodes, or a broadcast).
#[derive(Debug, Serialize)]
pub struct SentLine {
    pub request_id: Uuid,
    pub targets: Option<usize>,
}

/// The `batch_started` line of `--jsonl`.
#[derive(Debug, Serialize)]
pub struct BatchStartedLine<'a> {
    pub index: usize,
    pub of: usize,
    pub nodes: &'a [String],
}

/// The `batch_finished` line of `--jsonl`.
#[derive(Debug, Serialize)]
pub struct BatchFinishedLine<'a> {
    pub of: usize,
    #[serde(flatten)]
    pub batch: &'a BatchRecord,
}

/// `baton replies --jsonl`: a node that did not answer one of the requests.
#[derive(Debug, Serialize)]
pub struct RequestNoResponseLine<'a> {
    pub request_id: Uuid,
    pub node: &'a str,
}

/// The last `baton replies --jsonl` line.
#[derive(Debug, Serialize)]
pub struct CollectionSummary<'a> {
    pub queue: &'a str,
    #[serde(flatten)]
    pub stats: CollectionStats,
}
