//! The `--json` and `--jsonl` contract: one serializable type per document and per line, so
//! what scripts read is declared here, not assembled by hand where it is printed. A call's
//! outcome is `client::report::OutcomeReport`, the same document the console's API serves.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::client::journal::RolloutStart;
use crate::client::report::{OutcomeReport, Stats};
use crate::client::rollout::nodes_in;
use crate::client::{BatchRecord, CheckRecord, NodeReply, NodeState, Stopped};

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

/// How a discovery went: the `stats` of `baton discover --json`, and the fields of its last
/// `--jsonl` line (`{"type": "summary", ...}`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DiscoverStats {
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
    /// As [`Selection::added_agent_filter`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_agent_filter: Option<&'a str>,
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
    /// The id `baton rollout status` and `resume` take; `null` for an untracked run.
    pub rollout_id: Option<Uuid>,
    #[serde(flatten)]
    pub call: OutcomeReport<'a>,
    /// Every target by its state at the end: `ok`, `failed`, `check_failed`, `no_response`,
    /// `skipped` (and `sent`, `checking`, `pending`, empty once a rollout has ended).
    pub nodes: BTreeMap<&'static str, Vec<String>>,
    pub batches: &'a [BatchRecord],
    pub stopped: Option<StoppedReport>,
    pub selection: Selection<'a>,
}

/// The last `baton rpc --jsonl` line: the stats, and how the rollout went.
#[derive(Debug, Serialize)]
pub struct RolloutSummary<'a> {
    pub request_id: Uuid,
    pub rollout_id: Option<Uuid>,
    #[serde(flatten)]
    pub stats: Stats,
    pub stopped: Option<StoppedReport>,
    pub selection: Selection<'a>,
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

/// The targets by state, every state named even when empty.
pub fn nodes_by_state(states: &BTreeMap<String, NodeState>) -> BTreeMap<&'static str, Vec<String>> {
    NodeState::ALL.iter().map(|state| (state.name(), nodes_in(states, *state))).collect()
}

/// `baton rpc --json` interrupted by Ctrl-C: what was known when the user stopped waiting.
/// `awaited` are the targets that had not answered (in a rollout, also those of batches not
/// sent yet); `--jsonl` ends with the same as an `interrupted` line.
#[derive(Debug, Serialize)]
pub struct InterruptedReport<'a> {
    pub interrupted: bool,
    pub targeted: &'a [String],
    pub replies: &'a [NodeReply],
    pub unreachable: &'a [String],
    pub awaited: Vec<&'a str>,
    pub stats: InterruptedStats,
}

/// The counts of an interrupted call.
#[derive(Debug, Serialize)]
pub struct InterruptedStats {
    pub targeted: usize,
    pub ok: usize,
    pub failed: usize,
    pub awaited: usize,
    pub unreachable: usize,
}

/// Which of the candidates were picked (`--limit`), and with which seed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Selection<'a> {
    pub candidates: usize,
    pub selected: usize,
    pub seed: Option<u64>,
    /// The agent `baton rpc AGENT` added to the filter (`-A AGENT`), so that only nodes with
    /// it were discovered; absent when the filter already named it or no discovery ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_agent_filter: Option<&'a str>,
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
    print_text_line(&serde_json::to_string(line).unwrap_or_else(|_| "{}".to_string()));
}

/// Prints one `--jsonl` line already serialized, flushed at once.
pub fn print_text_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
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

/// The `started` line of `--jsonl`: a tracked rollout starts (run 1) or resumes, with
/// everything a resume on another machine needs (`client::journal::RolloutStart`).
#[derive(Debug, Serialize)]
pub struct StartedLine<'a> {
    pub agent: &'a str,
    pub action: &'a str,
    #[serde(flatten)]
    pub start: RolloutStart,
    pub state_file: &'a str,
}

/// The `node` line of `--jsonl`: a rollout's node changed state (what its journal saves).
#[derive(Debug, Serialize)]
pub struct NodeStateLine<'a> {
    pub node: &'a str,
    pub state: NodeState,
}

/// `baton rollout status --json`.
#[derive(Debug, Serialize)]
pub struct RolloutStatusReport<'a> {
    pub rollout_id: Uuid,
    /// `running` (or its client was killed), `stopped` or `finished`.
    pub status: &'static str,
    pub agent: &'a str,
    pub action: &'a str,
    pub collective: &'a str,
    pub runs: u32,
    pub nodes: BTreeMap<&'static str, Vec<String>>,
    /// What `baton rollout resume` would send to, in order.
    pub remaining: &'a [String],
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// The `check_result` line of `--jsonl`: how batch `index`'s health check went.
#[derive(Debug, Serialize)]
pub struct CheckResultLine<'a> {
    pub index: usize,
    #[serde(flatten)]
    pub check: &'a CheckRecord,
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
