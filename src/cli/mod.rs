//! The `baton` command line: parsing, running each command, rendering, exit codes.
//!
//! Every command follows the same shape: check everything the user gave (filters, inputs,
//! configuration) before connecting, so a mistake exits 2 with nothing sent; connect (exit 5
//! when the broker cannot be reached); find the targets; call; render for people or scripts;
//! map the outcome onto the documented exit codes.

pub mod agents;
pub mod args;
#[cfg(feature = "console")]
mod console;
pub mod exit;
pub mod extras;
pub mod render;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Map, Value, json};

use crate::client::detached::{self, CollectOptions};
use crate::client::discovery::{self, Discovered};
use crate::client::rollout::order_targets;
use crate::client::{Amount, CallOutcome, Client, Event, RequestSpec, RolloutOptions, Targets};
use crate::config::ClientConfig;
use crate::protocol::filter::{Filter, FilterSpec};
use args::{Cli, Command, DiscoveryArgs, DiscoveryMethod, FilterArgs, OutputArgs, RolloutArgs};
use exit::{Exit, Failure};
use render::Renderer;

/// Runs one parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let output = cli.command.output();
    match dispatch(&cli).await {
        Ok(exit) => exit.code(),
        Err(failure) => {
            render::failure(&output, &failure);
            failure.exit.code()
        }
    }
}

async fn dispatch(cli: &Cli) -> Result<Exit, Failure> {
    match &cli.command {
        Command::Ping { filter, output } => ping(cli, filter, output).await,
        Command::Discover { filter, discovery, output } => discover(cli, filter, discovery, output).await,
        Command::Rpc { agent, action, inputs, filter, discovery, rollout, reply_to, output } => {
            // The filter first: a mistake there is reported before any about inputs.
            Filter::compile(&filter.spec()).map_err(Failure::usage)?;
            let data = agents::typed_inputs(cli, agent, action, inputs)?;
            let spec =
                RequestSpec { agent: agent.clone(), action: action.clone(), data, filter: filter.spec() };
            let how = RpcOptions { discovery, rollout, reply_to: reply_to.as_deref() };
            rpc(cli, spec, filter, how, output).await
        }
        Command::Replies { name, request, wait, collective, output } => {
            replies(cli, name, *request, *wait, collective.clone(), output).await
        }
        Command::Completions { shell } => {
            extras::completions(*shell);
            Ok(Exit::Ok)
        }
        Command::Man { dir } => extras::man(dir.as_deref()).map(|()| Exit::Ok),
        Command::Inventory { node, collective, output } => {
            inventory(cli, node, collective.clone(), output).await
        }
        Command::Facts { fact, filter, discovery, output } => {
            facts(cli, fact, filter, discovery, output).await
        }
        Command::Agents { filter, discovery, output } => agents::agents(cli, filter, discovery, output).await,
        Command::Doc { agent, collective, output } => {
            agents::doc(cli, agent, collective.clone(), output).await
        }
        Command::Keygen { name, dir, force } => agents::keygen(cli, name.as_deref(), dir, *force),
        #[cfg(not(feature = "console"))]
        Command::Console { .. } => Err(Failure::usage(anyhow!(
            "this baton was built without the web console; rebuild it with the default features \
             (cargo feature `console`) to run `baton console`"
        ))),
        #[cfg(feature = "console")]
        Command::Console { listen, users, add_user, database, registration_interval, user_keys, origins } => {
            match (add_user, users) {
                (Some(name), Some(users)) => console::add_user(users, name),
                _ => {
                    let options = crate::console::ConsoleOptions {
                        listen: *listen,
                        users: users.clone(),
                        database: database.clone().unwrap_or_else(crate::console::default_database),
                        registration_interval: Duration::from_secs(*registration_interval),
                        user_keys: user_keys.clone(),
                        origins: origins.clone(),
                    };
                    console::serve(cli, options).await
                }
            }
        }
    }
}

