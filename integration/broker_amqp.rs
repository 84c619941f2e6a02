//! The AMQP transport as its users see it, against the private RabbitMQ: routing, unroutable
//! detection, reply queues, expiration, size limits, login and permission errors, failover,
//! reconnection; and, needing no broker, connection and TLS errors.
//!
//! These were `tests/broker_amqp.rs`, where all but three returned early unless a variable that
//! nothing set named a broker: they passed without running. Here they use the broker of
//! `bin/broker env rabbitmq` like every integration test, and fail when it is missing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use baton::broker::{
    Broker, BrokerError, BrokerSettings, ConnectMode, Delivery, Destination, Incoming, ReplyQueue,
    StompDialect, Transport,
};
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};

use crate::harness::{block_on, broker, shared_broker, unique_collective};

/// Long enough for any healthy broker; only reached when something is broken.
const PATIENCE: Duration = Duration::from_secs(10);

/// The private broker's admin account, which may declare exchanges (as the tests need for
/// collectives of their own).
fn broker_url() -> String {
    broker().var("BATON_RABBITMQ_ADMIN_URL")
}

/// The admin URL, parsed, for tests that build URLs of their own from its parts.
fn admin_uri() -> lapin::uri::AMQPUri {
    broker_url().parse().expect("bin/broker env prints a valid AMQP URL")
}

fn settings(urls: Vec<String>) -> BrokerSettings {
    BrokerSettings {
        transport: Transport::Amqp,
        urls,
        dialect: StompDialect::RabbitMq,
        tls: None,
        tls_server_name: None,
        connection_name: "baton broker_amqp test".to_string(),
        connect_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_secs(1),
        max_message_bytes: 64 * 1024,
        // Short, so that a test that panics before cleaning up leaves no queue behind for long.
        node_queue_expiry: Duration::from_secs(60),
        claimed_identity: None,
    }
}

async fn connect(url: &str) -> Broker {
    Broker::connect(settings(vec![url.to_string()]), ConnectMode::FailFast)
        .await
        .expect("the test broker is reachable")
}

/// Runs `body` with what most tests need: a connection to the private broker as its admin, an
/// inspector beside it, and a collective of its own, whose exchanges are deleted afterwards.
/// Holds the shared-broker lock, so a test that restarts the broker waits.
fn on_the_broker(body: impl AsyncFnOnce(&Broker, &Inspector, String)) {
    let _broker = shared_broker();
    block_on(async {
        let url = broker_url();
        let broker = connect(&url).await;
        let inspector = Inspector::new(&url).await;
        let collective = unique_collective();
        body(&broker, &inspector, collective.clone()).await;
        inspector.delete_exchanges(&collective).await;
        broker.close().await;
    })
}

async fn receive(messages: &mut mpsc::Receiver<Incoming>) -> Vec<u8> {
    tokio::time::timeout(PATIENCE, messages.recv())
        .await
        .expect("a message arrives")
        .expect("the subscription is still open")
        .body
}

/// Publishes `text` to `destination`, fresh for a minute; returns what the broker said.
async fn send(broker: &Broker, destination: Destination, text: &[u8]) -> Delivery {
    let publish = broker.publish(destination.clone(), text.to_vec(), Duration::from_secs(60));
    publish.await.unwrap_or_else(|error| panic!("publishing to {destination:?}: {error}"))
}

/// Publishes `text` to the reply queue's own address and receives it there; returns what the
/// broker said about the publish.
async fn round_trip(broker: &Broker, replies: &mut ReplyQueue, text: &[u8]) -> Delivery {
    let delivery = send(broker, Destination::Reply(replies.address.clone()), text).await;
    assert_eq!(receive(&mut replies.messages).await, text);
    delivery
}

/// A plain lapin connection for looking at and cleaning up what the transport made.
struct Inspector {
    channel: lapin::Channel,
    _connection: lapin::Connection,
}

impl Inspector {
    async fn new(url: &str) -> Inspector {
        let connection = lapin::Connection::connect_with_config(
            url,
            lapin::ConnectionProperties::default(),
            lapin::tcp::OwnedTLSConfig::default(),
            lapin::runtime::default_runtime().expect("a tokio runtime"),
        )
        .await
        .expect("inspector connects");
        let channel = connection.create_channel().await.expect("inspector channel");
        Inspector { channel, _connection: connection }
    }

