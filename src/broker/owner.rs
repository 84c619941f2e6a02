//! The one task that owns a broker connection, for every transport.
//!
//! The owner takes [`Command`]s from every [`Broker`] handle, reconnects with backoff and
//! jitter along the URL list when the session ends (noticed by the transport, or by a health
//! check every [`HEALTH_CHECK_INTERVAL`] in case the transport's notice was missed), and sets up
//! every live subscription again on the new session; subscribers keep their receivers
//! throughout. Publishes do not pass through the owner one by one: each runs in a task of its
//! own (bounded by a semaphore) that publishes on the current session and waits for its own
//! answer (a confirm, a RECEIPT), so many publishes are in flight at once.
//!
//! What the transports do differently is behind [`Transport`]; nothing here names AMQP or STOMP.
//!
//! [`Broker`]: crate::broker::Broker

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::redact::redact;
use super::transport::{Endpoint, ForwardEnd, OpenError, OperationError, Outgoing, Transport, UrlProblem};
use super::wording::whole_seconds;
use super::{
    BrokerError, BrokerSettings, Command, ConnectMode, ConnectionStatus, Delivery, Destination, Incoming,
    SUBSCRIPTION_CAPACITY, Subscription, SubscriptionKind, sleep_until_some,
};

/// Publishes in flight at once; the owner stops taking commands (backpressure) beyond this.
const MAX_PUBLISHES_IN_FLIGHT: u32 = 8192;

/// About how long (jittered to half of it up to all of it) the owner waits before setting up
/// again the subscriptions that failed to set up; each further failure doubles it, up to
/// [`SETUP_RETRY_LONGEST`] (or `max_backoff` if shorter), and success starts it over.
///
/// Why a growing, jittered schedule: when a RabbitMQ cluster member stops, the survivors refuse
/// to declare its queues again (`process is stopped by supervisor`) until they have cleaned them
/// up, which took two minutes at 10,000 emulated nodes. Every node of a fleet lost the member
/// at the same instant, so a fixed interval had them all retrying in lockstep, every failing
/// subscription of a connection at once, against the brokers that were busiest
/// (docs/PERFORMANCE.md, issue 15).
const SETUP_RETRY_FIRST: Duration = Duration::from_secs(2);

/// The longest wait between two set-up attempts of failed subscriptions: how late a node can
/// come back after the broker accepts its queue again.
const SETUP_RETRY_LONGEST: Duration = Duration::from_secs(8);

/// Set-ups that fail in a row before a pass stops and leaves the rest for the next pass.
const SETUP_FAILURES_PER_PASS: usize = 3;

/// How often the owner looks at the session's state in case it missed the transport's notice
/// of its end (lapin, for one, may report a lost connection only through its status).
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Connects as `mode` says, then leaves the connection to a spawned owner task.
pub(super) async fn start<T: Transport>(
    settings: BrokerSettings,
    mode: ConnectMode,
    status: Arc<ConnectionStatus>,
    commands: mpsc::Receiver<Command>,
) -> Result<(), BrokerError> {
    let endpoints = parse_urls::<T>(&settings)?;
    let settings = Arc::new(settings);
    let mut backoff = Backoff::new(settings.max_backoff);
    let mut failures = Vec::new();
    let mut next = 0;
    let (session, endpoint_index) = loop {
        let (url, endpoint) = &endpoints[next % endpoints.len()];
        match T::open(endpoint.clone(), Arc::clone(&settings)).await {
            Ok(session) => break (session, next % endpoints.len()),
            // Another process holds our identity: waiting or trying another URL of the same
            // broker cannot help, and running beside it is what the claim prevents.
            Err(OpenError::IdentityInUse(error)) => return Err(error),
            Err(OpenError::Failed(reason)) => match mode {
                ConnectMode::FailFast => {
                    failures.push(format!("{url}: {reason}"));
                    if failures.len() == endpoints.len() {
                        return Err(BrokerError::Unreachable { attempts: failures });
                    }
                }
                ConnectMode::Persistent => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%url, %reason, retry_in = ?delay, "cannot connect to the broker");
                    tokio::time::sleep(delay).await;
                }
            },
        }
        next += 1;
    };
    tracing::info!(url = %endpoints[endpoint_index].0, transport = T::NAME, "connected to the broker");
    let (sessions, _) = watch::channel(None);
    let (ended_sender, ended) = mpsc::channel(64);
    let setup_backoff =
        Backoff::starting_at(SETUP_RETRY_FIRST, SETUP_RETRY_LONGEST.min(settings.max_backoff));
    let owner = Owner {
        settings,
        endpoints,
        next_endpoint: endpoint_index + 1,
        backoff,
        setup_backoff,
        setup_resume_after: None,
        generation: 0,
        last_failure: None,
        sessions,
        subscriptions: HashMap::new(),
        next_subscription_id: 0,
        pending: Vec::new(),
        ended_sender,
        ended,
        publish_permits: Arc::new(Semaphore::new(MAX_PUBLISHES_IN_FLIGHT as usize)),
        status,
    };
    tokio::spawn(owner.run(commands, session, endpoint_index));
    Ok(())
}

