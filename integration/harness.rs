//! The integration harness: private brokers, real `batond` processes, the real `baton` CLI.
//!
//! Every test gets its own collective (`t<random>`), declared on the private RabbitMQ with the
//! admin account (ActiveMQ needs no declaring), so tests run in parallel without seeing each
//! other's nodes. A [`Wire`] says which transport and broker nodes and clients use: AMQP or
//! STOMP to RabbitMQ, or STOMP to ActiveMQ, each with or without TLS; [`on_every_transport!`]
//! runs one test body over each. A [`Fleet`] owns its node processes and temporary directory:
//! dropping it kills the nodes. Nothing here is mocked: requests go through the broker to
//! `batond` and back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Connection details of a private broker, from `bin/broker env <target>`.
#[derive(Debug, Clone)]
pub struct BrokerEnv {
    pub target: &'static str,
    pub vars: BTreeMap<String, String>,
}

impl BrokerEnv {
    pub fn var(&self, name: &str) -> String {
        self.vars
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("bin/broker env {} did not print {name}", self.target))
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the private RabbitMQ if it is not running (idempotent) and reads its environment.
pub fn broker() -> &'static BrokerEnv {
    static ENV: OnceLock<BrokerEnv> = OnceLock::new();
    ENV.get_or_init(|| start_private("rabbitmq"))
}

/// Starts the private ActiveMQ if it is not running (idempotent) and reads its environment.
pub fn activemq() -> &'static BrokerEnv {
    static ENV: OnceLock<BrokerEnv> = OnceLock::new();
    ENV.get_or_init(|| start_private("activemq"))
}

/// Starts the private three-member RabbitMQ cluster if it is not running (idempotent) and
/// reads its environment (`BATON_CLUSTER_*`).
pub fn rabbitmq_cluster() -> &'static BrokerEnv {
    static ENV: OnceLock<BrokerEnv> = OnceLock::new();
    ENV.get_or_init(|| start_private("rabbitmq-cluster"))
}

/// Starts site B of the two-site set-up if it is not running (idempotent; `bin/broker start
/// rabbitmq-site2` federates it with the private RabbitMQ, site A, which it starts first) and
/// reads its environment (`BATON_SITE2_*`).
pub fn rabbitmq_site2() -> &'static BrokerEnv {
    static ENV: OnceLock<BrokerEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        broker();
        start_private("rabbitmq-site2")
    })
}

/// Runs `bin/broker COMMAND TARGET` and fails the test, with its output, if it fails.
pub fn run_broker_script(command: &str, target: &str) {
    run_broker_args(&[command, target]);
}

/// Runs `bin/broker ARGS...` (e.g. `stop-member rabbitmq-cluster 2`) and fails the test, with
/// its output, if it fails.
pub fn run_broker_args(args: &[&str]) {
    let output = Command::new(repo_root().join("bin/broker"))
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("run bin/broker {}: {error}", args.join(" ")));
    assert!(
        output.status.success(),
        "bin/broker {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn start_private(target: &'static str) -> BrokerEnv {
    run_broker_script("start", target);
    BrokerEnv { target, vars: broker_env_vars(target) }
}

fn broker_env_vars(target: &str) -> BTreeMap<String, String> {
    let script = repo_root().join("bin/broker");
    let env = Command::new(&script).args(["env", target]).output().expect("run bin/broker env");
    assert!(env.status.success(), "bin/broker env {target} failed: {}", String::from_utf8_lossy(&env.stderr));
    let mut vars = BTreeMap::new();
    for line in String::from_utf8_lossy(&env.stdout).lines() {
        let Some(assignment) = line.strip_prefix("export ") else { continue };
        if let Some((name, value)) = assignment.split_once('=') {
            let value = value.trim_matches(|c| c == '\'' || c == '"');
            vars.insert(name.to_string(), value.to_string());
        }
    }
    vars
}

/// Tests that stop the shared broker take this lock for writing; every other test holds it
/// for reading while it runs, so a broker restart never pulls the floor from under them.
static BROKER_LOCK: RwLock<()> = RwLock::new(());

/// The same for the private ActiveMQ.
static ACTIVEMQ_LOCK: RwLock<()> = RwLock::new(());

/// The same for the private RabbitMQ cluster, whose tests stop and start members.
static CLUSTER_LOCK: RwLock<()> = RwLock::new(());

/// The same for the two sites, whose test cuts the link between them.
static SITES_LOCK: RwLock<()> = RwLock::new(());

