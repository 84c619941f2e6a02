//! `[metrics] listen`: the node's Prometheus metrics at `/metrics` and its health at `/healthz`.
//!
//! `/metrics` is the text exposition format: everything in the node's registry
//! ([`crate::node::stats`]) plus the broker connection's state, read from the broker's
//! [`ConnectionStatus`] at scrape time. `/healthz` answers 200 when the broker is connected and
//! every subscription of the node is set up on the current connection, 503 otherwise (also
//! while the node is still connecting), with a one-line reason either way. Nothing here is on
//! the request path: a scrape only reads atomics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

use crate::broker::ConnectionStatus;
use crate::node::stats::Stats;

/// What `/healthz` and the broker metrics are computed from.
#[derive(Debug, Default)]
pub struct Health {
    /// The broker connection's own state, updated by its owner task.
    pub broker: Arc<ConnectionStatus>,
    /// Set once the node has subscribed in every collective: before that, a connected broker
    /// does not mean requests reach the node.
    subscribed: AtomicBool,
}

impl Health {
    pub fn set_subscribed(&self, subscribed: bool) {
        self.subscribed.store(subscribed, Ordering::Relaxed);
    }

    /// `Ok` with what is fine, or `Err` with what is not, for the body of `/healthz`.
    pub fn check(&self) -> Result<&'static str, &'static str> {
        if !self.broker.connected() {
            Err("unhealthy: not connected to the broker (see the daemon's log for why)")
        } else if !self.subscribed.load(Ordering::Relaxed) {
            Err("unhealthy: connected, but not yet subscribed in every collective")
        } else if !self.broker.subscriptions_live() {
            Err("unhealthy: connected, but some subscriptions are not set up again yet")
        } else {
            Ok("ok: connected to the broker and subscribed")
        }
    }
}

/// The broker's state as metrics, brought up to date from [`Health`] at each scrape.
struct BrokerMetrics {
    connected: IntGauge,
    healthy: IntGauge,
    reconnects: IntCounter,
    uptime: IntGauge,
}

impl BrokerMetrics {
    fn register(registry: &Registry) -> prometheus::Result<BrokerMetrics> {
        let metrics = BrokerMetrics {
            connected: IntGauge::new("baton_broker_connected", "1 while connected to the broker, else 0.")?,
            healthy: IntGauge::new(
                "baton_healthy",
                "1 while connected and subscribed in every collective (what /healthz says), else 0.",
            )?,
            reconnects: IntCounter::new(
                "baton_broker_reconnects_total",
                "Connections to the broker opened again after the first one.",
            )?,
            uptime: IntGauge::new("baton_uptime_seconds", "Seconds since the daemon started.")?,
        };
        registry.register(Box::new(metrics.connected.clone()))?;
        registry.register(Box::new(metrics.healthy.clone()))?;
        registry.register(Box::new(metrics.reconnects.clone()))?;
        registry.register(Box::new(metrics.uptime.clone()))?;
        Ok(metrics)
    }

    fn update(&self, health: &Health, stats: &Stats) {
        self.connected.set(i64::from(health.broker.connected()));
        self.healthy.set(i64::from(health.check().is_ok()));
        // Only the broker's owner task increases the source, and `Exporter::render` holds a
        // lock around this, so two scrapes never add the same reconnections twice.
        let seen = self.reconnects.get();
        self.reconnects.inc_by(health.broker.reconnects().saturating_sub(seen));
        self.uptime.set(i64::try_from(stats.uptime().as_secs()).unwrap_or(i64::MAX));
    }
}

/// Renders `/metrics` for one node.
pub struct Exporter {
    stats: Arc<Stats>,
    health: Arc<Health>,
    broker: std::sync::Mutex<BrokerMetrics>,
}

impl Exporter {
    pub fn new(stats: Arc<Stats>, health: Arc<Health>) -> anyhow::Result<Exporter> {
        let broker = BrokerMetrics::register(stats.registry())?;
        Ok(Exporter { stats, health, broker: std::sync::Mutex::new(broker) })
    }

    /// The Prometheus text format of every metric of the node.
    pub fn render(&self) -> String {
        {
            let broker = self.broker.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            broker.update(&self.health, &self.stats);
        }
        let mut text = Vec::new();
        // Encoding into memory fails only on a metric without a value, which the registry's
        // own types never produce.
        if let Err(error) = TextEncoder::new().encode(&self.stats.registry().gather(), &mut text) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    pub fn health(&self) -> &Health {
        &self.health
    }
}

/// Binds `listen` and serves `/metrics` and `/healthz` until the process ends. Binding happens
/// before this returns, so a taken port stops the daemon at start with a clear error.
#[cfg(feature = "metrics")]
pub async fn serve(listen: SocketAddr, exporter: Arc<Exporter>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen for metrics on {listen} (metrics.listen); is the port taken?")
    })?;
    let metrics = {
        let exporter = exporter.clone();
        move || async move {
            ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], exporter.render()).into_response()
        }
    };
    let healthz = move || async move {
        match exporter.health().check() {
            Ok(fine) => (StatusCode::OK, format!("{fine}\n")),
            Err(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")),
        }
    };
    let router = axum::Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz));
    tracing::info!(%listen, "serving /metrics and /healthz");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// Without the `metrics` feature there is no HTTP server to serve them with.
#[cfg(not(feature = "metrics"))]
pub async fn serve(listen: SocketAddr, _exporter: Arc<Exporter>) -> anyhow::Result<()> {
    anyhow::bail!("metrics.listen is {listen}, but this batond was built without the metrics feature")
}