/// Redacts and parses every URL up front, so that a typo is a configuration error, not a retry
/// loop, and no password reaches a message.
fn parse_urls<T: Transport>(settings: &BrokerSettings) -> Result<Vec<(String, T::Endpoint)>, BrokerError> {
    let parse = |url: &String| {
        let redacted = redact(url);
        let reason = match T::Endpoint::parse(url, settings) {
            Ok(endpoint) => return Ok((redacted, endpoint)),
            Err(UrlProblem::Invalid { reason, form }) => {
                format!("is not a valid {} URL: {reason} (expected {form})", T::NAME)
            }
            Err(UrlProblem::TlsWithoutCa { plain }) => {
                format!("uses TLS but no CA is configured (set tls.ca, or use {plain})")
            }
        };
        Err(BrokerError::Config(format!("broker URL {redacted} {reason}")))
    };
    settings.urls.iter().map(parse).collect()
}

/// The current session, as the owner knows it.
struct Live<T> {
    session: Arc<T>,
    /// Counts connections since start; subscriptions remember which one they were set up on.
    generation: u64,
    /// Its URL, password hidden.
    url: String,
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

/// What one pass of [`Owner::setup_subscriptions`] did.
#[derive(Debug, Clone, Copy)]
struct SetupPass {
    /// Every subscription is on the current session.
    all_done: bool,
    /// At least one subscription was set up.
    progressed: bool,
}

/// The order of a set-up pass: the subscriptions after `resume_after` (where the last pass
/// stopped) first, then the others; each part in the order the subscriptions were made, so a
/// node's claim comes before its queue wherever the pass does not start between them.
fn pass_order(mut ids: Vec<u64>, resume_after: Option<u64>) -> Vec<u64> {
    ids.sort_unstable();
    if let Some(after) = resume_after {
        let split = ids.partition_point(|&id| id <= after);
        ids.rotate_left(split);
    }
    ids
}

/// A forwarder reporting that it stopped.
struct Ended {
    subscription: u64,
    generation: u64,
    why: ForwardEnd,
}

type Attempt<S> = Pin<Box<dyn Future<Output = (usize, Result<S, OpenError>)> + Send>>;
type SessionEnd = Pin<Box<dyn Future<Output = String> + Send>>;

struct Owner<T: Transport> {
    settings: Arc<BrokerSettings>,
    /// Every URL, redacted, and as the transport parsed it.
    endpoints: Vec<(String, T::Endpoint)>,
    /// Index (modulo the list) of the URL the next reconnection tries: failover goes round.
    next_endpoint: usize,
    backoff: Backoff,
    /// When to set up again the subscriptions that failed to set up ([`SETUP_RETRY_FIRST`]).
    setup_backoff: Backoff,
    /// Where the last set-up pass stopped early: the next one starts after this subscription.
    setup_resume_after: Option<u64>,
    /// The generation of the newest session; each connection gets the next one.
    generation: u64,
    /// Why the connection was last lost or a reconnection failed (URL redacted): what a
    /// subscribe that times out while disconnected reports.
    last_failure: Option<String>,
    /// The current session, `None` while disconnected; publish tasks watch it.
    sessions: watch::Sender<Option<Arc<Live<T>>>>,
    subscriptions: HashMap<u64, LiveSubscription>,
    next_subscription_id: u64,
    pending: Vec<PendingSubscribe>,
    ended_sender: mpsc::Sender<Ended>,
    ended: mpsc::Receiver<Ended>,
    publish_permits: Arc<Semaphore>,
    /// What health checks and metrics see; updated at every turn of the loop.
    status: Arc<ConnectionStatus>,
}

impl<T: Transport> Owner<T> {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, first: T, first_endpoint: usize) {
        // Resolves when the current session ends. Kept here rather than in `self`: it need not
        // be `Sync`, and `self` is borrowed across awaits.
        let mut session_end: Option<SessionEnd> = Some(Box::pin(first.ended()));
        let mut retry_setup_at = self.install(first, first_endpoint).await;
        let mut attempt: Option<Attempt<T>> = None;
        let mut reconnect_at: Option<Instant> = None;
        let mut health = tokio::time::interval(HEALTH_CHECK_INTERVAL);
        loop {
            let connected = self.current().is_some();
            self.report_status(connected);
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
                        if connected && self.serve_pending().await && retry_setup_at.is_none() {
                            retry_setup_at = self.next_setup(SetupPass { all_done: false, progressed: false });
                        }
                    }
                },
                reason = wait_end(&mut session_end), if connected => {
                    session_end = None;
                    reconnect_at = Some(self.lose(&reason));
                }
                _ = health.tick() => {
                    if connected && !self.session_alive() {
                        session_end = None;
                        reconnect_at = Some(self.lose("the connection is no longer open"));
                    }
                }
                () = sleep_until_some(reconnect_at), if !connected && attempt.is_none() => {
                    reconnect_at = None;
                    let index = self.next_endpoint % self.endpoints.len();
                    self.next_endpoint += 1;
                    let endpoint = self.endpoints[index].1.clone();
                    let settings = Arc::clone(&self.settings);
                    attempt = Some(Box::pin(async move { (index, T::open(endpoint, settings).await) }));
                }
                (index, result) = run_attempt(&mut attempt), if attempt.is_some() => {
                    attempt = None;
                    let url = &self.endpoints[index].0;
                    match result {
                        Ok(session) => {
                            tracing::info!(%url, transport = T::NAME, "reconnected to the broker");
                            // The reconnection schedule starts over once every subscription is
                            // back (`next_setup`), not here: a connection that ends again while
                            // setting up (one that reaches the channel limit, for one) must not
                            // be reopened at once, again and again.
                            session_end = Some(Box::pin(session.ended()));
                            retry_setup_at = self.install(session, index).await;
                        }
                        // An identity refused here is most likely still held by our own lost
                        // connection until the broker notices: keep trying, as for any failure.
                        Err(reason) => {
                            let delay = self.backoff.next_delay();
                            tracing::warn!(%url, %reason, retry_in = ?delay, "cannot reconnect to the broker");
                            self.last_failure = Some(format!("{url}: {reason}"));
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
                    let pass = self.setup_subscriptions().await;
                    retry_setup_at = self.next_setup(pass);
                }
                () = sleep_until_some(pending_deadline) => self.expire_pending(),
            }
        }
    }

    /// Publishes the connection's state for health checks: a few atomic stores, over a handful
    /// of subscriptions, so cheap enough for every turn of the loop.
    fn report_status(&self, connected: bool) {
        let generation = self.current().map(|live| live.generation);
        let all_live = self
            .subscriptions
            .values()
            .all(|subscription| subscription.subscriber.is_closed() || subscription.generation == generation);
        self.status.set(connected, all_live);
    }

    fn current(&self) -> Option<Arc<Live<T>>> {
        self.sessions.borrow().clone()
    }

    fn session_alive(&self) -> bool {
        self.current().is_some_and(|live| live.session.is_alive())
    }

    /// When to try again to set up subscriptions that failed (e.g. an exclusive reply queue
    /// the broker still holds for the connection that just died), after `pass`: never when all
    /// are done; the next step of [`SETUP_RETRY_FIRST`]'s schedule, started over when the pass
    /// set some up (the broker is accepting them again).
    fn next_setup(&mut self, pass: SetupPass) -> Option<Instant> {
        if pass.all_done {
            self.backoff.reset();
        }
        if pass.all_done || pass.progressed {
            self.setup_backoff.reset();
        }
        (!pass.all_done).then(|| Instant::now() + self.setup_backoff.next_delay())
    }

    /// Makes `session` current and brings every subscription back onto it. Returns when to
    /// retry the subscriptions that could not be set up, if any.
    async fn install(&mut self, session: T, endpoint: usize) -> Option<Instant> {
        if self.generation > 0 {
            self.status.count_reconnect();
        }
        self.generation += 1;
        let url = self.endpoints[endpoint].0.clone();
        let live = Live { session: Arc::new(session), generation: self.generation, url };
        self.sessions.send_replace(Some(Arc::new(live)));
        for subscription in self.subscriptions.values_mut() {
            subscription.generation = None;
        }
        self.setup_backoff.reset();
        self.setup_resume_after = None;
        let mut pass = self.setup_subscriptions().await;
        if self.serve_pending().await {
            pass.all_done = false;
        }
        self.next_setup(pass)
    }

    /// Records that the session ended; returns when to try reconnecting.
    fn lose(&mut self, reason: &str) -> Instant {
        if let Some(live) = self.sessions.send_replace(None) {
            let url = &live.url;
            tracing::warn!(%url, %reason, "lost the connection to the broker; reconnecting");
            self.last_failure = Some(format!("{url}: {reason}"));
        }
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
        let deadline = Instant::now() + self.settings.connect_timeout;
        let Ok(permit) = Arc::clone(&self.publish_permits).acquire_owned().await else {
            let _ = reply.send(Err(BrokerError::Closed));
            return;
        };
        let sessions = self.sessions.subscribe();
        let settings = Arc::clone(&self.settings);
        tokio::spawn(async move {
            let message = Outgoing { destination, body, ttl };
            let result = publish(sessions, &message, deadline, &settings).await;
            // The caller may have given up; that is its business.
            let _ = reply.send(result);
            drop(permit);
        });
    }

    /// Sets up the subscriptions that are not on the current session, in one pass that stops
    /// early once [`SETUP_FAILURES_PER_PASS`] set-ups in a row have failed; the next pass starts
    /// where this one stopped, so every subscription gets its turn.
    ///
    /// Why stop early: each failed set-up costs the broker a channel opened and closed. After a
    /// cluster member stopped under 10,000 emulated nodes (a few hundred subscriptions on each
    /// connection), trying every failing subscription on every pass burnt 168,000 channels over
    /// three member losses on brokers that were refusing them all; late closes then crossed channel
    /// numbers lapin had already given out again (one node's set-up failed with another node's
    /// queue in the error), connections reached their channel limit, and 72 nodes stayed silent
    /// (docs/PERFORMANCE.md, issue 15). While the broker refuses, a pass now costs three.
    async fn setup_subscriptions(&mut self) -> SetupPass {
        let Some(session) = self.current() else {
            return SetupPass { all_done: true, progressed: false };
        };
        self.subscriptions.retain(|_, subscription| !subscription.subscriber.is_closed());
        let mut pass = SetupPass { all_done: true, progressed: false };
        let mut failures_in_a_row = 0;
        let order = pass_order(self.subscriptions.keys().copied().collect(), self.setup_resume_after.take());
        for id in order {
            let Some(subscription) = self.subscriptions.get(&id) else {
                continue;
            };
            if subscription.generation == Some(session.generation) {
                continue;
            }
            // A node's queue waits for its claim: taking requests beside another process with
            // our identity is the round robin the claim prevents.
            if self.claim_pending(&subscription.kind, session.generation) {
                pass.all_done = false;
                continue;
            }
            let kind = subscription.kind.clone();
            let subscriber = subscription.subscriber.clone();
            match self.establish(&session, id, &kind, subscriber).await {
                Ok(()) => {
                    if let Some(subscription) = self.subscriptions.get_mut(&id) {
                        subscription.generation = Some(session.generation);
                    }
                    pass.progressed = true;
                    failures_in_a_row = 0;
                }
                Err(error) => {
                    pass.all_done = false;
                    failures_in_a_row += 1;
                    if let SubscriptionKind::Claim { identity, .. } = &kind {
                        identity_unclaimed(identity, &error);
                    } else {
                        tracing::error!(subscription = ?kind, %error, "cannot restore a subscription; will retry");
                    }
                    if failures_in_a_row >= SETUP_FAILURES_PER_PASS {
                        self.setup_resume_after = Some(id);
                        break;
                    }
                }
            }
        }
        pass
    }

    /// True if `kind` is a node's queue whose identity claim is not yet held on the session
    /// `generation`.
    fn claim_pending(&self, kind: &SubscriptionKind, generation: u64) -> bool {
        let SubscriptionKind::Node { collective, identity, .. } = kind else {
            return false;
        };
        self.subscriptions.values().any(|other| {
            matches!(&other.kind, SubscriptionKind::Claim { collective: c, identity: i }
                if c == collective && i == identity)
                && other.generation != Some(generation)
        })
    }

    /// Answers the subscribes waiting for a connection, now that there is one.
    /// Returns true if some were accepted but left for the next set-up pass: a node's queue
    /// whose identity claim is not held on this session yet.
    async fn serve_pending(&mut self) -> bool {
        let Some(session) = self.current() else {
            return false;
        };
        let mut deferred = false;
        let waiting = std::mem::take(&mut self.pending);
        for pending in waiting {
            if pending.reply.is_closed() {
                continue;
            }
            let id = self.next_subscription_id;
            let (subscriber, messages) = mpsc::channel(SUBSCRIPTION_CAPACITY);
            // A node's queue (subscribed again after a reload, or waiting across a reconnect)
            // is not consumed before its claim is ours on this session, as in a set-up pass.
            if self.claim_pending(&pending.kind, session.generation) {
                self.next_subscription_id += 1;
                self.subscriptions
                    .insert(id, LiveSubscription { kind: pending.kind, subscriber, generation: None });
                let _ = pending.reply.send(Ok(Subscription { messages }));
                deferred = true;
                continue;
            }
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
                    // The connection is probably going; the next one serves it, or the deadline.
                    tracing::debug!(%reason, "subscribe interrupted; waiting for the connection");
                    self.pending.push(pending);
                }
            }
        }
        deferred
    }

    /// Sets up `kind` on `session` and spawns its forwarder, which reports its end.
    async fn establish(
        &self,
        session: &Live<T>,
        id: u64,
        kind: &SubscriptionKind,
        subscriber: mpsc::Sender<Incoming>,
    ) -> Result<(), OperationError> {
        let forwarder = session.session.subscribe(kind, subscriber).await?;
        let ended = self.ended_sender.clone();
        let generation = session.generation;
        tokio::spawn(async move {
            let why = forwarder.await;
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
                "the broker stopped a subscription (queue deleted?); setting it up again");
        }
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
        if let Some(live) = self.sessions.send_replace(None) {
            live.session.close().await;
        }
        self.status.set(false, false);
    }
}