    async fn message_count(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists")
            .message_count()
    }

    async fn declare_queue(&self, queue: &str) {
        self.channel
            .queue_declare(queue.into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .expect("queue declared");
    }

    async fn delete_queue(&self, queue: &str) {
        let _ = self.channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await;
    }

    async fn delete_exchanges(&self, collective: &str) {
        for kind in ["broadcast", "registration"] {
            let _ = self
                .channel
                .exchange_delete(
                    format!("{collective}.{kind}").as_str().into(),
                    ExchangeDeleteOptions::default(),
                )
                .await;
        }
    }
}

#[test]
fn broadcast_reaches_exactly_the_nodes_with_the_agent() {
    on_the_broker(async |broker, inspector, collective| {
        let agents = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        let mut web01 = broker
            .subscribe_node(&collective, "web01", &agents(&["rpcutil", "service"]))
            .await
            .expect("web01 subscribes");
        let mut web02 = broker
            .subscribe_node(&collective, "web02", &agents(&["rpcutil"]))
            .await
            .expect("web02 subscribes");
        let mut db01 =
            broker.subscribe_node(&collective, "db01", &agents(&["package"])).await.expect("db01 subscribes");

        let broadcast = Destination::Broadcast { collective: collective.clone(), agent: "rpcutil".into() };
        let delivery = send(broker, broadcast, b"ping").await;
        assert_eq!(delivery, Delivery::Routed);
        assert_eq!(receive(&mut web01.messages).await, b"ping");
        assert_eq!(receive(&mut web02.messages).await, b"ping");
        // db01 must not have the broadcast: the first thing it gets is a later directed message.
        let to_db01 = Destination::Node { collective: collective.clone(), identity: "db01".into() };
        send(broker, to_db01, b"directed").await;
        assert_eq!(receive(&mut db01.messages).await, b"directed");

        for node in ["web01", "web02", "db01"] {
            inspector.delete_queue(&format!("{collective}.node.{node}")).await;
        }
    })
}

#[test]
fn a_message_nobody_can_receive_comes_back_unroutable() {
    on_the_broker(async |broker, _inspector, collective| {
        let check = async |destination: Destination| {
            let delivery = send(broker, destination.clone(), b"hello?").await;
            assert_eq!(delivery, Delivery::Unroutable, "publishing to {destination:?}");
        };
        check(Destination::Node { collective: collective.clone(), identity: "ghost".into() }).await;
        check(Destination::Broadcast { collective: collective.clone(), agent: "nobody-has-this".into() })
            .await;
        check(Destination::Reply(format!("{collective}.reply.gone"))).await;
    })
}

#[test]
fn replies_reach_the_reply_queue_and_named_queues_keep_them() {
    on_the_broker(async |broker, inspector, collective| {
        let mut replies = broker.reply_queue(&collective, None).await.expect("reply queue");
        assert!(replies.address.starts_with(&format!("{collective}.reply.")), "address {}", replies.address);
        assert_eq!(round_trip(broker, &mut replies, b"pong").await, Delivery::Routed);

        // A named queue outlives its reader: replies sent while nobody listens are collected later.
        let named = broker.reply_queue(&collective, Some("later")).await.expect("named reply queue");
        assert_eq!(named.address, format!("{collective}.reply.later"));
        drop(named);
        let delivery =
            send(broker, Destination::Reply(format!("{collective}.reply.later")), b"while you were away")
                .await;
        assert_eq!(delivery, Delivery::Routed);
        let mut named =
            broker.reply_queue(&collective, Some("later")).await.expect("named reply queue again");
        assert_eq!(receive(&mut named.messages).await, b"while you were away");

        inspector.delete_queue(&format!("{collective}.reply.later")).await;
    })
}

#[test]
fn messages_expire_after_their_ttl() {
    on_the_broker(async |broker, inspector, collective| {
        let queue = format!("{collective}.node.sleepy");
        inspector.declare_queue(&queue).await;
        let sleepy = Destination::Node { collective: collective.clone(), identity: "sleepy".into() };

        let delivery = broker
            .publish(sleepy.clone(), b"stale soon".to_vec(), Duration::from_millis(100))
            .await
            .expect("published");
        assert_eq!(delivery, Delivery::Routed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(inspector.message_count(&queue).await, 0, "the message expired");

        // Control: the same publish with a long ttl stays.
        send(broker, sleepy, b"fresh").await;
        assert_eq!(inspector.message_count(&queue).await, 1, "the message stays");

        inspector.delete_queue(&queue).await;
    })
}

#[test]
fn an_oversized_message_is_refused_before_sending() {
    on_the_broker(async |broker, _inspector, collective| {
        let error = broker
            .publish(
                Destination::Node { collective, identity: "web01".into() },
                vec![0; 64 * 1024 + 1],
                Duration::from_secs(60),
            )
            .await
            .expect_err("too large");
        assert!(matches!(error, BrokerError::TooLarge { size: 65537, limit: 65536 }), "{error:?}");
    })
}

#[test]
fn a_wrong_password_is_named_as_a_login_failure() {
    let _broker = shared_broker();
    block_on(async {
        let parsed = admin_uri();
        let bad = format!(
            "amqp://{}:wrong-password@{}:{}/%2f",
            parsed.authority.userinfo.username, parsed.authority.host, parsed.authority.port
        );
        let error =
            Broker::connect(settings(vec![bad]), ConnectMode::FailFast).await.expect_err("login fails");
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "broker refused login for user \"{}\"",
                parsed.authority.userinfo.username
            )),
            "{message}"
        );
        assert!(!message.contains("wrong-password"), "{message}");
    })
}

