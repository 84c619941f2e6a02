//! The web console in a real browser: real `batond` nodes, a real `baton console` process, and
//! Debian's headless Chromium driven by Playwright (`integration/console/e2e.mjs`).
//!
//! The browser logs in, sees the registered nodes, filters them, runs an action from its form
//! and watches the per-node results arrive, clones a user from one node onto two others (then
//! this test finds it there through the CLI and in the nodes' files), and disables Puppet on
//! one node and sees its status change (confirmed through the CLI too). A stopped node is then
//! listed as not responding; after a restart the console still knows every node and its job
//! history, and marks the stopped node quiet.
//!
//! Users, groups and hosts live under per-node roots (`agents.resource_root`), and Puppet's
//! directories in the test's temporary tree, so nothing on the machine is touched.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in `integration/console` (both done by `bin/test`).
//! Without them the browser tests fail, naming what to install: a skipped browser test would
//! pass without running.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use baton::broker::{Broker, BrokerSettings, ConnectMode, StompDialect, Transport};
use baton::security::{Psk, Security};

use crate::ed25519::{keypair, security_table};
use crate::harness::{BatonOutput, Fleet, NodeSpec, Wire, block_on, repo_root};
use crate::rollout::nodes_that_saw;
use crate::rollout_ci::{HealthFleet, greet_rollout, names};

const CHROMIUM: &str = "/usr/bin/chromium";
const PASSWORD: &str = "correct horse battery staple";

const BASE_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
const BASE_GROUP: &str = "root:x:0:\ndaemon:x:1:\n";
const BASE_HOSTS: &str = "127.0.0.1\tlocalhost\n";