pub fn shared_sites() -> RwLockReadGuard<'static, ()> {
    SITES_LOCK.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn exclusive_sites() -> RwLockWriteGuard<'static, ()> {
    SITES_LOCK.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn shared_broker() -> RwLockReadGuard<'static, ()> {
    BROKER_LOCK.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn exclusive_broker() -> RwLockWriteGuard<'static, ()> {
    BROKER_LOCK.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn shared_activemq() -> RwLockReadGuard<'static, ()> {
    ACTIVEMQ_LOCK.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn exclusive_activemq() -> RwLockWriteGuard<'static, ()> {
    ACTIVEMQ_LOCK.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn shared_cluster() -> RwLockReadGuard<'static, ()> {
    CLUSTER_LOCK.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn exclusive_cluster() -> RwLockWriteGuard<'static, ()> {
    CLUSTER_LOCK.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh collective name for one test.
pub fn unique_collective() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Declares a collective's exchanges with the admin account, as an operator would in
/// definitions.json for a real collective.
pub fn declare_collective(collective: &str) {
    declare_collective_at(&broker().var("BATON_RABBITMQ_ADMIN_URL"), collective);
}

/// As [`declare_collective`], through the admin URL `url` (a cluster member's).
pub fn declare_collective_at(url: &str, collective: &str) {
    admin_channel_do_at(url, collective, |channel, collective| {
        Box::pin(async move {
            for suffix in ["broadcast", "registration", "events"] {
                channel
                    .exchange_declare(
                        format!("{collective}.{suffix}").as_str().into(),
                        lapin::ExchangeKind::Topic,
                        lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() },
                        lapin::types::FieldTable::default(),
                    )
                    .await
                    .expect("declare exchange");
            }
        })
    });
}

/// A stream retaining one of a collective's exchanges, bound to it as rabbitmq/definitions.json
/// declares them for `baton` and `dc1`: the registry `C.registration` (`node.#`), the events
/// `C.events` (`rollout.#`). Deleted again on drop (a stream keeps its files until deleted).
pub struct RetainedStream {
    name: String,
}

/// The routing keys a stream takes from its exchange, as in rabbitmq/definitions.json.
fn retained_keys(stream: &str) -> &'static str {
    if stream.ends_with(".events") { "rollout.#" } else { "node.#" }
}

impl RetainedStream {
    /// The registry stream `C.registration`.
    pub fn registry(collective: &str) -> RetainedStream {
        RetainedStream::declare(format!("{collective}.registration"))
    }

    /// The events stream `C.events`.
    pub fn events(collective: &str) -> RetainedStream {
        RetainedStream::declare(format!("{collective}.events"))
    }

    fn declare(name: String) -> RetainedStream {
        admin_channel_do(&name, |channel, name| {
            Box::pin(async move {
                let mut arguments = lapin::types::FieldTable::default();
                arguments.insert("x-queue-type".into(), lapin::types::AMQPValue::LongString("stream".into()));
                arguments.insert("x-max-age".into(), lapin::types::AMQPValue::LongString("1h".into()));
                channel
                    .queue_declare(
                        name.as_str().into(),
                        lapin::options::QueueDeclareOptions { durable: true, ..Default::default() },
                        arguments,
                    )
                    .await
                    .expect("declare the stream");
                channel
                    .queue_bind(
                        name.as_str().into(),
                        name.as_str().into(),
                        retained_keys(&name).into(),
                        lapin::options::QueueBindOptions::default(),
                        lapin::types::FieldTable::default(),
                    )
                    .await
                    .expect("bind the stream");
            })
        });
        RetainedStream { name }
    }
}

impl Drop for RetainedStream {
    fn drop(&mut self) {
        admin_channel_do(&self.name, |channel, name| {
            Box::pin(async move {
                let _ = channel
                    .queue_delete(name.as_str().into(), lapin::options::QueueDeleteOptions::default())
                    .await;
            })
        });
    }
}

