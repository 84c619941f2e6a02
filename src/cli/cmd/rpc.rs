//! `baton rpc AGENT ACTION [KEY=VALUE ...]`: one action on every node the filter matches, at
//! once or in batches, or fire-and-forget to a named reply queue.
//!
//! [`RpcPlan::new`] is the validation stage: the configuration is loaded once and the catalog of
//! definitions read once, the request is prepared by `client::prepare` (names, the filter
//! compiled once, inputs converted and checked, the timeout), and the rollout, discovery and
//! reply-queue flags are checked, all before anything connects (but for one `rpcutil
//! definition` request when the agent's definition is not known here, see
//! `client::definitions`; it is asked on the connection the command then sends on, so one
//! `baton rpc` opens one broker connection).

use std::time::Duration;

use anyhow::anyhow;

use crate::agents::catalog::Catalog;
use crate::cli::args::{Cli, DiscoveryArgs, Display, FilterArgs, OutputArgs, RolloutArgs};
use crate::cli::confirm::confirm;
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::{load_catalog, load_config, parse_inputs, seconds};
use crate::cli::render::Renderer;
use crate::cli::targets::TargetPlan;
use crate::client::definitions::{self, DefinitionCache, complete_catalog};
use crate::client::detached;
use crate::client::discovery::Discovered;
use crate::client::events::{EVENTS_READ_TIMEOUT, read_rollout};
use crate::client::journal::{Journal, RolloutRequest, rollouts_dir};
use crate::client::rollout::{Ordered, order_targets};
use crate::client::{
    Amount, CheckOptions, Client, ClientError, Event, PreparedRequest, RequestText, RolloutOptions, prepare,
};
use crate::config::ClientConfig;
use crate::protocol::ddl::{Definition, DisplayPolicy};
use crate::protocol::filter::FilterSpec;

/// Everything `baton rpc` was asked, checked.
pub struct RpcPlan {
    config: ClientConfig,
    request: PreparedRequest,
    targets: TargetPlan,
    rollout: RolloutOptions,
    limit: Option<Amount>,
    limit_seed: Option<u64>,
    reply_to: Option<String>,
    /// `--yes`: no confirmation asked (see `cli::confirm`).
    yes: bool,
    output: OutputArgs,
    tracking: Tracking,
    /// The agent added to the filter as `-A AGENT`, when it was.
    added_agent_filter: Option<String>,
    /// The connection opened to ask the nodes for a definition, when one was: the command
    /// sends on it too (or reports its failure) rather than connecting again.
    connection: Option<Result<Client, ClientError>>,
}

/// Whether the rollout's state is saved for `baton rollout status` and `resume`.
enum Tracking {
    /// A single call, or plain batches without a stop condition: nothing to resume.
    Untracked,
    /// A new rollout, saved as typed.
    New(Box<RolloutRequest>),
    /// A resumed rollout: the targets are its remaining nodes, in its order.
    Resume(Box<Journal>),
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
    pub yes: bool,
    pub output: &'a OutputArgs,
}

impl RpcPlan {
    /// Checks every flag. Nothing here touches the network, except for an agent whose
    /// definition is neither built in, nor in `definitions_dir`, nor freshly cached: then one
    /// `rpcutil definition` request asks the nodes that have it (`client::definitions`), on
    /// the connection [`RpcPlan::run`] then sends on.
    pub async fn new(cli: &Cli, args: &RpcArgs<'_>) -> Result<RpcPlan, Failure> {
        let inputs = parse_inputs(args.inputs)?;
        let config = load_config(cli, args.filter.collective.as_ref())?;
        let text = RequestText {
            agent: args.agent.to_owned(),
            action: args.action.to_owned(),
            inputs,
            filter: args.filter.spec(),
        };
        let rollout = args.rollout;
        let tracked = rollout.batch.is_some()
            || rollout.events
            || rollout.canary.is_some()
            || rollout.check.is_some()
            || rollout.max_failures.is_some();
        let tracking = if tracked {
            Tracking::New(Box::new(saved_request(&text, rollout)))
        } else {
            Tracking::Untracked
        };
        let (catalog, connection) =
            complete_definitions(&config, &text.agent, rollout.check.as_deref()).await;
        let checked = RpcPlan::build(
            config,
            &catalog,
            text,
            rollout,
            Some(args.discovery),
            args.reply_to,
            args.output,
            tracking,
        );
        let plan = on_connection(checked, connection).await?;
        Ok(RpcPlan { yes: args.yes, ..plan })
    }

