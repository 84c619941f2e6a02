//! Deploying to a fleet: what systemd, a log file and the Puppet module (deploy/puppet/baton)
//! see of a real `batond`. The log has no escape codes when it is a file; systemd hears
//! `READY=1` once the node answers and `RELOADING=1`/`READY=1` around a SIGHUP; `puppet apply`
//! of the module writes a node and a client configuration from which a real batond starts and
//! answers, an agent added with `baton::agent` becomes callable with typed inputs and
//! aggregates, and a caller's key rotated through the module is accepted, then the old one
//! refused, with SIGHUPs and no restart.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{
    BatonOutput, Fleet, NodeSpec, Wire, declare_collective, repo_root, run_baton, shared_broker,
    unique_collective,
};
use crate::metrics::{free_local_address, http_get};

#[test]
fn a_log_written_to_a_file_has_no_escape_codes() {
    let fleet = Fleet::start(vec![NodeSpec::new("plainlog01", json!({}), &[])]);
    let ping = fleet.baton(&["ping", "-I", "plainlog01", "--json"]);
    assert_eq!(ping.code, 0, "{ping:?}");
    let log = fleet.node("plainlog01").log();
    assert!(log.contains("ready"), "the node logged nothing useful:\n{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file:\n{log:?}");
}

/// Reads one datagram from the notify socket, or fails after 60 s with what the node logged.
fn next_notification(socket: &UnixDatagram, fleet: &Fleet, identity: &str) -> String {
    let mut buffer = [0u8; 4096];
    match socket.recv(&mut buffer) {
        Ok(length) => String::from_utf8_lossy(&buffer[..length]).into_owned(),
        Err(error) => {
            panic!("no notification from {identity} ({error}); its log:\n{}", fleet.node(identity).log())
        }
    }
}

#[test]
fn systemd_hears_ready_once_subscribed_and_reloading_around_a_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let spec =
        NodeSpec::new("notify01", json!({}), &[]).with_env("NOTIFY_SOCKET", &path.display().to_string());
    let fleet = Fleet::start(vec![spec]);

    let ready = next_notification(&socket, &fleet, "notify01");
    assert!(ready.lines().any(|line| line == "READY=1"), "first notification: {ready:?}");
    // Ready means subscribed: a directed request reaches the node at once.
    let ping = fleet.baton(&["ping", "-I", "notify01", "--json"]);
    assert_eq!(ping.code, 0, "{ping:?}");

    let pid = fleet.node("notify01").child.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().expect("kill -HUP");
    assert!(hup.success());
    let reloading = next_notification(&socket, &fleet, "notify01");
    assert!(reloading.lines().any(|line| line == "RELOADING=1"), "after SIGHUP: {reloading:?}");
    let ready_again = next_notification(&socket, &fleet, "notify01");
    assert!(ready_again.lines().any(|line| line == "READY=1"), "after the reload: {ready_again:?}");

    let pid_now = fleet.node("notify01").child.id().to_string();
    assert_eq!(pid, pid_now);
    let ping = fleet.baton(&["ping", "-I", "notify01", "--json"]);
    assert_eq!(ping.code, 0, "{ping:?}");
}

/// One `baton keygen` pair: the private key file's text and the public key's hex.
struct KeyPair {
    private: String,
    public: String,
}

fn keypair(name: &str) -> KeyPair {
    let (private, public) = baton::security::ed25519::generate(name);
    let public =
        public.lines().find_map(|line| line.strip_prefix("public = ")).expect("public key line").to_string();
    KeyPair { private, public }
}

/// A puppet string literal (single quotes) of `text`.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A `batond` started from the configuration Puppet wrote; killed when dropped.
struct PuppetNode {
    child: Child,
    log: PathBuf,
}

