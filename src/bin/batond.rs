//! `batond`: the node daemon. Parses flags, loads the configuration, sets up logging and
//! signals, and runs the node.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use baton::config::{LogFormat, NodeConfig};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// batond: the Baton node daemon. Answers signed requests for the actions its agents define.
#[derive(Debug, Parser)]
#[command(
    name = "batond",
    version,
    after_help = "Signals: SIGTERM/SIGINT drain in-flight work and stop; SIGHUP reloads keys, facts, classes, \
                  policies and agents (re-reading the [agents] table, agents.dir included) and reopens the \
                  audit log. Under systemd (NOTIFY_SOCKET), readiness is reported once subscribed.\n\nExit \
                  codes: 0 stopped cleanly; 2 configuration, key or file \
                  error at start.\n\nExamples:\n  batond --config /etc/baton/node.toml\n  batond --config \
                  node.toml --check\n  BATON_LOG=debug batond --log-format json"
)]
struct Args {
    /// Node configuration file [default: /etc/baton/node.toml, which may be absent when
    /// BATON_* environment variables say everything].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format, overriding the configuration's log.format.
    #[arg(long, value_enum)]
    log_format: Option<FormatFlag>,
    /// Check the configuration, key, TLS, fact and agent definition files, print the node's
    /// identity, and exit (2 naming the first file that is wrong).
    #[arg(long)]
    check: bool,
    /// Print batond(8), generated from these flags, and exit (for packaging).
    #[arg(long, hide = true)]
    man: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatFlag {
    Text,
    Json,
}

fn main() {
    let args = Args::parse();
    if args.man {
        print_man_page();
        return;
    }
    let config = match NodeConfig::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => fail(anyhow::Error::from(error)),
    };
    // BATON_LOG wins over log.level, so one run can be made chatty without editing the file.
    // lapin warns about every returned (unroutable) message, such as a reply to a client that
    // has gone; the node counts those itself, so lapin is quiet unless asked for explicitly.
    let level = if config.log.level.contains("lapin") {
        config.log.level.clone()
    } else {
        format!("{},lapin=error", config.log.level)
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let json = match args.log_format {
        Some(FormatFlag::Json) => true,
        Some(FormatFlag::Text) => false,
        None => config.log.format == LogFormat::Json,
    };
    // Colours only for a person at a terminal: under systemd, or redirected to a file, escape
    // codes would end up in the journal and in log shippers as noise.
    baton::logging::init(filter, json, std::io::stderr().is_terminal());
    // One thread: a node waits on the broker and on the commands its agents run, and its own
    // work per request (a signature, a filter, a reply) takes microseconds. A worker per core
    // would cost a stack and a malloc arena per core on a large machine, and the multi-thread
    // scheduler's load statistics are batond's only calls into libm (`pow`): 0.35 MiB less
    // resident at idle (docs/PERFORMANCE.md, "One thread"). Work that blocks for long (Facter
    // at reload, the resource agent's reads) goes to `spawn_blocking`.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => fail(anyhow::anyhow!("cannot start the async runtime: {error}")),
    };
    if let Err(error) = runtime.block_on(run(config, args.config, args.check)) {
        fail(error);
    }
}

/// batond(8) from the one clap definition above, so the page cannot disagree with the flags.
fn print_man_page() {
    use clap::CommandFactory;
    use std::io::Write;
    let mut page = Vec::new();
    if let Err(error) = clap_mangen::Man::new(Args::command()).section("8").render(&mut page) {
        fail(anyhow::anyhow!("cannot render the manual page: {error}"));
    }
    let _ = std::io::stdout().lock().write_all(&page);
}

fn fail(error: anyhow::Error) -> ! {
    eprintln!("batond: error: {error:#}");
    std::process::exit(2);
}

async fn run(config: NodeConfig, path: Option<PathBuf>, check: bool) -> anyhow::Result<()> {
    if check {
        baton::node::check(&config)?;
    }
    let node = baton::node::Node::build(config)?;
    if check {
        println!("configuration OK: node {}", node.pipeline().identity());
        return Ok(());
    }
    let node = node.rereading(Box::new(move || Ok(NodeConfig::load(path.as_deref())?)));
    let reload = Arc::new(Notify::new());
    let mut hangup = signal(SignalKind::hangup())?;
    let reload_on_hangup = reload.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reload_on_hangup.notify_one();
        }
    });
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    node.run(shutdown, reload).await
}