    /// The plan of `baton rollout resume`: what the rollout's record says was typed, checked
    /// again as it was the first time, sent to the nodes that did not succeed.
    pub async fn resume(
        cli: &Cli,
        journal: Journal,
        yes: bool,
        output: &OutputArgs,
    ) -> Result<RpcPlan, Failure> {
        let record = journal.record();
        let config = load_config(cli, Some(&record.collective))?;
        let saved = &record.request;
        let amount = |flag: &str, text: &Option<String>| {
            text.as_deref()
                .map(|text| {
                    text.parse::<Amount>()
                        .map_err(|error| Failure::usage(anyhow!("{flag} in the rollout's record: {error}")))
                })
                .transpose()
        };
        let rollout = RolloutArgs {
            batch: amount("--batch", &saved.batch)?,
            batch_sleep: saved.batch_sleep_secs,
            max_failures: amount("--max-failures", &saved.max_failures)?,
            canary: saved.canary,
            check: saved.check.clone(),
            check_wait: saved.check_wait_secs,
            check_retries: saved.check_retries,
            timeout: saved.timeout_secs,
            events: saved.events,
            ..RolloutArgs::default()
        };
        let text = RequestText {
            agent: saved.agent.clone(),
            action: saved.action.clone(),
            inputs: saved.inputs.clone(),
            filter: saved.filter.clone(),
        };
        let (catalog, connection) =
            complete_definitions(&config, &text.agent, rollout.check.as_deref()).await;
        let tracking = Tracking::Resume(Box::new(journal));
        let checked = RpcPlan::build(config, &catalog, text, &rollout, None, None, output, tracking);
        let plan = on_connection(checked, connection).await?;
        Ok(RpcPlan { yes, ..plan })
    }

    /// The checks once the catalog is complete: no I/O.
    // The flags of two commands (`rpc`, `rollout resume`) meet here, each as parsed.
    #[allow(clippy::too_many_arguments)]
    fn build(
        config: ClientConfig,
        catalog: &Catalog,
        text: RequestText,
        rollout_args: &RolloutArgs,
        discovery: Option<&DiscoveryArgs>,
        reply_to: Option<&str>,
        output: &OutputArgs,
        tracking: Tracking,
    ) -> Result<RpcPlan, Failure> {
        let timeout = rollout_args.timeout.map(|secs| seconds(Some(secs), 0)).transpose()?;
        let mut request = prepare(catalog, text, Duration::from_secs(config.timeout_secs), timeout)
            .map_err(Failure::usage)?;
        let rollout = rollout_options(rollout_args, catalog, &config)?;
        if let Some(name) = reply_to {
            let rollout = rollout_args;
            if rollout.batch.is_some()
                || rollout.max_failures.is_some()
                || rollout.canary.is_some()
                || rollout.check.is_some()
                || rollout.events
            {
                return Err(Failure::usage(anyhow!(
                    "--reply-to cannot be combined with --batch, --canary, --check, --events or --max-failures: a rollout must see each batch's replies to decide on the next"
                )));
            }
            detached::check_queue_name(name)?;
        }
        // A resume's targets are its remaining nodes; anything else finds them as the flags say.
        let targets = match (discovery, &tracking) {
            (Some(discovery), _) => TargetPlan::new(&request.spec.filter, discovery, &config)?,
            (None, Tracking::Resume(journal)) => TargetPlan::given(journal.record().remaining()),
            (None, _) => TargetPlan::given(Vec::new()),
        };
        // Only nodes with the agent are discovered (MCollective did the same): the others
        // would all answer "unknown agent". Named nodes and node lists are asked as given.
        let mut added_agent_filter = None;
        let agent = request.spec.agent.clone();
        if targets.discovers()
            && let Some(filter) = request.spec.filter.requiring_agent(&agent).map_err(Failure::usage)?
        {
            request.spec.filter = filter;
            added_agent_filter = Some(agent);
        }
        let mut output = output.clone();
        output.display = output.display.or(request.display().map(display_for));
        Ok(RpcPlan {
            config,
            request,
            targets,
            rollout,
            limit: rollout_args.limit(),
            limit_seed: rollout_args.limit_seed,
            reply_to: reply_to.map(str::to_owned),
            yes: false,
            output,
            tracking,
            added_agent_filter,
            connection: None,
        })
    }

