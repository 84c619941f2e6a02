//! The broker's own limit: the round trip of `baton ping` done by a minimal AMQP program with
//! lapin directly, with no signing, no CBOR, no filter and no agent.
//!
//! `roundtrip` declares N responder queues bound to the collective's broadcast exchange (the
//! same names, arguments, prefetch and channel-per-queue as Baton's node queues), spread over K
//! connections like `baton-emulator`, and one requester with an exclusive reply queue. Each run
//! publishes one message to the exchange and times until the N-th reply has been received.
//! By default the AMQP work is the same as Baton's (manual acks, replies taken in batches and
//! acked with one `multiple` ack, publisher confirms and the mandatory flag on every reply), so
//! the ratio to Baton is the cost of Baton itself; `--bare` drops acks and confirms for the
//! broker's absolute floor.
//!
//! `declare` declares a collective's exchanges with an account allowed to (the admin account
//! of `bin/broker`), as an operator would in definitions.json.
//!
//! Examples:
//!   cargo run --release --example rawamqp -- declare --url "$BATON_RABBITMQ_ADMIN_URL" --collective bench
//!   cargo run --release --example rawamqp -- roundtrip --node-url "$BATON_RABBITMQ_NODE_URL" \
//!       --client-url "$BATON_RABBITMQ_CLIENT_URL" --collective bench --count 1000 --runs 20

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

#[derive(Parser)]
#[command(about = "Raw AMQP baseline for Baton's benchmarks")]
struct Args {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Declare `<collective>.broadcast` and `<collective>.registration` (topic, durable).
    Declare {
        #[arg(long)]
        url: String,
        #[arg(long)]
        collective: String,
        /// Also the registry: the stream `<collective>.registration`, bound to the exchange.
        #[arg(long)]
        registry: bool,
    },
    /// Delete the registry stream `<collective>.registration` (a stream keeps its files).
    DeleteRegistry {
        #[arg(long)]
        url: String,
        #[arg(long)]
        collective: String,
    },
    /// Delete the node queues `<collective>.node.<prefix><index>` for indexes `first..first+count`
    /// (what `baton-emulator` declared), so that a benchmark leaves nothing behind.
    DeleteNodes {
        #[arg(long)]
        url: String,
        #[arg(long)]
        collective: String,
        #[arg(long, default_value = "emu-")]
        prefix: String,
        #[arg(long, default_value_t = 1)]
        first: usize,
        #[arg(long)]
        count: usize,
    },
    /// N responders and one requester; prints one JSON line with the round trips in ms.
    Roundtrip {
        #[arg(long)]
        node_url: String,
        #[arg(long)]
        client_url: String,
        #[arg(long)]
        collective: String,
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Connections for the responders [default: one per 200, as baton-emulator].
        #[arg(long)]
        connections: Option<usize>,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// No acks, no confirms: the broker's absolute floor.
        #[arg(long)]
        bare: bool,
        /// The broker's process id: report the CPU time it spent per round trip.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// Bindings per responder queue: one for the ping's key plus this many minus one for
        /// other keys, as a node binds its queue once per agent (five for the emulator's).
        #[arg(long, default_value_t = 1)]
        bindings: usize,
    },
}

const PREFETCH: u16 = 256;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match Args::parse().command {
        Mode::Declare { url, collective, registry } => declare(&url, &collective, registry).await,
        Mode::DeleteRegistry { url, collective } => {
            let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            let stream = format!("{collective}.registration");
            channel.queue_delete(stream.as_str().into(), Default::default()).await?;
            connection.close(200, "done".into()).await?;
            Ok(())
        }
        Mode::DeleteNodes { url, collective, prefix, first, count } => {
            let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            for index in first..first + count {
                let queue = format!("{collective}.node.{prefix}{index:05}");
                channel.queue_delete(queue.as_str().into(), Default::default()).await?;
            }
            connection.close(200, "done".into()).await?;
            Ok(())
        }
        Mode::Roundtrip {
            node_url,
            client_url,
            collective,
            count,
            connections,
            runs,
            bare,
            broker_pid,
            bindings,
        } => {
            let connections = connections.unwrap_or(count.div_ceil(200)).clamp(1, count.max(1));
            let shape = Shape { count, connections, runs, bare, broker_pid, bindings: bindings.max(1) };
            roundtrip(&node_url, &client_url, &collective, shape).await
        }
    }
}

