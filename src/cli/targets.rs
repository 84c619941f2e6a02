//! Targets: how a command finds the nodes to send to. [`TargetPlan::new`] checks the filter and
//! discovery flags together without I/O (part of the validation stage); [`TargetPlan::find`]
//! then reads the node list or runs broadcast discovery.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::args::{Cli, DiscoveryArgs, DiscoveryMethod, FilterArgs};
use super::exit::Failure;
use super::plan::{compile_filter, load_config, seconds};
use crate::client::Client;
use crate::client::discovery::{self, Discovered, ResultSet};
use crate::client::registry::RegistrySettings;
use crate::config::ClientConfig;
use crate::protocol::filter::Filter;

/// Where the targets come from, checked.
#[derive(Debug, Clone)]
enum Source {
    /// Ask the fleet who matches the filter, waiting at most this long, expecting the nodes
    /// the registry knows where there is one.
    Broadcast(Duration, RegistrySettings),
    /// The registry's nodes that match the filter, without asking them.
    Registry(RegistrySettings),
    /// Plain `-I` identities: addressed directly, no discovery needed; anyone who does not
    /// exist shows up as unreachable or silent.
    Identities(Vec<String>),
    File(PathBuf),
    Stdin,
}

/// How a command finds its targets.
#[derive(Debug, Clone)]
pub struct TargetPlan {
    source: Source,
    only: Vec<ResultSet>,
}

impl TargetPlan {
    /// Checks the discovery flags against each other and against the filter.
    pub fn new(
        filter: &Filter,
        discovery: &DiscoveryArgs,
        config: &ClientConfig,
    ) -> Result<TargetPlan, Failure> {
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
        let only = discovery.result_sets();
        let filters = matches!(method, DiscoveryMethod::Broadcast | DiscoveryMethod::Registry);
        if filters && !only.is_empty() {
            return Err(Failure::usage(anyhow!(
                "--only picks from the results of an earlier run: give them with --dm stdin or --nodes FILE"
            )));
        }
        if !filters && !filter.is_empty() {
            return Err(Failure::usage(anyhow!(
                "filters cannot be combined with a node list: the list already names the targets (drop -I/-C/-F/-A/-S, or use broadcast discovery)"
            )));
        }
        let source = match method {
            DiscoveryMethod::Flatfile => Source::File(
                discovery.nodes.clone().ok_or_else(|| Failure::usage(anyhow!("--nodes FILE is missing")))?,
            ),
            DiscoveryMethod::Stdin => Source::Stdin,
            DiscoveryMethod::Broadcast => match filter.plain_identities() {
                Some(identities) => Source::Identities(crate::client::unique_sorted(identities)),
                None => Source::Broadcast(
                    seconds(discovery.discovery_timeout, config.discovery_timeout_secs)?,
                    RegistrySettings::of(config),
                ),
            },
            DiscoveryMethod::Registry => Source::Registry(RegistrySettings::of(config)),
        };
        Ok(TargetPlan { source, only })
    }

    /// Finds the targets: a file, stdin, plain identities, or broadcast discovery with `filter`.
    pub async fn find(&self, client: &Client, filter: &Filter) -> Result<Discovered, Failure> {
        let started = Instant::now();
        let nodes = match &self.source {
            Source::File(path) => discovery::from_file(path, &self.only)?,
            Source::Stdin => discovery::from_stdin(&self.only)?,
            Source::Identities(identities) => identities.clone(),
            Source::Broadcast(timeout, registry) => {
                return Ok(discovery::broadcast(client, filter, *timeout, Some(registry)).await?);
            }
            Source::Registry(registry) => {
                return Ok(discovery::registry_only(client, filter, registry).await?);
            }
        };
        Ok(Discovered { nodes, no_response: Vec::new(), elapsed: started.elapsed() })
    }
}

/// What a command that acts on discovered nodes has once it found them.
pub struct Found {
    pub config: ClientConfig,
    pub filter: Filter,
    pub client: Client,
    pub discovered: Discovered,
}

/// The start shared by `discover`, `facts` and `agents`: the filter, the configuration and the
/// discovery flags are checked (before connecting), then the client connects and finds the
/// targets.
pub async fn connect_and_find(
    cli: &Cli,
    filter_args: &FilterArgs,
    discovery: &DiscoveryArgs,
) -> Result<Found, Failure> {
    let filter = compile_filter(filter_args)?;
    let config = load_config(cli, filter_args.collective.as_ref())?;
    let plan = TargetPlan::new(&filter, discovery, &config)?;
    let client = Client::connect(&config).await?;
    let discovered = plan.find(&client, &filter).await?;
    Ok(Found { config, filter, client, discovered })
}
