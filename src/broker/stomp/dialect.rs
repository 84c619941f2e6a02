//! Where Baton's logical destinations live on each STOMP broker, and what its ERROR frames mean.
//!
//! ActiveMQ (`activemq`): broadcast requests go to the topic `/topic/<C>.agent.<agent>`, directed
//! requests to the node's queue `/queue/<C>.node.<identity>`, replies to the client's queue
//! `/queue/<C>.reply.<id>`, registrations to `/topic/<C>.registration.node.<identity>`. Expiry is
//! the absolute `expires` header. ActiveMQ names the destination a user may not create in its
//! ERROR frame and keeps the connection open, which is how a request to a node that never
//! subscribed is known to be unreachable at once (see deploy/activemq/activemq.xml).
//!
//! RabbitMQ (`rabbitmq`, the STOMP plugin): the same exchanges and queues as the AMQP transport,
//! so STOMP and AMQP nodes and clients on one RabbitMQ reach each other. Broadcasts go to
//! `/exchange/<C>.broadcast/agent.<agent>`; a node declares its queue `<C>.node.<identity>` and
//! binds it to the broadcast exchange by subscribing to `/exchange/<C>.broadcast/agent.<a>` with
//! `x-queue-name` (with the same arguments as the AMQP transport); directed requests and replies
//! are sent to `/amq/queue/<name>`, i.e. through the default exchange to an existing queue, as
//! AMQP publishes them. A client's reply queue `<C>.reply.<id>` is declared by subscribing to
//! `/queue/<C>.reply.<id>`, so its reply address is the plain queue name AMQP nodes reply to.
//! RabbitMQ cannot say over STOMP that a message was unroutable, and it closes the connection
//! after any ERROR.
//!
//! The registry (the stream `<C>.registration`) is RabbitMQ's only: its marker is sent to
//! `/amq/queue/<C>.registration` and the stream consumed from `/amq/queue/<C>.registration`
//! with `x-stream-offset:timestamp=<seconds>`, as the AMQP transport does. Without the stream,
//! the marker is dropped silently and the SUBSCRIBE refused (`not_found`), which costs the
//! connection. ActiveMQ retains no messages for a late reader: no registry there.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::frame::{Command, Frame};
use crate::broker::{
    BrokerError, Delivery, Destination, Retained, StompDialect, SubscriptionKind, claim_queue,
};

/// Unacknowledged messages per STOMP subscription the broker may send ahead of us.
pub(super) const PREFETCH: usize = 256;

/// How long a named (persistent) reply queue survives unused on RabbitMQ: a day, as over AMQP.
const NAMED_REPLY_QUEUE_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Where a logical destination is sent.
pub(super) fn send_destination(dialect: StompDialect, destination: &Destination) -> String {
    match (dialect, destination) {
        (StompDialect::ActiveMq, Destination::Broadcast { collective, agent }) => {
            format!("/topic/{collective}.agent.{agent}")
        }
        (StompDialect::ActiveMq, Destination::Node { collective, identity }) => {
            format!("/queue/{collective}.node.{identity}")
        }
        (StompDialect::ActiveMq, Destination::Reply(address)) => format!("/queue/{address}"),
        (StompDialect::ActiveMq, Destination::Registration { collective, identity }) => {
            format!("/topic/{collective}.registration.node.{identity}")
        }
        (StompDialect::ActiveMq, Destination::Events { collective, key }) => {
            format!("/topic/{collective}.events.{key}")
        }
        (StompDialect::RabbitMq, Destination::Broadcast { collective, agent }) => {
            format!("/exchange/{collective}.broadcast/agent.{agent}")
        }
        (StompDialect::RabbitMq, Destination::Node { collective, identity }) => {
            format!("/amq/queue/{collective}.node.{identity}")
        }
        (StompDialect::RabbitMq, Destination::Reply(address)) => format!("/amq/queue/{address}"),
        (StompDialect::RabbitMq, Destination::Registration { collective, identity }) => {
            format!("/exchange/{collective}.registration/node.{identity}")
        }
        // Refused by `Session::publish` before anything is sent; named all the same.
        (StompDialect::ActiveMq, Destination::Retained { collective, log }) => {
            format!("/queue/{}", log.name(collective))
        }
        (StompDialect::RabbitMq, Destination::Retained { collective, log }) => {
            format!("/amq/queue/{}", log.name(collective))
        }
        (StompDialect::RabbitMq, Destination::Events { collective, key }) => {
            format!("/exchange/{collective}.events/{key}")
        }
    }
}

