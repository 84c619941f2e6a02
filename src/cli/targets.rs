//! Targets: how a command finds the nodes to send to. [`TargetPlan::new`] checks the filter and
//! discovery flags together without I/O (part of the validation stage); [`TargetPlan::find`]
//! then reads the node list or runs broadcast discovery.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::args::{Cli, DiscoveryArgs, DiscoveryMethod, FilterArgs};
use super::exit::Failure;
use super::plan::{compile_filter, load_config, seconds};
use crate::client::discovery::{self, Discovered, ResultSet};
use crate::client::registry::RegistrySettings;
use crate::client::{Client, Targets};
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
    /// exist shows up as unreachable or silent. `baton discover` asks them, waiting at most
    /// this long, and reports only those that answer.
    Identities(Vec<String>, Duration),
    /// Exactly these nodes, in this order (a resumed rollout's remaining nodes).
    Given(Vec<String>),
    /// Broadcast discovery whose registry was read already ([`TargetPlan::expected`]), waiting
    /// at most this long, expecting these targets (the registry's matches, or a plain
    /// broadcast without a registry), after a read that took this long.
    Known(Duration, Targets, Duration),
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
        let timeout = || seconds(discovery.discovery_timeout, config.discovery_timeout_secs);
        let source = match method {
            DiscoveryMethod::Flatfile => Source::File(
                discovery.nodes.clone().ok_or_else(|| Failure::usage(anyhow!("--nodes FILE is missing")))?,
            ),
            DiscoveryMethod::Stdin => Source::Stdin,
            DiscoveryMethod::Broadcast => match filter.plain_identities() {
                Some(identities) => Source::Identities(crate::client::unique_sorted(identities), timeout()?),
                None => Source::Broadcast(timeout()?, RegistrySettings::of(config)),
            },
            DiscoveryMethod::Registry => Source::Registry(RegistrySettings::of(config)),
        };
        Ok(TargetPlan { source, only })
    }

    /// Whether the targets are found with the filter, by broadcast discovery or in the registry
    /// (not a node list or plain `-I` names, which are addressed as given).
    pub fn discovers(&self) -> bool {
        matches!(self.source, Source::Broadcast(..) | Source::Registry(_) | Source::Known(..))
    }

    /// Exactly these nodes, in this order (a resumed rollout's remaining nodes).
    pub fn given(nodes: Vec<String>) -> TargetPlan {
        TargetPlan { source: Source::Given(nodes), only: Vec::new() }
    }

    /// Finds the targets: a file, stdin, plain identities, or broadcast discovery with `filter`.
    pub async fn find(&self, client: &Client, filter: &Filter) -> Result<Discovered, Failure> {
        let started = Instant::now();
        let nodes = match &self.source {
            Source::File(path) => discovery::from_file(path, &self.only)?,
            Source::Stdin => discovery::from_stdin(&self.only)?,
            Source::Identities(identities, _) | Source::Given(identities) => identities.clone(),
            Source::Broadcast(timeout, registry) => {
                return Ok(discovery::broadcast(client, filter, *timeout, Some(registry)).await?);
            }
            Source::Known(timeout, targets, read) => {
                let found = discovery::broadcast_expecting(client, filter, *timeout, targets).await?;
                return Ok(Discovered { elapsed: found.elapsed + *read, ..found });
            }
            Source::Registry(registry) => {
                return Ok(discovery::registry_only(client, filter, registry).await?);
            }
        };
        Ok(Discovered { nodes, no_response: Vec::new(), elapsed: started.elapsed() })
    }

    /// Where the targets are found by broadcast discovery and the broker keeps a registry: the
    /// registry's nodes that match `filter`, and how long to wait for nodes it does not know
    /// yet, so that a request may go out as one broadcast expecting them rather than after a
    /// discovery. `None` otherwise (no registry to read, or no registered node matches: the
    /// caller discovers as usual, and a discovery broadcast still finds nodes not registered);
    /// what the read found is kept, so that discovery does not read the registry again.
    pub async fn expected(&mut self, client: &Client, filter: &Filter) -> Option<(Discovered, Duration)> {
        let Source::Broadcast(timeout, registry) = self.source else { return None };
        let started = Instant::now();
        match client.resolve_registry(&registry, filter).await {
            Targets::Expected { nodes, grace } if !nodes.is_empty() => {
                Some((Discovered { nodes, no_response: Vec::new(), elapsed: started.elapsed() }, grace))
            }
            targets => {
                self.source = Source::Known(timeout, targets, started.elapsed());
                None
            }
        }
    }

    /// As [`TargetPlan::find`], but named nodes are asked first and only those that answer are
    /// kept: what `baton discover` reports is nodes that answered, never names as typed.
    pub async fn find_answering(&self, client: &Client, filter: &Filter) -> Result<Discovered, Failure> {
        match &self.source {
            Source::Identities(identities, timeout) => {
                Ok(discovery::confirm(client, filter, identities, *timeout).await?)
            }
            _ => self.find(client, filter).await,
        }
    }
}