    /// Connects, finds the targets and sends, as planned.
    pub async fn run(mut self, verbose: u8) -> Result<Exit, Failure> {
        let client = match self.connection.take() {
            Some(connection) => connection?,
            None => super::connect(&self.config).await?,
        };
        let result = self.send(&client, verbose).await;
        client.close().await;
        result
    }

    async fn send(mut self, client: &Client, verbose: u8) -> Result<Exit, Failure> {
        let mut renderer = Renderer::new(&self.output, verbose);
        if let Some(agent) = &self.added_agent_filter {
            renderer.added_agent_filter(agent);
        }
        if self.goes_as_one_broadcast()
            && let Some((expected, grace)) = self.targets.expected(client, &self.request.spec.filter).await
        {
            return self.broadcast(client, renderer, expected, grace).await;
        }
        let spec = &self.request.spec;
        let discovered = self.targets.find(client, &spec.filter).await?;
        // Nodes the registry expected that were silent in discovery stay targets: the request
        // reports them as not responding (or they answer it after all).
        let candidates = discovered.targets();
        if candidates.is_empty() {
            renderer.nothing_matched(&spec.agent, &spec.action, &discovered, &self.targets.nothing_found());
            return Ok(Exit::NothingMatched);
        }
        // Whoever runs a tracked rollout holds its locks, here and on the broker, until it
        // ends: a second run of the same rollout is refused before it sends anything. The
        // confirmation is asked before anything is saved or sent: a "no" leaves no record behind.
        let (ordered, mut journal, _broker_lock) = match self.tracking {
            Tracking::Resume(mut journal) => {
                journal.lock()?;
                let lock = client.lock_rollout(journal.record().rollout_id).await?;
                // Another machine may have resumed it since this record was read.
                if journal.record().request.events {
                    let collective = &journal.record().collective;
                    let id = journal.record().rollout_id;
                    match read_rollout(client, collective, id, EVENTS_READ_TIMEOUT).await {
                        Ok(Some(remote)) => journal.catch_up(remote)?,
                        Ok(None) => {}
                        Err(error) => tracing::debug!(%error, "the rollout's events are not read back"),
                    }
                }
                // Read again under the locks: a run that ended meanwhile may have done them all.
                if journal.record().remaining().is_empty() {
                    renderer.rollout_status(journal.record());
                    return Ok(Exit::Ok);
                }
                confirm(
                    &self.request,
                    journal.record().remaining().len(),
                    self.config.confirm_above,
                    self.yes,
                )
                .await?;
                // The remaining nodes keep the rollout's order: no new order, no new limit.
                let nodes = journal.resume()?;
                let candidates = journal.record().order.len();
                (Ordered { nodes, seed: None, candidates }, Some(*journal), Some(lock))
            }
            Tracking::New(request) => {
                let ordered = order_targets(&candidates, self.limit, self.limit_seed);
                confirm(&self.request, ordered.nodes.len(), self.config.confirm_above, self.yes).await?;
                let dir = rollouts_dir().ok_or_else(|| {
                    Failure::usage(anyhow!(
                        "neither XDG_STATE_HOME nor HOME is set: nowhere to save the rollout's state"
                    ))
                })?;
                let mut journal = Journal::create(&dir, &self.config.collective, *request, &ordered.nodes)?;
                journal.lock()?;
                let lock = client.lock_rollout(journal.record().rollout_id).await?;
                (ordered, Some(journal), Some(lock))
            }
            Tracking::Untracked => {
                let ordered = order_targets(&candidates, self.limit, self.limit_seed);
                confirm(&self.request, ordered.nodes.len(), self.config.confirm_above, self.yes).await?;
                (ordered, None, None)
            }
        };
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
        if let Some(journal) = &journal {
            // A tracked rollout's action runs at most once on each node, over every run of it:
            // a resume sends to nodes whose answer was lost, and those that succeeded answer
            // with that success instead of running it again (node::once).
            self.request.spec.once = Some(format!("rollout:{}", journal.record().rollout_id));
            if journal.record().request.events {
                renderer.publish_events(client.event_publisher(journal.record().rollout_id));
            }
            renderer.rollout_started(journal.record(), &ordered.nodes, journal.path());
        }
        renderer.start_progress(ordered.nodes.len());
        renderer.show_batches(self.rollout.batch.is_some() || self.rollout.canary.is_some());
        // Ctrl-C ends the wait: what is known so far is printed, with the nodes still awaited;
        // a saved rollout keeps what was observed, for `baton rollout resume`.
        let mut on_event = |event: &Event<'_>| {
            // Saved before it is shown: whatever a reader saw is already on disk.
            if let Some(journal) = journal.as_mut()
                && let Err(error) = journal.observe(event)
            {
                tracing::warn!(%error, "the rollout's state is not saved");
            }
            renderer.rpc_event(event)
        };
        let finished = tokio::select! {
            outcome = client.rollout(&self.request, &ordered.nodes, &self.rollout, &mut on_event) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(outcome) = finished else {
            if let Some(events) = renderer.take_events() {
                events.finish().await;
            }
            return Ok(renderer.interrupted(&ordered.nodes));
        };
        let mut outcome = outcome?;
        let rollout_id = journal.as_ref().map(|journal| journal.record().rollout_id);
        if let Some(journal) = journal.as_mut() {
            outcome.nodes = journal.finish(&outcome)?;
        }
        renderer.rollout_summary(&outcome, &discovered, &ordered, rollout_id);
        if let Some(events) = renderer.take_events() {
            events.finish().await;
        }
        Ok(Exit::for_rollout(&outcome))
    }

