//! The STOMP 1.2 transport (ActiveMQ, RabbitMQ's STOMP plugin), on our own codec.
//!
//! The shape is the AMQP transport's: one task, the owner, holds the connection. It takes
//! [`Command`]s from every [`Broker`] handle, reconnects with backoff and jitter along the URL
//! list when the connection drops (closed, a malformed frame, an ERROR, or a broker silent past
//! its heart-beat window), and sets up every live subscription again on the new connection;
//! subscribers keep their receivers throughout. Each publish runs in a task of its own (bounded
//! by a semaphore) that sends on the current session and waits for its own RECEIPT, so many
//! publishes are in flight at once.
//!
//! What a RECEIPT proves is only that the broker took the frame: STOMP has no "unroutable". So a
//! publish answers [`Delivery::Unknown`], except on ActiveMQ where a refusal to create a node's
//! queue or an agent's topic means nobody subscribed to it ([`Delivery::Unroutable`]); see
//! [`dialect`] and docs/PROTOCOL.md.
//!
//! Acknowledgements: subscriptions use `client-individual` acks with a prefetch of
//! [`dialect::PREFETCH`]; a message is acked once it has been handed to the subscriber's bounded
//! channel, so a slow subscriber makes the broker stop sending instead of us buffering.
//!
//! [`Broker`]: crate::broker::Broker

mod connection;
mod dialect;
pub mod frame;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use self::connection::{Answer, Delivered, Ending, Endpoint, Opened, Session};
use self::dialect::{ErrorText, PREFETCH};
use self::frame::{Command as FrameCommand, Frame};
use crate::broker::amqp::connect::whole_seconds;
use crate::broker::backoff::Backoff;
use crate::broker::{
    BrokerError, BrokerSettings, Command, ConnectMode, Delivery, Destination, Incoming,
    SUBSCRIPTION_CAPACITY, StompDialect, Subscription, SubscriptionKind,
};

/// Publishes in flight at once; the owner stops taking commands (backpressure) beyond this.
const MAX_PUBLISHES_IN_FLIGHT: u32 = 8192;