/// Parses `KEY=VALUE` arguments into strings; [`agents::typed_inputs`] converts them by the
/// types the agent's definition declares.
pub fn parse_inputs(inputs: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut data = Map::new();
    for input in inputs {
        let Some((key, value)) = input.split_once('=') else {
            return Err(Failure::usage(anyhow!("input {input:?} is not KEY=VALUE (e.g. fact=role)")));
        };
        if key.is_empty() {
            return Err(Failure::usage(anyhow!("input {input:?} has an empty name")));
        }
        if data.insert(key.to_string(), Value::String(value.to_string())).is_some() {
            return Err(Failure::usage(anyhow!("input {key:?} is given twice")));
        }
    }
    Ok(data)
}

/// Loads the client configuration, applies the command line's overrides, and checks the
/// filter, all before connecting.
fn prepare(cli: &Cli, filter: &FilterArgs) -> Result<(ClientConfig, FilterSpec), Failure> {
    let spec = filter.spec();
    Filter::compile(&spec).map_err(Failure::usage)?;
    let mut config = ClientConfig::load(cli.config.as_deref()).map_err(Failure::usage)?;
    if let Some(collective) = &filter.collective {
        config.collective = collective.clone();
    }
    Ok((config, spec))
}

async fn connect(config: &ClientConfig) -> Result<Client, Failure> {
    Ok(Client::connect(config).await?)
}

fn seconds(value: Option<f64>, default: u64) -> Result<Duration, Failure> {
    match value {
        None => Ok(Duration::from_secs(default)),
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => Ok(Duration::from_secs_f64(secs)),
        Some(secs) => Err(Failure::usage(anyhow!("{secs} is not a number of seconds between 0 and 86400"))),
    }
}

/// Finds the targets: a file, stdin, plain identities, or broadcast discovery.
async fn targets(
    client: &Client,
    config: &ClientConfig,
    filter: &FilterSpec,
    discovery: &DiscoveryArgs,
) -> Result<Discovered, Failure> {
    let method = match (discovery.method, &discovery.nodes) {
        (None, Some(_)) | (Some(DiscoveryMethod::Flatfile), Some(_)) => DiscoveryMethod::Flatfile,
        (Some(DiscoveryMethod::Flatfile), None) => {
            return Err(Failure::usage(anyhow!("--dm flatfile needs --nodes FILE")));
        }
        (Some(method), Some(_)) => {
            return Err(Failure::usage(anyhow!("--nodes FILE cannot be combined with --dm {method:?}")));
        }
        (Some(method), None) => method,
        (None, None) => DiscoveryMethod::Broadcast,
    };
    let has_filter = *filter != FilterSpec::default();
    let only = discovery.result_sets();
    if method == DiscoveryMethod::Broadcast && !only.is_empty() {
        return Err(Failure::usage(anyhow!(
            "--only picks from the results of an earlier run: give them with --dm stdin or --nodes FILE"
        )));
    }
    if method != DiscoveryMethod::Broadcast && has_filter {
        return Err(Failure::usage(anyhow!(
            "filters cannot be combined with a node list: the list already names the targets (drop -I/-C/-F/-A/-S, or use broadcast discovery)"
        )));
    }
    let started = std::time::Instant::now();
    let nodes = match method {
        DiscoveryMethod::Flatfile => {
            let path = discovery
                .nodes
                .as_deref()
                .ok_or_else(|| Failure::usage(anyhow!("--nodes FILE is missing")))?;
            discovery::from_file(path, &only)?
        }
        DiscoveryMethod::Stdin => discovery::from_stdin(&only)?,
        DiscoveryMethod::Broadcast => {
            let compiled = Filter::compile(filter).map_err(Failure::usage)?;
            if let Some(identities) = compiled.plain_identities() {
                // Plain identities need no discovery: address them directly, and anyone who
                // does not exist shows up as unreachable or silent.
                crate::client::unique_sorted(identities)
            } else {
                let timeout = seconds(discovery.discovery_timeout, config.discovery_timeout_secs)?;
                return Ok(discovery::broadcast(client, filter, timeout).await?);
            }
        }
    };
    Ok(Discovered { nodes, elapsed: started.elapsed() })
}

