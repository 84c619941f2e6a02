//! `baton rpc AGENT ACTION [KEY=VALUE ...]`: one action on every node the filter matches, at
//! once or in batches, or fire-and-forget to a named reply queue.
//!
//! [`RpcPlan::new`] is the validation stage: the configuration is loaded once and the catalog of
//! definitions read once, the request is prepared by `client::prepare` (names, the filter
//! compiled once, inputs converted and checked, the timeout), and the rollout, discovery and
//! reply-queue flags are checked, all before anything connects.

use std::time::Duration;

use anyhow::anyhow;

use crate::cli::args::{Cli, DiscoveryArgs, Display, FilterArgs, OutputArgs, RolloutArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::{load_catalog, load_config, parse_inputs, seconds};
use crate::cli::render::Renderer;
use crate::cli::targets::TargetPlan;
use crate::client::detached;
use crate::client::rollout::order_targets;
use crate::client::{Amount, Client, Event, PreparedRequest, RequestText, RolloutOptions, prepare};
use crate::config::ClientConfig;
use crate::protocol::ddl::DisplayPolicy;

/// Everything `baton rpc` was asked, checked.
pub struct RpcPlan {
    config: ClientConfig,
    request: PreparedRequest,
    targets: TargetPlan,
    rollout: RolloutOptions,
    limit: Option<Amount>,
    limit_seed: Option<u64>,
    reply_to: Option<String>,
    output: OutputArgs,
}

/// The flags of `baton rpc`, as clap parsed them.
pub struct RpcArgs<'a> {
    pub agent: &'a str,
    pub action: &'a str,
    pub inputs: &'a [String],
    pub filter: &'a FilterArgs,
    pub discovery: &'a DiscoveryArgs,
    pub rollout: &'a RolloutArgs,
    pub reply_to: Option<&'a str>,
    pub output: &'a OutputArgs,
}

impl RpcPlan {
    /// Checks every flag; nothing here touches the network.
    pub fn new(cli: &Cli, args: &RpcArgs<'_>) -> Result<RpcPlan, Failure> {
        let inputs = parse_inputs(args.inputs)?;
        let config = load_config(cli, args.filter.collective.as_ref())?;
        let catalog = load_catalog(Some(&config));
        let text = RequestText {
            agent: args.agent.to_owned(),
            action: args.action.to_owned(),
            inputs,
            filter: args.filter.spec(),
        };
        let timeout = args.rollout.timeout.map(|secs| seconds(Some(secs), 0)).transpose()?;
        let request = prepare(&catalog, text, Duration::from_secs(config.timeout_secs), timeout)
            .map_err(Failure::usage)?;
        let rollout = rollout_options(args.rollout)?;
        if let Some(name) = args.reply_to {
            if args.rollout.batch.is_some() || args.rollout.max_failures.is_some() {
                return Err(Failure::usage(anyhow!(
                    "--reply-to cannot be combined with --batch or --max-failures: a rollout must see each batch's replies to decide on the next"
                )));
            }
            detached::check_queue_name(name)?;
        }
        let targets = TargetPlan::new(&request.spec.filter, args.discovery, &config)?;
        let mut output = args.output.clone();
        output.display = output.display.or(request.display().map(display_for));
        Ok(RpcPlan {
            config,
            request,
            targets,
            rollout,
            limit: args.rollout.limit(),
            limit_seed: args.rollout.limit_seed,
            reply_to: args.reply_to.map(str::to_owned),
            output,
        })
    }

    /// Connects, finds the targets and sends, as planned.
    pub async fn run(self, verbose: u8) -> Result<Exit, Failure> {
        let client = super::connect(&self.config).await?;
        let result = self.send(&client, verbose).await;
        client.close().await;
        result
    }

    async fn send(&self, client: &Client, verbose: u8) -> Result<Exit, Failure> {
        let spec = &self.request.spec;
        let discovered = self.targets.find(client, &spec.filter).await?;
        let mut renderer = Renderer::new(&self.output, verbose);
        // Nodes the registry expected that were silent in discovery stay targets: the request
        // reports them as not responding (or they answer it after all).
        let targets = discovered.targets();
        if targets.is_empty() {
            renderer.nothing_matched(&spec.agent, &spec.action, &discovered);
            return Ok(Exit::NothingMatched);
        }
        let ordered = order_targets(&targets, self.limit, self.limit_seed);
        if let Some(name) = &self.reply_to {
            let sent = client.send_detached(spec, &ordered.nodes, name).await?;
            let state_file = detached::state_dir().and_then(|dir| match detached::save_record(&dir, &sent) {
                Ok(path) => Some(path),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot save the request record; baton replies will not know who did not answer");
                    None
                }
            });
            renderer.detached(&sent, state_file.as_deref());
            return Ok(if sent.unreachable.is_empty() { Exit::Ok } else { Exit::NoResponse });
        }
        renderer.start_progress(ordered.nodes.len());
        renderer.show_batches(self.rollout.batch.is_some());
        let outcome = client
            .rollout(&self.request, &ordered.nodes, &self.rollout, &mut |event: &Event<'_>| {
                renderer.rpc_event(event)
            })
            .await?;
        renderer.rollout_summary(&outcome, &discovered, &ordered);
        Ok(Exit::for_rollout(&outcome))
    }
}

/// `--display` as the action's definition has it, when the user gave none.
fn display_for(policy: DisplayPolicy) -> Display {
    match policy {
        DisplayPolicy::Ok => Display::Ok,
        DisplayPolicy::Failed => Display::Failed,
        DisplayPolicy::Always => Display::All,
    }
}

/// Checks the rollout flags and turns them into options.
fn rollout_options(rollout: &RolloutArgs) -> Result<RolloutOptions, Failure> {
    if matches!(rollout.batch, Some(Amount::Count(0) | Amount::Percent(0))) {
        return Err(Failure::usage(anyhow!("--batch must be at least 1 node (or 1%)")));
    }
    if matches!(rollout.limit, Some(Amount::Count(0) | Amount::Percent(0))) {
        return Err(Failure::usage(anyhow!("--limit must be at least 1 node (or 1%)")));
    }
    let batch_sleep = match rollout.batch_sleep {
        None => Duration::from_secs(1),
        Some(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => Duration::from_secs_f64(secs),
        Some(secs) => {
            return Err(Failure::usage(anyhow!(
                "--batch-sleep {secs} is not a number of seconds between 0 and 86400"
            )));
        }
    };
    Ok(RolloutOptions { batch: rollout.batch, batch_sleep, max_failures: rollout.max_failures })
}