type AdminAction =
    fn(lapin::Channel, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs `action` on a channel of the private broker's admin account, with `name`.
fn admin_channel_do(name: &str, action: AdminAction) {
    admin_channel_do_at(&broker().var("BATON_RABBITMQ_ADMIN_URL"), name, action);
}

/// Runs `action` on a channel of the admin account at `url`, with `name`.
fn admin_channel_do_at(url: &str, name: &str, action: AdminAction) {
    let url = url.to_string();
    let name = name.to_string();
    block_on(async move {
        let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
            .await
            .expect("admin connection to the private broker");
        let channel = connection.create_channel().await.expect("admin channel");
        action(channel, name).await;
        let _ = connection.close(200, "done".into()).await;
    });
}

/// The TOML list for a wire's URL field (one URL, or several separated by commas).
fn toml_urls(urls: &str) -> String {
    format!("{:?}", urls.split(',').collect::<Vec<_>>())
}

/// Writes a key file readable by its owner only, as an operator should.
fn write_secret(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("write key file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key file");
}

/// A listener on a free loopback port and a runtime of its own (one worker) to serve it from
/// a synchronous test: fake brokers and proxies. The runtime must live as long as the listener
/// serves. Returns the runtime, the listener and its port.
pub fn loopback_listener() -> (tokio::runtime::Runtime, tokio::net::TcpListener, u16) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let listener =
        runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind a loopback port");
    let port = listener.local_addr().expect("listener address").port();
    (runtime, listener, port)
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// How a node should be set up.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub identity: String,
    pub facts: Value,
    pub classes: Vec<String>,
    /// Use this PSK instead of the fleet's (to make a node that holds a different key).
    pub psk: Option<String>,
    /// The body of the `[security]` table instead of the fleet's PSK (e.g. ed25519 keys).
    pub security: Option<String>,
    /// More TOML tables for the node's configuration (`[agents]`, `[authorization]`, ...).
    pub extra_config: String,
    /// Connect this node with another wire than the fleet's (mixed-transport fleets).
    pub wire: Option<Wire>,
    /// Environment variables for this node's process (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    /// Collectives this node serves besides the fleet's (sub-collectives).
    pub also_in: Vec<String>,
}

impl NodeSpec {
    pub fn new(identity: &str, facts: Value, classes: &[&str]) -> NodeSpec {
        NodeSpec {
            identity: identity.to_string(),
            facts,
            classes: classes.iter().map(|class| class.to_string()).collect(),
            psk: None,
            security: None,
            extra_config: String::new(),
            wire: None,
            env: Vec::new(),
            also_in: Vec::new(),
        }
    }

    /// The same node, serving `collective` too (after the fleet's own).
    pub fn also_in(mut self, collective: &str) -> NodeSpec {
        self.also_in.push(collective.to_string());
        self
    }

    /// The same node with more configuration tables.
    pub fn with_config(mut self, extra_config: &str) -> NodeSpec {
        self.extra_config.push_str(extra_config);
        self
    }

    /// The same node with one more environment variable.
    pub fn with_env(mut self, name: &str, value: &str) -> NodeSpec {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// This node connects through `wire` rather than the fleet's.
    pub fn on(mut self, wire: Wire) -> NodeSpec {
        self.wire = Some(wire);
        self
    }
}

/// Which private broker a wire goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    RabbitMq,
    ActiveMq,
    /// The three-member cluster of `bin/broker start rabbitmq-cluster`.
    RabbitMqCluster,
    /// Site B of `bin/broker start rabbitmq-site2`, federated with `RabbitMq` (site A).
    RabbitMqSite2,
}

/// Which URLs, STOMP dialect and TLS settings nodes and clients use. A URL field may hold
/// several URLs separated by commas (a cluster's members), written as the `urls` list.
#[derive(Debug, Clone)]
pub struct Wire {
    pub node_url: String,
    pub client_url: String,
    pub tls_ca: Option<String>,
    /// `broker.dialect` for STOMP wires.
    pub dialect: Option<&'static str>,
    pub broker: BrokerKind,
}

impl Wire {
    pub fn amqp() -> Wire {
        let broker = broker();
        Wire {
            node_url: broker.var("BATON_RABBITMQ_NODE_URL"),
            client_url: broker.var("BATON_RABBITMQ_CLIENT_URL"),
            tls_ca: None,
            dialect: None,
            broker: BrokerKind::RabbitMq,
        }
    }

    pub fn amqps() -> Wire {
        let broker = broker();
        Wire {
            node_url: broker.var("BATON_RABBITMQ_NODE_TLS_URL"),
            client_url: broker.var("BATON_RABBITMQ_CLIENT_TLS_URL"),
            tls_ca: Some(broker.var("BATON_TLS_CA")),
            dialect: None,
            broker: BrokerKind::RabbitMq,
        }
    }