impl PuppetNode {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log says the keys were reloaded `times` times in all.
    fn wait_for_key_reloads(&self, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches("keys reloaded").count() < times {
            assert!(
                Instant::now() < deadline,
                "batond did not reload its keys {times} times:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PuppetNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's machine: a root Puppet writes into, and the inputs of each `puppet apply`.
struct Site {
    dir: tempfile::TempDir,
    collective: String,
    wire: Wire,
    node_key: KeyPair,
    alice_old: KeyPair,
    alice_new: KeyPair,
    /// Where baton::node's `metrics_listen` puts the node's `/metrics` and `/healthz`.
    metrics: std::net::SocketAddr,
}

/// What changes between the applies.
struct Apply<'a> {
    caller_keys: &'a [(&'a str, &'a KeyPair)],
    client_key: &'a KeyPair,
    with_agent: bool,
    reload: Option<u32>,
}

impl Site {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn manifest(&self, apply: &Apply) -> String {
        let trusted = |keys: &[(&str, &KeyPair, &str)]| {
            let entries: Vec<String> = keys
                .iter()
                .map(|(file, key, name)| {
                    format!(
                        "{} => {{ name => {}, public => {} }}",
                        quoted(file),
                        quoted(name),
                        quoted(&key.public)
                    )
                })
                .collect();
            format!("{{ {} }}", entries.join(", "))
        };
        let callers: Vec<(&str, &KeyPair, &str)> =
            apply.caller_keys.iter().map(|(file, key)| (*file, *key, "user=alice")).collect();
        let reload = match apply.reload {
            Some(pid) => format!("reload_command => 'kill -HUP {pid}',"),
            None => String::new(),
        };
        let agent = if apply.with_agent {
            let hello = repo_root().join("deploy/agents/hello");
            format!(
                "baton::agent {{ 'hello':\n  definition => file({}),\n  source => {},\n}}\n",
                quoted(&hello.join("definition.json").display().to_string()),
                quoted(&hello.join("agent").display().to_string()),
            )
        } else {
            String::new()
        };
        format!(
            "class {{ 'baton':\n  root => {root},\n  manage_packages => false,\n  manage_service => false,\n  {reload}\n}}\n\
             class {{ 'baton::node':\n  identity => 'puppet01',\n  collectives => [{collective}],\n  broker_urls => [{node_url}],\n  \
             security_scheme => 'ed25519',\n  private_key => Sensitive({node_key}),\n  trusted_keys => {callers},\n  \
             audit_file => '/var/log/baton/audit.log',\n  metrics_listen => {metrics},\n}}\n\
             class {{ 'baton::client':\n  collective => {collective},\n  broker_urls => [{client_url}],\n  \
             security_scheme => 'ed25519',\n  caller => 'user=alice',\n  private_key => Sensitive({client_key}),\n  \
             trusted_node_keys => {nodes},\n  timeout_secs => 10,\n}}\n{agent}",
            root = quoted(&self.root().display().to_string()),
            collective = quoted(&self.collective),
            node_url = quoted(&self.wire.node_url),
            client_url = quoted(&self.wire.client_url),
            node_key = quoted(&self.node_key.private),
            metrics = quoted(&self.metrics.to_string()),
            callers = trusted(&callers),
            client_key = quoted(&apply.client_key.private),
            nodes = trusted(&[("puppet01", &self.node_key, "puppet01")]),
        )
    }

    /// Runs `puppet apply` of the module with its own directories under the test's.
    fn apply(&self, apply: &Apply) {
        let manifest = self.dir.path().join("site.pp");
        std::fs::write(&manifest, self.manifest(apply)).expect("write manifest");
        let puppet = self.dir.path().join("puppet");
        let mut command = Command::new("puppet");
        // --write-catalog-summary: puppet apply writes the classes file only when asked.
        command.arg("apply").arg("--detailed-exitcodes").arg("--color=false").arg("--write-catalog-summary");
        for setting in ["confdir", "vardir", "codedir", "logdir", "rundir", "publicdir"] {
            command.arg(format!("--{setting}")).arg(puppet.join(setting));
        }
        command.arg("--modulepath").arg(repo_root().join("deploy/puppet")).arg(&manifest);
        let output = command.output().expect("run puppet apply (apt-get install puppet)");
        // --detailed-exitcodes: 0 nothing changed, 2 changes made; 4 and 6 mean failures.
        let code = output.status.code();
        assert!(
            matches!(code, Some(0 | 2)),
            "puppet apply failed ({code:?}):\n{}\n{}\nmanifest:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.manifest(apply)
        );
    }

    fn config(&self, file: &str) -> PathBuf {
        self.root().join("etc/baton").join(file)
    }

    fn start_node(&self) -> PuppetNode {
        let log = self.dir.path().join("batond.log");
        let child = Command::new(env!("CARGO_BIN_EXE_batond"))
            .arg("--config")
            .arg(self.config("node.toml"))
            .env_remove("BATON_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn batond");
        PuppetNode { child, log }
    }

    fn baton(&self, config: &Path, args: &[&str]) -> BatonOutput {
        run_baton(config, args, None)
    }

    /// Puppet's client configuration without its `definitions_dir`, in a directory (and so a
    /// definitions cache) of its own.
    fn client_without_definitions(&self) -> PathBuf {
        let puppet_config = std::fs::read_to_string(self.config("client.toml")).expect("client.toml");
        let config: String = puppet_config
            .lines()
            .filter(|line| !line.starts_with("definitions_dir"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_ne!(config, puppet_config, "client.toml names no definitions_dir:\n{puppet_config}");
        let dir = self.dir.path().join("bare-client");
        std::fs::create_dir_all(&dir).expect("create bare-client");
        let path = dir.join("client.toml");
        std::fs::write(&path, config).expect("write client config");
        path
    }

    /// A client configuration like Puppet's, signing with another private key (a caller who
    /// has not switched to the new key yet).
    fn client_with_key(&self, key: &KeyPair) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let key_file = self.dir.path().join("old-client.ed25519");
        std::fs::write(&key_file, &key.private).expect("write key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let puppet_config = std::fs::read_to_string(self.config("client.toml")).expect("client.toml");
        let config = puppet_config.replace(
            &format!("key_file = {:?}", self.config("client.ed25519").display().to_string()),
            &format!("key_file = {:?}", key_file.display().to_string()),
        );
        assert_ne!(config, puppet_config, "client.toml names no key_file:\n{puppet_config}");
        let path = self.dir.path().join("old-client.toml");
        std::fs::write(&path, config).expect("write client config");
        path
    }
}

/// Pings until the node answers (it may still be connecting), or fails with its log.
fn wait_until_answering(site: &Site, node: &PuppetNode, client: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ping = site.baton(client, &["ping", "-I", "puppet01", "--json"]);
        if ping.code == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the Puppet-configured node never answered: {ping:?}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn puppet_module_configures_a_node_an_agent_and_rotates_a_callers_key() {
    let _broker = shared_broker();
    let collective = unique_collective();
    declare_collective(&collective);
    let site = Site {
        dir: tempfile::tempdir().expect("tempdir"),
        collective,
        wire: Wire::amqp(),
        node_key: keypair("puppet01"),
        alice_old: keypair("user=alice"),
        alice_new: keypair("user=alice"),
        metrics: free_local_address(),
    };
    let client = site.config("client.toml");

    // 1. The node and the client, trusting alice's current key: batond starts and answers.
    site.apply(&Apply {
        caller_keys: &[("user=alice", &site.alice_old)],
        client_key: &site.alice_old,
        with_agent: false,
        reload: None,
    });
    let node = site.start_node();
    wait_until_answering(&site, &node, &client);
    // metrics_listen reached node.toml: the node serves its health there.
    let (health, body) = http_get(site.metrics, "/healthz");
    assert_eq!(health, 200, "healthz of the node Puppet configured: {body}\n{}", node.log());
    // The facts file holds Puppet's own facts, and the classes are the ones Puppet applied.
    let puppet_version =
        String::from_utf8(Command::new("puppet").arg("--version").output().expect("puppet").stdout)
            .expect("utf-8")
            .trim()
            .to_string();
    let fact = site
        .baton(&client, &["rpc", "rpcutil", "get_fact", "fact=puppetversion", "-I", "puppet01", "--json"]);
    assert_eq!(fact.code, 0, "{fact:?}");
    assert_eq!(fact.json()["replies"][0]["data"]["value"], json!(puppet_version), "{fact:?}");
    let by_class = site.baton(&client, &["ping", "-C", "baton::node", "--json"]);
    assert_eq!(by_class.nodes("replies"), vec!["puppet01".to_string()], "{by_class:?}");
    let other_class = site.baton(&client, &["ping", "-C", "baton::elsewhere", "--json"]);
    assert_eq!(other_class.code, 4, "a class Puppet did not apply matches nothing: {other_class:?}");
    // No hello agent yet.
    let missing = site.baton(&client, &["rpc", "hello", "greet", "name=World", "-I", "puppet01", "--json"]);
    assert_ne!(missing.code, 0, "{missing:?}");

    // 2. baton::agent adds hello on the node and its definition on the client, and the module
    // reloads batond; alice's new key is trusted beside the old one.
    let pid = node.child.id();
    site.apply(&Apply {
        caller_keys: &[("user=alice", &site.alice_old), ("user=alice+2", &site.alice_new)],
        client_key: &site.alice_new,
        with_agent: true,
        reload: Some(pid),
    });
    node.wait_for_key_reloads(1);
    let greet = site
        .baton(&client, &["rpc", "hello", "greet", "name=World", "shout=true", "-I", "puppet01", "--json"]);
    assert_eq!(greet.code, 0, "{greet:?}\n{}", node.log());
    let document = greet.json();
    assert_eq!(document["replies"][0]["data"]["greeting"], "HELLO, WORLD, FROM PUPPET01", "{document}");
    // "shout=true" was converted to a boolean by the definition Puppet put on the client, and
    // the aggregates come from that definition too.
    assert_eq!(document["aggregates"]["length"]["value"], 27, "{document}");
    assert_eq!(document["aggregates"]["greeting"]["counts"]["HELLO, WORLD, FROM PUPPET01"], 1, "{document}");
    let typed =
        site.baton(&client, &["rpc", "hello", "greet", "name=World", "shout=maybe", "-I", "puppet01"]);
    assert_eq!(typed.code, 2, "a non-boolean shout is refused before sending: {typed:?}");
    // A client that Puppet gave no definitions (no definitions_dir): it learns hello's
    // definition from the node, with the same typed inputs and aggregates.
    let bare = site.client_without_definitions();
    let learned =
        site.baton(&bare, &["rpc", "hello", "greet", "name=World", "shout=true", "-I", "puppet01", "--json"]);
    assert_eq!(learned.code, 0, "{learned:?}\n{}", node.log());
    assert_eq!(learned.json()["aggregates"]["length"]["value"], 27, "{learned:?}");
    let learned_typed =
        site.baton(&bare, &["rpc", "hello", "greet", "name=World", "shout=maybe", "-I", "puppet01"]);
    assert_eq!(learned_typed.code, 2, "the fetched definition types shout: {learned_typed:?}");
    let old_client = site.client_with_key(&site.alice_old);
    let old_during_rotation = site.baton(&old_client, &["ping", "-I", "puppet01", "--json"]);
    assert_eq!(old_during_rotation.code, 0, "the old key is still trusted: {old_during_rotation:?}");

    // 3. The old key is removed from the module's parameters: refused after the reload,
    // while the new one still works, from the same process.
    site.apply(&Apply {
        caller_keys: &[("user=alice+2", &site.alice_new)],
        client_key: &site.alice_new,
        with_agent: true,
        reload: Some(pid),
    });
    node.wait_for_key_reloads(2);
    assert!(!site.config("callers/user=alice.pub").exists(), "the removed key file is still there");
    let old = site.baton(&old_client, &["ping", "-I", "puppet01", "--json"]);
    assert_eq!(old.code, 3, "the retired key must get no reply: {old:?}");
    let audit = std::fs::read_to_string(site.root().join("var/log/baton/audit.log")).expect("audit log");
    let refusals: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
        .filter(|record: &serde_json::Value| record["unverified"] == json!(true))
        .collect();
    assert!(!refusals.is_empty(), "the retired key's request is not in the audit log:\n{audit}");
    let new = site.baton(&client, &["ping", "-I", "puppet01", "--json"]);
    assert_eq!(new.code, 0, "{new:?}\n{}", node.log());
    assert_eq!(node.child.id(), pid);
}