/// Events are JSON for any consumer; everything else is a sealed CBOR message.
fn content_type(destination: &Destination) -> &'static str {
    match destination {
        Destination::Events { .. } => "application/json",
        _ => "application/cbor",
    }
}

/// The SEND frame for `body` to `destination`, expiring after `ttl`.
pub(super) fn send_frame(
    dialect: StompDialect,
    destination: &Destination,
    body: Vec<u8>,
    ttl: Duration,
) -> Frame {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let frame = Frame::new(Command::Send)
        .header("destination", send_destination(dialect, destination))
        .header("content-type", content_type(destination));
    let frame = match dialect {
        // Absolute time in ms since the epoch; ActiveMQ drops the message once it has passed.
        StompDialect::ActiveMq => frame.header("expires", now_ms().saturating_add(ttl_ms).to_string()),
        // RabbitMQ's per-message TTL, as the AMQP transport sets it.
        StompDialect::RabbitMq => frame.header("expiration", ttl_ms.to_string()),
    };
    frame.body(body)
}

/// The SUBSCRIBE frames (without `id` and `receipt`) that make up one logical subscription.
pub(super) fn subscribe_frames(
    dialect: StompDialect,
    kind: &SubscriptionKind,
    node_queue_expiry: Duration,
) -> Vec<Frame> {
    let subscribe = |destination: String| {
        let frame = Frame::new(Command::Subscribe)
            .header("destination", destination)
            .header("ack", "client-individual");
        match dialect {
            StompDialect::ActiveMq => frame.header("activemq.prefetchSize", PREFETCH.to_string()),
            StompDialect::RabbitMq => frame.header("prefetch-count", PREFETCH.to_string()),
        }
    };
    let millis =
        |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1).to_string();
    match (dialect, kind) {
        (StompDialect::ActiveMq, SubscriptionKind::Node { collective, identity, agents }) => {
            let mut frames = vec![subscribe(format!("/queue/{collective}.node.{identity}"))];
            frames.extend(agents.iter().map(|agent| subscribe(format!("/topic/{collective}.agent.{agent}"))));
            frames
        }
        (StompDialect::ActiveMq, SubscriptionKind::Reply { collective, suffix, .. }) => {
            vec![subscribe(format!("/queue/{collective}.reply.{suffix}"))]
        }
        (StompDialect::ActiveMq, SubscriptionKind::Follow { collective, log, .. }) => {
            vec![subscribe(format!("/topic/{}.>", log.name(collective)))]
        }
        (StompDialect::RabbitMq, SubscriptionKind::Node { collective, identity, agents }) => {
            // The queue's properties match what the AMQP transport declares, so that either
            // transport finds the other's queue acceptable.
            let queue = format!("{collective}.node.{identity}");
            let node_queue = |frame: Frame| {
                frame
                    .header("durable", "false")
                    .header("auto-delete", "false")
                    .header("exclusive", "false")
                    .header("x-expires", millis(node_queue_expiry))
            };
            if agents.is_empty() {
                // Directed requests only: declare and consume the queue without bindings.
                return vec![node_queue(subscribe(format!("/queue/{queue}")))];
            }
            agents
                .iter()
                .map(|agent| {
                    node_queue(
                        subscribe(format!("/exchange/{collective}.broadcast/agent.{agent}"))
                            .header("x-queue-name", queue.clone()),
                    )
                })
                .collect()
        }
        (StompDialect::RabbitMq, SubscriptionKind::Reply { collective, suffix, persistent }) => {
            let frame = subscribe(format!("/queue/{collective}.reply.{suffix}"));
            if *persistent {
                vec![
                    frame
                        .header("durable", "true")
                        .header("auto-delete", "false")
                        .header("x-expires", millis(NAMED_REPLY_QUEUE_EXPIRY)),
                ]
            } else {
                vec![
                    frame
                        .header("durable", "false")
                        .header("auto-delete", "true")
                        .header("exclusive", "true"),
                ]
            }
        }
        // ActiveMQ has no exclusive queues, and its exclusive consumers only stand by: the claim
        // is the connection's `client-id` (see `connect_claim`), so there is nothing to subscribe.
        (StompDialect::ActiveMq, SubscriptionKind::Claim { .. }) => Vec::new(),
        (StompDialect::RabbitMq, SubscriptionKind::Claim { collective, identity }) => vec![
            // An exclusive queue, as over AMQP: RabbitMQ refuses it to any other connection.
            subscribe(format!("/queue/{}", claim_queue(collective, identity)))
                .header("durable", "false")
                .header("auto-delete", "true")
                .header("exclusive", "true"),
        ],
        (StompDialect::RabbitMq, SubscriptionKind::Follow { collective, log, queue }) => vec![
            subscribe(format!("/exchange/{}/{}", log.name(collective), log.every_key()))
                .header("x-queue-name", queue.clone())
                .header("durable", "false")
                .header("auto-delete", "true")
                .header("exclusive", "true"),
        ],
        // The stream is the operator's (rabbitmq/definitions.json): consumed, never declared. A
        // stream consumer needs acks and a prefetch, which every subscription here has. Only the
        // registry is read over STOMP (see `retains`).
        (
            StompDialect::RabbitMq,
            SubscriptionKind::Retained { collective, log: Retained::Registrations, since_secs },
        ) => {
            vec![
                subscribe(format!("/amq/queue/{}", Retained::Registrations.name(collective)))
                    .header("x-stream-offset", format!("timestamp={since_secs}")),
            ]
        }
        (StompDialect::RabbitMq, SubscriptionKind::Lock { collective, name }) => vec![
            // The same exclusive queue as over AMQP, refused to any other connection.
            subscribe(format!("/queue/{collective}.reply.{name}"))
                .header("durable", "false")
                .header("auto-delete", "true")
                .header("exclusive", "true"),
        ],
        // Refused by `Session::subscribe` before any frame is made (see `retains`).
        (_, SubscriptionKind::Retained { .. }) | (StompDialect::ActiveMq, SubscriptionKind::Lock { .. }) => {
            Vec::new()
        }
    }
}

