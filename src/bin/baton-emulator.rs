//! `baton-emulator`: many virtual nodes in one process, for scale tests and benchmarks. Parses
//! flags, loads a node configuration, sets up logging and signals, and runs
//! `node::emulator::Emulator`.

use std::io::Write as _;
use std::path::PathBuf;

use baton::broker::BrokerError;
use baton::config::NodeConfig;
use baton::node::emulator::{Emulator, EmulatorSettings};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// baton-emulator: hosts many virtual Baton nodes in one process, each with its own identity,
/// facts, classes, queue, request pipeline and signed replies, so that thousands of nodes load
/// a real broker from one machine.
#[derive(Debug, Parser)]
#[command(
    name = "baton-emulator",
    version,
    after_help = "Every virtual node takes the broker, key, agents, policies and fact files of the node \
                  configuration; its identity is PREFIX plus a 5-digit index, and its facts and classes \
                  (os.family, role, datacenter, environment, role::*, ...) are drawn from --seed.\n\n\
                  Once every node is subscribed it prints one line to stdout:\n  \
                  ready nodes=N connections=K first=emu-00001 last=emu-0000N setup_ms=T\n\n\
                  Signals: SIGTERM/SIGINT drain in-flight work and stop.\n\n\
                  Exit status: 0 after a signal, 2 for flags or configuration to fix, 5 when the broker \
                  refused a set-up or did not confirm it within broker.connect_timeout_secs.\n\n\
                  Examples:\n  \
                  baton-emulator --config node.toml --count 1000\n  \
                  baton-emulator --config node.toml --count 5000 --connections 25 --prefix dc1-\n  \
                  baton-emulator --config node.toml --count 100 --first 101   (emu-00101..emu-00200)\n  \
                  baton ping -F role=web            (from a client of the same collective)"
)]
struct Args {
    /// Node configuration file; its identity is ignored [default: /etc/baton/node.toml].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How many virtual nodes to host.
    #[arg(short = 'n', long, default_value_t = 100)]
    count: usize,
    /// Identity prefix: node identities are PREFIX00001, PREFIX00002, ...
    #[arg(long, default_value = "emu-")]
    prefix: String,
    /// Index of the first virtual node.
    #[arg(long, default_value_t = 1)]
    first: usize,
    /// Broker connections to spread the nodes over [default: one per 200 nodes].
    #[arg(long, value_name = "K")]
    connections: Option<usize>,
    /// Seed for the facts and classes; the same seed gives the same fleet.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Do not publish registrations.
    #[arg(long)]
    no_registration: bool,
    /// Worker threads of the async runtime [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let config = match NodeConfig::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => fail(anyhow::Error::from(error)),
    };
    let level = format!("{},lapin=error", config.log.level);
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    baton::logging::init(filter, config.log.format == baton::config::LogFormat::Json, false);
    let settings = EmulatorSettings {
        count: args.count,
        prefix: args.prefix,
        first: args.first,
        connections: args.connections.unwrap_or(0),
        seed: args.seed,
        register: !args.no_registration,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => fail(anyhow::anyhow!("cannot start the async runtime: {error}")),
    };
    if let Err(error) = runtime.block_on(run(config, settings)) {
        fail(error);
    }
}

/// Exits as `baton` does: 5 when the broker could not be reached or refused us (a set-up it
/// refused or did not confirm in time), 2 for anything to fix on this side (flags,
/// configuration, keys).
fn fail(error: anyhow::Error) -> ! {
    eprintln!("baton-emulator: error: {error:#}");
    let broker = error.chain().any(|cause| {
        cause.downcast_ref::<BrokerError>().is_some_and(|error| !matches!(error, BrokerError::Config(_)))
    });
    std::process::exit(if broker { 5 } else { 2 });
}

async fn run(config: NodeConfig, settings: EmulatorSettings) -> anyhow::Result<()> {
    let emulator = Emulator::build(config, settings)?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    emulator
        .run(shutdown, |ready| {
            let mut stdout = std::io::stdout().lock();
            // A harness waits for this line; if stdout is gone, nobody is waiting.
            let _ = writeln!(
                stdout,
                "ready nodes={} connections={} first={} last={} setup_ms={}",
                ready.nodes,
                ready.connections,
                ready.first,
                ready.last,
                ready.setup.as_millis()
            );
            let _ = stdout.flush();
        })
        .await
}
