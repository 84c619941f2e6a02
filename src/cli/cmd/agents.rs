//! `baton agents`: which agents the targeted nodes have, with their versions and how many
//! nodes have each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cli::args::{Cli, DiscoveryArgs, FilterArgs, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::render::Renderer;
use crate::cli::report::{AgentSummary, AgentsReport, print_as};
use crate::cli::targets::{Finding, Found, connect_and_find};
use crate::client::Targets;

/// `baton agents`: which agents the targeted nodes have.
pub async fn run(
    cli: &Cli,
    filter_args: &FilterArgs,
    discovery: &DiscoveryArgs,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let found = connect_and_find(cli, filter_args, discovery, Finding::Targets).await?;
    if let Some(exit) =
        super::nothing_found(&found, "agent_inventory", &mut Renderer::new(output, cli.verbose)).await
    {
        return Ok(exit);
    }
    let Found { config, filter, client, discovered, .. } = found;
    let request = super::rpcutil("agent_inventory", Map::new(), filter);
    let timeout = Duration::from_secs(config.timeout_secs);
    let targets = Targets::Nodes(discovered.nodes.clone());
    let outcome = client.call(&request, &targets, timeout, None, &mut |_| {}).await?;
    client.close().await;

    // agent -> (description, versions, nodes)
    let mut found: BTreeMap<String, (String, BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for reply in outcome.replies.iter().filter(|reply| reply.is_ok()) {
        for entry in reply.data.get("agents").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = entry.get("agent").and_then(Value::as_str) else { continue };
            let slot = found.entry(name.to_owned()).or_default();
            if let Some(description) = entry.get("description").and_then(Value::as_str) {
                slot.0 = description.to_owned();
            }
            if let Some(version) = entry.get("version").and_then(Value::as_str) {
                slot.1.insert(version.to_owned());
            }
            slot.2.insert(reply.node.clone());
        }
    }
    let failed: Vec<&crate::client::NodeReply> =
        outcome.replies.iter().filter(|reply| !reply.is_ok()).collect();
    if output.json || output.jsonl {
        let agents = found.iter().map(|(agent, (description, versions, nodes))| AgentSummary {
            agent,
            description,
            versions,
            nodes,
        });
        let document = AgentsReport {
            agents: agents.collect(),
            targeted: outcome.targeted.as_deref(),
            no_response: &outcome.no_response,
            failed,
        };
        print_as(&document, output.jsonl);
    } else {
        let answered = outcome.replies.iter().filter(|reply| reply.is_ok()).count();
        println!("Agents on {answered} of {} node(s):", discovered.nodes.len());
        println!();
        let width = found.keys().map(String::len).max().unwrap_or(5).max(5);
        println!("  {:<width$}  {:<10}  {:>5}  description", "agent", "version", "nodes");
        for (agent, (description, versions, nodes)) in &found {
            let versions = versions.iter().cloned().collect::<Vec<_>>().join(",");
            println!("  {agent:<width$}  {versions:<10}  {:>5}  {description}", nodes.len());
        }
        for reply in &failed {
            println!("{:<40} {}: {}", reply.node, reply.status_text, reply.message);
        }
        if !outcome.no_response.is_empty() {
            println!();
            println!("No response from: {}", outcome.no_response.join(" "));
        }
    }
    Ok(Exit::for_outcome(&outcome))
}
