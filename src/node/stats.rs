//! The daemon's counters and metrics: one counter per step of the request pipeline, requests
//! by agent, action and status, action durations and the actions in flight.
//!
//! Everything is a `prometheus` metric registered in the node's own [`Registry`], so the
//! pipeline counts with one atomic add and `/metrics` (see [`crate::node::metrics`]) reads the
//! same numbers `rpcutil daemon_stats` does. Requests and durations by agent and action are
//! counted through an [`ActionSeriesTable`], made when the agents are (re)loaded, so that no
//! label is formatted, hashed or looked up in `prometheus` per request. Counters only ever go up while the daemon runs.
//! The agent and action labels only ever name agents and actions the node has (anything else
//! is counted as [`UNKNOWN_LABEL`]), so no request can grow the number of series.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use serde_json::{Map, Value, json};

use crate::agents::{AgentRegistry, StatsSource};
use crate::protocol::StatusCode;

/// The agent or action label of a request for an agent or action this node does not have.
pub const UNKNOWN_LABEL: &str = "unknown";

/// Upper bounds of the action duration buckets, in seconds: from a built-in agent's
/// microseconds to a Puppet run's minutes.
const DURATION_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Registers a labelled family and hands out one child per counter of the table below.
struct Family {
    vec: IntCounterVec,
}

impl Family {
    fn new(registry: &Registry, name: &str, help: &str, label: &str) -> Family {
        let vec = IntCounterVec::new(Opts::new(name, help), &[label]).expect("a valid metric name and label");
        registry.register(Box::new(vec.clone())).expect("each family registered once");
        Family { vec }
    }

    fn child(&self, value: &str) -> IntCounter {
        self.vec.with_label_values(&[value])
    }
}

/// The three families the counters below are exported in.
struct Families {
    pipeline: Family,
    refusals: Family,
    replies: Family,
}

impl Families {
    fn new(registry: &Registry) -> Families {
        Families {
            pipeline: Family::new(
                registry,
                "baton_pipeline_total",
                "Requests through each step of the node's pipeline that is not a refusal.",
                "step",
            ),
            refusals: Family::new(
                registry,
                "baton_refusals_total",
                "Requests refused, by reason (dropped, or answered without running).",
                "reason",
            ),
            replies: Family::new(
                registry,
                "baton_replies_total",
                "Replies, by what became of them.",
                "result",
            ),
        }
    }
}

macro_rules! counters {
    ($($name:ident in $family:ident: $doc:literal),* $(,)?) => {
        /// Pipeline counters, each exported as `baton_<family>_total{<label>="<name>"}`.
        /// See the module doc.
        #[derive(Debug, Clone)]
        pub struct Counters {
            $(#[doc = $doc] pub $name: IntCounter,)*
        }

        impl Counters {
            fn register(registry: &Registry) -> Counters {
                let families = Families::new(registry);
                Counters { $($name: families.$family.child(stringify!($name)),)* }
            }

            fn to_map(&self) -> Map<String, Value> {
                let mut map = Map::new();
                $(map.insert(stringify!($name).to_string(), json!(self.$name.get()));)*
                map
            }
        }
    };
}

counters! {
    received in pipeline: "Messages taken off the broker.",
    too_large in refusals: "Refused before decoding: over the size limit.",
    malformed in refusals: "Refused: not a valid envelope or request (bad CBOR, wrong version, wrong kind).",
    bad_signature in refusals: "Refused: the signature did not verify with this node's key.",
    bad_reply_to in refusals: "Refused: reply_to is not a client reply queue of a collective this node serves.",
    expired in refusals: "Refused: older than its ttl, or from too far in the future.",
    replayed in refusals: "Refused: a request id already seen within its ttl.",
    replay_window_full in refusals: "Refused: the replay window, or the caller's share of it, is full.",
    filtered in pipeline: "Dropped silently: the filter does not match this node.",
    unknown_action in refusals: "Answered status 2: no such agent or action.",
    unauthorized in refusals: "Answered status 1: refused by policy.",
    invalid_input in refusals: "Answered status 3 or 4: inputs missing or invalid.",
    ok in pipeline: "Actions that ran and succeeded.",
    failed in pipeline: "Actions that ran and failed (status 1 or 5), including timeouts.",
    timed_out in pipeline: "Actions stopped at their timeout (also counted in failed).",
    replies in replies: "Signed replies published.",
    replies_unroutable in replies: "Replies the broker could not route, also when published again over 3.15 s (the client had gone).",
    replies_failed in replies: "Replies that could not be published at all.",
}

/// Requests by agent, action and status, how long actions ran, and how many are running.
#[derive(Debug, Clone)]
pub struct ActionMetrics {
    requests: IntCounterVec,
    durations: HistogramVec,
    in_flight: IntGauge,
}

impl ActionMetrics {
    fn register(registry: &Registry) -> ActionMetrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "baton_requests_total",
                "Requests answered, by agent, action and reply status code (0 ok to 5).",
            ),
            &["agent", "action", "status"],
        )
        .expect("a valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new("baton_action_duration_seconds", "How long actions ran, by agent and action.")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["agent", "action"],
        )
        .expect("a valid metric");
        let in_flight =
            IntGauge::new("baton_actions_in_flight", "Actions running now.").expect("a valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(durations.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(metric).expect("each metric registered once");
        }
        ActionMetrics { requests, durations, in_flight }
    }

    /// The series of every action in `registry`, for the pipeline to count with: built when
    /// the node's agents are (re)loaded, so that counting a request does no label lookup.
    pub fn series(&self, registry: &AgentRegistry) -> ActionSeriesTable {
        let agents = registry
            .names()
            .into_iter()
            .filter_map(|name| {
                let definition = registry.agent(&name)?.definition();
                let actions = definition
                    .action_names()
                    .into_iter()
                    .map(|action| {
                        let series = ActionSeries::new(self, &name, &action);
                        (action, series)
                    })
                    .collect();
                let unknown = ActionSeries::new(self, &name, UNKNOWN_LABEL);
                Some((name, AgentSeries { actions, unknown }))
            })
            .collect();
        ActionSeriesTable { agents, unknown: ActionSeries::new(self, UNKNOWN_LABEL, UNKNOWN_LABEL) }
    }
}