async fn declare(
    url: &str,
    collective: &str,
    registry: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    for suffix in ["broadcast", "registration"] {
        channel
            .exchange_declare(
                format!("{collective}.{suffix}").as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
                FieldTable::default(),
            )
            .await?;
    }
    if registry {
        // As rabbitmq/definitions.json declares it for the collective `baton`.
        let stream = format!("{collective}.registration");
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
        arguments.insert("x-max-age".into(), AMQPValue::LongString("1h".into()));
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(stream.as_str().into(), durable, arguments).await?;
        channel
            .queue_bind(
                stream.as_str().into(),
                stream.as_str().into(),
                "node.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}

async fn confirm_channel(connection: &Connection, confirms: bool) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    if confirms {
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
    }
    Ok(channel)
}

/// How many responders, over how many connections, how many runs.
struct Shape {
    count: usize,
    connections: usize,
    runs: usize,
    bare: bool,
    broker_pid: Option<u32>,
    bindings: usize,
}

/// User plus system CPU seconds process `pid` has used, from /proc (Linux).
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // Linux reports these in clock ticks, 100 per second on every mainstream configuration.
    (ticks(11) + ticks(12)) / 100.0
}

async fn roundtrip(
    node_url: &str,
    client_url: &str,
    collective: &str,
    shape: Shape,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Shape { count, connections, runs, bare, broker_pid, bindings } = shape;
    let exchange = format!("{collective}.broadcast");
    let routing_key = "agent.rawping";
    let setup_started = Instant::now();
    let mut responder_connections = Vec::new();
    for _ in 0..connections {
        responder_connections.push(Connection::connect(node_url, ConnectionProperties::default()).await?);
    }
    let mut reply_channels = Vec::new();
    for connection in &responder_connections {
        reply_channels.push(confirm_channel(connection, !bare).await?);
    }
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    for index in 0..count {
        let connection = &responder_connections[index % connections];
        let reply_channel = reply_channels[index % connections].clone();
        let channel = connection.create_channel().await?;
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let queue = format!("{collective}.node.raw-{run_id}-{index:05}");
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
        channel.queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), arguments).await?;
        for key in std::iter::once(routing_key.to_string())
            .chain((1..bindings).map(|other| format!("agent.other{other}")))
        {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions { no_ack: bare, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await?;
        let name = format!("raw-{index:05}");
        tokio::spawn(async move {
            let _channel = channel;
            while let Some(Ok(delivery)) = consumer.next().await {
                if !bare {
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                }
                let Some(reply_to) = delivery.properties.reply_to().clone() else { continue };
                let reply_channel = reply_channel.clone();
                let body = name.clone().into_bytes();
                // Each reply waits for its own confirm, many in flight, as Baton's nodes do.
                tokio::spawn(async move {
                    let published = reply_channel
                        .basic_publish(
                            "".into(),
                            reply_to,
                            BasicPublishOptions { mandatory: !bare, ..BasicPublishOptions::default() },
                            &body,
                            BasicProperties::default().with_expiration("60000".into()),
                        )
                        .await;
                    if let Ok(confirm) = published {
                        let _ = confirm.await;
                    }
                });
            }
        });
    }

    let client = Connection::connect(client_url, ConnectionProperties::default()).await?;
    let request_channel = confirm_channel(&client, !bare).await?;
    let reply_channel = client.create_channel().await?;
    reply_channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let reply_queue = format!("{collective}.reply.raw{}", uuid::Uuid::new_v4().simple());
    reply_channel
        .queue_declare(
            reply_queue.as_str().into(),
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await?;
    let mut replies = reply_channel
        .basic_consume(
            reply_queue.as_str().into(),
            ShortString::from(""),
            BasicConsumeOptions { no_ack: bare, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await?;
    let setup_ms = setup_started.elapsed().as_millis();

    let mut round_trips = Vec::new();
    let mut broker_cpu_ms = Vec::new();
    let mut short_runs = 0;
    for run in 0..runs {
        let broker_before = cpu_seconds(broker_pid);
        let body = format!("ping {run}");
        let started = Instant::now();
        let confirm = request_channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_reply_to(reply_queue.as_str().into())
                    .with_expiration("60000".into()),
            )
            .await?;
        if !bare {
            confirm.await?;
        }
        let mut received = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while received < count {
            match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(Ok(delivery))) => {
                    received += 1;
                    // Take what else has arrived and ack it all at once, as Baton does.
                    let mut last = delivery;
                    let mut batch = 1;
                    while batch < 64 {
                        match replies.next().now_or_never() {
                            Some(Some(Ok(delivery))) => {
                                last = delivery;
                                batch += 1;
                                received += 1;
                            }
                            _ => break,
                        }
                    }
                    if !bare {
                        let _ = last.acker.ack(BasicAckOptions { multiple: batch > 1 }).await;
                    }
                }
                _ => break,
            }
        }
        if received < count {
            short_runs += 1;
        }
        round_trips.push(started.elapsed().as_secs_f64() * 1000.0);
        broker_cpu_ms.push((cpu_seconds(broker_pid) - broker_before) * 1000.0);
        // Let the confirms of the last replies settle, as between two `baton ping`s.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut sorted = round_trips.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "count": count,
            "connections": connections,
            "bare": bare,
            "setup_ms": setup_ms,
            "short_runs": short_runs,
            "round_trips_ms": round_trips,
            "broker_cpu_ms": broker_cpu_ms,
            "median_ms": percentile(&sorted, 0.5),
            "p95_ms": percentile(&sorted, 0.95),
        })
    );
    for connection in responder_connections {
        let _ = connection.close(200, "done".into()).await;
    }
    let _ = client.close(200, "done".into()).await;
    Ok(())
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