/// Whether the broker keeps `log` (a RabbitMQ stream) for a reader to read over STOMP: the
/// registry on RabbitMQ only. ActiveMQ retains nothing; the rollouts' events are read over AMQP
/// (their routing key, which names the rollout, is not carried the same way over STOMP).
pub(super) fn retains(dialect: StompDialect, log: Retained) -> bool {
    match dialect {
        StompDialect::RabbitMq => log == Retained::Registrations,
        StompDialect::ActiveMq => false,
    }
}

/// The CONNECT header by which a connection claims `identity` for itself alone, where the
/// broker enforces it on the connection: ActiveMQ refuses a `client-id` that a live connection
/// already uses. RabbitMQ ignores `client-id`; there the claim is an exclusive queue.
pub(super) fn connect_claim(dialect: StompDialect, identity: &str) -> Option<(&'static str, String)> {
    match dialect {
        StompDialect::ActiveMq => Some(("client-id", format!("baton-node.{identity}"))),
        StompDialect::RabbitMq => None,
    }
}

/// True when `error` refuses a claim: ActiveMQ's `InvalidClientIDException` ("Client: ... already
/// connected"), RabbitMQ's RESOURCE_LOCKED on an exclusive queue another connection holds.
pub(super) fn refuses_claim(dialect: StompDialect, error: &ErrorText) -> bool {
    let text = error.text().to_ascii_lowercase();
    match dialect {
        StompDialect::ActiveMq => text.contains("invalidclientid") || text.contains("already connected"),
        StompDialect::RabbitMq => text.contains("resource_locked") || text.contains("exclusive access"),
    }
}

/// The broker object a STOMP destination names (exchange, queue or topic), as brokers name it
/// in their ERROR frames: `/exchange/baton.broadcast/agent.x` -> `baton.broadcast`.
pub(super) fn resource_name(destination: &str) -> &str {
    let path = destination.trim_start_matches('/');
    let rest = ["exchange/", "amq/queue/", "queue/", "topic/", "temp-queue/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .unwrap_or(path);
    rest.split('/').next().unwrap_or(rest)
}

/// What an ERROR frame means for the operation it answers.
pub(super) fn classify_error(
    dialect: StompDialect,
    error: &ErrorText,
    operation: &str,
    destination: &Destination,
    user: &str,
) -> Result<Delivery, BrokerError> {
    let text = error.text();
    if dialect == StompDialect::ActiveMq
        && text.contains("not authorized to create")
        && matches!(destination, Destination::Node { .. } | Destination::Broadcast { .. })
    {
        // The destination does not exist and the client may not create it: no node has
        // subscribed to it, so nobody can answer (see deploy/activemq/activemq.xml).
        return Ok(Delivery::Unroutable);
    }
    let lower = text.to_ascii_lowercase();
    if dialect == StompDialect::RabbitMq
        && lower.contains("not_found")
        && lower.contains("no exchange")
        && let Destination::Broadcast { collective, .. }
        | Destination::Registration { collective, .. }
        | Destination::Events { collective, .. } = destination
    {
        let exchange = match destination {
            Destination::Broadcast { .. } => format!("{collective}.broadcast"),
            Destination::Events { .. } => format!("{collective}.events"),
            _ => format!("{collective}.registration"),
        };
        return Err(BrokerError::MissingExchange { exchange, user: user.to_string() });
    }
    Err(refused(operation, user, error))
}

/// A refusal, naming the user when the broker refused access.
pub(super) fn refused(operation: &str, user: &str, error: &ErrorText) -> BrokerError {
    let lower = error.text().to_ascii_lowercase();
    let operation = if lower.contains("not authorized") || lower.contains("access_refused") {
        format!("{operation} for user \"{user}\"")
    } else {
        operation.to_string()
    };
    BrokerError::Refused { operation, reason: error.text() }
}

/// The text of an ERROR frame: its `message` header and its body, which brokers fill differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ErrorText {
    pub message: String,
    pub detail: String,
}

