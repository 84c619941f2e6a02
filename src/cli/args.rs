//! The command line, declared once with clap: flags, help texts and examples.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::exit::EXIT_CODES_HELP;
use crate::client::Amount;
use crate::client::discovery::ResultSet;
use crate::protocol::filter::FilterSpec;

/// baton: invoke an action on many machines at once, through your message broker.
#[derive(Debug, Parser)]
#[command(name = "baton", version, after_help = EXIT_CODES_HELP, propagate_version = true)]
pub struct Cli {
    /// Client configuration file (default: $XDG_CONFIG_HOME/baton/client.toml, then /etc/baton/client.toml).
    #[arg(short = 'c', long, global = true, value_name = "FILE", env = "BATON_CONFIG")]
    pub config: Option<PathBuf>,

    /// More detail: timing statistics, and debug logs with -vv.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process and never moved around: boxing the large `rpc` variant would only
// make every match on it noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ping every node the filter matches and show how fast each answered.
    #[command(after_help = "Examples:\n  baton ping\n  baton ping -F role=web\n  baton ping -I web01 --json")]
    Ping {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the nodes a filter matches.
    #[command(
        visible_alias = "find",
        after_help = "Examples:\n  baton discover -C nginx\n  baton discover -S 'role=web and not os.family=redhat'\n  baton discover -F role=db --json | baton rpc rpcutil ping --dm stdin\n  baton discover --dm registry -F role=web"
    )]
    Discover {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        discovery: DiscoveryArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run an action of an agent on every node the filter matches, at once or in batches.
    #[command(after_help = RPC_EXAMPLES)]
    Rpc {
        /// The agent, e.g. rpcutil.
        agent: String,
        /// The action, e.g. get_fact.
        action: String,
        /// Inputs as KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        inputs: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        discovery: DiscoveryArgs,
        #[command(flatten)]
        rollout: RolloutArgs,
        /// Fire and forget: send replies to the durable queue <collective>.reply.NAME, print the
        /// request id and exit at once; collect them later with `baton replies NAME`.
        #[arg(long, value_name = "NAME", help_heading = "Rollout")]
        reply_to: Option<String>,
        /// Run without asking: the action is not declared read-only and goes to more than
        /// confirm_above nodes (client.toml, default 10). Needed where stdin is not a terminal.
        #[arg(short = 'y', long)]
        yes: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show or resume a rollout that stopped, or whose client was killed.
    #[command(after_help = ROLLOUT_EXAMPLES)]
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Collect the replies of a fire-and-forget request (`baton rpc ... --reply-to NAME`).
    #[command(after_help = REPLIES_EXAMPLES)]
    Replies {
        /// The name given with --reply-to.
        name: String,
        /// Only the replies to this request id; replies to other requests stay in the queue.
        #[arg(long, value_name = "ID")]
        request: Option<uuid::Uuid>,
        /// The longest wait for replies, in seconds (default: the configuration's timeout_secs).
        /// Collection ends sooner once every node the request was sent to has answered, or,
        /// when that is not known, once the queue has been quiet for half a second.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<f64>,
        /// The collective the request was sent in (default: the configuration's collective).
        #[arg(short = 'T', long, value_name = "NAME")]
        collective: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one node's facts, classes, agents and daemon statistics.
    #[command(after_help = "Examples:\n  baton inventory web01\n  baton inventory web01 --json")]
    Inventory {
        /// The node's identity.
        node: String,
        #[arg(short = 'T', long, value_name = "NAME")]
        collective: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the agents the targeted nodes have, with their versions and how many nodes have each.
    #[command(after_help = "Examples:\n  baton agents\n  baton agents -F role=web --json")]
    Agents {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        discovery: DiscoveryArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show an agent's actions, inputs and outputs, generated from its definition.
    #[command(
        after_help = "Examples:\n  baton doc service\n  baton doc rpcutil --json\n  baton doc ./myagent/definition.json   (check a definition file and show its help)"
    )]
    Doc {
        /// The agent, e.g. service; or a definition file to check and show (a path with a /,
        /// or ending in .json; a directory stands for its definition.json).
        agent: String,
        /// The collective to ask when the definition is not known locally.
        #[arg(short = 'T', long, value_name = "NAME")]
        collective: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write an ed25519 key pair, for security.scheme = "ed25519".
    #[command(
        after_help = "The private key goes in security.key_file; the public key goes into the trusted_keys_dir\nof whoever must trust it: nodes trust callers' keys, clients trust nodes' keys.\n\nExamples:\n  baton keygen --name user=alice --dir ~/.config/baton\n  baton keygen --name web01 --dir /etc/baton"
    )]
    Keygen {
        /// The key's name: a caller id (user=alice) or a node identity. Default: the configured caller.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Where to write NAME.key and NAME.pub.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Count the values of one fact across the nodes the filter matches.
    #[command(after_help = "Examples:\n  baton facts os.family\n  baton facts role -C nginx --json")]
    Facts {
        /// The fact, dotted keys allowed (os.release.major).
        fact: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        discovery: DiscoveryArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Serve the web console: browse nodes, run actions from forms, clone resources, control Puppet.
    #[cfg(feature = "console")]
    #[command(after_help = CONSOLE_EXAMPLES)]
    Console {
        /// The address to listen on. Anything but a loopback address needs --users; 0.0.0.0 and
        /// :: also need --origin.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = listen_address)]
        listen: std::net::SocketAddr,
        /// The users file (NAME:HASH lines); when given, everyone logs in.
        #[arg(long, value_name = "FILE")]
        users: Option<PathBuf>,
        /// Add a user to --users (or change their password) and exit; the password is read
        /// from standard input (prompted for, without echo, on a terminal).
        #[arg(long, value_name = "NAME", requires = "users")]
        add_user: Option<String>,
        /// The SQLite file keeping nodes and job history (default:
        /// $XDG_STATE_HOME/baton/console.sqlite).
        #[arg(long, value_name = "FILE")]
        database: Option<PathBuf>,
        /// How often the nodes register (their registration.interval_secs); a node not heard
        /// from for three intervals is shown as quiet.
        #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        registration_interval: u64,
        /// With security.scheme = "ed25519": a directory of users' private keys (user=NAME.key,
        /// from baton keygen), so requests are signed as the logged-in user.
        #[arg(long, value_name = "DIR")]
        user_keys: Option<PathBuf>,
        /// An address people reach the console at, as typed in the browser (repeatable), e.g.
        /// https://console.example:8443 behind a TLS proxy. Requests for other host names are
        /// refused; needed to --listen on 0.0.0.0 or ::.
        #[arg(long = "origin", value_name = "URL", value_parser = crate::console::PublicOrigin::parse)]
        origins: Vec<crate::console::PublicOrigin>,
    },
    /// The web console is not in this build (built without the cargo feature `console`).
    // Kept as a command so that `baton console` says why it is missing instead of "unrecognized
    // subcommand".
    #[cfg(not(feature = "console"))]
    #[command(disable_help_flag = true)]
    Console {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        ignored: Vec<String>,
    },
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff) of baton, or write one page per subcommand into a directory.
    #[command(
        after_help = "Examples:\n  baton man > baton.1 && man ./baton.1\n  baton man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write baton.1 and baton-<subcommand>.1 into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

const RPC_EXAMPLES: &str = "\
Examples:
  baton rpc rpcutil get_fact fact=role
  baton rpc rpcutil ping -F role=web -t 5
  baton rpc rpcutil get_fact fact=os.family -S 'role=/^(web|db)$/' --json
  baton rpc rpcutil daemon_stats --nodes hosts.txt --display all

Rollouts (batches go out in the order shown; a stopped rollout exits 1 and lists skipped nodes):
  baton rpc service restart service=nginx -C nginx --batch 10% --batch-sleep 30 --max-failures 2
  baton rpc service restart service=nginx -C nginx --canary 1 --batch 5 --check 'health check' \
      --check-wait 10 --check-retries 2 --max-failures 0
  baton rpc rpcutil ping --limit 5 --limit-seed 42    (the same 5 nodes every time)
  baton rpc rpcutil ping -1                           (any one node)

Retry what did not succeed (sets: ok, failed, no_response, skipped, not_ok):
  baton rpc service restart service=nginx --json > run.json
  baton rpc service restart service=nginx --nodes run.json --only not_ok
  baton discover -C nginx --json | baton rpc rpcutil ping --dm stdin

Fire and forget:
  baton rpc rpcutil daemon_stats --reply-to nightly
  baton replies nightly --wait 30";

const ROLLOUT_EXAMPLES: &str = "\
Every rollout with --batch, --canary, --check or --max-failures prints its id and saves its
state in $XDG_STATE_HOME/baton/rollouts as each node's result arrives.

Examples:
  baton rpc service restart service=nginx --batch 5 --check 'health check' --max-failures 0
  # Rollout 3f2b…: stopped at --max-failures; fix the node, then:
  baton rollout status 3f2b6c1e-8d1a-4c52-9e3f-0a4b5c6d7e8f
  baton rollout resume 3f2b6c1e-8d1a-4c52-9e3f-0a4b5c6d7e8f
  id=$(baton rpc hello greet name=ci --batch 2 --json | jq -r .rollout_id)
  baton rollout status \"$id\" --json";

/// `baton rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show a rollout's nodes: done, failed, skipped and remaining.
    Status {
        /// The rollout's id, as printed when it started.
        id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Continue a rollout with the nodes that did not succeed (failed, silent, skipped or never
    /// reached), with the same action, inputs, check and rollout flags; a node that succeeded
    /// is never sent the action again.
    Resume {
        /// The rollout's id, as printed when it started.
        id: String,
        /// Run without asking, as `baton rpc --yes`.
        #[arg(short = 'y', long)]
        yes: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

const REPLIES_EXAMPLES: &str = "\
Examples:
  id=$(baton rpc rpcutil ping --reply-to later --json | jq -r .request_id)
  baton replies later --request \"$id\"
  baton replies later --wait 60 --json";

#[cfg(feature = "console")]
const CONSOLE_EXAMPLES: &str = "\
Examples:
  baton console                                   (http://127.0.0.1:8080, no login)
  baton console --users /etc/baton/console-users --add-user alice
  baton console --listen 0.0.0.0:8443 --users /etc/baton/console-users --origin http://console.example:8443
  baton console --users /etc/baton/console-users --origin https://console.example   (behind a TLS proxy)
  baton console --registration-interval 60 --database /var/lib/baton/console.sqlite

Put it behind a TLS-terminating proxy when it listens beyond the machine (docs/CONSOLE.md).";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  baton completions bash > /etc/bash_completion.d/baton
  baton completions zsh > \"${fpath[1]}/_baton\"
  baton completions fish > ~/.config/fish/completions/baton.fish";

/// Shells `baton completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Command {
    /// The output flags of the command, or the defaults for commands that have none.
    pub fn output(&self) -> OutputArgs {
        match self {
            Command::Ping { output, .. }
            | Command::Discover { output, .. }
            | Command::Rpc { output, .. }
            | Command::Replies { output, .. }
            | Command::Inventory { output, .. }
            | Command::Facts { output, .. }
            | Command::Agents { output, .. }
            | Command::Doc { output, .. }
            | Command::Rollout {
                command: RolloutCommand::Status { output, .. } | RolloutCommand::Resume { output, .. },
            } => output.clone(),
            Command::Completions { .. }
            | Command::Man { .. }
            | Command::Keygen { .. }
            | Command::Console { .. } => OutputArgs::default(),
        }
    }
}

/// How to send to the targets: in batches, how many, how long to wait.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Rollout")]
pub struct RolloutArgs {
    /// Send to this many nodes at a time (or this percentage of the targets), waiting for each
    /// batch to finish before the next. Batches follow the sorted targets, or the seed's order.
    #[arg(long, value_name = "N|N%")]
    pub batch: Option<Amount>,
    /// Seconds to pause between batches (default 1 when batching).
    #[arg(long, value_name = "SECONDS", requires = "batch")]
    pub batch_sleep: Option<f64>,
    /// Stop sending further batches once more than N nodes (or N% of the targets) failed or did
    /// not respond; the nodes never sent to are listed as skipped and baton exits 1.
    #[arg(long, value_name = "N|N%")]
    pub max_failures: Option<Amount>,
    /// A first batch of N nodes on its own (the canary), then the rest in --batch sizes.
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
    /// After each batch, run this action on the batch's nodes whose action succeeded; a check
    /// that fails, errs or gets no answer counts as a failed node toward --max-failures.
    #[arg(long, value_name = "'AGENT ACTION [KEY=VALUE ...]'")]
    pub check: Option<String>,
    /// Seconds to wait after a batch's action (and between check retries) before checking
    /// (default 0).
    #[arg(long, value_name = "SECONDS", requires = "check")]
    pub check_wait: Option<f64>,
    /// Times a failing or silent check is tried again before it counts (default 0).
    #[arg(long, value_name = "N", requires = "check")]
    pub check_retries: Option<u32>,
    /// Also publish the rollout's events (the --jsonl lines) to the collective's topic exchange
    /// C.events, for dashboards and other pipelines; the broker user needs write permission on
    /// it (rabbitmq/definitions.json grants it).
    #[arg(long)]
    pub events: bool,
    /// Only N of the targets (or N%), picked at random; the seed used is shown.
    #[arg(long = "limit", value_name = "N|N%", conflicts_with = "one")]
    pub limit: Option<Amount>,
    /// Seed for --limit and for the batch order: the same seed picks the same nodes in the same
    /// order every time.
    #[arg(long, value_name = "N")]
    pub limit_seed: Option<u64>,
    /// Only one of the targets (as --limit 1).
    #[arg(short = '1', long)]
    pub one: bool,
    /// Seconds to wait for replies, per batch (default: the configuration's timeout_secs).
    #[arg(short = 't', long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

impl RolloutArgs {
    /// The limit, with `-1` meaning 1.
    pub fn limit(&self) -> Option<Amount> {
        if self.one { Some(Amount::Count(1)) } else { self.limit }
    }
}

/// Which nodes: every kind of filter, ANDed together.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Identity, or /regex/. Several -I are ORed.
    #[arg(short = 'I', long = "identity", id = "identity_filter", value_name = "ID|/RE/")]
    pub identity: Vec<String>,
    /// Puppet class, or /regex/.
    #[arg(short = 'C', long = "class", id = "class_filter", value_name = "NAME|/RE/")]
    pub class: Vec<String>,
    /// Fact comparison: KEY==VALUE, !=, <, >, <=, >=, =~ /regex/ (dotted keys reach into structured facts).
    #[arg(short = 'F', long = "fact", id = "fact_filter", value_name = "KEY<op>VALUE")]
    pub fact: Vec<String>,
    /// Nodes that have this agent, or /regex/.
    #[arg(short = 'A', long = "agent", id = "agent_filter", value_name = "NAME|/RE/")]
    pub agent: Vec<String>,
    /// Compound filter: facts, classes, 'and', 'or', 'not', parentheses.
    #[arg(short = 'S', long = "select", id = "select_filter", value_name = "EXPR")]
    pub select: Vec<String>,
    /// The collective to address (default: the configuration's collective).
    #[arg(short = 'T', long = "collective", value_name = "NAME")]
    pub collective: Option<String>,
}

impl FilterArgs {
    pub fn spec(&self) -> FilterSpec {
        FilterSpec {
            identity: self.identity.clone(),
            class: self.class.clone(),
            fact: self.fact.clone(),
            agent: self.agent.clone(),
            select: self.select.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryMethod {
    /// Ask the fleet who matches (default).
    Broadcast,
    /// Read identities from --nodes FILE.
    Flatfile,
    /// Read identities, or baton's JSON, from stdin.
    Stdin,
    /// Trust the broker's registry alone: the registered nodes the filter matches, without
    /// asking them (for very large fleets; RabbitMQ over AMQP).
    Registry,
}

/// Result sets of an earlier run, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// Nodes that replied OK.
    Ok,
    /// Nodes that replied with a failure.
    Failed,
    /// Targeted nodes that did not reply.
    #[value(name = "no_response", alias = "no-response")]
    NoResponse,
    /// Nodes a stopped rollout never sent to.
    Skipped,
    /// failed, no_response and skipped: everything to retry.
    #[value(name = "not_ok", alias = "not-ok")]
    NotOk,
}

impl From<Only> for ResultSet {
    fn from(only: Only) -> ResultSet {
        match only {
            Only::Ok => ResultSet::Ok,
            Only::Failed => ResultSet::Failed,
            Only::NoResponse => ResultSet::NoResponse,
            Only::Skipped => ResultSet::Skipped,
            Only::NotOk => ResultSet::NotOk,
        }
    }
}

/// How to find the targets.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Discovery")]
pub struct DiscoveryArgs {
    /// Discovery method.
    #[arg(long = "dm", value_enum, value_name = "METHOD")]
    pub method: Option<DiscoveryMethod>,
    /// A file of identities, one per line (implies --dm flatfile).
    #[arg(long, value_name = "FILE")]
    pub nodes: Option<PathBuf>,
    /// Longest wait for discovery, in seconds; it ends sooner once replies go quiet.
    #[arg(long = "dt", value_name = "SECONDS")]
    pub discovery_timeout: Option<f64>,
    /// From the results of an earlier `baton rpc --json`/`--jsonl` (given with --dm stdin or
    /// --nodes FILE), take only these nodes. Comma-separated or repeated; not_ok is failed,
    /// no_response and skipped together.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SET")]
    pub only: Vec<Only>,
}

impl DiscoveryArgs {
    pub fn result_sets(&self) -> Vec<ResultSet> {
        self.only.iter().copied().map(ResultSet::from).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Display {
    /// Only nodes that replied OK.
    Ok,
    /// Only nodes that failed (default).
    #[default]
    Failed,
    /// Every node.
    All,
    /// No per-node lines, only the summary.
    None,
}

/// How to show the results.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// One JSON document on stdout.
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// One JSON line per event as it happens (batches, replies, skipped nodes), then one per
    /// silent node, then a summary line.
    #[arg(long)]
    pub jsonl: bool,
    /// Which nodes get a line of their own (default: what the action's definition says, else failed).
    #[arg(long, value_enum)]
    pub display: Option<Display>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// `--listen`: an address, or a host name and port (`localhost:8080`), resolved here.
#[cfg(feature = "console")]
fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let mut addresses = text.to_socket_addrs().map_err(|error| {
        format!("{error} (give an address and port, e.g. 127.0.0.1:8080 or localhost:8080)")
    })?;
    addresses.next().ok_or_else(|| format!("{text} resolves to no address"))
}
