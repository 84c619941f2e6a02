//! `baton discover` (alias `find`): the nodes a filter matches, one per line or as JSON that
//! `baton rpc --dm stdin` takes back. Nodes the registry expected that did not answer are
//! listed apart, and make the exit code 3.

use crate::cli::args::{Cli, DiscoveryArgs, FilterArgs, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::render::Renderer;
use crate::cli::targets::{Finding, Found, connect_and_find};

pub async fn run(
    cli: &Cli,
    filter_args: &FilterArgs,
    discovery: &DiscoveryArgs,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let Found { client, discovered, plan, .. } =
        connect_and_find(cli, filter_args, discovery, Finding::Answering).await?;
    client.close().await;
    Renderer::new(output, cli.verbose).discovered(&discovered, &plan.nothing_found());
    Ok(if !discovered.no_response.is_empty() {
        Exit::NoResponse
    } else if discovered.nodes.is_empty() {
        Exit::NothingMatched
    } else {
        Exit::Ok
    })
}
