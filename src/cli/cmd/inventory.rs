//! `baton inventory NODE`: one node's facts, classes, agents and daemon statistics.

use serde_json::Map;

use crate::cli::args::{Cli, FilterArgs, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::{compile_filter, load_config};
use crate::cli::render::Renderer;
use crate::client::Targets;

pub async fn run(
    cli: &Cli,
    node: &str,
    collective: Option<&String>,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let filter_args = FilterArgs { identity: vec![node.to_owned()], ..FilterArgs::default() };
    let filter = compile_filter(&filter_args)?;
    let config = load_config(cli, collective)?;
    let targets = Targets::Nodes(vec![node.to_owned()]);
    let timeout = std::time::Duration::from_secs(config.timeout_secs);
    let client = super::connect(&config).await?;
    let mut results = Vec::new();
    for action in ["inventory", "daemon_stats"] {
        let request = super::rpcutil(action, Map::new(), filter.clone());
        results.push(client.call(&request, &targets, timeout, None, &mut |_| {}).await?);
    }
    client.close().await;
    let (inventory, stats) = (&results[0], &results[1]);
    Renderer::new(output, cli.verbose).inventory(node, inventory, stats);
    Ok(Exit::worse(Exit::for_outcome(inventory), Exit::for_outcome(stats)))
}
