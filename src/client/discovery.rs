//! Discovery: finding the nodes a filter matches, or reading them from a file or stdin.
//!
//! Broadcast discovery sends `rpcutil discover` (ping under its own name, so audit logs mark
//! discovery as such) with the filter and collects who answers. Where the broker keeps a
//! registry (see [`super::registry`]), the client knows whom to expect: the registry's nodes
//! that match the filter. Waiting then ends once every one of them answered, plus a short
//! grace for nodes the registry does not know yet; an expected node that stays silent until
//! the discovery timeout is reported as not responding. Without a registry it waits at most
//! the discovery timeout, and stops early once replies have gone quiet: after the first reply,
//! waiting ends when no new reply came for a while. That while grows with how long the first
//! reply took, so a slow broker or a loaded fleet is not cut short.
//! [`registry_only`] trusts the registry alone and sends nothing.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::registry::RegistrySettings;
use super::{CallOutcome, Client, ClientError, Event, RequestSpec, Targets, unique_sorted};
use crate::protocol::filter::Filter;

/// The shortest quiet period that ends discovery early.
const MIN_QUIET: Duration = Duration::from_millis(300);

/// The nodes found, and how long finding them took.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    pub nodes: Vec<String>,
    /// Nodes the registry expected that did not answer the discovery broadcast.
    pub no_response: Vec<String>,
    pub elapsed: Duration,
}

impl Discovered {
    /// The nodes to send to: those found, and those expected that did not answer discovery.
    pub fn targets(&self) -> Vec<String> {
        unique_sorted(self.nodes.iter().chain(&self.no_response).cloned())
    }
}

/// Sends `spec` as one broadcast and waits at most `timeout`. With `registry` and a registry
/// to read (read while the broadcast is on its way, [`Targets::Registry`]), the matching
/// registered nodes are expected; otherwise waiting ends once replies have gone quiet.
pub async fn broadcast_call(
    client: &Client,
    spec: &RequestSpec,
    timeout: Duration,
    registry: Option<&RegistrySettings>,
    on_event: &mut (dyn FnMut(&Event<'_>) + Send),
) -> Result<CallOutcome, ClientError> {
    client.call(spec, &broadcast_targets(registry), timeout, Some(MIN_QUIET), on_event).await
}

/// Broadcast discovery with `filter`, waiting at most `timeout` (see [`broadcast_call`]).
pub async fn broadcast(
    client: &Client,
    filter: &Filter,
    timeout: Duration,
    registry: Option<&RegistrySettings>,
) -> Result<Discovered, ClientError> {
    broadcast_expecting(client, filter, timeout, &broadcast_targets(registry)).await
}

/// Broadcast discovery with `filter` expecting `targets` as already known: the registry's
/// matches ([`Targets::Expected`], read beforehand), a plain [`Targets::Broadcast`] that ends
/// once replies go quiet, or [`Targets::Registry`] to read while the broadcast flies.
pub async fn broadcast_expecting(
    client: &Client,
    filter: &Filter,
    timeout: Duration,
    targets: &Targets,
) -> Result<Discovered, ClientError> {
    let started = Instant::now();
    let outcome = client.call(&discover(filter), targets, timeout, Some(MIN_QUIET), &mut |_| {}).await?;
    let no_response = outcome.no_response.clone();
    Ok(Discovered { no_response, ..answered(outcome, started) })
}

/// What a broadcast expects: the registry's matches, read while it flies, where there is one.
fn broadcast_targets(registry: Option<&RegistrySettings>) -> Targets {
    match registry {
        Some(settings) => Targets::Registry(*settings),
        None => Targets::Broadcast,
    }
}

/// Asks exactly `nodes` (a directed `rpcutil discover` with `filter`) and keeps those that
/// answered, waiting at most `timeout`: `baton discover -I NAME` reports only nodes that exist
/// and answer, never a name just because it was typed.
pub async fn confirm(
    client: &Client,
    filter: &Filter,
    nodes: &[String],
    timeout: Duration,
) -> Result<Discovered, ClientError> {
    let started = Instant::now();
    let targets = Targets::Nodes(nodes.to_vec());
    let outcome = client.call(&discover(filter), &targets, timeout, None, &mut |_| {}).await?;
    Ok(answered(outcome, started))
}

/// The registry's nodes that match `filter`, without asking them. Fails (a usage error) when
/// there is no registry to read.
pub async fn registry_only(
    client: &Client,
    filter: &Filter,
    settings: &RegistrySettings,
) -> Result<Discovered, ClientError> {
    let started = Instant::now();
    let fleet = client.registry(settings).await.map_err(|no_registry| {
        ClientError::Usage(format!(
            "--dm registry: {no_registry} (a RabbitMQ stream named {}.registration, over AMQP or RabbitMQ's STOMP, see docs/OPERATIONS.md; or use --dm broadcast)",
            client.settings().collective
        ))
    })?;
    Ok(Discovered { nodes: fleet.matching(filter), no_response: Vec::new(), elapsed: started.elapsed() })
}

/// Who answered a discovery request, whatever their status (a node too old to know
/// `discover` answers "unknown action", and is found all the same).
fn answered(outcome: CallOutcome, started: Instant) -> Discovered {
    let nodes = unique_sorted(outcome.replies.into_iter().map(|reply| reply.node));
    Discovered { nodes, no_response: Vec::new(), elapsed: started.elapsed() }
}

/// `rpcutil discover` with `filter`: `ping` under its own name, so nodes' audit logs mark
/// discovery as such.
fn discover(filter: &Filter) -> RequestSpec {
    RequestSpec {
        agent: "rpcutil".to_string(),
        action: "discover".to_string(),
        data: Map::new(),
        filter: filter.clone(),
        once: None,
    }
}

/// Which nodes to take from the results of an earlier `baton rpc --json` (or `--jsonl`, or
/// `baton replies --json`): the retry sets. Several are combined (their union).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultSet {
    /// Nodes that replied OK.
    Ok,
    /// Nodes that replied with a non-zero status.
    Failed,
    /// Targeted nodes that did not reply (including unreachable ones).
    NoResponse,
    /// Targets a stopped rollout never sent the request to.
    Skipped,
    /// Everything not known to have succeeded: failed, no_response and skipped. The set to
    /// retry after a partial failure.
    NotOk,
}

impl ResultSet {
    /// The set's name as `--only` spells it.
    pub fn name(self) -> &'static str {
        match self {
            ResultSet::Ok => "ok",
            ResultSet::Failed => "failed",
            ResultSet::NoResponse => "no_response",
            ResultSet::Skipped => "skipped",
            ResultSet::NotOk => "not_ok",
        }
    }

    fn contains(self, result: NodeResult) -> bool {
        match self {
            ResultSet::Ok => result == NodeResult::Ok,
            ResultSet::Failed => result == NodeResult::Failed,
            ResultSet::NoResponse => result == NodeResult::NoResponse,
            ResultSet::Skipped => result == NodeResult::Skipped,
            ResultSet::NotOk => result != NodeResult::Ok,
        }
    }
}