impl ErrorText {
    pub fn of(frame: &Frame) -> ErrorText {
        let detail: String = String::from_utf8_lossy(&frame.body).trim().chars().take(500).collect();
        ErrorText { message: frame.value("message").unwrap_or_default().trim().to_string(), detail }
    }

    /// One line for people: the detail when it says more than the message header.
    pub fn text(&self) -> String {
        match (self.message.is_empty(), self.detail.is_empty()) {
            (_, true) => self.message.clone(),
            (true, false) => self.detail.clone(),
            (false, false) if self.detail.contains(&self.message) => self.detail.clone(),
            (false, false) => format!("{}: {}", self.message, self.detail),
        }
        .replace('\n', " ")
    }

    /// True when the broker's text names `resource` (RabbitMQ quotes the exchange or queue its
    /// ERROR is about, ActiveMQ gives the destination URI).
    pub fn names(&self, resource: &str) -> bool {
        let text = self.text();
        text.contains(&format!("'{resource}'")) || text.contains(&format!("//{resource}"))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dialect: StompDialect, destination: Destination, expected: &str) {
        assert_eq!(send_destination(dialect, &destination), expected, "{dialect:?} {destination:?}");
    }

    #[test]
    fn destinations_map_onto_each_dialect() {
        let (broadcast, node, registration) =
            (Destination::broadcast, Destination::node, Destination::registration);
        let reply = |address: &str| Destination::Reply(address.into());
        use StompDialect::{ActiveMq, RabbitMq};
        check(ActiveMq, broadcast("baton", "rpcutil"), "/topic/baton.agent.rpcutil");
        check(ActiveMq, node("baton", "web01.example"), "/queue/baton.node.web01.example");
        check(ActiveMq, reply("baton.reply.abc"), "/queue/baton.reply.abc");
        check(ActiveMq, registration("dc1", "web01"), "/topic/dc1.registration.node.web01");
        check(RabbitMq, broadcast("baton", "rpcutil"), "/exchange/baton.broadcast/agent.rpcutil");
        check(RabbitMq, node("baton", "web01"), "/amq/queue/baton.node.web01");
        check(RabbitMq, reply("baton.reply.abc"), "/amq/queue/baton.reply.abc");
        check(RabbitMq, registration("dc1", "web01"), "/exchange/dc1.registration/node.web01");
        let events = || Destination::Events { collective: "dc1".into(), key: "rollout.r1.started".into() };
        check(ActiveMq, events(), "/topic/dc1.events.rollout.r1.started");
        check(RabbitMq, events(), "/exchange/dc1.events/rollout.r1.started");
    }

