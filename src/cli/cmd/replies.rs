//! `baton replies NAME`: collecting the replies of a fire-and-forget request from its named
//! queue, accounted as `baton rpc` would have.

use std::time::Duration;

use crate::cli::args::Display;
use crate::cli::args::{Cli, OutputArgs};
use crate::cli::cmd::rpc::display_for;
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::{load_catalog, load_config, seconds};
use crate::cli::render::Renderer;
use crate::client::detached::{self, CollectOptions};
use crate::client::{Event, aggregates_of};

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
    let mut collection = client
        .collect(args.name, &options, &record_of, &mut |event: &Event<'_>| renderer.rpc_event(event))
        .await?;
    client.close().await;
    // What the live command would have shown: the definition's aggregates and display policy.
    let catalog = load_catalog(Some(&config));
    let displays: Vec<Option<Display>> = collection
        .requests
        .iter_mut()
        .map(|outcome| {
            let action = catalog.definition(&outcome.agent)?.action(&outcome.action)?;
            outcome.aggregates = aggregates_of(action, outcome);
            Some(display_for(action.display))
        })
        .collect();
    if let Some(dir) = &state_dir {
        let max_age = Duration::from_secs(config.request_records_days.saturating_mul(86_400));
        let removed = detached::prune_records(dir, &collection.requests, max_age);
        tracing::debug!(removed, dir = %dir.display(), "request records pruned");
    }
    renderer.collection(&collection, &displays);
    let exit =
        collection.requests.iter().map(Exit::for_outcome).fold(None, |worst: Option<Exit>, exit| {
            Some(worst.map_or(exit, |worst| Exit::worse(worst, exit)))
        });
    Ok(exit.unwrap_or(Exit::NothingMatched))
}