/// What an earlier run says happened to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeResult {
    Ok,
    Failed,
    NoResponse,
    Skipped,
}

/// Reads identities from a file: one per line (`#` starts a comment, blanks ignored), or
/// baton's JSON as for [`parse_node_input`]. With `only`, the file must hold results and only
/// the nodes in those result sets are taken (possibly none).
pub fn from_file(path: &std::path::Path, only: &[ResultSet]) -> Result<Vec<String>, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ClientError::Usage(format!("cannot read node list {}: {error}", path.display())))?;
    let nodes = parse_node_input(&text, only)
        .map_err(|error| ClientError::Usage(format!("node list {}: {error}", path.display())))?;
    if nodes.is_empty() && only.is_empty() {
        return Err(ClientError::Usage(format!("node list {} names no nodes", path.display())));
    }
    Ok(nodes)
}

/// Reads identities from stdin, as [`from_file`] reads a file.
pub fn from_stdin(only: &[ResultSet]) -> Result<Vec<String>, ClientError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|error| ClientError::Usage(format!("cannot read node list from stdin: {error}")))?;
    let nodes =
        parse_node_input(&text, only).map_err(|error| ClientError::Usage(format!("stdin: {error}")))?;
    if nodes.is_empty() && only.is_empty() {
        return Err(ClientError::Usage(
            "stdin names no nodes (expected identities or baton JSON)".to_string(),
        ));
    }
    Ok(nodes)
}