/// The node account of `rabbitmq/definitions.json` may declare node queues but no exchanges.
#[test]
fn a_user_who_may_not_create_a_missing_exchange_is_told_what_to_do() {
    let _broker = shared_broker();
    block_on(async {
        let limited = broker().var("BATON_RABBITMQ_NODE_URL");
        let broker = connect(&limited).await;
        let user =
            limited.parse::<lapin::uri::AMQPUri>().expect("limited URL parses").authority.userinfo.username;
        let collective = unique_collective();
        let error = broker
            .subscribe_node(&collective, "web01", &["rpcutil".to_string()])
            .await
            .expect_err("the broadcast exchange is missing");
        assert_eq!(
            error.to_string(),
            format!(
                "collective \"{collective}\" does not exist on this broker: exchange \
                 \"{collective}.broadcast\" is missing and user \"{user}\" may not create it (check -T \
                 and the collective setting; a new collective is declared as in rabbitmq/definitions.json)"
            )
        );
        // The same user may not declare a client's reply queue either: refused, named.
        let error =
            broker.reply_queue(&collective, Some("stolen")).await.expect_err("no configure permission");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "the broker refused declare queue \"{collective}.reply.stolen\" for user \"{user}\": \
                 ACCESS_REFUSED"
            )),
            "{message}"
        );
        Inspector::new(&broker_url()).await.delete_queue(&format!("{collective}.node.web01")).await;
        broker.close().await;
    })
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test]
async fn unreachable_brokers_are_each_named_with_the_reason_and_no_password() {
    let first = closed_port().await;
    let second = closed_port().await;
    let urls = vec![
        format!("amqp://node:secret1@127.0.0.1:{first}/baton"),
        format!("amqp://node:secret2@127.0.0.1:{second}/baton"),
    ];
    let error = Broker::connect(settings(urls), ConnectMode::FailFast).await.expect_err("nothing listens");
    let BrokerError::Unreachable { attempts } = &error else {
        panic!("expected Unreachable, got {error:?}");
    };
    assert_eq!(
        attempts,
        &vec![
            format!(
                "amqp://node:***@127.0.0.1:{first}/baton: connection refused at 127.0.0.1:{first} \
                 (is the broker running?)"
            ),
            format!(
                "amqp://node:***@127.0.0.1:{second}/baton: connection refused at 127.0.0.1:{second} \
                 (is the broker running?)"
            ),
        ]
    );
}

