//! `batond`: the node daemon. Parses flags, sets up logging and signals, runs the node.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// batond: the Baton node daemon. Answers signed requests for the actions its agents define.
#[derive(Debug, Parser)]
#[command(
    name = "batond",
    version,
    after_help = "Signals: SIGTERM/SIGINT drain in-flight work and stop; SIGHUP reloads facts and classes and reopens the audit log.\n\nExamples:\n  batond --config /etc/baton/node.toml\n  batond --config node.toml --check"
)]
struct Args {
    /// Node configuration file.
    #[arg(short, long, value_name = "FILE", default_value = "/etc/baton/node.toml")]
    config: PathBuf,
    /// Log format: text for people, json for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Check the configuration, key and fact files, print the node's identity, and exit.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("batond: error: cannot start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(run(args)) {
        eprintln!("batond: error: {error:#}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = baton::config::NodeConfig::load(Some(&args.config))?;
    let node = baton::node::Node::build(config)?;
    if args.check {
        println!("configuration OK: node {}", node.pipeline().identity());
        return Ok(());
    }
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