/// Parses a node list given as text, sorted and deduplicated. Accepted: one identity per line;
/// the JSON of `baton discover --json` (`nodes`), `baton rpc --json` (`targeted`, or with
/// `only` the result sets), `baton replies --json`; an array of identities; or the lines of
/// `--jsonl` output. With `only` non-empty the text must carry results.
pub fn parse_node_input(text: &str, only: &[ResultSet]) -> Result<Vec<String>, String> {
    let trimmed = text.trim();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        if !only.is_empty() {
            return Err(
                "--only needs the results of baton rpc --json or --jsonl, not a plain list of identities"
                    .to_string(),
            );
        }
        return Ok(parse_node_list(text));
    }
    let documents: Vec<Value> = match serde_json::from_str::<Value>(trimmed) {
        Ok(document) => vec![document],
        Err(whole_error) => trimmed
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(serde_json::from_str::<Value>)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("looks like JSON but does not parse: {whole_error}"))?,
    };
    let mut found = Found::default();
    for document in &documents {
        found.read(document);
    }
    if only.is_empty() {
        return found
            .nodes
            .ok_or_else(|| {
                "the JSON has no node list (expected baton discover --json, baton rpc --json, --jsonl lines, or an array of identities)"
                    .to_string()
            })
            .map(unique_sorted);
    }
    if !found.has_results {
        return Err(
            "--only needs results (replies, no_response, skipped) as baton rpc --json or --jsonl prints them; this JSON has none"
                .to_string(),
        );
    }
    Ok(unique_sorted(
        found
            .results
            .into_iter()
            .filter(|(_, result)| only.iter().any(|set| set.contains(*result)))
            .map(|(node, _)| node),
    ))
}

/// Nodes and results gathered from one or more baton JSON documents or lines.
#[derive(Default)]
struct Found {
    /// Every node named as a target (or a discovered node); `None` when nothing named one.
    nodes: Option<Vec<String>>,
    /// What happened to each node, the last word winning.
    results: std::collections::BTreeMap<String, NodeResult>,
    has_results: bool,
}

impl Found {
    fn add_node(&mut self, node: &str) {
        self.nodes.get_or_insert_with(Vec::new).push(node.to_string());
    }

    fn add_result(&mut self, node: &str, result: NodeResult) {
        self.has_results = true;
        self.add_node(node);
        self.results.insert(node.to_string(), result);
    }

    fn read(&mut self, document: &Value) {
        match document {
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(name) => self.add_node(name),
                        Value::Object(map) => {
                            if let Some(name) = map.get("node").and_then(Value::as_str) {
                                self.add_node(name);
                            }
                        }
                        _ => {}
                    }
                }
                if items.is_empty() {
                    self.nodes.get_or_insert_with(Vec::new);
                }
            }
            Value::Object(map) => match map.get("type").and_then(Value::as_str) {
                // One line of --jsonl output.
                Some(kind) => self.read_line(kind, map),
                None => self.read_document(map),
            },
            _ => {}
        }
    }

    fn read_line(&mut self, kind: &str, line: &Map<String, Value>) {
        let Some(node) = line.get("node").and_then(Value::as_str) else {
            if kind == "summary" {
                self.has_results = true;
                self.nodes.get_or_insert_with(Vec::new);
            }
            return;
        };
        match kind {
            "reply" => self.add_result(node, status_result(line)),
            "no_response" => self.add_result(node, NodeResult::NoResponse),
            "skipped" => self.add_result(node, NodeResult::Skipped),
            "node" => self.add_node(node),
            _ => {}
        }
    }

    fn read_document(&mut self, document: &Map<String, Value>) {
        if let Some(Value::Array(requests)) = document.get("requests") {
            // baton replies --json: one rpc-like document per request.
            for request in requests {
                self.read(request);
            }
            return;
        }
        let names = |key: &str| -> Vec<String> {
            document
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|item| match item {
                    Value::String(name) => Some(name.clone()),
                    Value::Object(map) => map.get("node").and_then(Value::as_str).map(str::to_string),
                    _ => None,
                })
                .collect()
        };
        for key in ["nodes", "targeted"] {
            if document.get(key).is_some_and(Value::is_array) {
                let nodes = names(key);
                self.nodes.get_or_insert_with(Vec::new).extend(nodes);
            }
        }
        if let Some(Value::Array(replies)) = document.get("replies") {
            self.has_results = true;
            for reply in replies.iter().filter_map(Value::as_object) {
                if let Some(node) = reply.get("node").and_then(Value::as_str) {
                    self.results.insert(node.to_string(), status_result(reply));
                }
            }
        }
        for (key, result) in [("no_response", NodeResult::NoResponse), ("skipped", NodeResult::Skipped)] {
            if document.get(key).is_some_and(Value::is_array) {
                self.has_results = true;
                for node in names(key) {
                    self.results.insert(node, result);
                }
            }
        }
    }
}

fn status_result(reply: &Map<String, Value>) -> NodeResult {
    // `baton ping --json` replies carry no status: a ping reply is always OK.
    match reply.get("status").map(Value::as_u64) {
        None | Some(Some(0)) => NodeResult::Ok,
        _ => NodeResult::Failed,
    }
}

fn parse_node_list(text: &str) -> Vec<String> {
    unique_sorted(
        text.lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty())
            .map(str::to_string),
    )
}