    /// Whether the action may go out as one broadcast expecting the registry's nodes that
    /// match (`Client::broadcast_rollout`): one round trip instead of a discovery followed by
    /// the request to the nodes found. Only a read-only `rpcutil` action, for which a node that
    /// answers the broadcast without having been counted beforehand changes nothing (no confirmation
    /// is asked for one either); never a tracked rollout (batches, checks, events: its record
    /// lists the nodes before anything is sent), `--limit` (picked among the nodes found) or
    /// `--reply-to` (whose record lists whom it was sent to).
    fn goes_as_one_broadcast(&self) -> bool {
        // Only actions answered from the node's memory (the built-in `rpcutil`): the grace for
        // nodes the registry does not know yet was measured on replies that all take about as
        // long. An action that runs a command on the node (`service status`, `package status`)
        // takes longer on some nodes than on others, so an unregistered node's reply could come
        // after the grace and be lost; those discover first, and then wait for each node
        // found up to the timeout.
        self.request.spec.agent == "rpcutil"
            && matches!(self.tracking, Tracking::Untracked)
            && self.limit.is_none()
            && self.reply_to.is_none()
            && self.request.read_only()
    }

    /// The action as one broadcast expecting `expected`, reported as a call to the nodes found
    /// would be (`discovery_ms` is then the registry's read).
    async fn broadcast(
        self,
        client: &Client,
        mut renderer: Renderer,
        expected: Discovered,
        grace: Duration,
    ) -> Result<Exit, Failure> {
        renderer.start_progress(expected.nodes.len());
        renderer.show_batches(false);
        let mut on_event = |event: &Event<'_>| renderer.rpc_event(event);
        let finished = tokio::select! {
            outcome = client.broadcast_rollout(&self.request, &expected.nodes, grace, &mut on_event) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(outcome) = finished else { return Ok(renderer.interrupted(&expected.nodes)) };
        let outcome = outcome?;
        let targeted = outcome.call.targeted.clone().unwrap_or_default();
        let ordered = Ordered { candidates: targeted.len(), nodes: targeted, seed: None };
        renderer.rollout_summary(&outcome, &expected, &ordered, None);
        Ok(Exit::for_rollout(&outcome))
    }
}

/// The catalog of definitions (read once), completed with the definitions of the action's agent
/// and of the `--check` agent where they are not known here (`client::definitions`), and the
/// connection opened to ask the nodes for them, if one was.
async fn complete_definitions(
    config: &ClientConfig,
    agent: &str,
    check: Option<&str>,
) -> (Catalog, Option<Result<Client, ClientError>>) {
    let mut catalog = load_catalog(Some(config));
    let mut connection = None;
    let check_agent = check.and_then(|check| check.split_whitespace().next());
    for agent in std::iter::once(agent).chain(check_agent) {
        let cache = DefinitionCache::user();
        let fetch = fetch_on(&mut connection, config, agent);
        let completion = complete_catalog(&mut catalog, cache.as_ref(), agent, fetch).await;
        tracing::debug!(agent, ?completion, "definition");
    }
    (catalog, connection)
}

/// The checked plan, to send on `connection` when the definitions were asked on one; a plan
/// that failed its checks closes it.
async fn on_connection(
    checked: Result<RpcPlan, Failure>,
    connection: Option<Result<Client, ClientError>>,
) -> Result<RpcPlan, Failure> {
    match (checked, connection) {
        (Ok(plan), connection) => Ok(RpcPlan { connection, ..plan }),
        (Err(failure), Some(Ok(client))) => {
            client.close().await;
            Err(failure)
        }
        (Err(failure), _) => Err(failure),
    }
}

/// Asks the nodes for `agent`'s definition on `connection`, connecting it first if this is the
/// command's first use of the broker. A failed connection is kept, for the command to report
/// (exit 5) when it would send; the definition is then simply not known here.
async fn fetch_on(
    connection: &mut Option<Result<Client, ClientError>>,
    config: &ClientConfig,
    agent: &str,
) -> Result<Option<(Definition, Vec<u8>)>, String> {
    let connection = match connection {
        Some(connection) => connection,
        None => connection.insert(Client::connect(config).await),
    };
    let client = connection.as_ref().map_err(ToString::to_string)?;
    let timeout = Duration::from_secs(config.discovery_timeout_secs.max(1));
    definitions::fetch(client, agent, timeout).await.map_err(|error| error.to_string())
}

/// The rollout as typed, for its record.
fn saved_request(text: &RequestText, rollout: &RolloutArgs) -> RolloutRequest {
    RolloutRequest {
        agent: text.agent.clone(),
        action: text.action.clone(),
        inputs: text.inputs.clone(),
        filter: text.filter.clone(),
        canary: rollout.canary,
        batch: rollout.batch.map(|amount| amount.to_string()),
        batch_sleep_secs: rollout.batch_sleep,
        max_failures: rollout.max_failures.map(|amount| amount.to_string()),
        check: rollout.check.clone(),
        check_wait_secs: rollout.check_wait,
        check_retries: rollout.check_retries,
        timeout_secs: rollout.timeout,
        events: rollout.events,
    }
}

/// `--display` as the action's definition has it, when the user gave none.
pub(crate) fn display_for(policy: DisplayPolicy) -> Display {
    match policy {
        DisplayPolicy::Ok => Display::Ok,
        DisplayPolicy::Failed => Display::Failed,
        DisplayPolicy::Always => Display::All,
    }
}

/// Checks the rollout flags and turns them into options; the check is prepared like the
/// action, against the catalog's definitions.
fn rollout_options(
    rollout: &RolloutArgs,
    catalog: &Catalog,
    config: &ClientConfig,
) -> Result<RolloutOptions, Failure> {
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
    if rollout.canary == Some(0) {
        return Err(Failure::usage(anyhow!("--canary must be at least 1 node")));
    }
    let check =
        rollout.check.as_deref().map(|text| check_options(text, rollout, catalog, config)).transpose()?;
    Ok(RolloutOptions {
        batch: rollout.batch,
        batch_sleep,
        max_failures: rollout.max_failures,
        canary: rollout.canary,
        check,
    })
}

/// Parses and prepares `--check 'AGENT ACTION [KEY=VALUE ...]'`. The check goes to nodes
/// already chosen, so it carries no filter of its own.
fn check_options(
    text: &str,
    rollout: &RolloutArgs,
    catalog: &Catalog,
    config: &ClientConfig,
) -> Result<CheckOptions, Failure> {
    let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let [agent, action, inputs @ ..] = words.as_slice() else {
        return Err(Failure::usage(anyhow!(
            "--check {text:?} needs an agent and an action, e.g. --check 'health check' or --check 'rpcutil get_fact fact=role'"
        )));
    };
    let text = RequestText {
        agent: agent.clone(),
        action: action.clone(),
        inputs: parse_inputs(inputs)?,
        filter: FilterSpec::default(),
    };
    let request = prepare(catalog, text, Duration::from_secs(config.timeout_secs), None)
        .map_err(|error| Failure::usage(anyhow!("--check: {error}")))?;
    let wait = match rollout.check_wait {
        None => Duration::ZERO,
        Some(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => Duration::from_secs_f64(secs),
        Some(secs) => {
            return Err(Failure::usage(anyhow!(
                "--check-wait {secs} is not a number of seconds between 0 and 86400"
            )));
        }
    };
    Ok(CheckOptions { request, wait, retries: rollout.check_retries.unwrap_or(0) })
}