async fn ping(cli: &Cli, filter: &FilterArgs, output: &OutputArgs) -> Result<Exit, Failure> {
    let (config, spec) = prepare(cli, filter)?;
    let client = connect(&config).await?;
    let compiled = Filter::compile(&spec).map_err(Failure::usage)?;
    let targets = match compiled.plain_identities() {
        Some(identities) => Targets::Nodes(identities),
        None => Targets::Broadcast,
    };
    let request = RequestSpec {
        agent: "rpcutil".to_string(),
        action: "ping".to_string(),
        data: Map::new(),
        filter: spec,
    };
    let mut renderer = Renderer::new(output, cli.verbose);
    let timeout = Duration::from_secs(config.discovery_timeout_secs.max(1));
    let quiet = matches!(targets, Targets::Broadcast).then_some(Duration::from_millis(300));
    let outcome = client
        .call(&request, &targets, timeout, quiet, &mut |event: &Event<'_>| renderer.ping_event(event))
        .await?;
    client.close().await;
    renderer.ping_summary(&outcome);
    Ok(Exit::for_outcome(&outcome))
}

async fn discover(
    cli: &Cli,
    filter: &FilterArgs,
    discovery: &DiscoveryArgs,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let (config, spec) = prepare(cli, filter)?;
    let client = connect(&config).await?;
    let discovered = targets(&client, &config, &spec, discovery).await?;
    client.close().await;
    Renderer::new(output, cli.verbose).discovered(&discovered);
    Ok(if discovered.nodes.is_empty() { Exit::NothingMatched } else { Exit::Ok })
}

/// How `baton rpc` finds its targets and sends to them.
struct RpcOptions<'a> {
    discovery: &'a DiscoveryArgs,
    rollout: &'a RolloutArgs,
    reply_to: Option<&'a str>,
}

/// Checks the rollout flags and turns them into options, before anything is sent.
fn rollout_options(rollout: &RolloutArgs, default_timeout_secs: u64) -> Result<RolloutOptions, Failure> {
    let timeout = seconds(rollout.timeout, default_timeout_secs)?;
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
    Ok(RolloutOptions { batch: rollout.batch, batch_sleep, max_failures: rollout.max_failures, timeout })
}

async fn rpc(
    cli: &Cli,
    request: RequestSpec,
    filter: &FilterArgs,
    how: RpcOptions<'_>,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let (config, spec) = prepare(cli, filter)?;
    let options = rollout_options(how.rollout, agents::default_timeout_secs(&config, &request))?;
    if let Some(name) = how.reply_to {
        if how.rollout.batch.is_some() || how.rollout.max_failures.is_some() {
            return Err(Failure::usage(anyhow!(
                "--reply-to cannot be combined with --batch or --max-failures: a rollout must see each batch's replies to decide on the next"
            )));
        }
        detached::check_queue_name(name)?;
    }
    let client = connect(&config).await?;
    let discovered = targets(&client, &config, &spec, how.discovery).await?;
    let output = agents::with_display_policy(&config, &request, output);
    let mut renderer = Renderer::new(&output, cli.verbose);
    if discovered.nodes.is_empty() {
        client.close().await;
        renderer.nothing_matched(&request, &discovered);
        return Ok(Exit::NothingMatched);
    }
    let ordered = order_targets(&discovered.nodes, how.rollout.limit(), how.rollout.limit_seed);
    if let Some(name) = how.reply_to {
        let sent = client.send_detached(&request, &ordered.nodes, name).await?;
        client.close().await;
        let state_file = match detached::state_dir() {
            Some(dir) => match detached::save_record(&dir, &sent) {
                Ok(path) => Some(path),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot save the request record; baton replies will not know who did not answer");
                    None
                }
            },
            None => None,
        };
        renderer.detached(&sent, state_file.as_deref());
        return Ok(if sent.unreachable.is_empty() { Exit::Ok } else { Exit::NoResponse });
    }
    renderer.start_progress(ordered.nodes.len());
    renderer.show_batches(how.rollout.batch.is_some());
    let mut outcome = client
        .rollout(&request, &ordered.nodes, &options, &mut |event: &Event<'_>| renderer.rpc_event(event))
        .await?;
    client.close().await;
    outcome.call.aggregates = agents::aggregates(&config, &outcome.call);
    renderer.rollout_summary(&outcome, &discovered, &ordered);
    Ok(Exit::for_rollout(&outcome))
}

