//! What only STOMP has to prove: AMQP and STOMP on one RabbitMQ reach each other, nodes come back
//! after ActiveMQ restarts, a broker that stops sending heart-beats is noticed, malformed frames
//! from a fake peer end that connection with a clear error and never the process, and the
//! brokers' users have the least privileges Baton needs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baton::broker::{Broker, BrokerError, BrokerSettings, ConnectMode, Destination, StompDialect, Transport};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{
    Fleet, NodeSpec, Wire, activemq, block_on, broker, exclusive_activemq, loopback_listener, run_baton,
    run_broker_script, shared_activemq, shared_broker, unique_collective,
};

#[test]
fn on_one_rabbitmq_stomp_and_amqp_nodes_and_clients_reach_each_other() {
    let fleet = Fleet::start_on(
        Wire::amqp(),
        vec![
            NodeSpec::new("amqp01", json!({"via": "amqp"}), &[]),
            NodeSpec::new("stomp01", json!({"via": "stomp"}), &[]).on(Wire::stomp_rabbitmq()),
        ],
    );
    for wire in [Wire::amqp(), Wire::stomp_rabbitmq()] {
        let broadcast = fleet.baton_on(&wire, &["rpc", "rpcutil", "get_fact", "fact=via", "--json"]);
        assert_eq!(broadcast.code, 0, "client on {}: {broadcast:?}", wire.client_url);
        assert_eq!(broadcast.nodes("replies"), ["amqp01", "stomp01"], "{broadcast:?}");
        let directed =
            fleet.baton_on(&wire, &["rpc", "rpcutil", "ping", "-I", "amqp01", "-I", "stomp01", "--json"]);
        assert_eq!(directed.code, 0, "client on {}: {directed:?}", wire.client_url);
        assert_eq!(directed.nodes("replies"), ["amqp01", "stomp01"], "{directed:?}");
    }
}

#[test]
fn activemq_says_at_once_that_an_identity_that_never_subscribed_is_unreachable() {
    let fleet = Fleet::start_on(Wire::stomp_activemq(), vec![NodeSpec::new("real01", json!({}), &[])]);
    // A long timeout: the answer must come from the broker's refusal, not from waiting it out.
    let output =
        fleet.baton(&["rpc", "rpcutil", "ping", "-I", "real01", "-I", "ghost01", "-t", "60", "--json"]);
    assert_eq!(output.code, 3, "{output:?}");
    let document = output.json();
    assert_eq!(document["no_response"], json!(["ghost01"]));
    assert_eq!(document["unreachable"], json!(["ghost01"]));
    assert_eq!(output.nodes("replies"), ["real01"]);
}