/// Says why a node that reconnected takes no requests: its identity claim could not be restored.
fn identity_unclaimed(identity: &str, error: &OperationError) {
    match error {
        OperationError::Fatal(BrokerError::IdentityInUse { detail, .. }) => tracing::error!(
            %identity, %detail,
            "identity claimed by another connection since this node reconnected: taking no requests \
             until the claim is ours again (trying every few seconds). If the broker still holds this \
             node's old connection, that passes within its heart-beat timeout; if it lasts, another \
             process runs with this identity (a cloned machine, or an old batond): stop it, or give \
             this node its own `identity` in node.toml and restart it"
        ),
        other => tracing::error!(%identity, error = %other,
            "cannot claim the identity again after reconnecting: taking no requests until it is \
             claimed; will retry"),
    }
}

/// Publishes `body` to `destination`, waiting for a connection until `deadline` and retrying on
/// the next connection when one drops before the broker answered. A retried message may arrive
/// twice; nodes drop the duplicate by request id (replay window) and clients by reply identity.
async fn publish<T: Transport>(
    mut sessions: watch::Receiver<Option<Arc<Live<T>>>>,
    message: &Outgoing,
    deadline: Instant,
    settings: &BrokerSettings,
) -> Result<Delivery, BrokerError> {
    /// Enough to survive a dropped connection and a dropped channel; more would hide a bug.
    const ATTEMPTS: usize = 3;
    let mut last_reason = None;
    for _ in 0..ATTEMPTS {
        let Some(live) = connected_session(&mut sessions, deadline).await else {
            break;
        };
        let session = &live.session;
        match session.publish(message).await {
            Ok(delivery) => return Ok(delivery),
            Err(OperationError::Fatal(error)) => return Err(error),
            Err(OperationError::Transient(reason)) => {
                tracing::debug!(%reason, destination = ?message.destination, "publish interrupted; retrying");
                last_reason = Some(reason);
            }
        }
    }
    let operation = T::publish_operation(&message.destination, settings);
    match last_reason {
        Some(reason) if Instant::now() < deadline => {
            Err(BrokerError::Refused { operation, reason: format!("it kept failing: {reason}") })
        }
        _ => Err(BrokerError::Disconnected { operation, seconds: whole_seconds(settings.connect_timeout) }),
    }
}