async fn replies(
    cli: &Cli,
    name: &str,
    request: Option<uuid::Uuid>,
    wait: Option<f64>,
    collective: Option<String>,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let filter = FilterArgs { collective, ..FilterArgs::default() };
    let (config, _) = prepare(cli, &filter)?;
    detached::check_queue_name(name)?;
    let wait = seconds(wait, config.timeout_secs)?;
    let client = connect(&config).await?;
    let state_dir = detached::state_dir();
    let record_of = |id: uuid::Uuid| state_dir.as_deref().and_then(|dir| detached::load_record(dir, id));
    let options = CollectOptions { request, wait, quiet: Duration::from_millis(500) };
    let mut renderer = Renderer::new(output, cli.verbose);
    let collection = client
        .collect(name, &options, &record_of, &mut |event: &Event<'_>| renderer.rpc_event(event))
        .await?;
    client.close().await;
    renderer.collection(&collection);
    let exit =
        collection.requests.iter().map(Exit::for_outcome).fold(None, |worst: Option<Exit>, exit| {
            Some(worst.map_or(exit, |worst| Exit::worse(worst, exit)))
        });
    Ok(exit.unwrap_or(Exit::NothingMatched))
}

async fn inventory(
    cli: &Cli,
    node: &str,
    collective: Option<String>,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let filter = FilterArgs { identity: vec![node.to_string()], collective, ..FilterArgs::default() };
    let (config, spec) = prepare(cli, &filter)?;
    let client = connect(&config).await?;
    let targets = Targets::Nodes(vec![node.to_string()]);
    let timeout = Duration::from_secs(config.timeout_secs);
    let mut results = Vec::new();
    for action in ["inventory", "daemon_stats"] {
        let request = RequestSpec {
            agent: "rpcutil".to_string(),
            action: action.to_string(),
            data: Map::new(),
            filter: spec.clone(),
        };
        results.push(client.call(&request, &targets, timeout, None, &mut |_| {}).await?);
    }
    client.close().await;
    let (inventory, stats) = (&results[0], &results[1]);
    Renderer::new(output, cli.verbose).inventory(node, inventory, stats);
    Ok(Exit::worse(Exit::for_outcome(inventory), Exit::for_outcome(stats)))
}

async fn facts(
    cli: &Cli,
    fact: &str,
    filter: &FilterArgs,
    discovery: &DiscoveryArgs,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let (config, spec) = prepare(cli, filter)?;
    let client = connect(&config).await?;
    let discovered = targets(&client, &config, &spec, discovery).await?;
    let mut renderer = Renderer::new(output, cli.verbose);
    let request = RequestSpec {
        agent: "rpcutil".to_string(),
        action: "get_fact".to_string(),
        data: Map::from_iter([("fact".to_string(), json!(fact))]),
        filter: spec,
    };
    if discovered.nodes.is_empty() {
        client.close().await;
        renderer.nothing_matched(&request, &discovered);
        return Ok(Exit::NothingMatched);
    }
    let targets = Targets::Nodes(discovered.nodes.clone());
    let timeout = Duration::from_secs(config.timeout_secs);
    renderer.start_progress(discovered.nodes.len());
    let outcome: CallOutcome = client
        .call(&request, &targets, timeout, None, &mut |event: &Event<'_>| renderer.progress_event(event))
        .await?;
    client.close().await;
    renderer.fact_report(fact, &outcome, &discovered);
    Ok(Exit::for_outcome(&outcome))
}

/// Whether stderr is a terminal a progress bar may draw on.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// What to print for a command line clap refused, when the user asked for JSON (`--json` or
/// `--jsonl` among the arguments): the same error document as every other failure, so a
/// script always gets JSON. `None` for help and version requests, and without JSON.
pub fn usage_error_json(args: &[String], error: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let mut wants = None;
    for arg in args.iter().skip(1).take_while(|arg| *arg != "--") {
        match arg.as_str() {
            "--json" => wants = Some(false),
            "--jsonl" => wants = Some(true),
            _ => {}
        }
    }
    let rendered = error.to_string();
    let message = rendered.lines().next().unwrap_or("invalid command line").trim_start_matches("error: ");
    let document = json!({"type": "error", "error": message, "exit_code": Exit::Usage.code()});
    wants.map(|line| {
        if line { document.to_string() } else { serde_json::to_string_pretty(&document).unwrap_or_default() }
    })
}