#[tokio::test]
async fn settings_errors_are_reported_before_connecting() {
    let check = async |urls: Vec<&str>, expected: &str| {
        let urls = urls.into_iter().map(String::from).collect();
        let error = Broker::connect(settings(urls), ConnectMode::FailFast).await.expect_err("bad settings");
        assert!(matches!(error, BrokerError::Config(_)) && error.to_string().contains(expected), "{error}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    };
    check(vec![], "no broker URL configured").await;
    check(
        vec!["amqps://node:hunter2@mq1:5671/baton"],
        "amqps://node:***@mq1:5671/baton uses TLS but no CA is configured (set tls.ca",
    )
    .await;
    check(vec!["http://node:hunter2@mq1/baton"], "is not a valid AMQP URL").await;
}

#[test]
fn connecting_fails_over_to_the_next_url() {
    let _broker = shared_broker();
    block_on(async {
        let url = broker_url();
        for mode in [ConnectMode::FailFast, ConnectMode::Persistent] {
            let dead = format!("amqp://node:secret@127.0.0.1:{}/baton", closed_port().await);
            let broker = Broker::connect(settings(vec![dead, url.clone()]), mode)
                .await
                .unwrap_or_else(|error| panic!("{mode:?}: the second URL works: {error}"));
            let mut replies = broker.reply_queue(&unique_collective(), None).await.expect("reply queue");
            round_trip(&broker, &mut replies, b"via the second URL").await;
            broker.close().await;
        }
    })
}

#[test]
fn registrations_reach_the_console() {
    on_the_broker(async |broker, _inspector, collective| {
        let mut registrations =
            broker.subscribe_registrations(&collective).await.expect("console subscribes");
        for node in ["web01", "db01"] {
            let delivery = send(
                broker,
                Destination::Registration { collective: collective.clone(), identity: node.into() },
                node.as_bytes(),
            )
            .await;
            assert_eq!(delivery, Delivery::Routed);
            assert_eq!(receive(&mut registrations.messages).await, node.as_bytes());
        }
    })
}

#[test]
fn many_publishes_in_flight_are_each_confirmed_and_delivered() {
    on_the_broker(async |broker, _inspector, collective| {
        let mut replies = broker.reply_queue(&collective, None).await.expect("reply queue");
        const COUNT: usize = 3000;
        let started = std::time::Instant::now();
        let publishes: Vec<_> = (0..COUNT)
            .map(|index| {
                let broker = broker.clone();
                let address = replies.address.clone();
                tokio::spawn(async move {
                    broker
                        .publish(
                            Destination::Reply(address),
                            index.to_string().into_bytes(),
                            Duration::from_secs(60),
                        )
                        .await
                })
            })
            .collect();
        let receiving = tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            while seen.len() < COUNT {
                seen.insert(receive(&mut replies.messages).await);
            }
            seen.len()
        });
        for publish in publishes {
            let delivery = publish.await.expect("publish task").expect("published");
            assert_eq!(delivery, Delivery::Routed);
        }
        eprintln!("{COUNT} confirmed publishes took {:?}", started.elapsed());
        assert_eq!(receiving.await.expect("receiver task"), COUNT);
    })
}

/// A TCP proxy in front of the broker whose connections the test can cut at will.
struct CuttableProxy {
    port: u16,
    cut: broadcast::Sender<()>,
}

impl CuttableProxy {
    async fn start(target: SocketAddr) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (cut, _) = broadcast::channel(4);
        let cut_for_task = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = cut_for_task.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        CuttableProxy { port, cut }
    }

    /// Drops every connection through the proxy; new ones are accepted again.
    fn cut_all(&self) {
        let _ = self.cut.send(());
    }
}

#[test]
fn subscriptions_survive_a_dropped_connection() {
    let _broker = shared_broker();
    block_on(async {
        let parsed = admin_uri();
        let target = tokio::net::lookup_host((parsed.authority.host.as_str(), parsed.authority.port))
            .await
            .expect("broker host resolves")
            .next()
            .expect("an address");
        let proxy = CuttableProxy::start(target).await;
        let user = &parsed.authority.userinfo;
        let vhost = if parsed.vhost == "/" { "%2f".to_string() } else { parsed.vhost.clone() };
        let proxied = format!("amqp://{}:{}@127.0.0.1:{}/{vhost}", user.username, user.password, proxy.port);
        let broker = connect(&proxied).await;
        let inspector = Inspector::new(&broker_url()).await;
        let collective = unique_collective();
        let mut node = broker
            .subscribe_node(&collective, "web01", &["rpcutil".to_string()])
            .await
            .expect("node subscribes");
        let mut replies = broker.reply_queue(&collective, None).await.expect("reply queue");
        let to_node = Destination::Node { collective: collective.clone(), identity: "web01".into() };
        send(&broker, to_node.clone(), b"before").await;
        assert_eq!(receive(&mut node.messages).await, b"before");

        proxy.cut_all();

        // Publishing waits for the reconnection; the old receivers get what is sent after it.
        let broadcast = Destination::Broadcast { collective: collective.clone(), agent: "rpcutil".into() };
        let delivery = send(&broker, broadcast, b"after").await;
        assert_eq!(delivery, Delivery::Routed);
        // Delivery is at least once: "before" may come again if its ack was lost in the cut.
        let mut next = receive(&mut node.messages).await;
        if next == b"before" {
            next = receive(&mut node.messages).await;
        }
        assert_eq!(next, b"after");
        assert_eq!(round_trip(&broker, &mut replies, b"reply after").await, Delivery::Routed);

        inspector.delete_queue(&format!("{collective}.node.web01")).await;
        inspector.delete_exchanges(&collective).await;
        broker.close().await;
    })
}