    /// STOMP to the private ActiveMQ.
    pub fn stomp_activemq() -> Wire {
        let broker = activemq();
        Wire {
            node_url: broker.var("BATON_ACTIVEMQ_NODE_URL"),
            client_url: broker.var("BATON_ACTIVEMQ_URL"),
            tls_ca: None,
            dialect: Some("activemq"),
            broker: BrokerKind::ActiveMq,
        }
    }

    /// STOMP over TLS to the private ActiveMQ, certificate and host name verified.
    pub fn stomp_activemq_tls() -> Wire {
        let broker = activemq();
        Wire {
            node_url: broker.var("BATON_ACTIVEMQ_NODE_TLS_URL"),
            client_url: broker.var("BATON_ACTIVEMQ_TLS_URL"),
            tls_ca: Some(broker.var("BATON_TLS_CA")),
            dialect: Some("activemq"),
            broker: BrokerKind::ActiveMq,
        }
    }

    /// STOMP to the private RabbitMQ's STOMP plugin.
    pub fn stomp_rabbitmq() -> Wire {
        let broker = broker();
        Wire {
            node_url: broker.var("BATON_RABBITMQ_NODE_STOMP_URL"),
            client_url: broker.var("BATON_RABBITMQ_STOMP_URL"),
            tls_ca: None,
            dialect: Some("rabbitmq"),
            broker: BrokerKind::RabbitMq,
        }
    }

    /// STOMP over TLS to the private RabbitMQ's STOMP plugin.
    pub fn stomp_rabbitmq_tls() -> Wire {
        let broker = broker();
        Wire {
            node_url: broker.var("BATON_RABBITMQ_NODE_STOMP_TLS_URL"),
            client_url: broker.var("BATON_RABBITMQ_STOMP_TLS_URL"),
            tls_ca: Some(broker.var("BATON_TLS_CA")),
            dialect: Some("rabbitmq"),
            broker: BrokerKind::RabbitMq,
        }
    }

    /// AMQP to the three-member cluster: nodes list the members in order (so they use member 1
    /// first), the client lists them from member 3 (so it stays on a member the tests keep).
    pub fn amqp_cluster() -> Wire {
        let cluster = rabbitmq_cluster();
        let clients = cluster.var("BATON_CLUSTER_CLIENT_URLS");
        let mut members: Vec<&str> = clients.split(',').collect();
        members.rotate_right(1);
        Wire {
            node_url: cluster.var("BATON_CLUSTER_NODE_URLS"),
            client_url: members.join(","),
            tls_ca: None,
            dialect: None,
            broker: BrokerKind::RabbitMqCluster,
        }
    }

    /// AMQP to site B (`bin/broker start rabbitmq-site2`), federated with site A, the
    /// private RabbitMQ of [`Wire::amqp`].
    pub fn amqp_site2() -> Wire {
        let site = rabbitmq_site2();
        Wire {
            node_url: site.var("BATON_SITE2_NODE_URL"),
            client_url: site.var("BATON_SITE2_CLIENT_URL"),
            tls_ca: None,
            dialect: None,
            broker: BrokerKind::RabbitMqSite2,
        }
    }

    /// The `[broker]` lines after `urls` (the dialect, for STOMP).
    fn broker_extra(&self) -> String {
        match self.dialect {
            Some(dialect) => format!("dialect = {dialect:?}\n"),
            None => String::new(),
        }
    }

    fn tls_table(&self) -> String {
        match &self.tls_ca {
            Some(ca) => format!("[tls]\nca = {ca:?}\n"),
            None => String::new(),
        }
    }

    /// Holds the broker this wire uses for reading: it will not be restarted under the test.
    fn shared_guard(&self) -> RwLockReadGuard<'static, ()> {
        match self.broker {
            BrokerKind::RabbitMq => shared_broker(),
            BrokerKind::ActiveMq => shared_activemq(),
            BrokerKind::RabbitMqCluster => shared_cluster(),
            BrokerKind::RabbitMqSite2 => shared_sites(),
        }
    }
}

/// Defines, for each named test body `fn NAME(wire: Wire)`, a module `NAME` with one test per
/// transport: `NAME::amqp`, `NAME::stomp_activemq` and `NAME::stomp_rabbitmq`, so that one
/// assertion list covers them all (`cargo test --test integration stomp_activemq` runs one).
#[macro_export]
macro_rules! on_every_transport {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::harness::Wire;

                #[test]
                fn amqp() {
                    super::$name(Wire::amqp());
                }

                #[test]
                fn stomp_activemq() {
                    super::$name(Wire::stomp_activemq());
                }

                #[test]
                fn stomp_rabbitmq() {
                    super::$name(Wire::stomp_rabbitmq());
                }
            }
        )*
    };
}