/// Where the e2e script and its `node_modules` are; panics naming what is missing.
fn browser_setup() -> PathBuf {
    let dir = repo_root().join("integration/console");
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        missing.push(format!("playwright-core (cd {} && npm ci)", dir.display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node (apt-get install nodejs)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the console's browser test needs: {} (bin/test installs them)",
        missing.join(", ")
    );
    dir
}

fn prepare_root(root: &Path, passwd: &str, group: &str) {
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::write(root.join("etc/passwd"), passwd).expect("passwd");
    std::fs::write(root.join("etc/group"), group).expect("group");
    std::fs::write(root.join("etc/hosts"), BASE_HOSTS).expect("hosts");
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").expect("shadow");
}

/// The agents' settings of one node: its own resource root and Puppet directories.
fn node_config(dir: &Path, identity: &str) -> String {
    let puppet = dir.join("puppet").join(identity);
    let args: Vec<String> = ["confdir", "vardir", "codedir", "logdir", "rundir", "publicdir"]
        .iter()
        .flat_map(|setting| [format!("--{setting}"), puppet.join(setting).display().to_string()])
        .collect();
    format!(
        "[registration]\ninterval_secs = 2\n\n[agents]\nresource_root = {root:?}\n\n[agents.puppet]\nmanifest = {manifest:?}\nextra_args = {args:?}\n",
        root = dir.join("roots").join(identity).display().to_string(),
        manifest = dir.join("site.pp").display().to_string(),
    )
}

/// A running `baton console`, stopped when dropped.
pub(crate) struct ConsoleProcess {
    child: Child,
    pub(crate) url: String,
    log: PathBuf,
}

impl ConsoleProcess {
    pub(crate) fn start(config: &Path, dir: &Path, extra: &[&str]) -> ConsoleProcess {
        let log = dir.join(format!("console-{}.log", uuid::Uuid::new_v4().simple()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_baton"));
        command
            .arg("--config")
            .arg(config)
            .args(["console", "--listen", "127.0.0.1:0", "--database"])
            .arg(dir.join("console.sqlite"))
            .args(extra)
            .env("BATON_LOG", "info,lapin=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("console log"));
        let mut child = command.spawn().expect("spawn baton console");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                let url = rest.split_whitespace().next().expect("url").trim_end_matches('/').to_owned();
                return ConsoleProcess { child, url, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("baton console exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "baton console did not start listening:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one phase of the browser script against the console; panics with its output on failure.
fn browser(script_dir: &Path, console: &ConsoleProcess, phase: &str, user: &str, expectations: &Value) {
    let mut command = Command::new("node");
    command
        .arg(script_dir.join("e2e.mjs"))
        .arg(phase)
        .env("BATON_CONSOLE_URL", &console.url)
        .env("BATON_CONSOLE_USER", user)
        .env("BATON_CONSOLE_PASSWORD", PASSWORD)
        .env("BATON_E2E_EXPECT", expectations.to_string())
        .env("BATON_CHROMIUM", CHROMIUM)
        .current_dir(script_dir);
    if let Ok(screenshots) = std::env::var("BATON_SCREENSHOTS") {
        // Relative to the repository, whatever directory the test runs in.
        command.env("BATON_SCREENSHOTS", repo_root().join(screenshots));
    }
    let output = command.output().expect("run node e2e.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser phase {phase} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- console log ---\n{}",
        output.status,
        console.log()
    );
    eprintln!("browser phase {phase}:\n{stdout}");
}

/// Adds a console user with [`PASSWORD`], as an operator would, through `baton console --add-user`.
fn add_user(config: &Path, users: &Path, name: &str) {
    let added = crate::harness::run_baton(
        config,
        &["console", "--users", users.to_str().expect("utf-8 path"), "--add-user", name],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(added.code, 0, "{added:?}");
}

fn reply_of(output: &BatonOutput, node: &str) -> Value {
    let document = output.json();
    document["replies"]
        .as_array()
        .and_then(|replies| replies.iter().find(|reply| reply["node"] == node).cloned())
        .unwrap_or_else(|| panic!("no reply from {node}: {output:?}"))
}

#[test]
fn the_console_manages_real_nodes_in_a_browser() {
    let script_dir = browser_setup();
    assert!(
        Command::new("puppet").arg("--version").output().is_ok_and(|output| output.status.success()),
        "puppet is not installed: apt-get install puppet (bin/test installs it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = dir.path().join("roots");
    prepare_root(
        &roots.join("web01"),
        &format!("{BASE_PASSWD}deploy:x:1500:1500:Deploy user:/srv/deploy:/bin/bash\n"),
        &format!("{BASE_GROUP}deploy:x:1500:\n"),
    );
    prepare_root(&roots.join("web02"), BASE_PASSWD, BASE_GROUP);
    // root's shell differs on db01, for the resource view to show where nodes differ.
    prepare_root(&roots.join("db01"), &BASE_PASSWD.replace("/root:/bin/bash", "/root:/bin/sh"), BASE_GROUP);
    std::fs::write(dir.path().join("site.pp"), "notify { 'baton console test': }\n").expect("manifest");
    let spec = |identity: &str, role: &str, classes: &[&str]| {
        let config = node_config(dir.path(), identity);
        NodeSpec::new(identity, json!({"role": role, "datacenter": "ams1"}), classes).with_config(&config)
    };
    let specs = vec![
        spec("web01", "web", &["nginx", "role::web"]),
        spec("web02", "web", &["nginx", "role::web"]),
        spec("db01", "db", &["postgresql", "role::db"]),
    ];
    let dir_path = dir.path().to_owned();
    let mut fleet = Fleet::start_in(dir, None, specs);
    let config = fleet.client_config("");

    let users = dir_path.join("console-users");
    add_user(&config, &users, "alice");
    let users_text = std::fs::read_to_string(&users).expect("users file");
    assert!(users_text.starts_with("alice:pbkdf2-sha256$"), "{users_text}");
    assert!(!users_text.contains(PASSWORD), "the password is stored hashed only");

    let users_arg = users.to_str().expect("utf-8 path");
    let console = ConsoleProcess::start(
        &config,
        &dir_path,
        &["--users", users_arg, "--registration-interval", "30", "--origin", "https://console.example"],
    );
    browser(
        &script_dir,
        &console,
        "main",
        "alice",
        &json!({
            "origin": "https://console.example",
            "nodes": ["db01", "web01", "web02"],
            "web": ["web01", "web02"],
            "clone": {"type": "user", "title": "deploy", "source": "web01", "targets": ["db01", "web02"]},
            "differs": "root",
            "disable": {"node": "web02", "message": "kernel upgrade in progress"},
            "runonce": "web01",
        }),
    );

    // The clone is on both targets, as the CLI sees it, and in their files.
    let found = fleet.baton(&[
        "rpc",
        "resource",
        "find",
        "type=user",
        "title=deploy",
        "-I",
        "web02",
        "-I",
        "db01",
        "--json",
    ]);
    assert_eq!(found.code, 0, "{found:?}");
    for node in ["web02", "db01"] {
        let reply = reply_of(&found, node);
        assert_eq!(reply["data"]["exists"], true, "{node}: {reply}");
        assert_eq!(
            reply["data"]["properties"],
            json!({"uid": 1500, "gid": 1500, "comment": "Deploy user", "home": "/srv/deploy", "shell": "/bin/bash"}),
            "{node}"
        );
        let passwd = std::fs::read_to_string(roots.join(node).join("etc/passwd")).expect("passwd");
        assert!(passwd.contains("deploy:x:1500:1500:Deploy user:/srv/deploy:/bin/bash"), "{node}: {passwd}");
    }

    // Puppet is disabled on web02 only, with the message typed in the browser.
    let status =
        fleet.baton(&["rpc", "puppet", "status", "-I", "web02", "-I", "web01", "-t", "120", "--json"]);
    assert_eq!(status.code, 0, "{status:?}");
    let web02 = reply_of(&status, "web02");
    assert_eq!(web02["data"]["status"], "disabled", "{web02}");
    assert_eq!(web02["data"]["disable_message"], "kernel upgrade in progress", "{web02}");
    assert_eq!(reply_of(&status, "web01")["data"]["enabled"], true, "{status:?}");

    // Requests named the logged-in user as caller, as the nodes' audit logs show.
    let audit = fleet.node("web02").audit_lines();
    assert!(
        audit.iter().any(|line| line["caller"] == "user=alice" && line["agent"] == "puppet"),
        "no puppet request by user=alice in web02's audit log: {audit:?}"
    );

    // A node that stops answering is listed as not responding.
    fleet.kill("db01");
    browser(&script_dir, &console, "silent", "alice", &json!({"silent": "db01", "live": ["web01", "web02"]}));

    // After a restart the console still knows every node and its history; the stopped node
    // goes quiet (the interval is now 1 s, so three seconds without a registration).
    drop(console);
    let console =
        ConsoleProcess::start(&config, &dir_path, &["--users", users_arg, "--registration-interval", "1"]);
    browser(
        &script_dir,
        &console,
        "restart",
        "alice",
        &json!({"nodes": ["db01", "web01", "web02"], "quiet": "db01", "history": ["puppet#disable", "resource#create", "rpcutil#get_fact"]}),
    );
}

#[test]
fn with_ed25519_the_console_signs_as_the_logged_in_user_with_their_own_key() {
    let script_dir = browser_setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    // The nodes trust two callers: alice, and the console's own key (for the harness's pings).
    let alice = keypair(&root, "user=alice", "user=alice", Some("callers"));
    let console_key = keypair(&root, "console", "console", Some("callers"));
    let user_keys = root.join("user-keys");
    std::fs::create_dir_all(&user_keys).expect("user keys dir");
    std::fs::copy(&alice, user_keys.join("user=alice.key")).expect("alice's key for the console");
    let specs = ["n1", "n2"]
        .iter()
        .map(|node| {
            let key = keypair(&root, node, node, Some("nodes"));
            let mut spec = NodeSpec::new(node, json!({"role": "app"}), &[])
                .with_config("[registration]\ninterval_secs = 2\n");
            spec.security = Some(security_table(&key, &root.join("callers")));
            spec
        })
        .collect();
    let fleet = Fleet::start_in(dir, Some(security_table(&console_key, &root.join("nodes"))), specs);
    let config = fleet.client_config("");
    let users = root.join("console-users");
    add_user(&config, &users, "alice");
    add_user(&config, &users, "bob");
    let console = ConsoleProcess::start(
        &config,
        &root,
        &["--users", users.to_str().expect("utf-8"), "--user-keys", user_keys.to_str().expect("utf-8")],
    );
    browser(
        &script_dir,
        &console,
        "signed",
        "alice",
        &json!({"nodes": ["n1", "n2"], "caller": "user=alice"}),
    );
    for node in ["n1", "n2"] {
        let audit = fleet.node(node).audit_lines();
        assert!(
            audit.iter().any(|line| line["caller"] == "user=alice" && line["action"] == "ping"),
            "{node} has no ping by user=alice, proven by her key: {audit:?}"
        );
    }
    // bob may log in, but the console holds no key of his: it refuses rather than sign as
    // someone else.
    browser(&script_dir, &console, "unsigned", "bob", &json!({"error": "cannot sign as user=bob"}));
}

/// How many emulated nodes the fleet-size test lists.
const FLEET: usize = 1000;

/// A child process stopped when dropped (a failed test must not leave it running).
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A console started after the nodes lists them at once: these 1,000 emulated nodes never
/// register (`--no-registration`), so the console only knows them because it asked the fleet
/// for its inventories at start. The browser pages, sorts and searches the list, one compact
/// row per node.
#[test]
fn a_console_started_after_the_nodes_lists_a_thousand_of_them_at_once() {
    let script_dir = browser_setup();
    let fleet = Fleet::start(Vec::new());
    let config_path = crate::emulator::emulator_config(&fleet);
    let log = fleet.dir.path().join("emulator.log");
    let mut emulator = Stopped(
        Command::new(env!("CARGO_BIN_EXE_baton-emulator"))
            .arg("--config")
            .arg(&config_path)
            .args(["--count", &FLEET.to_string(), "--seed", "7", "--no-registration"])
            .env_remove("BATON_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn baton-emulator"),
    );
    let mut stdout = std::io::BufReader::new(emulator.0.stdout.take().expect("emulator stdout"));
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut ready).expect("the emulator's first line");
    if !ready.starts_with(&format!("ready nodes={FLEET}")) {
        panic!("the emulator is not ready: {ready:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    let client = fleet.client_config("");
    let console = ConsoleProcess::start(&client, fleet.dir.path(), &[]);
    browser(
        &script_dir,
        &console,
        "fleet",
        "",
        &json!({"count": FLEET, "first": "emu-00001", "last": "emu-01000"}),
    );
    // The console waits out its whole reply timeout before it says how many answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = console.log();
    while !log.contains("node list filled") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        log = console.log();
    }
    let filled = log.lines().find(|line| line.contains("node list filled from the fleet's inventories"));
    assert!(
        filled.is_some_and(|line| line.contains(&FLEET.to_string())),
        "the console says how many nodes it took:\n{log}"
    );
}

/// The console follows registrations as the least-privileged client user, on every transport:
/// its queue is named as the broker lets a client declare one. Regression: the queue was first
/// named `<collective>.console.<uuid>`, which RabbitMQ refuses to `baton-client`.
fn the_client_user_may_follow_registrations(wire: Wire) {
    let fleet = Fleet::start_on(
        wire.clone(),
        vec![
            NodeSpec::new("reg01", json!({"role": "app"}), &["base"])
                .with_config("[registration]\ninterval_secs = 1\n"),
        ],
    );
    let (transport, dialect) = match wire.dialect {
        None => (Transport::Amqp, StompDialect::RabbitMq),
        Some("activemq") => (Transport::Stomp, StompDialect::ActiveMq),
        Some(_) => (Transport::Stomp, StompDialect::RabbitMq),
    };
    let settings = BrokerSettings {
        transport,
        urls: vec![wire.client_url.clone()],
        dialect,
        tls: None,
        tls_server_name: None,
        connection_name: "baton console registration test".to_string(),
        connect_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_secs(1),
        max_message_bytes: 1 << 20,
        node_queue_expiry: Duration::from_secs(60),
        claimed_identity: None,
    };
    let psk = Psk::from_file(&fleet.dir.path().join("psk")).expect("the fleet's key");
    let security = Security::Psk(psk);
    block_on(async {
        let broker = Broker::connect(settings, ConnectMode::FailFast).await.expect("client connects");
        let mut registrations =
            broker.subscribe_registrations(&fleet.collective).await.expect("the client user may subscribe");
        let incoming = tokio::time::timeout(Duration::from_secs(30), registrations.messages.recv())
            .await
            .expect("a registration within 30 s (the node registers every second)")
            .expect("subscription open");
        let registration =
            security.open_registration(&incoming.body, 1 << 20).expect("verifies").into_inner();
        assert_eq!(registration.identity, "reg01");
        assert_eq!(registration.classes, ["base"]);
        assert_eq!(registration.facts["role"], "app");
        assert!(registration.agents.contains(&"rpcutil".to_owned()), "{registration:?}");
        broker.close().await;
    });
}

crate::on_every_transport!(the_client_user_may_follow_registrations);

#[test]
fn the_console_refuses_to_listen_beyond_loopback_without_a_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("client.toml");
    // The broker is never contacted: the refusal comes first.
    let psk = dir.path().join("psk");
    std::fs::write(&psk, uuid::Uuid::new_v4().simple().to_string()).expect("psk");
    std::fs::write(
        &config,
        format!(
            "identity = \"tester\"\ncaller = \"user=tester\"\n[broker]\nurls = [\"amqp://127.0.0.1:1/baton\"]\n[security]\nscheme = \"psk\"\npsk_file = {psk:?}\n"
        ),
    )
    .expect("config");
    let output = crate::harness::run_baton(&config, &["console", "--listen", "0.0.0.0:0"], None);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("refusing to listen on 0.0.0.0:0 without a login"), "{output:?}");

    let users = dir.path().join("users");
    let mut file = std::fs::File::create(&users).expect("users");
    writeln!(file, "# nobody yet").expect("write");
    let output = crate::harness::run_baton(
        &config,
        &["console", "--listen", "0.0.0.0:0", "--users", users.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("has no users"), "{output:?}");

    // Everywhere, the console must know the names it is reached by (DNS rebinding).
    add_user(&config, &users, "alice");
    let output = crate::harness::run_baton(
        &config,
        &["console", "--listen", "0.0.0.0:0", "--users", users.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("refusing to listen on 0.0.0.0:0 without --origin"), "{output:?}");
    // A public origin needs a login even when the console itself listens on loopback.
    let output =
        crate::harness::run_baton(&config, &["console", "--origin", "https://console.example"], None);
    assert_eq!(output.code, 2, "{output:?}");
    assert!(output.stderr.contains("--origin https://console.example is not on this machine"), "{output:?}");
}

/// The console's `/api/nodes` document (no login: the console listens on loopback only).
fn console_nodes(console: &ConsoleProcess) -> Value {
    let address: std::net::SocketAddr =
        console.url.trim_start_matches("http://").parse().expect("the console's address");
    let (status, body) = crate::metrics::http_get(address, "/api/nodes");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/api/nodes is JSON")
}

/// Polls `/api/nodes` until `done` says so, or fails after 60 s with the console's log.
fn wait_for_nodes(console: &ConsoleProcess, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let nodes = console_nodes(console);
        if done(&nodes) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "{what}: {nodes}\n--- console log ---\n{}", console.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn last_seen(nodes: &Value, identity: &str) -> Option<u64> {
    nodes["nodes"].as_array()?.iter().find(|node| node["identity"] == identity)?["last_seen_ms"].as_u64()
}

fn hang_up(pid: u32) {
    let status = Command::new("kill").args(["-HUP", &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
}

/// Regression, review of issue 13 (finding 14): `batond` reloads its keys on SIGHUP, but a
/// running console read the node keys it verifies registrations and replies with only at
/// start (and SIGHUP killed it), so a node's key rotation needed a console restart. Now SIGHUP
/// reloads the console's keys as it does batond's: a node signing with a new key is refused
/// until the console trusts that key, and listed again after `kill -HUP`, same process.
#[test]
fn sighup_makes_a_running_console_trust_a_nodes_rotated_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let console_key = keypair(&root, "console", "console", Some("callers"));
    let node_key = keypair(&root, "n1", "n1", Some("nodes"));
    let mut spec =
        NodeSpec::new("n1", json!({"role": "app"}), &[]).with_config("[registration]\ninterval_secs = 1\n");
    spec.security = Some(security_table(&node_key, &root.join("callers")));
    let fleet = Fleet::start_in(dir, Some(security_table(&console_key, &root.join("nodes"))), vec![spec]);
    let config = fleet.client_config("");
    let console = ConsoleProcess::start(&config, &root, &["--registration-interval", "1"]);
    wait_for_nodes(&console, "n1 is never listed", |nodes| last_seen(nodes, "n1").is_some());

    // n1 rotates its key (batond reloads it on SIGHUP); the console does not trust it yet.
    let (private, public) = baton::security::ed25519::generate("n1");
    std::fs::write(&node_key, private).expect("n1's new private key");
    let node = fleet.node("n1");
    hang_up(node.child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.log().contains("keys reloaded") {
        assert!(Instant::now() < deadline, "n1 did not reload its key:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused =
        wait_for_nodes(&console, "n1's registrations under its new key are never refused", |nodes| {
            nodes["rejected_registrations"].as_u64().is_some_and(|rejected| rejected >= 2)
        });
    let seen_before = last_seen(&refused, "n1").expect("n1 is still listed");

    // The console is told of the new key (and forgets the old one) and reloads.
    std::fs::write(root.join("nodes/n1+2027.pub"), public).expect("trust n1's new key");
    std::fs::remove_file(root.join("nodes/n1.pub")).expect("retire n1's old key");
    hang_up(console.child.id());
    wait_for_nodes(&console, "n1 is not heard from under its new key after the console's SIGHUP", |nodes| {
        last_seen(nodes, "n1").is_some_and(|seen| seen > seen_before)
    });
    let log = console.log();
    let reloaded = log.lines().find(|line| line.contains("keys reloaded")).unwrap_or_default();
    assert!(reloaded.contains("skipped=0"), "the console says it reloaded its keys:\n{log}");
}

/// The rollouts view: a rollout that stopped before the console started is read back from
/// the broker's events, and its resume (run by the browser script, as another CI runner with
/// its own state directory) is shown live until it finishes.
#[test]
fn the_console_shows_rollouts_live_from_the_events() {
    let script_dir = browser_setup();
    let ci = HealthFleet::start();
    ci.break_node("r05", "disk full");
    let stopped =
        ci.baton(&greet_rollout("console", &["--batch", "2", "--batch-sleep", "1", "--events", "--json"]));
    assert_eq!(stopped.code, 1, "{stopped:?}");
    let rollout_id = stopped.json()["rollout_id"].as_str().expect("rollout id").to_owned();
    ci.fix_node("r05");
    let console = ConsoleProcess::start(&ci.config, ci.fleet.dir.path(), &[]);
    let other_runner = tempfile::tempdir().expect("state dir");
    let resume = json!([
        env!("CARGO_BIN_EXE_baton"),
        "--config",
        ci.config.display().to_string(),
        "rollout",
        "resume",
        rollout_id,
        "--no-progress",
    ]);
    browser(
        &script_dir,
        &console,
        "rollouts",
        "",
        &json!({"rollout_id": rollout_id, "resume": resume, "state": other_runner.path()}),
    );
    assert_eq!(nodes_that_saw(&ci.fleet, "hello", "greet"), names(1..=10));
}
