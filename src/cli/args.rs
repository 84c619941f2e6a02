//! The command line, declared once with clap: flags, help texts and examples.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::exit::EXIT_CODES_HELP;
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
        after_help = "Examples:\n  baton discover -C nginx\n  baton discover -S 'role=web and not os.family=redhat'\n  baton discover -F role=db --json | baton rpc rpcutil ping --dm stdin"
    )]
    Discover {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        discovery: DiscoveryArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run an action of an agent on every node the filter matches.
    #[command(
        after_help = "Examples:\n  baton rpc rpcutil get_fact fact=role\n  baton rpc rpcutil ping -F role=web -t 5\n  baton rpc rpcutil get_fact fact=os.family -S 'role=/^(web|db)$/' --json\n  baton rpc rpcutil daemon_stats --nodes hosts.txt --display all"
    )]
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
        /// Seconds to wait for replies (default: the client configuration's timeout_secs).
        #[arg(short = 't', long, value_name = "SECONDS")]
        timeout: Option<f64>,
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
    #[command(after_help = "Examples:\n  baton doc service\n  baton doc rpcutil --json")]
    Doc {
        /// The agent, e.g. service.
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
}

/// Which nodes: every kind of filter, ANDed together.
#[derive(Debug, Clone, Default, Args)]
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
}

/// How to find the targets.
#[derive(Debug, Clone, Default, Args)]
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
pub struct OutputArgs {
    /// One JSON document on stdout.
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// One JSON line per reply as it arrives, then one per silent node, then a summary line.
    #[arg(long)]
    pub jsonl: bool,
    /// Which nodes get a line of their own (default: what the action's definition says, else failed).
    #[arg(long, value_enum)]
    pub display: Option<Display>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}
