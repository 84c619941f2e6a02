//! The AMQP 0-9-1 transport (RabbitMQ, through lapin).
//!
//! One task, the owner, holds the connection. It takes [`Command`]s from every [`Broker`]
//! handle, reconnects with backoff and jitter along the URL list when the connection drops,
//! and re-declares every live subscription on the new connection; subscribers keep their
//! receivers throughout. Publishes do not pass through the owner one by one: it hands each to a
//! task of its own (bounded by a semaphore) that publishes on the current session's confirm
//! channel and waits for its own confirm, so many publishes are in flight at once.
//!
//! lapin's own recovery is left off: it reconnects to one URL only, while failover along the
//! list and re-declaring our topology (with our names, arguments and bindings) belong here.
//!
//! [`Broker`]: crate::broker::Broker

pub(super) mod connect;
mod topology;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use lapin::{Connection, Event};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use self::connect::{Endpoint, whole_seconds};
use self::topology::{ForwardEnd, OperationError, Session};
use crate::broker::backoff::Backoff;
use crate::broker::{
    BrokerError, BrokerSettings, Command, ConnectMode, Delivery, Destination, Incoming,
    SUBSCRIPTION_CAPACITY, Subscription, SubscriptionKind,
};

/// Publishes in flight at once; the owner stops taking commands (backpressure) beyond this.
const MAX_PUBLISHES_IN_FLIGHT: u32 = 8192;

