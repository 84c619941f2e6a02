//! The console's own Prometheus metrics at `/metrics`: jobs started and running, event-stream
//! (SSE) clients connected, and the registry's size. Counts only, never a node's facts or a
//! user's name, so the route asks for no login (a Prometheus server cannot log in); it is held
//! to the same `Host` check as every other route.

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

/// See the module doc.
#[derive(Debug)]
pub struct ConsoleMetrics {
    registry: Registry,
    jobs_started: IntCounter,
    jobs_running: IntGauge,
    sse_clients: IntGauge,
    nodes: IntGauge,
    rejected_registrations: IntGauge,
}

impl ConsoleMetrics {
    pub fn new() -> prometheus::Result<ConsoleMetrics> {
        let registry = Registry::new();
        let metrics = ConsoleMetrics {
            jobs_started: IntCounter::new(
                "baton_console_jobs_started_total",
                "Jobs started from the console.",
            )?,
            jobs_running: IntGauge::new("baton_console_jobs_running", "Jobs waiting for replies now.")?,
            sse_clients: IntGauge::new(
                "baton_console_sse_clients",
                "Browsers following a job's events (server-sent events) now.",
            )?,
            nodes: IntGauge::new(
                "baton_console_registry_nodes",
                "Nodes in the registry, quiet ones included.",
            )?,
            rejected_registrations: IntGauge::new(
                "baton_console_rejected_registrations",
                "Registrations refused since the console started (bad signature, stale, malformed).",
            )?,
            registry,
        };
        metrics.registry.register(Box::new(metrics.jobs_started.clone()))?;
        metrics.registry.register(Box::new(metrics.jobs_running.clone()))?;
        metrics.registry.register(Box::new(metrics.sse_clients.clone()))?;
        metrics.registry.register(Box::new(metrics.nodes.clone()))?;
        metrics.registry.register(Box::new(metrics.rejected_registrations.clone()))?;
        Ok(metrics)
    }

    pub fn job_started(&self) {
        self.jobs_started.inc();
    }

    /// Counts an event-stream client until the returned guard is dropped with its stream.
    pub fn sse_client(&self) -> SseClient {
        self.sse_clients.inc();
        SseClient(self.sse_clients.clone())
    }

    /// The text format, with the gauges read from the console's state now.
    pub fn render(&self, nodes: usize, jobs_running: usize, rejected: u64) -> String {
        self.nodes.set(i64::try_from(nodes).unwrap_or(i64::MAX));
        self.jobs_running.set(i64::try_from(jobs_running).unwrap_or(i64::MAX));
        self.rejected_registrations.set(i64::try_from(rejected).unwrap_or(i64::MAX));
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "cannot encode the console's metrics");
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// One connected event-stream client; see [`ConsoleMetrics::sse_client`].
pub struct SseClient(IntGauge);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.dec();
    }
}