/// Why [`TargetPlan::find`] found no node, in words: what was empty, and what to do next.
#[derive(Debug, Clone)]
pub struct NothingFound {
    pub message: String,
    pub next_step: &'static str,
}

impl TargetPlan {
    /// Says what was empty when [`TargetPlan::find`] found no node: the filter's matches, the
    /// named nodes that answered, or the `--only` selection from earlier results.
    pub fn nothing_found(&self) -> NothingFound {
        if !self.only.is_empty() {
            let sets: Vec<&str> = self.only.iter().map(|set| set.name()).collect();
            return NothingFound {
                message: format!(
                    "--only {} selected no node from the results given; nothing was sent",
                    sets.join(",")
                ),
                next_step: "no node of the earlier run is in that result set: nothing to retry",
            };
        }
        match &self.source {
            Source::Identities(..) => NothingFound {
                message: "None of the named nodes answered".to_owned(),
                next_step: "check the names, or raise --dt if the fleet is slow to answer",
            },
            Source::Given(_) => NothingFound {
                message: "The rollout has no remaining nodes; nothing was sent".to_owned(),
                next_step: "see baton rollout status ID",
            },
            Source::File(_) | Source::Stdin => NothingFound {
                message: "The node list names no nodes; nothing was sent".to_owned(),
                next_step: "give identities, or the JSON of an earlier baton command",
            },
            Source::Registry(_) => NothingFound {
                message: "No node in the registry matches the filter; nothing was sent".to_owned(),
                next_step: "check the filter, or use --dm broadcast to ask the fleet itself",
            },
            Source::Broadcast(..) | Source::Known(..) => NothingFound {
                message: "No nodes matched the filter; nothing was sent".to_owned(),
                next_step: "check the filter, or raise --dt if the fleet is slow to answer",
            },
        }
    }
}

/// What a command that acts on discovered nodes has once it found them.
pub struct Found {
    pub config: ClientConfig,
    pub filter: Filter,
    pub client: Client,
    pub discovered: Discovered,
    pub plan: TargetPlan,
}

/// What [`connect_and_find`] is to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// The targets to send to ([`TargetPlan::find`]).
    Targets,
    /// Only nodes that answer ([`TargetPlan::find_answering`]): what `baton discover` reports.
    Answering,
}

/// The start shared by `discover`, `facts` and `agents`: the filter, the configuration and the
/// discovery flags are checked (before connecting), then the client connects and finds the
/// targets.
pub async fn connect_and_find(
    cli: &Cli,
    filter_args: &FilterArgs,
    discovery: &DiscoveryArgs,
    finding: Finding,
) -> Result<Found, Failure> {
    let filter = compile_filter(filter_args)?;
    let config = load_config(cli, filter_args.collective.as_ref())?;
    let plan = TargetPlan::new(&filter, discovery, &config)?;
    let client = Client::connect(&config).await?;
    let discovered = match finding {
        Finding::Targets => plan.find(&client, &filter).await?,
        Finding::Answering => plan.find_answering(&client, &filter).await?,
    };
    Ok(Found { config, filter, client, discovered, plan })
}