#[test]
fn closing_ends_subscriptions_and_refuses_further_use() {
    on_the_broker(async |broker, _inspector, collective| {
        let mut replies = broker.reply_queue(&collective, None).await.expect("reply queue");
        broker.close().await;
        let ended =
            tokio::time::timeout(PATIENCE, replies.messages.recv()).await.expect("the subscription ends");
        assert!(ended.is_none(), "no message after close");
        let error = broker
            .publish(Destination::Reply(replies.address.clone()), b"late".to_vec(), Duration::from_secs(1))
            .await
            .expect_err("closed");
        assert!(matches!(error, BrokerError::Closed), "{error:?}");
    })
}

mod tls {
    //! TLS failures against an in-process TLS server with certificates made by `openssl`.

    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use std::path::Path;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) -> bool {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map(|output| output.status.success())
            .unwrap_or(false)
    }

    /// Makes `ca.pem`, `other-ca.pem` and a server certificate for `localhost`/127.0.0.1
    /// signed by `ca.pem`. False if openssl failed (bin/test installs it).
    fn make_pki(dir: &Path) -> bool {
        let ca = |name: &str| {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            )
        };
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        ca("ca")
            && ca("other-ca")
            && openssl(
                dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                ],
            )
            && openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "server.csr",
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-sha256",
                    "-extfile",
                    "server.ext",
                    "-out",
                    "server.pem",
                ],
            )
    }

    fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
            roots.add(cert.expect("CA parses")).expect("CA added");
        }
        Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
    }

    /// A TLS server that completes handshakes and then hangs up; returns its port.
    async fn tls_server(dir: &Path) -> u16 {
        let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .expect("read server cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("server cert parses");
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        port
    }

    async fn failure(port: u16, ca: &Path, server_name: Option<&str>) -> String {
        let mut settings = settings(vec![format!("amqps://node:secret@127.0.0.1:{port}/baton")]);
        settings.tls = Some(client_config(ca));
        settings.tls_server_name = server_name.map(String::from);
        settings.connect_timeout = Duration::from_secs(3);
        let error = Broker::connect(settings, ConnectMode::FailFast).await.expect_err("TLS check fails");
        error.to_string()
    }

    #[tokio::test]
    async fn tls_failures_say_whether_the_ca_or_the_host_name_is_wrong() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(make_pki(dir.path()), "openssl could not make the test certificates (is it installed?)");
        let port = tls_server(dir.path()).await;

        let wrong_ca = failure(port, &dir.path().join("other-ca.pem"), None).await;
        assert!(
            wrong_ca.contains("certificate was not issued by the configured CA (check tls.ca"),
            "{wrong_ca}"
        );
        let wrong_name = failure(port, &dir.path().join("ca.pem"), Some("mq.example")).await;
        assert!(
            wrong_name.contains(
                "certificate is not valid for host \"mq.example\": it names \"localhost\", \
                 \"127.0.0.1\" (set tls.server_name or fix the certificate)"
            ),
            "{wrong_name}"
        );
        assert!(!wrong_name.contains("secret"), "{wrong_name}");
        // With the right CA and name, TLS succeeds and the failure is about AMQP, not TLS.
        let right = failure(port, &dir.path().join("ca.pem"), None).await;
        assert!(!right.contains("certificate"), "{right}");
    }
}