/// Every (agent, action) series of one node's agents, plus the `unknown` ones. Looking a
/// request up here costs what finding its agent does; the `prometheus` children are made on
/// first use (so `/metrics` lists only series that counted something, as before) and kept.
#[derive(Debug)]
pub struct ActionSeriesTable {
    agents: BTreeMap<String, AgentSeries>,
    unknown: ActionSeries,
}

#[derive(Debug)]
struct AgentSeries {
    actions: BTreeMap<String, ActionSeries>,
    unknown: ActionSeries,
}

impl ActionSeriesTable {
    /// The series of `agent`'s `action`: their own if this node has them, else
    /// [`UNKNOWN_LABEL`]'s, so that requests cannot create series without bound.
    pub fn of(&self, agent: &str, action: &str) -> &ActionSeries {
        match self.agents.get(agent) {
            Some(found) => found.actions.get(action).unwrap_or(&found.unknown),
            None => &self.unknown,
        }
    }
}

/// One agent and action's requests by status and its durations, resolved once.
#[derive(Debug)]
pub struct ActionSeries {
    agent: String,
    action: String,
    metrics: ActionMetrics,
    /// Indexed by status code, 0 to 5.
    requests: [OnceLock<IntCounter>; 6],
    duration: OnceLock<Histogram>,
}

impl ActionSeries {
    fn new(metrics: &ActionMetrics, agent: &str, action: &str) -> ActionSeries {
        ActionSeries {
            agent: agent.to_owned(),
            action: action.to_owned(),
            metrics: metrics.clone(),
            requests: Default::default(),
            duration: OnceLock::new(),
        }
    }

    /// Counts one answered request.
    pub fn answered(&self, status: StatusCode) {
        const CODES: [&str; 6] = ["0", "1", "2", "3", "4", "5"];
        let index = usize::from(status.code()).min(CODES.len() - 1);
        self.requests[index]
            .get_or_init(|| {
                self.metrics.requests.with_label_values(&[&self.agent, &self.action, CODES[index]])
            })
            .inc();
    }

    /// Marks the action as running until the returned guard is dropped, which records how
    /// long it ran.
    pub fn running(&self) -> Running {
        self.metrics.in_flight.inc();
        let histogram = self
            .duration
            .get_or_init(|| self.metrics.durations.with_label_values(&[&self.agent, &self.action]));
        Running {
            histogram: histogram.clone(),
            in_flight: self.metrics.in_flight.clone(),
            started: Instant::now(),
        }
    }
}

/// An action in flight; see [`ActionSeries::running`].
pub struct Running {
    histogram: Histogram,
    in_flight: IntGauge,
    started: Instant,
}

impl Running {
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
        self.in_flight.dec();
    }
}

/// The daemon's statistics: counters, action metrics, the registry holding them, and when it
/// started.
#[derive(Debug)]
pub struct Stats {
    pub counters: Counters,
    pub actions: ActionMetrics,
    registry: Registry,
    started: Instant,
    started_ms: u64,
}

impl Default for Stats {
    fn default() -> Self {
        let registry = Registry::new();
        Stats {
            counters: Counters::register(&registry),
            actions: ActionMetrics::register(&registry),
            registry,
            started: Instant::now(),
            started_ms: crate::protocol::now_ms(),
        }
    }
}

impl Stats {
    /// Adds one to a counter.
    pub fn count(counter: &IntCounter) {
        counter.inc();
    }

    /// The registry every metric of this node is in, for `/metrics`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl StatsSource for Stats {
    fn snapshot(&self) -> Map<String, Value> {
        let mut map = self.counters.to_map();
        map.insert("uptime_secs".to_string(), json!(self.started.elapsed().as_secs()));
        map.insert("started_ms".to_string(), json!(self.started_ms));
        map.insert("pid".to_string(), json!(std::process::id()));
        map.insert("version".to_string(), json!(env!("CARGO_PKG_VERSION")));
        map
    }
}
