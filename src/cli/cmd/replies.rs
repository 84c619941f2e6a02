//! `baton replies NAME`: collecting the replies of a fire-and-forget request from its named
//! queue, accounted as `baton rpc` would have.

use std::time::Duration;

use crate::cli::args::{Cli, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::{load_config, seconds};
use crate::cli::render::Renderer;
use crate::client::Event;
use crate::client::detached::{self, CollectOptions};

/// What `baton replies` was asked.
pub struct RepliesArgs<'a> {
    pub name: &'a str,
    pub request: Option<uuid::Uuid>,
    pub wait: Option<f64>,
    pub collective: Option<&'a String>,
    pub output: &'a OutputArgs,
}

pub async fn run(cli: &Cli, args: &RepliesArgs<'_>) -> Result<Exit, Failure> {
    let config = load_config(cli, args.collective)?;
    detached::check_queue_name(args.name)?;
    let wait = seconds(args.wait, config.timeout_secs)?;
    let client = super::connect(&config).await?;
    let state_dir = detached::state_dir();
    let record_of = |id: uuid::Uuid| state_dir.as_deref().and_then(|dir| detached::load_record(dir, id));
    let options = CollectOptions { request: args.request, wait, quiet: Duration::from_millis(500) };
    let mut renderer = Renderer::new(args.output, cli.verbose);
    let collection = client
        .collect(args.name, &options, &record_of, &mut |event: &Event<'_>| renderer.rpc_event(event))
        .await?;
    client.close().await;
    renderer.collection(&collection);
    let exit =
        collection.requests.iter().map(Exit::for_outcome).fold(None, |worst: Option<Exit>, exit| {
            Some(worst.map_or(exit, |worst| Exit::worse(worst, exit)))
        });
    Ok(exit.unwrap_or(Exit::NothingMatched))
}