    #[test]
    fn rabbitmq_reads_the_registry_stream_from_a_time_and_activemq_has_none() {
        let registry = SubscriptionKind::Retained {
            collective: "dc1".into(),
            log: Retained::Registrations,
            since_secs: 1_700_000_000,
        };
        let frames = subscribe_frames(StompDialect::RabbitMq, &registry, Duration::from_secs(60));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].value("destination"), Some("/amq/queue/dc1.registration"));
        assert_eq!(frames[0].value("x-stream-offset"), Some("timestamp=1700000000"));
        assert_eq!(frames[0].value("ack"), Some("client-individual"));
        assert_eq!(frames[0].value("prefetch-count"), Some("256"));
        let marker = Destination::Retained { collective: "dc1".into(), log: Retained::Registrations };
        check(StompDialect::RabbitMq, marker, "/amq/queue/dc1.registration");
        assert!(retains(StompDialect::RabbitMq, Retained::Registrations));
        assert!(!retains(StompDialect::RabbitMq, Retained::Events));
        assert!(!retains(StompDialect::ActiveMq, Retained::Registrations));
    }

    #[test]
    fn resource_names_are_what_brokers_quote() {
        let cases = [
            ("/exchange/baton.broadcast/agent.x", "baton.broadcast"),
            ("/amq/queue/baton.node.web01", "baton.node.web01"),
            ("/queue/baton.reply.abc", "baton.reply.abc"),
            ("/topic/baton.agent.rpcutil", "baton.agent.rpcutil"),
        ];
        for (destination, expected) in cases {
            assert_eq!(resource_name(destination), expected, "{destination}");
        }
    }

    #[test]
    fn each_dialect_claims_an_identity_where_its_broker_enforces_it() {
        let claim = SubscriptionKind::Claim { collective: "baton".into(), identity: "web01".into() };
        let frames = subscribe_frames(StompDialect::RabbitMq, &claim, Duration::from_secs(60));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].value("destination"), Some("/queue/baton.node.web01:claim"));
        assert_eq!(frames[0].value("exclusive"), Some("true"));
        assert_eq!(connect_claim(StompDialect::RabbitMq, "web01"), None);
        // ActiveMQ: nothing to subscribe, the connection's client-id is the claim.
        assert!(subscribe_frames(StompDialect::ActiveMq, &claim, Duration::from_secs(60)).is_empty());
        assert_eq!(
            connect_claim(StompDialect::ActiveMq, "web01"),
            Some(("client-id", "baton-node.web01".into()))
        );
    }

    #[test]
    fn claim_refusals_are_told_from_other_errors() {
        let error = |message: &str| ErrorText { message: message.into(), detail: String::new() };
        let activemq = error(
            "javax.jms.InvalidClientIDException: Broker: localhost - Client: baton-node.web01 already connected from tcp://127.0.0.1:40000",
        );
        let rabbitmq = error(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'baton.node.web01:claim' in vhost 'baton'",
        );
        let login = error("User name [baton-node] or password is invalid.");
        assert!(refuses_claim(StompDialect::ActiveMq, &activemq));
        assert!(refuses_claim(StompDialect::RabbitMq, &rabbitmq));
        assert!(!refuses_claim(StompDialect::ActiveMq, &login));
        assert!(!refuses_claim(StompDialect::RabbitMq, &login));
    }

    #[test]
    fn rabbitmq_node_subscriptions_bind_the_amqp_node_queue() {
        let kind = SubscriptionKind::Node {
            collective: "baton".into(),
            identity: "web01".into(),
            agents: vec!["rpcutil".into(), "service".into()],
        };
        let frames = subscribe_frames(StompDialect::RabbitMq, &kind, Duration::from_secs(60));
        let destinations: Vec<_> = frames.iter().filter_map(|frame| frame.value("destination")).collect();
        assert_eq!(
            destinations,
            ["/exchange/baton.broadcast/agent.rpcutil", "/exchange/baton.broadcast/agent.service"]
        );
        for frame in &frames {
            assert_eq!(frame.value("x-queue-name"), Some("baton.node.web01"));
            assert_eq!(frame.value("x-expires"), Some("60000"));
            assert_eq!(frame.value("durable"), Some("false"));
        }
    }

    #[test]
    fn activemq_refusing_to_create_a_node_queue_means_unreachable() {
        let error = ErrorText {
            message: "User baton-client is not authorized to create: queue://t1.node.ghost".into(),
            detail: String::new(),
        };
        let node = Destination::Node { collective: "t1".into(), identity: "ghost".into() };
        let outcome = classify_error(StompDialect::ActiveMq, &error, "send", &node, "baton-client");
        assert!(matches!(outcome, Ok(Delivery::Unroutable)), "{outcome:?}");
        let write = ErrorText {
            message: "User baton-client is not authorized to write to: topic://t1.registration.node.x".into(),
            detail: String::new(),
        };
        let registration = Destination::Registration { collective: "t1".into(), identity: "x".into() };
        let refused = classify_error(StompDialect::ActiveMq, &write, "send", &registration, "baton-client");
        assert!(
            matches!(&refused, Err(BrokerError::Refused { operation, .. }) if operation.contains("baton-client")),
            "{refused:?}"
        );
    }
}