#[test]
fn nodes_reconnect_after_activemq_restarts() {
    let _exclusive = exclusive_activemq();
    let fleet = Fleet::start_unguarded(
        Wire::stomp_activemq(),
        vec![NodeSpec::new("phoenix01", json!({}), &[]), NodeSpec::new("phoenix02", json!({}), &[])],
    );
    run_broker_script("stop", "activemq");
    let down = fleet.baton(&["ping", "-I", "phoenix01"]);
    assert_eq!(down.code, 5, "{down:?}");
    assert!(down.stderr.contains("cannot reach"), "{down:?}");

    run_broker_script("start", "activemq");
    // The nodes were never restarted: they must find the broker again on their own.
    fleet.wait_until_answering(&["phoenix01".to_string(), "phoenix02".to_string()]);
    let output = fleet.baton(&["rpc", "rpcutil", "ping", "-I", "phoenix01", "-I", "phoenix02", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(
        fleet.node("phoenix01").log().contains("reconnected to the broker"),
        "{}",
        fleet.node("phoenix01").log()
    );
}

#[test]
fn a_broker_that_stops_sending_heart_beats_is_noticed_and_the_node_reconnects() {
    let direct = Wire::stomp_activemq();
    let port: u16 = activemq().var("BATON_ACTIVEMQ_STOMP_PORT").parse().expect("port number");
    let proxy = MutingProxy::start(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut wire = direct.clone();
    wire.node_url = direct.node_url.replace(&format!(":{port}"), &format!(":{}", proxy.port));
    let fleet = Fleet::start_on(wire, vec![NodeSpec::new("beat01", json!({}), &[])]);

    proxy.mute.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !fleet.node("beat01").log().contains("no heart-beat from the broker") {
        assert!(Instant::now() < deadline, "the silence was never noticed:\n{}", fleet.node("beat01").log());
        std::thread::sleep(Duration::from_millis(250));
    }
    proxy.mute.store(false, Ordering::SeqCst);
    fleet.wait_until_answering(&["beat01".to_string()]);
    assert!(proxy.connections.load(Ordering::SeqCst) >= 2, "the node never reconnected through the proxy");
}

#[test]
fn malformed_frames_from_a_fake_broker_fail_the_client_with_a_clear_message() {
    let fleet = Fleet::start_on(Wire::stomp_activemq(), vec![]);
    let mut oversized_headers = b"CONNECTED\nversion:1.2\nfiller:".to_vec();
    oversized_headers.extend(std::iter::repeat_n(b'x', 70 * 1024));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            "malformed frame during the STOMP handshake: unknown command \"HTTP/1.1 400 Bad Request\"",
        ),
        (b"CONNECTED\nversion:1.2\nheart-beat:soon\n\n\0".to_vec(), "malformed heart-beat header"),
        (b"CONNECTED\nversion:1.0\n\n\0".to_vec(), "Baton needs 1.2"),
        (
            b"ERROR\nmessage:go away\n\n\0".to_vec(),
            "refused the connection for user \"baton-client\": go away",
        ),
        (b"MESSAGE\ncontent-length:3\n\nabcd\0".to_vec(), "not followed by a NUL"),
        (oversized_headers, "header section is over"),
        // Well-formed handshake, then garbage once the client subscribes its reply queue.
        (b"CONNECTED\nversion:1.2\n\n\0".to_vec(), "malformed STOMP frame: header line \"k:\\\\q\""),
    ];
    for (answer, fragment) in cases {
        let fake = FakeBroker::start(vec![answer, b"MESSAGE\nsubscription:s0\nk:\\q\n\n\0".to_vec()]);
        let config = fleet.client_config("");
        let text = std::fs::read_to_string(&config).expect("read config");
        let fake_url = format!("stomp://baton-client:secret@127.0.0.1:{}", fake.port);
        std::fs::write(&config, text.replace(&fleet.wire.client_url, &fake_url)).expect("write config");
        let output = run_baton(&config, &["ping"], None);
        assert_eq!(output.code, 5, "{fragment}: {output:?}");
        assert!(output.stderr.contains(fragment), "stderr should contain {fragment:?}: {output:?}");
        assert!(!output.stderr.contains("panicked"), "{output:?}");
    }
}

#[test]
fn malformed_frames_from_a_fake_broker_never_stop_a_node() {
    let fake = FakeBroker::start(vec![b"CONNECTED\nversion:1.2\n\n\0".to_vec(), b"BOGUS\n\n\0".to_vec()]);
    let mut wire = Wire::stomp_activemq();
    wire.node_url = format!("stomp://baton-node:secret@127.0.0.1:{}", fake.port);
    let mut fleet = Fleet::start_on(wire, vec![]);
    fleet.spawn(NodeSpec::new("sturdy01", json!({}), &[]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.connections.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "the node stopped reconnecting:\n{}",
            fleet.node("sturdy01").log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let node = fleet.node_mut("sturdy01");
    assert!(node.child.try_wait().expect("node status").is_none(), "the node exited:\n{}", node.log());
    let log = fleet.node("sturdy01").log();
    assert!(log.contains("malformed STOMP frame") && log.contains("BOGUS"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Settings for a bare library connection, as a test's own client.
fn settings(url: String, dialect: StompDialect) -> BrokerSettings {
    BrokerSettings {
        transport: Transport::Stomp,
        urls: vec![url],
        dialect,
        tls: None,
        tls_server_name: None,
        connection_name: "baton permission test".to_string(),
        connect_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_secs(1),
        max_message_bytes: 1 << 20,
        node_queue_expiry: Duration::from_secs(60),
        claimed_identity: None,
    }
}

/// A node may not broadcast, a client may not consume a node's queue nor publish registrations:
/// each refusal names the user and what was refused.
fn users_have_least_privilege(node_url: String, client_url: String, dialect: StompDialect) {
    let collective = unique_collective();
    if dialect == StompDialect::RabbitMq {
        crate::harness::declare_collective(&collective);
    }
    block_on(async {
        let node =
            Broker::connect(settings(node_url, dialect), ConnectMode::FailFast).await.expect("node connects");
        let _subscription = node
            .subscribe_node(&collective, "perm01", &["rpcutil".to_string()])
            .await
            .expect("node subscribes");
        let broadcast =
            Destination::Broadcast { collective: collective.clone(), agent: "rpcutil".to_string() };
        let refused = node.publish(broadcast, b"x".to_vec(), Duration::from_secs(10)).await;
        assert!(
            matches!(&refused, Err(BrokerError::Refused { operation, .. }) if operation.contains("baton-node")),
            "a node broadcast: {refused:?}"
        );

        let client = Broker::connect(settings(client_url, dialect), ConnectMode::FailFast)
            .await
            .expect("client connects");
        let registration =
            Destination::Registration { collective: collective.clone(), identity: "x".to_string() };
        let refused = client.publish(registration, b"x".to_vec(), Duration::from_secs(10)).await;
        assert!(
            matches!(&refused, Err(BrokerError::Refused { operation, .. }) if operation.contains("baton-client")),
            "a client registration: {refused:?}"
        );
        // RabbitMQ closed the connection after refusing; the handle reconnects by itself.
        let refused = client.subscribe_node(&collective, "perm01", &[]).await;
        assert!(
            matches!(&refused, Err(BrokerError::Refused { .. })),
            "a client consuming a node queue: {refused:?}"
        );
    });
}

#[test]
fn activemq_users_have_least_privilege() {
    let _shared = shared_activemq();
    let env = activemq();
    users_have_least_privilege(
        env.var("BATON_ACTIVEMQ_NODE_URL"),
        env.var("BATON_ACTIVEMQ_URL"),
        StompDialect::ActiveMq,
    );
}

#[test]
fn rabbitmq_stomp_users_have_least_privilege() {
    let _shared = shared_broker();
    let env = broker();
    users_have_least_privilege(
        env.var("BATON_RABBITMQ_NODE_STOMP_URL"),
        env.var("BATON_RABBITMQ_STOMP_URL"),
        StompDialect::RabbitMq,
    );
}

/// A TCP proxy to a broker that can stop passing the broker's bytes to the node (`mute`), as a
/// hung broker or a black-holed network would.
struct MutingProxy {
    port: u16,
    mute: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl MutingProxy {
    fn start(upstream: SocketAddr) -> MutingProxy {
        let (runtime, listener, port) = loopback_listener();
        let mute = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (muted, counted) = (Arc::clone(&mute), Arc::clone(&connections));
        runtime.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(upstream).await else { continue };
                let (mut from_node, mut to_node) = inbound.into_split();
                let (mut from_broker, mut to_broker) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_node, &mut to_broker).await;
                    let _ = to_broker.shutdown().await;
                });
                let muted = Arc::clone(&muted);
                tokio::spawn(async move {
                    let mut chunk = vec![0_u8; 16 * 1024];
                    while let Ok(read) = from_broker.read(&mut chunk).await {
                        if read == 0 {
                            break;
                        }
                        if !muted.load(Ordering::SeqCst) && to_node.write_all(&chunk[..read]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_node.shutdown().await;
                });
            }
        });
        MutingProxy { port, mute, connections, _runtime: runtime }
    }
}

/// A fake STOMP broker: to each frame a peer sends, it answers with the next of `answers`, then
/// keeps the connection open until the peer goes.
struct FakeBroker {
    port: u16,
    connections: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeBroker {
    fn start(answers: Vec<Vec<u8>>) -> FakeBroker {
        let (runtime, listener, port) = loopback_listener();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let answers = Arc::new(answers);
        runtime.spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let answers = Arc::clone(&answers);
                tokio::spawn(async move {
                    let mut chunk = vec![0_u8; 16 * 1024];
                    let mut answered = 0;
                    while let Ok(read) = stream.read(&mut chunk).await {
                        if read == 0 {
                            break;
                        }
                        for _ in chunk[..read].iter().filter(|&&byte| byte == 0) {
                            if let Some(answer) = answers.get(answered) {
                                answered += 1;
                                if stream.write_all(answer).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        FakeBroker { port, connections, _runtime: runtime }
    }
}
