//! `baton discover` (alias `find`): the nodes a filter matches, one per line or as JSON that
//! `baton rpc --dm stdin` takes back.

use crate::cli::args::{Cli, DiscoveryArgs, FilterArgs, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::{compile_filter, load_config};
use crate::cli::render::Renderer;
use crate::cli::targets::TargetPlan;

pub async fn run(
    cli: &Cli,
    filter_args: &FilterArgs,
    discovery: &DiscoveryArgs,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let filter = compile_filter(filter_args)?;
    let config = load_config(cli, filter_args.collective.as_ref())?;
    let targets = TargetPlan::new(&filter, discovery, &config)?;
    let client = super::connect(&config).await?;
    let discovered = targets.find(&client, &filter).await?;
    client.close().await;
    Renderer::new(output, cli.verbose).discovered(&discovered);
    Ok(if discovered.nodes.is_empty() { Exit::NothingMatched } else { Exit::Ok })
}
