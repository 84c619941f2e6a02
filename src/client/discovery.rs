//! Discovery: finding the nodes a filter matches, or reading them from a file or stdin.
//!
//! Broadcast discovery sends `rpcutil ping` with the filter and collects who answers. It waits
//! at most the discovery timeout, and stops early once replies have gone quiet: after the first
//! reply, waiting ends when no new reply came for a while. That while grows with how long the
//! first reply took, so a slow broker or a loaded fleet is not cut short.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{Client, ClientError, RequestSpec, Targets, unique_sorted};
use crate::protocol::filter::FilterSpec;

/// The shortest quiet period that ends discovery early.
const MIN_QUIET: Duration = Duration::from_millis(300);

/// The nodes found, and how long finding them took.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub nodes: Vec<String>,
    pub elapsed: Duration,
}

/// Broadcast discovery with `filter`, waiting at most `timeout`.
pub async fn broadcast(
    client: &Client,
    filter: &FilterSpec,
    timeout: Duration,
) -> Result<Discovered, ClientError> {
    let started = Instant::now();
    let spec = RequestSpec {
        agent: "rpcutil".to_string(),
        action: "ping".to_string(),
        data: Map::new(),
        filter: filter.clone(),
    };
    let outcome = client.call(&spec, &Targets::Broadcast, timeout, Some(MIN_QUIET), &mut |_| {}).await?;
    let nodes = unique_sorted(outcome.replies.into_iter().map(|reply| reply.node));
    Ok(Discovered { nodes, elapsed: started.elapsed() })
}

/// Reads identities from a flat file: one per line, `#` starts a comment, blanks ignored.
pub fn from_file(path: &std::path::Path) -> Result<Vec<String>, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ClientError::Usage(format!("cannot read node list {}: {error}", path.display())))?;
    let nodes = parse_node_list(&text);
    if nodes.is_empty() {
        return Err(ClientError::Usage(format!("node list {} names no nodes", path.display())));
    }
    Ok(nodes)
}

/// Reads identities from stdin: plain identities, or the JSON of `baton discover --json` or
/// `baton rpc --json`.
pub fn from_stdin() -> Result<Vec<String>, ClientError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|error| ClientError::Usage(format!("cannot read node list from stdin: {error}")))?;
    let nodes = parse_node_input(&text)?;
    if nodes.is_empty() {
        return Err(ClientError::Usage(
            "stdin names no nodes (expected identities or baton JSON)".to_string(),
        ));
    }
    Ok(nodes)
}

/// Parses a node list given as text: JSON from baton when it looks like JSON, else one
/// identity per line.
pub fn parse_node_input(text: &str) -> Result<Vec<String>, ClientError> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return Ok(parse_node_list(text));
    }
    let document: Value = serde_json::from_str(trimmed)
        .map_err(|error| ClientError::Usage(format!("stdin looks like JSON but does not parse: {error}")))?;
    nodes_from_json(&document).ok_or_else(|| {
        ClientError::Usage(
            "stdin JSON has no node list (expected baton discover --json, baton rpc --json, or an array of identities)"
                .to_string(),
        )
    })
}

/// Finds the node list in a baton JSON document: `nodes` (discover), `targeted` (rpc), or a
/// plain array of strings.
fn nodes_from_json(document: &Value) -> Option<Vec<String>> {
    let list = match document {
        Value::Array(_) => document,
        Value::Object(map) => map.get("nodes").or_else(|| map.get("targeted"))?,
        _ => return None,
    };
    let names: Option<Vec<String>> = list
        .as_array()?
        .iter()
        .map(|item| match item {
            Value::String(name) => Some(name.clone()),
            Value::Object(map) => map.get("node").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
        .collect();
    names.map(unique_sorted)
}

fn parse_node_list(text: &str) -> Vec<String> {
    unique_sorted(
        text.lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty())
            .map(str::to_string),
    )
}
