//! `baton facts FACT`: how many of the matched nodes have each value of one fact.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::cli::args::{Cli, DiscoveryArgs, FilterArgs, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::render::Renderer;
use crate::cli::targets::{Finding, Found, connect_and_find};
use crate::client::{Event, Targets};

pub async fn run(
    cli: &Cli,
    fact: &str,
    filter_args: &FilterArgs,
    discovery: &DiscoveryArgs,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let found = connect_and_find(cli, filter_args, discovery, Finding::Targets).await?;
    let mut renderer = Renderer::new(output, cli.verbose);
    if let Some(exit) = super::nothing_found(&found, "get_fact", &mut renderer).await {
        return Ok(exit);
    }
    let Found { config, filter, client, discovered, .. } = found;
    let data = Map::from_iter([("fact".to_owned(), Value::String(fact.to_owned()))]);
    let request = super::rpcutil("get_fact", data, filter);
    let targets = Targets::Nodes(discovered.nodes.clone());
    let timeout = Duration::from_secs(config.timeout_secs);
    renderer.start_progress(discovered.nodes.len());
    let outcome = client
        .call(&request, &targets, timeout, None, &mut |event: &Event<'_>| renderer.progress_event(event))
        .await?;
    client.close().await;
    renderer.fact_report(fact, &outcome, &discovered);
    Ok(Exit::for_outcome(&outcome))
}
