//! The `baton` command line: parsing, running each command, rendering, exit codes.
//!
//! Every command follows the same shape: check everything the user gave (filters, inputs,
//! configuration) before connecting, so a mistake exits 2 with nothing sent; connect (exit 5
//! when the broker cannot be reached); find the targets; call; render for people or scripts;
//! map the outcome onto the documented exit codes.

pub mod agents;
pub mod args;
pub mod exit;
pub mod render;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Map, Value, json};

use crate::client::discovery::{self, Discovered};
use crate::client::{CallOutcome, Client, Event, RequestSpec, Targets};
use crate::config::ClientConfig;
use crate::protocol::filter::{Filter, FilterSpec};
use args::{Cli, Command, DiscoveryArgs, DiscoveryMethod, FilterArgs, OutputArgs};
use exit::{Exit, Failure};
use render::Renderer;

/// Runs one parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let output = match &cli.command {
        Command::Ping { output, .. }
        | Command::Discover { output, .. }
        | Command::Rpc { output, .. }
        | Command::Inventory { output, .. }
        | Command::Facts { output, .. }
        | Command::Agents { output, .. }
        | Command::Doc { output, .. } => output.clone(),
        Command::Keygen { .. } => OutputArgs::default(),
    };
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
        Command::Rpc { agent, action, inputs, filter, discovery, timeout, output } => {
            // The filter first: a mistake there is reported before any about inputs.
            Filter::compile(&filter.spec()).map_err(Failure::usage)?;
            let data = agents::typed_inputs(cli, agent, action, inputs)?;
            let spec =
                RequestSpec { agent: agent.clone(), action: action.clone(), data, filter: filter.spec() };
            rpc(cli, spec, filter, discovery, *timeout, output).await
        }
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
            discovery::from_file(path)?
        }
        DiscoveryMethod::Stdin => discovery::from_stdin()?,
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

async fn rpc(
    cli: &Cli,
    request: RequestSpec,
    filter: &FilterArgs,
    discovery: &DiscoveryArgs,
    timeout: Option<f64>,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let (config, spec) = prepare(cli, filter)?;
    let timeout = seconds(timeout, agents::default_timeout_secs(&config, &request))?;
    let client = connect(&config).await?;
    let discovered = targets(&client, &config, &spec, discovery).await?;
    let output = agents::with_display_policy(&config, &request, output);
    let mut renderer = Renderer::new(&output, cli.verbose);
    if discovered.nodes.is_empty() {
        client.close().await;
        renderer.nothing_matched(&request, &discovered);
        return Ok(Exit::NothingMatched);
    }
    let targets = Targets::Nodes(discovered.nodes.clone());
    renderer.start_progress(discovered.nodes.len());
    let mut outcome = client
        .call(&request, &targets, timeout, None, &mut |event: &Event<'_>| renderer.rpc_event(event))
        .await?;
    client.close().await;
    outcome.aggregates = agents::aggregates(&config, &outcome);
    renderer.rpc_summary(&outcome, &discovered);
    Ok(Exit::for_outcome(&outcome))
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
    Ok(Exit::for_outcome(inventory).max(Exit::for_outcome(stats)))
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