/// As [`on_every_transport!`], over TLS with verification on: `NAME::amqps`,
/// `NAME::stomp_activemq_tls` and `NAME::stomp_rabbitmq_tls`.
#[macro_export]
macro_rules! on_every_tls_transport {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::harness::Wire;

                #[test]
                fn amqps() {
                    super::$name(Wire::amqps());
                }

                #[test]
                fn stomp_activemq_tls() {
                    super::$name(Wire::stomp_activemq_tls());
                }

                #[test]
                fn stomp_rabbitmq_tls() {
                    super::$name(Wire::stomp_rabbitmq_tls());
                }
            }
        )*
    };
}

/// A running node process.
pub struct RunningNode {
    pub spec: NodeSpec,
    pub child: Child,
    pub dir: PathBuf,
}

impl RunningNode {
    pub fn audit_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("audit line is JSON")).collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("batond.log")).unwrap_or_default()
    }
}

/// Several nodes in one collective, and a client configuration to reach them.
pub struct Fleet {
    pub collective: String,
    pub dir: tempfile::TempDir,
    pub wire: Wire,
    pub nodes: Vec<RunningNode>,
    /// The body of the client's `[security]` table instead of the fleet's PSK.
    pub client_security: Option<String>,
    /// The collective's registry, when the fleet was started with one.
    pub registry: Option<RetainedStream>,
    _shared: Option<RwLockReadGuard<'static, ()>>,
}

impl Fleet {
    /// Starts the nodes and waits until each answers a directed ping.
    pub fn start(specs: Vec<NodeSpec>) -> Fleet {
        Fleet::start_on(Wire::amqp(), specs)
    }

    pub fn start_on(wire: Wire, specs: Vec<NodeSpec>) -> Fleet {
        let guard = wire.shared_guard();
        let mut fleet = Fleet::start_unguarded(wire, specs);
        fleet._shared = Some(guard);
        fleet
    }

    /// As [`Fleet::start`], in a directory prepared beforehand (keys, agents, policies),
    /// with the client's `[security]` table given (`None`: the fleet's PSK).
    pub fn start_in(dir: tempfile::TempDir, client_security: Option<String>, specs: Vec<NodeSpec>) -> Fleet {
        let guard = shared_broker();
        let mut fleet = Fleet::start_prepared(Wire::amqp(), dir, client_security, specs);
        fleet._shared = Some(guard);
        fleet
    }

