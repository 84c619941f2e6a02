//! The outcome of a call as one document: what `baton rpc --json` prints, what `baton replies
//! --json` prints per request, and what the console's JSON API and job history hold. One
//! serializable type, so the CLI and the console cannot drift apart.

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::outcome::{CallOutcome, NodeReply};

/// One call's outcome: every targeted node, every reply, the silent and skipped nodes, the
/// aggregates and the counts.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeReport<'a> {
    pub request_id: Uuid,
    pub agent: &'a str,
    pub action: &'a str,
    /// `null` for a broadcast, where nobody is known in advance.
    pub targeted: Option<&'a [String]>,
    pub replies: &'a [NodeReply],
    pub no_response: &'a [String],
    pub unreachable: &'a [String],
    pub unexpected: &'a [NodeReply],
    pub skipped: &'a [String],
    pub aggregates: &'a Map<String, Value>,
    pub stats: Stats,
}

/// The counts and timings of a call (`stats` in the documents).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub targeted: usize,
    pub ok: usize,
    pub failed: usize,
    pub no_response: usize,
    pub skipped: usize,
    pub unexpected: usize,
    /// How long discovery took; `null` when there was none to time.
    pub discovery_ms: Option<f64>,
    pub first_reply_ms: Option<f64>,
    pub last_reply_ms: Option<f64>,
    pub total_ms: u64,
    /// A rollout's batches sent and planned (absent for a single call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batches: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_batches: Option<usize>,
}

impl Stats {
    /// The stats of `outcome`, with discovery's duration when it was timed.
    pub fn of(outcome: &CallOutcome, discovery_ms: Option<f64>) -> Stats {
        let counts = outcome.counts();
        Stats {
            targeted: counts.targeted,
            ok: counts.ok,
            failed: counts.failed,
            no_response: counts.no_response,
            skipped: counts.skipped,
            unexpected: outcome.unexpected.len(),
            discovery_ms: discovery_ms.map(round2),
            first_reply_ms: outcome.first_reply_ms,
            last_reply_ms: outcome.last_reply_ms,
            total_ms: outcome.total_ms,
            batches: None,
            planned_batches: None,
        }
    }
}

impl<'a> OutcomeReport<'a> {
    pub fn new(outcome: &'a CallOutcome, discovery_ms: Option<f64>) -> OutcomeReport<'a> {
        OutcomeReport {
            request_id: outcome.request_id,
            agent: &outcome.agent,
            action: &outcome.action,
            targeted: outcome.targeted.as_deref(),
            replies: &outcome.replies,
            no_response: &outcome.no_response,
            unreachable: &outcome.unreachable,
            unexpected: &outcome.unexpected,
            skipped: &outcome.skipped,
            aggregates: &outcome.aggregates,
            stats: Stats::of(outcome, discovery_ms),
        }
    }
}

/// Milliseconds to two decimals, as every document shows them.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
