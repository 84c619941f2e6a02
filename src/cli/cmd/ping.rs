//! `baton ping`: every node the filter matches, and how fast each answered.

use std::time::Duration;

use serde_json::Map;

use crate::cli::args::{Cli, FilterArgs, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::{compile_filter, load_config};
use crate::cli::render::Renderer;
use crate::client::discovery::broadcast_call;
use crate::client::registry::RegistrySettings;
use crate::client::{Event, Targets};

pub async fn run(cli: &Cli, filter_args: &FilterArgs, output: &OutputArgs) -> Result<Exit, Failure> {
    let filter = compile_filter(filter_args)?;
    let config = load_config(cli, filter_args.collective.as_ref())?;
    let identities = filter.plain_identities();
    let request = super::rpcutil("ping", Map::new(), filter);
    let timeout = Duration::from_secs(config.discovery_timeout_secs.max(1));
    let client = super::connect(&config).await?;
    let mut renderer = Renderer::new(output, cli.verbose);
    let mut on_event = |event: &Event<'_>| renderer.ping_event(event);
    let outcome = match identities {
        Some(identities) => {
            client.call(&request, &Targets::Nodes(identities), timeout, None, &mut on_event).await?
        }
        None => {
            let registry = RegistrySettings::of(&config);
            broadcast_call(&client, &request, timeout, Some(&registry), &mut on_event).await?
        }
    };
    client.close().await;
    renderer.ping_summary(&outcome);
    Ok(Exit::for_outcome(&outcome))
}