    /// As [`Fleet::start`], for a test that already holds the broker lock.
    pub fn start_unguarded(wire: Wire, specs: Vec<NodeSpec>) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        Fleet::start_prepared(wire, dir, None, specs)
    }

    /// As [`Fleet::start`] (AMQP), with the collective's registry stream declared before the
    /// nodes start, so that it holds their registrations.
    pub fn start_with_registry(specs: Vec<NodeSpec>) -> Fleet {
        Fleet::start_with_registry_on(Wire::amqp(), specs)
    }

    /// As [`Fleet::start_with_registry`], with the nodes and the client on `wire` (a wire to
    /// the private RabbitMQ: AMQP or its STOMP plugin).
    pub fn start_with_registry_on(wire: Wire, specs: Vec<NodeSpec>) -> Fleet {
        assert!(wire.broker == BrokerKind::RabbitMq, "a registry lives on the private RabbitMQ");
        let guard = shared_broker();
        let collective = unique_collective();
        declare_collective(&collective);
        let registry = RetainedStream::registry(&collective);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut fleet = Fleet::start_named(collective, wire, dir, None, specs);
        fleet.registry = Some(registry);
        fleet._shared = Some(guard);
        fleet
    }

    fn start_prepared(
        wire: Wire,
        dir: tempfile::TempDir,
        client_security: Option<String>,
        specs: Vec<NodeSpec>,
    ) -> Fleet {
        let collective = unique_collective();
        let rabbitmq_wires = std::iter::once(&wire).chain(specs.iter().filter_map(|spec| spec.wire.as_ref()));
        let kinds: Vec<BrokerKind> = rabbitmq_wires.map(|wire| wire.broker).collect();
        if kinds.contains(&BrokerKind::RabbitMq) {
            declare_collective(&collective);
        }
        if kinds.contains(&BrokerKind::RabbitMqCluster) {
            let admin_urls = rabbitmq_cluster().var("BATON_CLUSTER_ADMIN_URLS");
            declare_collective_at(admin_urls.split(',').next().expect("a member"), &collective);
        }
        if kinds.contains(&BrokerKind::RabbitMqSite2) {
            declare_collective_at(&rabbitmq_site2().var("BATON_SITE2_ADMIN_URL"), &collective);
        }
        Fleet::start_named(collective, wire, dir, client_security, specs)
    }

    fn start_named(
        collective: String,
        wire: Wire,
        dir: tempfile::TempDir,
        client_security: Option<String>,
        specs: Vec<NodeSpec>,
    ) -> Fleet {
        let psk = uuid::Uuid::new_v4().simple().to_string();
        write_secret(&dir.path().join("psk"), &psk);
        let mut fleet = Fleet {
            collective,
            dir,
            wire,
            nodes: Vec::new(),
            client_security,
            registry: None,
            _shared: None,
        };
        for spec in specs {
            fleet.spawn(spec);
        }
        let identities: Vec<String> = fleet
            .nodes
            .iter()
            .filter(|node| node.spec.psk.is_none())
            .map(|node| node.spec.identity.clone())
            .collect();
        fleet.wait_until_answering(&identities);
        fleet
    }

    /// Starts one more node in this fleet without waiting for it to answer.
    pub fn spawn(&mut self, spec: NodeSpec) {
        let node_dir = self.dir.path().join(&spec.identity);
        std::fs::create_dir_all(&node_dir).expect("node dir");
        std::fs::write(node_dir.join("facts.json"), serde_json::to_vec_pretty(&spec.facts).expect("facts"))
            .expect("write facts");
        std::fs::write(node_dir.join("classes.txt"), spec.classes.join("\n")).expect("write classes");
        let psk_file = match &spec.psk {
            Some(other) => {
                let path = node_dir.join("psk");
                write_secret(&path, other);
                path
            }
            None => self.dir.path().join("psk"),
        };
        let wire = spec.wire.clone().unwrap_or_else(|| self.wire.clone());
        let tls = wire.tls_table();
        let security = match &spec.security {
            Some(security) => security.clone(),
            None => format!("scheme = \"psk\"\npsk_file = {psk_file:?}\n"),
        };
        let config = format!(
            "identity = {identity:?}\ncollectives = {collectives:?}\n\n[broker]\nurls = {url}\n{broker_extra}max_backoff_secs = 2\n\n{tls}\n[security]\n{security}\n[facts]\npoll_interval_secs = 1\nfiles = [{facts:?}]\nclasses_file = {classes:?}\n\n[audit]\nfile = {audit:?}\n\n{extra}\n",
            identity = spec.identity,
            collectives = std::iter::once(&self.collective).chain(&spec.also_in).collect::<Vec<_>>(),
            url = toml_urls(&wire.node_url),
            broker_extra = wire.broker_extra(),
            facts = node_dir.join("facts.json"),
            classes = node_dir.join("classes.txt"),
            audit = node_dir.join("audit.log"),
            extra = spec.extra_config,
        );
        let config_path = node_dir.join("node.toml");
        std::fs::write(&config_path, config).expect("write node config");
        let log = std::fs::File::create(node_dir.join("batond.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_batond"))
            .arg("--config")
            .arg(&config_path)
            .env_remove("BATON_LOG")
            .envs(spec.env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn batond");
        self.nodes.push(RunningNode { spec, child, dir: node_dir });
    }

    /// Polls with directed pings until every listed node answers, or fails after 60 s with
    /// the nodes' logs.
    pub fn wait_until_answering(&self, identities: &[String]) {
        if identities.is_empty() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut args = vec!["ping".to_string(), "--json".to_string()];
            for identity in identities {
                args.push("-I".to_string());
                args.push(identity.clone());
            }
            let output = self.baton(&args.iter().map(String::as_str).collect::<Vec<_>>());
            if output.code == 0 {
                return;
            }
            if Instant::now() > deadline {
                panic!("nodes did not start answering within 60 s; last ping: {output:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until a node's queue exists on the broker (a directed request is routed rather
    /// than returned as unreachable), for nodes that will not answer.
    pub fn wait_until_subscribed(&self, identity: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = self.baton(&["ping", "-I", identity, "--json"]);
            let unreachable = output.json()["unreachable"].as_array().is_some_and(|nodes| !nodes.is_empty());
            if output.code != 5 && !unreachable {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{identity} never subscribed: {output:?}\n{}",
                self.node(identity).log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every node's log, each under its identity, for a failing test's message.
    pub fn logs(&self) -> String {
        let logs: Vec<String> =
            self.nodes.iter().map(|node| format!("--- {} ---\n{}", node.spec.identity, node.log())).collect();
        logs.join("\n")
    }

    pub fn node(&self, identity: &str) -> &RunningNode {
        self.nodes.iter().find(|node| node.spec.identity == identity).expect("node in fleet")
    }

    pub fn node_mut(&mut self, identity: &str) -> &mut RunningNode {
        self.nodes.iter_mut().find(|node| node.spec.identity == identity).expect("node in fleet")
    }

    /// Writes a client configuration for this fleet with extra TOML appended, returns its path.
    pub fn client_config(&self, extra: &str) -> PathBuf {
        self.client_config_with(&self.wire, "", extra)
    }

    /// As [`Fleet::client_config`], for a client that connects through `wire`.
    pub fn client_config_on(&self, wire: &Wire, extra: &str) -> PathBuf {
        self.client_config_with(wire, "", extra)
    }

    /// Writes a client configuration that connects through `wire`, with `top_level` keys
    /// (before the first table) and `extra` TOML appended, and returns its path. The
    /// `[security]` table is the fleet's `client_security`, or its PSK.
    pub fn client_config_with(&self, wire: &Wire, top_level: &str, extra: &str) -> PathBuf {
        let security = match &self.client_security {
            Some(security) => security.clone(),
            None => format!("scheme = \"psk\"\npsk_file = {:?}\n", self.dir.path().join("psk")),
        };
        let config = format!(
            "identity = \"tester\"\ncaller = \"user=tester\"\ncollective = {collective:?}\ntimeout_secs = 10\ndiscovery_timeout_secs = 3\n{top_level}\n[broker]\nurls = {url}\n{broker_extra}\n{tls}\n[security]\n{security}{extra}",
            collective = self.collective,
            url = toml_urls(&wire.client_url),
            broker_extra = wire.broker_extra(),
            tls = wire.tls_table(),
        );
        let path = self.dir.path().join(format!("client-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, config).expect("write client config");
        path
    }

    /// Runs `baton` with this fleet's client configuration.
    pub fn baton(&self, args: &[&str]) -> BatonOutput {
        run_baton(&self.client_config(""), args, None)
    }

    /// Runs `baton` as a client connected through `wire`.
    pub fn baton_on(&self, wire: &Wire, args: &[&str]) -> BatonOutput {
        run_baton(&self.client_config_on(wire, ""), args, None)
    }

    /// Runs `baton` with stdin.
    pub fn baton_with_stdin(&self, args: &[&str], stdin: &str) -> BatonOutput {
        run_baton(&self.client_config(""), args, Some(stdin))
    }

    /// Calls `rpcutil daemon_stats` on one node and returns its counters.
    pub fn daemon_stats(&self, identity: &str) -> serde_json::Map<String, Value> {
        let output = self.baton(&["rpc", "rpcutil", "daemon_stats", "-I", identity, "--json"]);
        assert_eq!(output.code, 0, "daemon_stats on {identity}: {output:?}");
        let document = output.json();
        document["replies"][0]["data"].as_object().expect("daemon_stats data").clone()
    }

    pub fn kill(&mut self, identity: &str) {
        let node = self.node_mut(identity);
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

/// What one `baton` run printed and how it exited.
#[derive(Debug)]
pub struct BatonOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl BatonOutput {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not one JSON document ({error}): {self:?}"))
    }

    /// Sorted identities from a `--json` document's list field.
    pub fn nodes(&self, field: &str) -> Vec<String> {
        let document = self.json();
        let mut nodes: Vec<String> = document[field]
            .as_array()
            .unwrap_or_else(|| panic!("no {field} list in {self:?}"))
            .iter()
            .map(|item| match item {
                Value::String(name) => name.clone(),
                other => other["node"].as_str().expect("node name").to_string(),
            })
            .collect();
        nodes.sort();
        nodes
    }
}

pub fn run_baton(config: &Path, args: &[&str], stdin: Option<&str>) -> BatonOutput {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
    command.arg("--config").arg(config).args(args).env_remove("BATON_LOG");
    // Definitions fetched from nodes are cached per fleet, never in the user's own cache.
    if let Some(dir) = config.parent() {
        command.env("XDG_CACHE_HOME", dir.join("xdg-cache"));
    }
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn baton");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    let Output { status, stdout, stderr } = child.wait_with_output().expect("baton output");
    BatonOutput {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A bare AMQP connection with the client's credentials, for publishing bytes straight into a
/// node's queue, as an attacker on the broker or a broken client would.
pub struct RawClient {
    runtime: tokio::runtime::Runtime,
    channel: lapin::Channel,
    _connection: lapin::Connection,
    /// `None` until the reply queue is declared.
    consumer: Option<lapin::Consumer>,
    pub reply_queue: String,
}

impl RawClient {
    pub fn connect(fleet: &Fleet) -> RawClient {
        let mut raw = RawClient::connect_without_reply_queue(fleet);
        raw.declare_reply_queue();
        raw
    }

    /// Connected, with the name of its reply queue chosen but the queue not declared yet (as a
    /// federated reply queue's twin is not, for a moment): call `declare_reply_queue`.
    pub fn connect_without_reply_queue(fleet: &Fleet) -> RawClient {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let url = Wire::amqp().client_url;
        let reply_queue = format!("{}.reply.raw{}", fleet.collective, uuid::Uuid::new_v4().simple());
        let (connection, channel) = runtime.block_on(async {
            let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                .await
                .expect("raw client connection");
            let channel = connection.create_channel().await.expect("channel");
            (connection, channel)
        });
        RawClient { runtime, channel, _connection: connection, consumer: None, reply_queue }
    }

    /// Declares the exclusive reply queue and consumes it.
    pub fn declare_reply_queue(&mut self) {
        let (channel, reply_queue) = (&self.channel, &self.reply_queue);
        let consumer = self.runtime.block_on(async {
            channel
                .queue_declare(
                    reply_queue.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .expect("declare reply queue");
            channel
                .basic_consume(
                    reply_queue.as_str().into(),
                    "raw".into(),
                    lapin::options::BasicConsumeOptions { no_ack: true, ..Default::default() },
                    lapin::types::FieldTable::default(),
                )
                .await
                .expect("consume reply queue")
        });
        self.consumer = Some(consumer);
    }

    /// Publishes bytes into a node's own queue through the default exchange.
    pub fn publish_to_node(&self, fleet: &Fleet, identity: &str, body: &[u8]) {
        let routing_key = format!("{}.node.{identity}", fleet.collective);
        self.runtime.block_on(async {
            self.channel
                .basic_publish(
                    "".into(),
                    routing_key.as_str().into(),
                    lapin::options::BasicPublishOptions::default(),
                    body,
                    lapin::BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("publish confirm");
        });
    }

    /// The next message on the reply queue, or `None` after `wait`.
    pub fn next_reply(&mut self, wait: Duration) -> Option<Vec<u8>> {
        use futures_util::StreamExt;
        let consumer = self.consumer.as_mut().expect("declare_reply_queue first");
        self.runtime.block_on(async {
            match tokio::time::timeout(wait, consumer.next()).await {
                Ok(Some(Ok(delivery))) => Some(delivery.data),
                _ => None,
            }
        })
    }
}

/// A TCP proxy to the broker that the test can take down: [`SeveringProxy::sever`] closes every
/// connection through it and refuses new ones, as an unreachable broker would, until
/// [`SeveringProxy::restore`].
pub struct SeveringProxy {
    pub port: u16,
    up: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
}

impl SeveringProxy {
    pub fn start(upstream: std::net::SocketAddr) -> SeveringProxy {
        let (runtime, listener, port) = loopback_listener();
        let (up, watching) = tokio::sync::watch::channel(true);
        runtime.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*watching.borrow() {
                    continue;
                }
                let mut down = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        SeveringProxy { port, up, _runtime: runtime }
    }

    pub fn sever(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// A proxy to the private RabbitMQ's AMQP port.
    pub fn to_rabbitmq() -> SeveringProxy {
        let port: u16 = broker().var("BATON_RABBITMQ_AMQP_PORT").parse().expect("port number");
        SeveringProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// `wire` with its node URLs going through this proxy to the private RabbitMQ's AMQP port
    /// (the client's still go straight to the broker).
    pub fn nodes_of(&self, wire: &Wire) -> Wire {
        let port = broker().var("BATON_RABBITMQ_AMQP_PORT");
        let mut proxied = wire.clone();
        proxied.node_url = wire.node_url.replace(&format!(":{port}"), &format!(":{}", self.port));
        proxied
    }
}