/// Longest wait before setting up again a subscription that failed to set up.
const SETUP_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// How often the owner looks at the connection's state in case it missed the error event.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Connects as `mode` says, then leaves the connection to a spawned owner task.
pub(super) async fn start(
    settings: BrokerSettings,
    mode: ConnectMode,
    commands: mpsc::Receiver<Command>,
) -> Result<(), BrokerError> {
    let endpoints = connect::endpoints(&settings)?;
    let mut backoff = Backoff::new(settings.max_backoff);
    let mut failures = Vec::new();
    let mut next = 0;
    let (connection, endpoint_index) = loop {
        let endpoint = &endpoints[next % endpoints.len()];
        match connect::open(endpoint, &settings).await {
            Ok(connection) => break (connection, next % endpoints.len()),
            Err(reason) => {
                let attempt = format!("{}: {reason}", endpoint.redacted);
                match mode {
                    ConnectMode::FailFast => {
                        failures.push(attempt);
                        if failures.len() == endpoints.len() {
                            return Err(BrokerError::Unreachable { attempts: failures });
                        }
                    }
                    ConnectMode::Persistent => {
                        let delay = backoff.next_delay();
                        tracing::warn!(url = %endpoint.redacted, %reason, retry_in = ?delay,
                            "cannot connect to the broker");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
        next += 1;
    };
    let endpoint = endpoints[endpoint_index].clone();
    let session = Session::open(connection, endpoint, 1).await.map_err(|error| BrokerError::Unreachable {
        attempts: vec![format!(
            "{}: connected, but could not open a channel: {error}",
            endpoints[endpoint_index].redacted
        )],
    })?;
    tracing::info!(url = %session.endpoint.redacted, "connected to the broker");
    let (sessions, _) = watch::channel(None);
    let (ended_sender, ended) = mpsc::channel(64);
    let owner = Owner {
        connect_timeout: settings.connect_timeout,
        settings,
        endpoints,
        next_endpoint: endpoint_index + 1,
        backoff,
        sessions,
        events: None,
        subscriptions: HashMap::new(),
        next_subscription_id: 0,
        pending: Vec::new(),
        ended_sender,
        ended,
        publish_permits: Arc::new(Semaphore::new(MAX_PUBLISHES_IN_FLIGHT as usize)),
    };
    tokio::spawn(owner.run(commands, session));
    Ok(())
}

/// A subscription the owner keeps alive across reconnections.
struct LiveSubscription {
    kind: SubscriptionKind,
    subscriber: mpsc::Sender<Incoming>,
    /// The session it is set up on, or `None` while it needs setting up.
    generation: Option<u64>,
}

/// A subscribe that arrived while disconnected (or hit a transient error), with its deadline.
struct PendingSubscribe {
    kind: SubscriptionKind,
    reply: oneshot::Sender<Result<Subscription, BrokerError>>,
    deadline: Instant,
}

/// A forwarder reporting that its consumer stopped.
struct Ended {
    subscription: u64,
    generation: u64,
    why: ForwardEnd,
}

type Attempt = Pin<Box<dyn Future<Output = (usize, Result<Connection, String>)> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Event> + Send + Sync>>;

struct Owner {
    settings: BrokerSettings,
    connect_timeout: Duration,
    endpoints: Vec<Endpoint>,
    /// Index (modulo the list) of the URL the next reconnection tries: failover goes round.
    next_endpoint: usize,
    backoff: Backoff,
    /// The current session, `None` while disconnected; publish tasks watch it.
    sessions: watch::Sender<Option<Arc<Session>>>,
    events: Option<EventStream>,
    subscriptions: HashMap<u64, LiveSubscription>,
    next_subscription_id: u64,
    pending: Vec<PendingSubscribe>,
    ended_sender: mpsc::Sender<Ended>,
    ended: mpsc::Receiver<Ended>,
    publish_permits: Arc<Semaphore>,
}

impl Owner {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, first: Session) {
        let mut retry_setup_at = self.install(first).await;
        let mut attempt: Option<Attempt> = None;
        let mut reconnect_at: Option<Instant> = None;
        let mut health = tokio::time::interval(HEALTH_CHECK_INTERVAL);
        loop {
            let connected = self.current().is_some();
            let pending_deadline = self.pending.iter().map(|pending| pending.deadline).min();
            tokio::select! {
                command = commands.recv() => match command {
                    None => {
                        self.shutdown().await;
                        return;
                    }
                    Some(Command::Close { reply }) => {
                        commands.close();
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(Command::Publish { destination, body, ttl, reply }) => {
                        self.spawn_publish(destination, body, ttl, reply).await;
                    }
                    Some(Command::Subscribe { kind, reply }) => {
                        let deadline = Instant::now() + self.connect_timeout;
                        self.pending.push(PendingSubscribe { kind, reply, deadline });
                        if connected {
                            self.serve_pending().await;
                        }
                    }
                },
                event = next_event(&mut self.events), if connected => {
                    let lost = match event {
                        None => Some("the connection closed".to_string()),
                        Some(Event::Error(error)) if !self.session_alive() => Some(error.to_string()),
                        Some(_) => None,
                    };
                    if let Some(reason) = lost {
                        reconnect_at = Some(self.lose(&reason));
                    }
                }
                _ = health.tick() => {
                    if connected && !self.session_alive() {
                        reconnect_at = Some(self.lose("the connection is no longer open"));
                    }
                }
                () = sleep_until_some(reconnect_at), if !connected && attempt.is_none() => {
                    reconnect_at = None;
                    let index = self.next_endpoint % self.endpoints.len();
                    self.next_endpoint += 1;
                    let endpoint = self.endpoints[index].clone();
                    let settings = self.settings.clone();
                    attempt = Some(Box::pin(async move {
                        (index, connect::open(&endpoint, &settings).await)
                    }));
                }
                (index, result) = run_attempt(&mut attempt), if attempt.is_some() => {
                    attempt = None;
                    let endpoint = self.endpoints[index].clone();
                    match result {
                        Ok(connection) => {
                            let generation = self.current_generation() + 1;
                            match Session::open(connection, endpoint.clone(), generation).await {
                                Ok(session) => {
                                    tracing::info!(url = %endpoint.redacted, "reconnected to the broker");
                                    self.backoff.reset();
                                    retry_setup_at = self.install(session).await;
                                }
                                Err(error) => {
                                    let delay = self.backoff.next_delay();
                                    tracing::warn!(url = %endpoint.redacted, %error, retry_in = ?delay,
                                        "connected, but could not open a channel");
                                    reconnect_at = Some(Instant::now() + delay);
                                }
                            }
                        }
                        Err(reason) => {
                            let delay = self.backoff.next_delay();
                            tracing::warn!(url = %endpoint.redacted, %reason, retry_in = ?delay,
                                "cannot reconnect to the broker");
                            reconnect_at = Some(Instant::now() + delay);
                        }
                    }
                }
                Some(ended) = self.ended.recv() => {
                    if self.subscription_ended(ended) && retry_setup_at.is_none() {
                        // Not at once: a queue deleted under us may be a broker being reconfigured.
                        retry_setup_at = Some(Instant::now() + Backoff::INITIAL);
                    }
                }
                () = sleep_until_some(retry_setup_at), if connected => {
                    retry_setup_at = None;
                    if !self.setup_subscriptions().await {
                        retry_setup_at = Some(self.setup_retry_time());
                    }
                }
                () = sleep_until_some(pending_deadline) => self.expire_pending(),
            }
        }
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.sessions.borrow().clone()
    }

    fn current_generation(&self) -> u64 {
        self.current().map_or(0, |session| session.generation)
    }

    fn session_alive(&self) -> bool {
        self.current().is_some_and(|session| session.is_connected())
    }

    /// When to try again to set up subscriptions that failed (e.g. an exclusive reply queue
    /// the broker still holds for the connection that just died).
    fn setup_retry_time(&self) -> Instant {
        Instant::now() + self.settings.max_backoff.min(SETUP_RETRY_INTERVAL)
    }

    /// Makes `session` current and brings every subscription back onto it. Returns when to
    /// retry the subscriptions that could not be set up, if any.
    async fn install(&mut self, session: Session) -> Option<Instant> {
        let generation = session.generation;
        self.events = Some(Box::pin(session.connection.events_listener()));
        self.sessions.send_replace(Some(Arc::new(session)));
        if generation > 1 {
            for subscription in self.subscriptions.values_mut() {
                subscription.generation = None;
            }
        }
        let all_done = self.setup_subscriptions().await;
        self.serve_pending().await;
        (!all_done).then(|| self.setup_retry_time())
    }

    /// Records that the connection dropped; returns when to try reconnecting.
    fn lose(&mut self, reason: &str) -> Instant {
        if let Some(session) = self.sessions.send_replace(None) {
            tracing::warn!(url = %session.endpoint.redacted, %reason,
                "lost the connection to the broker; reconnecting");
        }
        self.events = None;
        for subscription in self.subscriptions.values_mut() {
            subscription.generation = None;
        }
        Instant::now() + self.backoff.next_delay()
    }

    async fn spawn_publish(
        &self,
        destination: Destination,
        body: Vec<u8>,
        ttl: Duration,
        reply: oneshot::Sender<Result<Delivery, BrokerError>>,
    ) {
        let deadline = Instant::now() + self.connect_timeout;
        let Ok(permit) = Arc::clone(&self.publish_permits).acquire_owned().await else {
            let _ = reply.send(Err(BrokerError::Closed));
            return;
        };
        let sessions = self.sessions.subscribe();
        let wait = self.connect_timeout;
        tokio::spawn(async move {
            let result = topology::publish(sessions, destination, body, ttl, deadline, wait, wait).await;
            // The caller may have given up; that is its business.
            let _ = reply.send(result);
            drop(permit);
        });
    }

    /// Sets up every subscription that is not on the current session. Returns false if some
    /// could not be set up and should be tried again later.
    async fn setup_subscriptions(&mut self) -> bool {
        let Some(session) = self.current() else {
            return true;
        };
        self.subscriptions.retain(|_, subscription| !subscription.subscriber.is_closed());
        let mut all_done = true;
        let ids: Vec<u64> = self.subscriptions.keys().copied().collect();
        for id in ids {
            let Some(subscription) = self.subscriptions.get(&id) else {
                continue;
            };
            if subscription.generation == Some(session.generation) {
                continue;
            }
            let kind = subscription.kind.clone();
            let subscriber = subscription.subscriber.clone();
            match self.establish(&session, id, &kind, subscriber).await {
                Ok(()) => {
                    if let Some(subscription) = self.subscriptions.get_mut(&id) {
                        subscription.generation = Some(session.generation);
                    }
                }
                Err(error) => {
                    all_done = false;
                    let error = match error {
                        OperationError::Fatal(error) => error.to_string(),
                        OperationError::Transient(error) => error.to_string(),
                    };
                    tracing::error!(subscription = ?kind, %error,
                        "cannot restore a subscription; will retry");
                }
            }
        }
        all_done
    }

    /// Answers the subscribes waiting for a connection, now that there is one.
    async fn serve_pending(&mut self) {
        let Some(session) = self.current() else {
            return;
        };
        let waiting = std::mem::take(&mut self.pending);
        for pending in waiting {
            if pending.reply.is_closed() {
                continue;
            }
            let id = self.next_subscription_id;
            let (subscriber, messages) = mpsc::channel(SUBSCRIPTION_CAPACITY);
            match self.establish(&session, id, &pending.kind, subscriber.clone()).await {
                Ok(()) => {
                    self.next_subscription_id += 1;
                    self.subscriptions.insert(
                        id,
                        LiveSubscription {
                            kind: pending.kind,
                            subscriber,
                            generation: Some(session.generation),
                        },
                    );
                    let _ = pending.reply.send(Ok(Subscription { messages }));
                }
                Err(OperationError::Fatal(error)) => {
                    let _ = pending.reply.send(Err(error));
                }
                Err(OperationError::Transient(error)) => {
                    // The connection is probably going; the next one serves it, or the deadline.
                    tracing::debug!(%error, "subscribe interrupted; waiting for the connection");
                    self.pending.push(pending);
                }
            }
        }
    }

    /// Declares and consumes `kind` on `session`, with a forwarder feeding `subscriber`.
    async fn establish(
        &self,
        session: &Arc<Session>,
        id: u64,
        kind: &SubscriptionKind,
        subscriber: mpsc::Sender<Incoming>,
    ) -> Result<(), OperationError> {
        let setup = session.establish(kind, self.settings.node_queue_expiry);
        let (channel, consumer) = match tokio::time::timeout(self.connect_timeout, setup).await {
            Ok(result) => result?,
            Err(_elapsed) => {
                return Err(OperationError::Fatal(BrokerError::Timeout {
                    operation: format!("setting up subscription {kind:?}"),
                    seconds: whole_seconds(self.connect_timeout),
                }));
            }
        };
        let ended = self.ended_sender.clone();
        let generation = session.generation;
        let max_message_bytes = self.settings.max_message_bytes;
        tokio::spawn(async move {
            let why = topology::forward(channel, consumer, subscriber, max_message_bytes).await;
            // The owner is gone at shutdown; nothing left to tell.
            let _ = ended.send(Ended { subscription: id, generation, why }).await;
        });
        Ok(())
    }

    /// Handles a forwarder's end; true if the subscription needs setting up again.
    fn subscription_ended(&mut self, ended: Ended) -> bool {
        if ended.why == ForwardEnd::Unsubscribed {
            self.subscriptions.remove(&ended.subscription);
            return false;
        }
        let alive = self.session_alive();
        let Some(subscription) = self.subscriptions.get_mut(&ended.subscription) else {
            return false;
        };
        if subscription.generation != Some(ended.generation) {
            // Already replaced on a newer connection.
            return false;
        }
        subscription.generation = None;
        if alive {
            tracing::warn!(subscription = ?subscription.kind,
                "the broker stopped a consumer (queue deleted?); setting it up again");
        }
        alive
    }

    fn expire_pending(&mut self) {
        let now = Instant::now();
        let waiting = std::mem::take(&mut self.pending);
        for pending in waiting {
            if pending.deadline <= now {
                let _ = pending.reply.send(Err(BrokerError::Disconnected {
                    operation: format!("subscribe ({:?})", pending.kind),
                    seconds: whole_seconds(self.connect_timeout),
                }));
            } else {
                self.pending.push(pending);
            }
        }
    }

    /// Waits (bounded) for in-flight publishes, then closes the connection.
    async fn shutdown(&mut self) {
        let drained = tokio::time::timeout(
            self.connect_timeout * 2,
            self.publish_permits.acquire_many(MAX_PUBLISHES_IN_FLIGHT),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("closing the broker connection with publishes still unconfirmed");
        }
        self.publish_permits.close();
        for pending in std::mem::take(&mut self.pending) {
            let _ = pending.reply.send(Err(BrokerError::Closed));
        }
        if let Some(session) = self.sessions.send_replace(None)
            && session.is_connected()
            && let Err(error) = session.connection.close(200, "OK".into()).await
        {
            tracing::debug!(%error, "closing the broker connection failed");
        }
    }
}

async fn next_event(events: &mut Option<EventStream>) -> Option<Event> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

async fn run_attempt(attempt: &mut Option<Attempt>) -> (usize, Result<Connection, String>) {
    match attempt {
        Some(attempt) => attempt.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}
