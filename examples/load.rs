//! Sustained load from one client to one node: `--concurrency` calls in flight at once, each a
//! directed `rpcutil ping` through Baton's own client (signed, sent, verified, accounted), for
//! `--seconds`. Prints one JSON line: requests completed, failures, requests per second and
//! the latency percentiles.
//!
//! Example:
//!   cargo run --release --example load -- --config client.toml --node web01 --concurrency 32 --seconds 5

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::client::{Client, Event, RequestSpec, Targets};
use baton::config::ClientConfig;
use clap::Parser;
use serde_json::Map;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    config: std::path::PathBuf,
    /// The node to send to.
    #[arg(long)]
    node: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// Progress events are not needed here.
fn ignore(_: &Event<'_>) {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let config = ClientConfig::load(Some(&args.config))?;
    let client = Arc::new(Client::connect(&config).await?);
    let spec = Arc::new(RequestSpec {
        agent: "rpcutil".to_string(),
        action: "ping".to_string(),
        data: Map::new(),
        filter: Default::default(),
        once: None,
    });
    let targets = Arc::new(Targets::Nodes(vec![args.node.clone()]));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, spec, targets) = (client.clone(), spec.clone(), targets.clone());
        workers.push(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < until {
                let sent = Instant::now();
                match client.call(&spec, &targets, Duration::from_secs(10), None, &mut ignore).await {
                    Ok(outcome) if outcome.counts().ok == 1 => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0)
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        });
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    // One task drives every worker: `Client::call` takes a progress callback that is not
    // `Send`; the client's router task, which verifies replies, runs on its own.
    for (mine, failed) in futures_util::future::join_all(workers).await {
        latencies.extend(mine);
        failures += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((quantile * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    println!(
        "{}",
        serde_json::json!({
            "requests": latencies.len(),
            "failures": failures,
            "seconds": elapsed,
            "per_second": latencies.len() as f64 / elapsed,
            "median_ms": at(0.5),
            "p95_ms": at(0.95),
            "dropped_replies": client.dropped_replies(),
        })
    );
    client.close().await;
    Ok(())
}