/// Longest wait before setting up again a subscription that failed to set up.
const SETUP_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Connects as `mode` says, then leaves the connection to a spawned owner task.
pub(super) async fn start(
    settings: BrokerSettings,
    mode: ConnectMode,
    commands: mpsc::Receiver<Command>,
) -> Result<(), BrokerError> {
    let endpoints = connection::endpoints(&settings)?;
    let mut backoff = Backoff::new(settings.max_backoff);
    let mut failures = Vec::new();
    let mut next = 0;
    let (opened, endpoint_index) = loop {
        let endpoint = &endpoints[next % endpoints.len()];
        match connection::open(endpoint, &settings).await {
            Ok(opened) => break (opened, next % endpoints.len()),
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
    tracing::info!(url = %endpoint.redacted, server = %opened.server, "connected to the broker (STOMP)");
    let session = Session::start(opened, endpoint, 1);
    let (sessions, _) = watch::channel(None);
    let (ended_sender, ended) = mpsc::channel(64);
    let owner = Owner {
        settings,
        endpoints,
        next_endpoint: endpoint_index + 1,
        backoff,
        generation: 1,
        last_failure: None,
        sessions,
        session_end: None,
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

/// Why a forwarder stopped.
#[derive(Debug, PartialEq, Eq)]
enum ForwardEnd {
    /// The subscriber dropped its receiver; nothing more to do.
    Unsubscribed,
    /// The connection under it ended: set it up again.
    ConnectionEnded,
}

/// A forwarder reporting that it stopped.
struct Ended {
    subscription: u64,
    generation: u64,
    why: ForwardEnd,
}

/// An operation failed: either for good (tell the caller) or because the connection went away
/// (try again on the next connection).
#[derive(Debug)]
enum OperationError {
    Fatal(BrokerError),
    Transient(String),
}

type Attempt = Pin<Box<dyn Future<Output = (usize, Result<Opened, String>)> + Send>>;

struct Owner {
    settings: BrokerSettings,
    endpoints: Vec<Endpoint>,
    /// Index (modulo the list) of the URL the next reconnection tries: failover goes round.
    next_endpoint: usize,
    backoff: Backoff,
    /// The generation of the newest session; each connection gets the next one.
    generation: u64,
    /// Why the connection was last lost or a reconnection failed (URL redacted): what a
    /// subscribe that times out while disconnected reports.
    last_failure: Option<String>,
    /// The current session, `None` while disconnected; publish tasks watch it.
    sessions: watch::Sender<Option<Arc<Session>>>,
    /// Watches the current session's end.
    session_end: Option<watch::Receiver<Option<Ending>>>,
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
                        let deadline = Instant::now() + self.settings.connect_timeout;
                        self.pending.push(PendingSubscribe { kind, reply, deadline });
                        if connected {
                            self.serve_pending().await;
                        }
                    }
                },
                ending = wait_end(&mut self.session_end), if connected => {
                    reconnect_at = Some(self.lose(&ending));
                }
                () = sleep_until_some(reconnect_at), if !connected && attempt.is_none() => {
                    reconnect_at = None;
                    let index = self.next_endpoint % self.endpoints.len();
                    self.next_endpoint += 1;
                    let endpoint = self.endpoints[index].clone();
                    let settings = self.settings.clone();
                    attempt = Some(Box::pin(async move {
                        (index, connection::open(&endpoint, &settings).await)
                    }));
                }
                (index, result) = run_attempt(&mut attempt), if attempt.is_some() => {
                    attempt = None;
                    let endpoint = self.endpoints[index].clone();
                    match result {
                        Ok(opened) => {
                            tracing::info!(url = %endpoint.redacted, server = %opened.server,
                                "reconnected to the broker (STOMP)");
                            self.backoff.reset();
                            self.generation += 1;
                            let session = Session::start(opened, endpoint, self.generation);
                            retry_setup_at = self.install(session).await;
                        }
                        Err(reason) => {
                            let delay = self.backoff.next_delay();
                            tracing::warn!(url = %endpoint.redacted, %reason, retry_in = ?delay,
                                "cannot reconnect to the broker");
                            self.last_failure = Some(format!("{}: {reason}", endpoint.redacted));
                            reconnect_at = Some(Instant::now() + delay);
                        }
                    }
                }
                Some(ended) = self.ended.recv() => {
                    if self.subscription_ended(ended) && retry_setup_at.is_none() {
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

    fn setup_retry_time(&self) -> Instant {
        Instant::now() + self.settings.max_backoff.min(SETUP_RETRY_INTERVAL)
    }

    /// Makes `session` current and brings every subscription back onto it. Returns when to
    /// retry the subscriptions that could not be set up, if any.
    async fn install(&mut self, session: Session) -> Option<Instant> {
        self.session_end = Some(session.ending());
        self.sessions.send_replace(Some(Arc::new(session)));
        for subscription in self.subscriptions.values_mut() {
            subscription.generation = None;
        }
        let all_done = self.setup_subscriptions().await;
        self.serve_pending().await;
        (!all_done).then(|| self.setup_retry_time())
    }

    /// Records that the connection ended; returns when to try reconnecting.
    fn lose(&mut self, ending: &Ending) -> Instant {
        if let Some(session) = self.sessions.send_replace(None) {
            tracing::warn!(url = %session.endpoint.redacted, reason = %ending.reason,
                "lost the connection to the broker; reconnecting");
            self.last_failure = Some(format!("{}: {}", session.endpoint.redacted, ending.reason));
        }
        self.session_end = None;
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
        let wait = self.settings.connect_timeout;
        let deadline = Instant::now() + wait;
        let Ok(permit) = Arc::clone(&self.publish_permits).acquire_owned().await else {
            let _ = reply.send(Err(BrokerError::Closed));
            return;
        };
        let sessions = self.sessions.subscribe();
        let dialect = self.settings.dialect;
        tokio::spawn(async move {
            let result = publish(sessions, dialect, destination, body, ttl, deadline, wait).await;
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
                        OperationError::Transient(reason) => reason,
                    };
                    tracing::error!(subscription = ?kind, %error, "cannot restore a subscription; will retry");
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
                Err(OperationError::Transient(reason)) => {
                    // The connection is going; the next one serves it, or the deadline.
                    tracing::debug!(%reason, "subscribe interrupted; waiting for the connection");
                    self.pending.push(pending);
                }
            }
        }
    }

    /// Sends the SUBSCRIBE frames of `kind` on `session`, each with a receipt, and starts a
    /// forwarder feeding `subscriber`.
    async fn establish(
        &self,
        session: &Arc<Session>,
        id: u64,
        kind: &SubscriptionKind,
        subscriber: mpsc::Sender<Incoming>,
    ) -> Result<(), OperationError> {
        let frames = dialect::subscribe_frames(self.settings.dialect, kind, self.settings.node_queue_expiry);
        // Each STOMP subscription has at most PREFETCH unacknowledged messages in flight.
        let (route, routed) = mpsc::channel(PREFETCH * frames.len().max(1) + 16);
        let mut stomp_ids = Vec::with_capacity(frames.len());
        for frame in frames {
            let stomp_id = session.fresh_id("s");
            let destination = frame.value("destination").unwrap_or_default().to_string();
            if !session.route(&stomp_id, route.clone()) {
                return Err(OperationError::Transient("the connection ended".to_string()));
            }
            stomp_ids.push(stomp_id.clone());
            let answer = session.request(frame.header("id", stomp_id), self.settings.connect_timeout).await;
            let failure = match answer {
                Answer::Receipt => continue,
                Answer::Error(error) => {
                    OperationError::Fatal(self.subscribe_refused(session, &destination, &error))
                }
                Answer::Lost { error: Some(error), .. }
                    if error.names(dialect::resource_name(&destination)) =>
                {
                    OperationError::Fatal(self.subscribe_refused(session, &destination, &error))
                }
                Answer::Lost { reason, .. } => OperationError::Transient(reason),
                Answer::TimedOut => OperationError::Fatal(BrokerError::Timeout {
                    operation: format!("subscribe to {destination}"),
                    seconds: whole_seconds(self.settings.connect_timeout),
                }),
            };
            unsubscribe(session, &stomp_ids).await;
            return Err(failure);
        }
        drop(route);
        let ended = self.ended_sender.clone();
        let generation = session.generation;
        let session = Arc::clone(session);
        tokio::spawn(async move {
            let why = forward(&session, &stomp_ids, routed, subscriber).await;
            // The owner is gone at shutdown; nothing left to tell.
            let _ = ended.send(Ended { subscription: id, generation, why }).await;
        });
        Ok(())
    }

    fn subscribe_refused(&self, session: &Session, destination: &str, error: &ErrorText) -> BrokerError {
        dialect::refused(&format!("subscribe to {destination}"), session.endpoint.user(), error)
    }

    /// Handles a forwarder's end; true if the subscription needs setting up again.
    fn subscription_ended(&mut self, ended: Ended) -> bool {
        if ended.why == ForwardEnd::Unsubscribed {
            self.subscriptions.remove(&ended.subscription);
            return false;
        }
        let alive = self.current().is_some_and(|session| session.is_alive());
        let Some(subscription) = self.subscriptions.get_mut(&ended.subscription) else {
            return false;
        };
        if subscription.generation != Some(ended.generation) {
            // Already replaced on a newer connection.
            return false;
        }
        subscription.generation = None;
        alive
    }

    fn expire_pending(&mut self) {
        let now = Instant::now();
        let waiting = std::mem::take(&mut self.pending);
        for pending in waiting {
            if pending.deadline <= now {
                let error = match (&self.last_failure, self.current().is_none()) {
                    // Say why the broker cannot be used, not just that it cannot.
                    (Some(failure), true) => BrokerError::Unreachable { attempts: vec![failure.clone()] },
                    _ => BrokerError::Disconnected {
                        operation: format!("subscribe ({:?})", pending.kind),
                        seconds: whole_seconds(self.settings.connect_timeout),
                    },
                };
                let _ = pending.reply.send(Err(error));
            } else {
                self.pending.push(pending);
            }
        }
    }

    /// Waits (bounded) for in-flight publishes, then says goodbye to the broker.
    async fn shutdown(&mut self) {
        let drained = tokio::time::timeout(
            self.settings.connect_timeout * 2,
            self.publish_permits.acquire_many(MAX_PUBLISHES_IN_FLIGHT),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("closing the broker connection with publishes still unanswered");
        }
        self.publish_permits.close();
        for pending in std::mem::take(&mut self.pending) {
            let _ = pending.reply.send(Err(BrokerError::Closed));
        }
        if let Some(session) = self.sessions.send_replace(None) {
            session.close(Duration::from_secs(2)).await;
        }
    }
}

/// Publishes `body` to `destination`, waiting for a connection until `deadline` and retrying on
/// the next connection when one drops before the broker answered. A retried message may arrive
/// twice; nodes drop the duplicate by request id (replay window) and clients by reply identity.
async fn publish(
    mut sessions: watch::Receiver<Option<Arc<Session>>>,
    dialect: StompDialect,
    destination: Destination,
    body: Vec<u8>,
    ttl: Duration,
    deadline: Instant,
    wait: Duration,
) -> Result<Delivery, BrokerError> {
    /// Enough to survive a dropped connection or two; more would hide a bug.
    const ATTEMPTS: usize = 3;
    let target = dialect::send_destination(dialect, &destination);
    let operation = format!("send to {target}");
    let mut last_reason = None;
    for _ in 0..ATTEMPTS {
        let Some(session) = connected_session(&mut sessions, deadline).await else {
            break;
        };
        let frame = dialect::send_frame(dialect, &destination, body.clone(), ttl);
        let user = session.endpoint.user().to_string();
        match session.request(frame, wait).await {
            Answer::Receipt => return Ok(Delivery::Unknown),
            Answer::Error(error) => {
                return dialect::classify_error(dialect, &error, &operation, &destination, &user);
            }
            Answer::Lost { error: Some(error), .. } if error.names(dialect::resource_name(&target)) => {
                return dialect::classify_error(dialect, &error, &operation, &destination, &user);
            }
            Answer::Lost { reason, .. } => {
                tracing::debug!(%reason, destination = %target, "publish interrupted; retrying");
                last_reason = Some(reason);
            }
            Answer::TimedOut => {
                return Err(BrokerError::Timeout { operation, seconds: whole_seconds(wait) });
            }
        }
    }
    match last_reason {
        Some(reason) if Instant::now() < deadline => {
            Err(BrokerError::Refused { operation, reason: format!("it kept failing: {reason}") })
        }
        _ => Err(BrokerError::Disconnected { operation, seconds: whole_seconds(wait) }),
    }
}

/// The current session once it is alive, or `None` at `deadline`.
async fn connected_session(
    sessions: &mut watch::Receiver<Option<Arc<Session>>>,
    deadline: Instant,
) -> Option<Arc<Session>> {
    loop {
        let current = sessions.borrow_and_update().clone();
        if let Some(session) = current
            && session.is_alive()
        {
            return Some(session);
        }
        // Checked on change, and every so often: a session can end before the owner notices.
        let poll = Instant::now() + Duration::from_millis(50);
        tokio::select! {
            changed = sessions.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            () = tokio::time::sleep_until(poll.min(deadline)) => {}
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// Moves messages from one subscription's STOMP subscriptions to its subscriber, acking each
/// once it is handed over.
async fn forward(
    session: &Session,
    stomp_ids: &[String],
    mut routed: mpsc::Receiver<Delivered>,
    subscriber: mpsc::Sender<Incoming>,
) -> ForwardEnd {
    loop {
        let delivered = tokio::select! {
            () = subscriber.closed() => {
                unsubscribe(session, stomp_ids).await;
                return ForwardEnd::Unsubscribed;
            }
            delivered = routed.recv() => match delivered {
                Some(delivered) => delivered,
                None => return ForwardEnd::ConnectionEnded,
            },
        };
        match delivered.oversized {
            Some(declared) => {
                // The decoder threw the body away rather than buffer it; nothing to pass on.
                tracing::warn!(size = declared, "message dropped: over the frame size limit");
            }
            None => {
                if subscriber.send(Incoming { body: delivered.body }).await.is_err() {
                    unsubscribe(session, stomp_ids).await;
                    return ForwardEnd::Unsubscribed;
                }
            }
        }
        if let Some(ack) = delivered.ack
            && let Err(reason) = session.send(&Frame::new(FrameCommand::Ack).header("id", ack)).await
        {
            // Unacknowledged, the broker delivers it again after a reconnect; receivers drop
            // duplicates.
            tracing::debug!(%reason, "ack failed");
        }
    }
}

/// Cancels STOMP subscriptions (best effort: a dead connection cancels them anyway).
async fn unsubscribe(session: &Session, stomp_ids: &[String]) {
    for stomp_id in stomp_ids {
        session.unroute(stomp_id);
        if session.is_alive() {
            let _ = session.send(&Frame::new(FrameCommand::Unsubscribe).header("id", stomp_id.clone())).await;
        }
    }
}

async fn wait_end(end: &mut Option<watch::Receiver<Option<Ending>>>) -> Ending {
    let Some(watcher) = end else {
        return std::future::pending().await;
    };
    loop {
        if let Some(ending) = watcher.borrow_and_update().clone() {
            return ending;
        }
        if watcher.changed().await.is_err() {
            return Ending { reason: "the connection tasks stopped".to_string(), error: None };
        }
    }
}

async fn run_attempt(attempt: &mut Option<Attempt>) -> (usize, Result<Opened, String>) {
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