/// The current session once it is alive, or `None` at `deadline`.
async fn connected_session<T: Transport>(
    sessions: &mut watch::Receiver<Option<Arc<Live<T>>>>,
    deadline: Instant,
) -> Option<Arc<Live<T>>> {
    loop {
        let current = sessions.borrow_and_update().clone();
        if let Some(live) = current
            && live.session.is_alive()
        {
            return Some(live);
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

async fn wait_end(end: &mut Option<SessionEnd>) -> String {
    match end {
        Some(end) => end.await,
        None => std::future::pending().await,
    }
}

async fn run_attempt<S>(attempt: &mut Option<Attempt<S>>) -> (usize, Result<S, OpenError>) {
    match attempt {
        Some(attempt) => attempt.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::pass_order;

    #[test]
    fn a_pass_starts_after_where_the_last_one_stopped_and_comes_round() {
        assert_eq!(pass_order(vec![4, 1, 3, 2], None), vec![1, 2, 3, 4]);
        assert_eq!(pass_order(vec![4, 1, 3, 2], Some(2)), vec![3, 4, 1, 2]);
        // The subscription it stopped at may be gone since: start after where it was.
        assert_eq!(pass_order(vec![1, 4, 6], Some(5)), vec![6, 1, 4]);
        assert_eq!(pass_order(vec![1, 4, 6], Some(6)), vec![1, 4, 6]);
        assert_eq!(pass_order(Vec::new(), Some(3)), Vec::<u64>::new());
    }
}
