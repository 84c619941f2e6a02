//! Agents and authorization without a broker: policy files (parsing, first match, defaults),
//! the resource agent's parsers, ed25519 keys and signatures, and the pipeline's
//! authorization, caller-proof and validation steps.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use baton::agents::resource::{parse_dpkg_status, parse_group, parse_hosts, parse_passwd};
use baton::agents::{ActionContext, ActionOutcome, Agent, AgentRegistry, Call};
use baton::node::facts::{Classes, Facts, NodeInventory};
use baton::node::pipeline::{NodeSnapshot, Pipeline, PipelineSettings};
use baton::node::policy::{Authorization, Policy};
use baton::node::stats::Stats;
use baton::protocol::{FilterSpec, Reply, Request, StatusCode, new_request_id, now_ms};
use baton::security::{Ed25519, OpenError, Security};
use serde_json::{Value, json};

fn inventory(facts: Value, classes: &[&str]) -> NodeInventory {
    NodeInventory::new(
        "web01",
        Facts::from_map(facts.as_object().cloned().unwrap_or_default()),
        Classes::from_names(classes.iter().copied()),
        Vec::<String>::new(),
    )
}

const POLICY: &str = "\
# service.policy
policy default deny
allow\tuser=alice\t*\t*\t*
allow\tuser=bob user=carol\tstatus restart\trole=web\t*
deny\t*\tstop\t*\tproduction
allow\t*\tstop\t*\t*
allow\tuser=dave\t*\trole=db or env=dev
allow user=erin status * nginx
";

/// `caller` running `action` on a node with `facts` and `classes`: allowed or not, and a
/// fragment of the deciding rule.
fn check_policy(caller: &str, action: &str, facts: Value, classes: &[&str], allowed: bool, rule: &str) {
    let policy =
        Policy::parse(POLICY, Path::new("/etc/baton/policy/service.policy")).expect("the policy parses");
    let mut policies = std::collections::BTreeMap::new();
    policies.insert("service".to_owned(), policy);
    let authorization = Authorization::from_policies(policies, baton::config::UnconfiguredPolicy::Allow);
    let decision = authorization.decide(caller, "service", action, &inventory(facts, classes));
    assert_eq!(decision.allowed, allowed, "{caller} {action}: {}", decision.rule);
    assert!(decision.rule.contains(rule), "{caller} {action}: {:?} lacks {rule:?}", decision.rule);
}

#[test]
fn policies_decide_by_first_matching_rule() {
    check_policy(
        "user=alice",
        "stop",
        json!({}),
        &["production"],
        true,
        "service.policy line 3 (allow user=alice * * *)",
    );
    check_policy("user=bob", "restart", json!({"role": "web"}), &[], true, "line 4");
    check_policy("user=carol", "status", json!({"role": "web"}), &[], true, "line 4");
    check_policy(
        "user=bob",
        "restart",
        json!({"role": "db"}),
        &[],
        false,
        "no rule matched; policy default deny",
    );
    check_policy("user=bob", "start", json!({"role": "web"}), &[], false, "policy default deny");
    check_policy("user=zed", "stop", json!({}), &["production"], false, "line 5 (deny * stop * production)");
    check_policy("user=zed", "stop", json!({}), &["staging"], true, "line 6");
    check_policy("user=dave", "start", json!({"role": "db"}), &[], true, "line 7");
    check_policy("user=dave", "start", json!({"env": "dev"}), &[], true, "line 7");
    check_policy("user=dave", "start", json!({"env": "prod"}), &[], false, "default deny");
    check_policy("user=erin", "status", json!({}), &["nginx"], true, "line 8");
    check_policy("user=erin", "status", json!({}), &[], false, "default deny");
}

#[test]
fn agents_without_a_policy_get_the_unconfigured_setting() {
    let node = inventory(json!({}), &[]);
    let open = Authorization::default();
    assert!(open.decide("user=anyone", "hello", "greet", &node).allowed);
    let closed = Authorization::from_policies(Default::default(), baton::config::UnconfiguredPolicy::Deny);
    let decision = closed.decide("user=anyone", "hello", "greet", &node);
    assert!(!decision.allowed);
    assert!(
        decision.rule.contains("no policy file for agent hello; authorization.unconfigured = deny"),
        "{}",
        decision.rule
    );
}

fn check_policy_error(text: &str, fragment: &str) {
    let error = Policy::parse(text, Path::new("x.policy")).expect_err(text).to_string();
    assert!(error.contains(fragment), "{text:?}: {error} lacks {fragment:?}");
    assert!(error.contains("x.policy line"), "{error} names no file and line");
}

#[test]
fn policy_mistakes_are_refused_naming_the_line() {
    check_policy_error("policy default maybe\n", "expected \"policy default allow\"");
    check_policy_error("# ok\npermit\t*\t*\t*\t*\n", "a rule starts with allow or deny");
    check_policy_error("allow\t*\t*\n", "expected 4 to 6 tab-separated fields");
    check_policy_error("allow\t*\t*\t(role=web\t*\n", "fact condition");
    check_policy_error("allow\t*\t*\t*\tnot (\n", "class condition");
}

#[test]
fn resource_files_parse_into_properties() {
    let users = parse_passwd(
        "# comment\nroot:x:0:0:root:/root:/bin/bash\ndeploy:x:1500:1500:Deploy:/srv/deploy:/bin/sh\nbroken line\n",
    );
    assert_eq!(users.len(), 2);
    assert_eq!(
        Value::Object(users["deploy"].clone()),
        json!({"uid": 1500, "gid": 1500, "comment": "Deploy", "home": "/srv/deploy", "shell": "/bin/sh"})
    );
    let groups = parse_group("ops:x:1600:deploy,alice\nempty:x:1700:\n");
    assert_eq!(Value::Object(groups["ops"].clone()), json!({"gid": 1600, "members": ["deploy", "alice"]}));
    assert_eq!(Value::Object(groups["empty"].clone()), json!({"gid": 1700, "members": []}));
    let hosts =
        parse_hosts("127.0.0.1 localhost\n10.0.0.5\tdb.internal db # the database\n10.0.0.6 db.internal\n");
    assert_eq!(
        Value::Object(hosts["db.internal"].clone()),
        json!({"ip": "10.0.0.5", "host_aliases": ["db"]}),
        "the first entry wins"
    );
    let packages = parse_dpkg_status(
        "Package: bash\nStatus: install ok installed\nVersion: 5.2-1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n",
    );
    assert_eq!(packages.keys().collect::<Vec<_>>(), ["bash"]);
    assert_eq!(packages["bash"]["ensure"], "5.2-1");
}

fn keys(name: &str, trusted: &[(&str, &Ed25519)]) -> Ed25519 {
    let secret: [u8; 32] = rand::random();
    Ed25519::from_keys(name, secret, trusted.iter().map(|(name, keys)| (name.to_string(), keys.public_key())))
        .expect("valid keys")
}

#[test]
fn ed25519_signatures_verify_only_with_the_named_trusted_key() {
    let alice = keys("user=alice", &[]);
    let mallory = keys("user=mallory", &[]);
    let node = keys("web01", &[("user=alice", &alice)]);
    let parts: [&[u8]; 2] = [b"request\0", b"payload"];
    let signature = alice.sign(&parts);
    assert!(node.verify("user=alice", &parts, &signature).is_ok());
    assert!(node.verify("user=alice", &[b"request\0", b"payload!"], &signature).is_err(), "altered bytes");
    assert!(
        node.verify("user=alice", &parts, &mallory.sign(&parts)).is_err(),
        "another key under alice's name"
    );
    assert!(node.verify("user=mallory", &parts, &mallory.sign(&parts)).is_err(), "an unknown key");
    assert!(node.verify("user=alice", &parts, &signature[..10]).is_err(), "a truncated signature");
    assert!(!format!("{alice:?}").contains("secret"), "Debug hides the key");
}

#[test]
fn ed25519_key_files_load_and_bad_ones_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (private, public) = baton::security::ed25519::generate("user=alice");
    let key = dir.path().join("alice.key");
    std::fs::write(&key, &private).expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let trusted = dir.path().join("trusted");
    std::fs::create_dir(&trusted).expect("dir");
    std::fs::write(trusted.join("user=alice.pub"), &public).expect("write");
    let loaded = Ed25519::load(&key, &trusted).expect("the generated pair loads");
    assert_eq!(loaded.key_id(), "user=alice");
    assert_eq!(loaded.trusted_count(), 1);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let error = Ed25519::load(&key, &trusted).expect_err("world-readable").to_string();
    assert!(error.contains("chmod 600"), "{error}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A second key of the same name is a rotation in progress: both are trusted.
    let (_, rotated) = baton::security::ed25519::generate("user=alice");
    std::fs::write(trusted.join("user=alice+again.pub"), &rotated).expect("write");
    let loaded = Ed25519::load(&key, &trusted).expect("two keys of one name load");
    assert_eq!(loaded.trusted_count(), 2);
    std::fs::write(trusted.join("user=alice+again.pub"), "name = user=alice\npublic = zz\n").expect("write");
    let error = Ed25519::load(&key, &trusted).expect_err("bad hex").to_string();
    assert!(error.contains("must be 64 hex digits"), "{error}");
}

/// A directory for ed25519 tests: `trusted/` for public keys, private key files beside it.
struct KeyDir {
    dir: tempfile::TempDir,
    trusted: std::path::PathBuf,
}

impl KeyDir {
    fn new() -> KeyDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let trusted = dir.path().join("trusted");
        std::fs::create_dir(&trusted).expect("dir");
        KeyDir { dir, trusted }
    }

    /// Writes a private key file as a daemon accepts it (0600).
    fn private_key(&self, file: &str, text: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }
}

#[test]
fn ed25519_accepts_each_key_of_a_name_being_rotated_until_it_is_removed() {
    use baton::security::ed25519::{VerifyFailure, generate};
    let keys = KeyDir::new();
    let (trusted, private_key) =
        (keys.trusted.clone(), |file: &str, text: &str| keys.private_key(file, text));
    let (old_private, old_public) = generate("user=alice");
    let (new_private, new_public) = generate("user=alice");
    let (other_private, _) = generate("user=alice");
    let (node_private, _) = generate("web01");
    std::fs::write(trusted.join("user=alice.pub"), old_public).expect("write");
    std::fs::write(trusted.join("user=alice+2.pub"), new_public).expect("write");
    let old = Ed25519::load(&private_key("old.key", &old_private), &trusted).expect("old key");
    let new = Ed25519::load(&private_key("new.key", &new_private), &trusted).expect("new key");
    let other = Ed25519::load(&private_key("other.key", &other_private), &trusted).expect("other key");
    let node_key = private_key("node.key", &node_private);
    let parts: [&[u8]; 2] = [b"request", b"payload"];

    let node = Ed25519::load(&node_key, &trusted).expect("node");
    assert_eq!(node.verify("user=alice", &parts, &old.sign(&parts)), Ok(()));
    assert_eq!(node.verify("user=alice", &parts, &new.sign(&parts)), Ok(()));
    assert_eq!(node.verify("user=alice", &parts, &other.sign(&parts)), Err(VerifyFailure::BadSignature));

    std::fs::remove_file(trusted.join("user=alice.pub")).expect("retire the old key");
    let node = Ed25519::load(&node_key, &trusted).expect("node, reloaded");
    assert_eq!(node.verify("user=alice", &parts, &old.sign(&parts)), Err(VerifyFailure::BadSignature));
    assert_eq!(node.verify("user=alice", &parts, &new.sign(&parts)), Ok(()));
}

/// Regression, review of issue 13 (finding 4): a reload with one broken key file kept the
/// whole previous set, so a key removed in the same change stayed trusted. A reload now skips
/// the broken file (naming it) and trusts the rest; a start still refuses it.
#[test]
fn a_reload_with_a_broken_key_file_still_drops_a_removed_key() {
    use baton::security::ed25519::{VerifyFailure, generate};
    let keys = KeyDir::new();
    let (trusted, private_key) =
        (keys.trusted.clone(), |file: &str, text: &str| keys.private_key(file, text));
    let (alice_private, alice_public) = generate("user=alice");
    let (bob_private, bob_public) = generate("user=bob");
    let (node_private, _) = generate("web01");
    std::fs::write(trusted.join("user=alice.pub"), alice_public).expect("write");
    std::fs::write(trusted.join("user=bob.pub"), bob_public).expect("write");
    let alice = Ed25519::load(&private_key("alice.key", &alice_private), &trusted).expect("alice");
    let bob = Ed25519::load(&private_key("bob.key", &bob_private), &trusted).expect("bob");
    let node_key = private_key("node.key", &node_private);
    let parts: [&[u8]; 2] = [b"request", b"payload"];

    // Alice's key is revoked, and in the same change someone breaks carol's file.
    std::fs::remove_file(trusted.join("user=alice.pub")).expect("revoke alice");
    std::fs::write(trusted.join("user=carol.pub"), "name = user=carol\npublic = zz\n").expect("write");
    let error = Ed25519::load(&node_key, &trusted).expect_err("a start refuses the broken file").to_string();
    assert!(error.contains("user=carol.pub"), "{error}");
    let (node, skipped) = Ed25519::reload(&node_key, &trusted).expect("a reload loads the rest");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].to_string().contains("user=carol.pub"), "{skipped:?}");
    assert_eq!(node.verify("user=alice", &parts, &alice.sign(&parts)), Err(VerifyFailure::UnknownKey));
    assert_eq!(node.verify("user=bob", &parts, &bob.sign(&parts)), Ok(()));
}

/// Regression, review of issue 13 (finding 3): a trusted key file's name was not tied to the
/// name inside it, so `alice.pub` could hold a key named `user=bob` (or Bob's key file be put
/// under Alice's name) and a listing of the directory said nothing of whom it let sign. The
/// file name is now the key's name (`NAME.pub`, `NAME+LABEL.pub`): a file that disagrees is
/// refused at start, naming both, and skipped (its key not trusted) on a reload.
#[test]
fn a_trusted_key_file_named_for_one_caller_cannot_hold_another_callers_key() {
    use baton::security::ed25519::{VerifyFailure, generate};
    let keys = KeyDir::new();
    let (bob_private, bob_public) = generate("user=bob");
    let (_, alice_public) = generate("user=alice");
    let (node_private, _) = generate("web01");
    let bob = Ed25519::load(&keys.private_key("bob.key", &bob_private), &keys.trusted).expect("bob");
    let node_key = keys.private_key("node.key", &node_private);
    let parts: [&[u8]; 2] = [b"request", b"payload"];

    for (file, public, named) in [
        ("alice.pub", &bob_public, "user=bob"),
        ("user=alice.pub", &bob_public, "user=bob"),
        ("user=bob+2.pub", &alice_public, "user=alice"),
    ] {
        std::fs::write(keys.trusted.join(file), public).expect("write");
        let error = Ed25519::load(&node_key, &keys.trusted).expect_err("a start refuses it").to_string();
        let file_name = file.trim_end_matches(".pub").split('+').next().unwrap_or_default();
        assert!(
            error.contains(file)
                && error.contains(&format!("named for {file_name:?}"))
                && error.contains(&format!("says {named:?}")),
            "{error}"
        );
        let (node, skipped) = Ed25519::reload(&node_key, &keys.trusted).expect("a reload skips it");
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(
            node.verify("user=bob", &parts, &bob.sign(&parts)),
            Err(VerifyFailure::UnknownKey),
            "{file}"
        );
        assert_eq!(node.trusted_count(), 0, "{file}");
        std::fs::remove_file(keys.trusted.join(file)).expect("remove");
    }

    // Named after its key, with or without a label, the same key is trusted.
    std::fs::write(keys.trusted.join("user=bob+2027.pub"), &bob_public).expect("write");
    let node = Ed25519::load(&node_key, &keys.trusted).expect("a file named after its key loads");
    assert_eq!(node.verify("user=bob", &parts, &bob.sign(&parts)), Ok(()));
}

fn request(caller: &str, agent: &str, action: &str, data: Value) -> Request {
    Request {
        id: new_request_id(),
        sender: "tester".to_owned(),
        caller: caller.to_owned(),
        collective: "baton".to_owned(),
        agent: agent.to_owned(),
        action: action.to_owned(),
        filter: FilterSpec::default(),
        time_ms: now_ms(),
        ttl_secs: 60,
        reply_to: "baton.reply.test".to_owned(),
        data: data.as_object().cloned().unwrap_or_default(),
        once: None,
    }
}

/// A pipeline on ed25519 keys, with a policy on rpcutil, and what its node trusts.
fn ed25519_pipeline(policy: &str) -> (Pipeline, Arc<Stats>, Ed25519, Ed25519, Ed25519) {
    let alice = keys("user=alice", &[]);
    let bob = keys("user=bob", &[]);
    let node = keys("node01", &[("user=alice", &alice), ("user=bob", &bob)]);
    let registry = AgentRegistry::builtin();
    let inventory = inventory(json!({"role": "web"}), &[]);
    let stats = Arc::new(Stats::default());
    let context = ActionContext {
        identity: "node01".to_owned(),
        collectives: vec!["baton".to_owned()].into(),
        facts: Arc::new(inventory.facts().as_map().clone()),
        classes: Vec::new().into(),
        agents: registry.summaries().into(),
        stats: stats.clone(),
    };
    let mut policies = std::collections::BTreeMap::new();
    policies
        .insert("rpcutil".to_owned(), Policy::parse(policy, Path::new("rpcutil.policy")).expect("policy"));
    let authorization =
        Arc::new(Authorization::from_policies(policies, baton::config::UnconfiguredPolicy::Allow));
    let snapshot = NodeSnapshot { inventory, context, registry, authorization };
    let settings = PipelineSettings {
        identity: "node01".to_owned(),
        max_message_bytes: 64 * 1024,
        clock_skew: Duration::from_secs(30),
        replay_capacity: 100,
        max_ttl_secs: 3600,
        action_timeout: Duration::from_secs(5),
    };
    let pipeline = Pipeline::new(
        settings,
        Arc::new(Security::Ed25519(Box::new(node.clone()))),
        snapshot,
        stats.clone(),
        None,
    );
    (pipeline, stats, alice, bob, node)
}

fn handle(pipeline: &Pipeline, bytes: &[u8]) -> Option<Reply> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let sealed = runtime.block_on(pipeline.handle(bytes))?;
    let envelope = baton::protocol::Envelope::decode(&sealed.bytes, 1 << 20).expect("envelope");
    Some(baton::protocol::from_cbor(&envelope.payload, 1 << 20, "reply").expect("reply"))
}

#[test]
fn the_pipeline_proves_callers_then_authorizes_then_validates() {
    let (pipeline, stats, alice, bob, _node) =
        ed25519_pipeline("policy default deny\nallow\tuser=alice\t*\t*\t*\nallow\tuser=bob\tping\t*\t*\n");
    let seal =
        |keys: &Ed25519, request: &Request| Security::Ed25519(Box::new(keys.clone())).seal_request(request);
    let counter = |name: &str| {
        use baton::agents::StatsSource;
        stats.snapshot()[name].as_u64().unwrap_or(0)
    };

    let ok = handle(
        &pipeline,
        &seal(&alice, &request("user=alice", "rpcutil", "get_fact", json!({"fact": "role"}))),
    );
    assert_eq!(ok.map(|reply| reply.status), Some(StatusCode::Ok));

    let denied =
        handle(&pipeline, &seal(&bob, &request("user=bob", "rpcutil", "get_fact", json!({"fact": "role"}))))
            .expect("answered");
    assert_eq!(denied.status, StatusCode::Aborted);
    assert!(
        denied.status_message.starts_with("not authorized: user=bob may not run rpcutil#get_fact on node01"),
        "{}",
        denied.status_message
    );
    assert_eq!(counter("unauthorized"), 1);

    // Bob signing a request that names Alice: refused before anything else, and not answered.
    assert!(handle(&pipeline, &seal(&bob, &request("user=alice", "rpcutil", "ping", json!({})))).is_none());
    assert_eq!(counter("bad_signature"), 1);

    // A key the node does not trust at all.
    let stranger = keys("user=eve", &[]);
    let bytes = seal(&stranger, &request("user=eve", "rpcutil", "ping", json!({})));
    assert!(handle(&pipeline, &bytes).is_none());
    assert_eq!(counter("bad_signature"), 2);
    let error = pipeline.security().open_request(&bytes, 1 << 20).expect_err("unknown key");
    assert!(matches!(error, OpenError::UnknownKey { .. }), "{error:?}");

    // Authorized, then validated: the node checks inputs against the definition.
    let invalid = handle(
        &pipeline,
        &seal(&alice, &request("user=alice", "rpcutil", "get_fact", json!({"fact": "a b"}))),
    )
    .expect("answered");
    assert_eq!(invalid.status, StatusCode::InvalidData);
    assert!(invalid.status_message.contains("input \"fact\" must match"), "{}", invalid.status_message);
    let undeclared =
        handle(&pipeline, &seal(&alice, &request("user=alice", "rpcutil", "ping", json!({"x": 1}))))
            .expect("answered");
    assert_eq!(undeclared.status, StatusCode::InvalidData);
    assert!(
        undeclared.status_message.contains("rpcutil#ping has no input \"x\" (inputs: none)"),
        "{}",
        undeclared.status_message
    );
    assert_eq!(counter("invalid_input"), 2);
}

// ---- files the node trusts (issue 12, findings 6 and 9) ------------------------------------

/// Runs one action of `agent` the way the node does, with a minimal context.
fn call_agent(agent: &dyn Agent, action: &str, data: Value) -> ActionOutcome {
    let stats = Arc::new(Stats::default());
    let context = ActionContext {
        identity: "web01".to_owned(),
        collectives: vec!["baton".to_owned()].into(),
        facts: Arc::new(serde_json::Map::new()),
        classes: Vec::new().into(),
        agents: Vec::new().into(),
        stats,
    };
    let data = data.as_object().cloned().unwrap_or_default();
    let call =
        Call { action, data: &data, request_id: new_request_id(), caller: "user=tester", sender: "tester" };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(agent.call(call, &context))
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The uid of `nobody`: a user who is neither root nor the test's own user.
const NOBODY: u32 = 65534;

fn chown_nobody(path: &Path) {
    assert_eq!(
        std::fs::metadata("/proc/self").map(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata)).ok(),
        Some(0),
        "these tests give files to nobody, which needs root (CI runs them as root)"
    );
    std::os::unix::fs::chown(path, Some(NOBODY), None).expect("chown nobody");
}

/// An external agent `hello` in `dir/agents/hello` that answers `greet`.
fn write_hello_agent(dir: &Path) -> std::path::PathBuf {
    let agents = dir.join("agents");
    let hello = agents.join("hello");
    std::fs::create_dir_all(&hello).expect("agent dir");
    chmod(&agents, 0o755);
    chmod(&hello, 0o755);
    std::fs::write(
        hello.join("definition.json"),
        r#"{"metadata": {"name": "hello", "description": "says hello", "author": "t", "version": "1",
            "license": "MIT", "url": "https://example.com", "timeout": 10},
            "actions": {"greet": {"description": "greets", "inputs": {},
            "outputs": {"greeting": {"description": "the greeting", "display_as": "Greeting"}}}}}"#,
    )
    .expect("definition");
    chmod(&hello.join("definition.json"), 0o644);
    std::fs::write(hello.join("agent"), "#!/bin/sh\necho '{\"data\": {\"greeting\": \"hello\"}}'\n")
        .expect("agent");
    chmod(&hello.join("agent"), 0o755);
    agents
}

fn load_external(agents: &Path) -> (Vec<baton::agents::external::ExternalAgent>, Vec<String>) {
    baton::agents::external::load_dir(agents, Arc::new(tokio::sync::Semaphore::new(2)))
}

/// Regression (finding 6): only "others may write" was checked, so an agent owned by nobody,
/// a group-writable one, or one in a directory anyone may change was loaded and run as root.
#[test]
fn external_agents_whose_files_others_could_change_are_not_loaded() {
    type Spoil = fn(&Path);
    let cases: [(&str, Spoil, &str); 5] = [
        ("executable owned by nobody", |agents| chown_nobody(&agents.join("hello/agent")), "chown root"),
        ("group-writable executable", |agents| chmod(&agents.join("hello/agent"), 0o775), "chmod go-w"),
        (
            "group-writable definition",
            |agents| chmod(&agents.join("hello/definition.json"), 0o664),
            "chmod go-w",
        ),
        ("agent directory writable by all", |agents| chmod(&agents.join("hello"), 0o777), "chmod go-w"),
        ("agents directory owned by nobody", |agents| chown_nobody(agents), "chown root"),
    ];
    for (case, spoil, fix) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let agents = write_hello_agent(dir.path());
        let (loaded, problems) = load_external(&agents);
        assert_eq!(loaded.len(), 1, "{case}: the untouched agent loads: {problems:?}");
        spoil(&agents);
        let (loaded, problems) = load_external(&agents);
        assert!(loaded.is_empty(), "{case}: loaded anyway");
        let problem = problems.join("\n");
        assert!(problem.contains("is not trusted") && problem.contains(fix), "{case}: {problem}");
    }
}

/// Regression (finding 6): files were checked only at load; an agent replaced after load by
/// someone who could write it ran as root.
#[test]
fn an_external_agent_is_checked_again_before_every_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agents = write_hello_agent(dir.path());
    let (mut loaded, problems) = load_external(&agents);
    let agent = loaded.pop().unwrap_or_else(|| panic!("loads: {problems:?}"));
    let ran = call_agent(&agent, "greet", json!({}));
    assert_eq!(ran.status, StatusCode::Ok, "{ran:?}");
    assert_eq!(ran.data["greeting"], "hello");

    let executable = agents.join("hello/agent");
    std::fs::write(&executable, "#!/bin/sh\ntouch pwned\necho '{\"data\": {\"greeting\": \"owned\"}}'\n")
        .expect("replace");
    chown_nobody(&executable);
    let refused = call_agent(&agent, "greet", json!({}));
    assert_eq!(refused.status, StatusCode::UnknownError, "{refused:?}");
    assert!(
        refused.message.contains("agent hello not run") && refused.message.contains("owned by uid 65534"),
        "{}",
        refused.message
    );
    assert!(!agents.join("hello/pwned").exists(), "the replaced program ran");

    std::os::unix::fs::chown(&executable, Some(0), None).expect("chown root");
    chmod(&agents.join("hello"), 0o777);
    let refused = call_agent(&agent, "greet", json!({}));
    assert!(refused.message.contains("chmod go-w"), "{}", refused.message);
    assert!(!agents.join("hello/pwned").exists(), "the replaced program ran");
}

/// Regression (finding 9): a private key of mode 0640 was accepted although the documentation
/// says a key group or others can read is refused. The PSK is as secret.
#[test]
fn secret_keys_readable_by_group_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (private, public) = baton::security::ed25519::generate("user=alice");
    let key = dir.path().join("alice.key");
    std::fs::write(&key, &private).expect("write");
    let trusted = dir.path().join("trusted");
    std::fs::create_dir(&trusted).expect("dir");
    std::fs::write(trusted.join("user=alice.pub"), &public).expect("write");
    for mode in [0o640, 0o604, 0o660] {
        chmod(&key, mode);
        let error = Ed25519::load(&key, &trusted).expect_err("group or others may read it").to_string();
        assert!(error.contains(&format!("has mode {mode:o}")) && error.contains("chmod 600"), "{error}");
    }
    chmod(&key, 0o600);
    Ed25519::load(&key, &trusted).expect("mode 600 loads");

    let psk = dir.path().join("psk");
    std::fs::write(&psk, "9f8e7d6c5b4a39281706f5e4d3c2b1a0\n").expect("write");
    chmod(&psk, 0o640);
    let error = baton::security::Psk::from_file(&psk).expect_err("group-readable PSK").to_string();
    assert!(error.contains("PSK file") && error.contains("chmod 600"), "{error}");
    chmod(&psk, 0o600);
    baton::security::Psk::from_file(&psk).expect("mode 600 loads");
}

/// Regression (finding 6 for keys and policies): a trusted key, a private key or a policy in
/// a directory others may change, or owned by another user, was accepted.
#[test]
fn keys_and_policies_others_could_change_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (private, public) = baton::security::ed25519::generate("user=alice");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("dir");
    chmod(&keys, 0o755);
    let key = keys.join("alice.key");
    std::fs::write(&key, &private).expect("write");
    chmod(&key, 0o600);
    let trusted = dir.path().join("trusted");
    std::fs::create_dir(&trusted).expect("dir");
    chmod(&trusted, 0o755);
    std::fs::write(trusted.join("user=alice.pub"), &public).expect("write");
    chmod(&trusted.join("user=alice.pub"), 0o644);
    Ed25519::load(&key, &trusted).expect("trusted files load");

    chmod(&keys, 0o775);
    let error = Ed25519::load(&key, &trusted).expect_err("key in a group-writable dir").to_string();
    assert!(error.contains(&format!("chmod go-w {}", keys.display())), "{error}");
    chmod(&keys, 0o755);

    chown_nobody(&trusted.join("user=alice.pub"));
    let error = Ed25519::load(&key, &trusted).expect_err("a trusted key owned by nobody").to_string();
    assert!(error.contains("trusted public key") && error.contains("chown root"), "{error}");

    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("dir");
    chmod(&policies, 0o755);
    std::fs::write(policies.join("rpcutil.policy"), "policy default deny\n").expect("write");
    chmod(&policies.join("rpcutil.policy"), 0o664);
    let config =
        baton::config::AuthorizationConfig { policy_dir: Some(policies.clone()), ..Default::default() };
    let error = Authorization::load(&config).map(|_| ()).expect_err("group-writable policy").to_string();
    assert!(error.contains("policy file") && error.contains("chmod go-w"), "{error}");
    chmod(&policies.join("rpcutil.policy"), 0o644);
    Authorization::load(&config).expect("a trusted policy loads");
}

// ---- the puppet agent (issue 12, finding 1) -------------------------------------------------

/// Regression (finding 1): tags went to Puppet as their own argument after `--tags`, and the
/// agent itself checked neither tags nor message; only the definition stood between a caller
/// and Puppet's options. The agent now refuses both before running anything (no Puppet is
/// needed to see that: the checks come first).
#[test]
fn the_puppet_agent_refuses_tags_and_messages_that_are_not_plain_values() {
    let puppet = baton::agents::puppet::Puppet::new(baton::agents::puppet::PuppetSettings {
        command: "/nonexistent/puppet".into(),
        ..Default::default()
    });
    for tags in ["--noop", "-d", "web,--noop", "a,,b", "a b", "tag=x"] {
        let refused = call_agent(&puppet, "runonce", json!({ "tags": tags }));
        assert_eq!(refused.status, StatusCode::InvalidData, "{tags:?}: {refused:?}");
        assert!(refused.message.contains("are not Puppet tags"), "{}", refused.message);
    }
    for message in ["two\nlines", "bell\u{7}", "nul\u{0}"] {
        let refused = call_agent(&puppet, "disable", json!({ "message": message }));
        assert_eq!(refused.status, StatusCode::InvalidData, "{message:?}: {refused:?}");
        assert!(refused.message.contains("control characters"), "{}", refused.message);
    }
    // Valid tags get as far as running Puppet, which is missing here.
    let ran = call_agent(&puppet, "runonce", json!({ "tags": "web,nginx::config,_x.y-z" }));
    assert_eq!(ran.status, StatusCode::Aborted, "{ran:?}");
    assert!(ran.message.contains("is Puppet installed?"), "{}", ran.message);
}

/// `puppet config print` starts Ruby and loads Puppet: the agent asks it where the state files
/// live once and reuses the answer (the console asks `status` and `last_run_summary` on every
/// refresh); a print that failed is asked again.
#[test]
fn the_puppet_agent_asks_puppet_where_its_state_lives_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = dir.path().join("prints");
    let broken = dir.path().join("broken");
    let script = dir.path().join("puppet");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho print >> {count}\n[ -e {broken} ] && {{ echo 'Error: broken puppet.conf' >&2; exit 1; }}\n\
             echo 'agent_disabled_lockfile = {dir}/disabled.lock'\necho 'agent_catalog_run_lockfile = {dir}/run.lock'\n\
             echo 'lastrunfile = {dir}/last_run_summary.yaml'\n",
            count = count.display(),
            broken = broken.display(),
            dir = dir.path().display()
        ),
    )
    .expect("write");
    chmod(&script, 0o755);
    let prints = || std::fs::read_to_string(&count).unwrap_or_default().lines().count();
    let puppet = baton::agents::puppet::Puppet::new(baton::agents::puppet::PuppetSettings {
        command: script.clone(),
        ..Default::default()
    });

    std::fs::write(&broken, "").expect("write");
    let failed = call_agent(&puppet, "status", json!({}));
    assert_eq!(failed.status, StatusCode::Aborted, "{failed:?}");
    assert!(failed.message.contains("broken puppet.conf"), "{}", failed.message);
    std::fs::remove_file(&broken).expect("remove");

    let status = call_agent(&puppet, "status", json!({}));
    assert_eq!(status.status, StatusCode::Ok, "{status:?}");
    assert_eq!(status.data["status"], "idling", "{status:?}");
    std::fs::write(dir.path().join("disabled.lock"), r#"{"disabled_message":"maintenance"}"#).expect("write");
    let status = call_agent(&puppet, "status", json!({}));
    assert_eq!(status.data["status"], "disabled", "the state files are still read each time: {status:?}");
    let summary = call_agent(&puppet, "last_run_summary", json!({}));
    assert!(summary.message.contains("has not run yet"), "{summary:?}");
    assert_eq!(prints(), 2, "one failed print, then one print for three calls");
}

// ---- package names (issue 12, finding 2) ---------------------------------------------------

fn installed_version(package: &str) -> Option<String> {
    let output = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev} ${Version}", "--", package])
        .output()
        .expect("dpkg-query runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.strip_prefix("ii  ").map(str::to_owned)
}

/// Names apt would read as something else: a marker, an option, a pattern, a glob, or (not
/// being exactly a package) a regular expression.
const NOT_PACKAGE_NAMES: &[(&str, &str)] = &[
    // First, so that the check before the fix only ever ran apt-get on this one: "install
    // hello-" means "remove hello", which is not installed here.
    ("hello-", "is not a Debian package name"),
    ("zz-no-such-package-baton", "apt knows no package named exactly"),
    ("--version", "is not a Debian package name"),
    ("-o", "is not a Debian package name"),
    ("c*rl", "is not a Debian package name"),
    ("?name(curl)", "is not a Debian package name"),
    ("~ncurl", "is not a Debian package name"),
    ("cur[l]", "is not a Debian package name"),
    ("curl/stable", "is not a Debian package name"),
    ("Curl", "is not a Debian package name"),
    ("c", "is not a Debian package name"),
    ("curl:", "is not a Debian package name"),
    ("cur.", "apt knows no package named exactly"),
    ("curl+", "apt knows no package named exactly"),
];

/// Regression (finding 2): the name rule let a trailing `-` or `+` through ("install curl-"
/// removed curl) and apt-get retried a name that is not exactly a package as a pattern.
#[test]
fn package_names_apt_would_read_as_instructions_are_refused() {
    assert_eq!(installed_version("hello"), None, "the test needs the package hello not installed");
    let curl_before = installed_version("curl");
    let package = baton::agents::package::Package::new();
    for (name, fragment) in NOT_PACKAGE_NAMES {
        // Each "exactly a package" check asks apt-cache, which takes seconds: once is enough.
        let actions: &[&str] = if fragment.starts_with("apt knows") {
            &["install"]
        } else {
            &["install", "update", "uninstall"]
        };
        for action in actions {
            let refused = call_agent(&package, action, json!({ "package": name }));
            assert_eq!(refused.status, StatusCode::InvalidData, "{action} {name:?}: {refused:?}");
            assert!(refused.message.contains(fragment), "{action} {name:?}: {}", refused.message);
        }
    }
    let refused = call_agent(&package, "install", json!({ "package": "curl", "version": "-1" }));
    assert_eq!(refused.status, StatusCode::InvalidData, "{refused:?}");
    assert!(refused.message.contains("is not a Debian version"), "{}", refused.message);
    assert_eq!(installed_version("curl"), curl_before, "curl is as it was");

    // Exact names pass, `.` and `+` included.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for name in ["curl", "libc6:amd64", "g++", "python3.11"] {
        baton::agents::package_name::check_name(name).unwrap_or_else(|refused| panic!("{name}: {refused:?}"));
    }
    for name in ["libc6:amd64", "python3.11"] {
        runtime
            .block_on(baton::agents::package_name::check_known(name, Duration::from_secs(60)))
            .unwrap_or_else(|refused| panic!("{name}: {refused:?}"));
    }
}

/// Regression (finding 2): `resource create type=package` had the same gap.
#[test]
fn resource_create_refuses_the_same_package_names() {
    assert_eq!(installed_version("hello"), None, "the test needs the package hello not installed");
    let resource = baton::agents::resource::Resource::new("/".into());
    let syntax_and_one_unknown = NOT_PACKAGE_NAMES
        .iter()
        .filter(|(name, fragment)| !fragment.starts_with("apt knows") || *name == "curl+");
    for (name, fragment) in syntax_and_one_unknown {
        let refused =
            call_agent(&resource, "create", json!({ "type": "package", "title": name, "properties": {} }));
        assert_eq!(refused.status, StatusCode::InvalidData, "{name:?}: {refused:?}");
        assert!(refused.message.contains(fragment), "{name:?}: {}", refused.message);
    }
    let refused = call_agent(
        &resource,
        "create",
        json!({ "type": "package", "title": "curl", "properties": { "ensure": "--purge" } }),
    );
    assert_eq!(refused.status, StatusCode::InvalidData, "{refused:?}");
}

// ---- the service agent (issue 12, finding 13) -----------------------------------------------

/// Regression (finding 13): the service agent started any unit, `reboot.target` and
/// `poweroff.target` included. Only services may now be started, stopped or restarted.
#[test]
fn the_service_agent_changes_services_only() {
    let service = baton::agents::service::Service::new();
    let refused_units = [
        ("reboot.target", "is a .target unit"),
        ("poweroff.target", "is a .target unit"),
        ("multi-user.target", "is a .target unit"),
        ("ssh.socket", "is a .socket unit"),
        ("apt-daily.timer", "is a .timer unit"),
        ("home.mount", "is a .mount unit"),
        ("reboot.target.service", "is a .target unit"),
        ("reboot", "stops, reboots or suspends the machine"),
        ("systemd-poweroff", "stops, reboots or suspends the machine"),
        ("systemd-reboot.service", "stops, reboots or suspends the machine"),
        ("halt", "stops, reboots or suspends the machine"),
        ("sendsigs", "stops, reboots or suspends the machine"),
        ("-.slice", "starts with a letter or digit"),
    ];
    for (unit, fragment) in refused_units {
        for action in ["start", "stop", "restart"] {
            let refused = call_agent(&service, action, json!({ "service": unit }));
            assert_eq!(refused.status, StatusCode::InvalidData, "{action} {unit}: {refused:?}");
            assert!(
                refused.message.contains(fragment) && refused.message.contains("services only"),
                "{action} {unit}: {}",
                refused.message
            );
        }
    }
    // A service by either spelling goes on to the service manager (none here: no such service).
    for unit in ["baton-no-such-service", "baton-no-such-service.service", "getty@tty1"] {
        let tried = call_agent(&service, "start", json!({ "service": unit }));
        assert_ne!(tried.status, StatusCode::InvalidData, "{unit}: {tried:?}");
    }
    // Asking about a target changes nothing and stays allowed.
    let status = call_agent(&service, "status", json!({ "service": "reboot.target" }));
    assert_ne!(status.status, StatusCode::InvalidData, "{status:?}");
}

// ---- the resource agent's root (issue 12, finding 4) ----------------------------------------

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n";
const HOST_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nhostonly:x:1200:1200::/home/hostonly:/bin/sh\n";

/// A resource root `dir/root` with an `etc/passwd`, and a "host" tree `dir/host` outside it.
fn resource_tree() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let host = dir.path().join("host");
    std::fs::create_dir_all(root.join("etc")).expect("root/etc");
    std::fs::create_dir_all(host.join("etc")).expect("host/etc");
    std::fs::write(root.join("etc/passwd"), PASSWD).expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
    std::fs::write(host.join("etc/passwd"), HOST_PASSWD).expect("host passwd");
    std::fs::write(host.join("etc/group"), "root:x:0:\n").expect("host group");
    (dir, root, host)
}

fn create_deploy_user(resource: &baton::agents::resource::Resource) -> ActionOutcome {
    call_agent(
        resource,
        "create",
        json!({"type": "user", "title": "deploy", "properties": {"uid": 1500, "gid": 1500, "shell": "/bin/bash"}}),
    )
}

/// Regression (finding 4): `write_replacing` wrote through a planted `etc/.passwd.baton-new`
/// link, to a file outside the root (for a container's tree, a file on the host).
#[test]
fn a_planted_temporary_link_is_replaced_not_written_through() {
    let (_dir, root, host) = resource_tree();
    std::os::unix::fs::symlink(host.join("etc/passwd"), root.join("etc/.passwd.baton-new")).expect("plant");
    let resource = baton::agents::resource::Resource::new(root.clone());
    let created = create_deploy_user(&resource);
    assert_eq!(created.status, StatusCode::Ok, "{created:?}");
    assert_eq!(std::fs::read_to_string(host.join("etc/passwd")).expect("host passwd"), HOST_PASSWD);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("deploy:x:1500:1500"), "{passwd}");
    assert!(!root.join("etc/.passwd.baton-new").exists(), "no temporary left behind");
}

/// Regression (finding 4): a linked `etc`, or a linked `etc/passwd`, was followed out of the
/// root on reads (and on writes, for `etc`). Both are now refused, naming the link.
#[test]
fn links_on_the_way_to_a_resource_file_are_refused() {
    type Plant = fn(&Path, &Path);
    let plants: [(&str, Plant, &str); 2] = [
        (
            "linked etc",
            |root, host| {
                std::fs::remove_dir_all(root.join("etc")).expect("rm etc");
                std::os::unix::fs::symlink(host.join("etc"), root.join("etc")).expect("plant");
            },
            "/etc is a symbolic link",
        ),
        (
            "linked etc/passwd",
            |root, host| {
                std::fs::remove_file(root.join("etc/passwd")).expect("rm passwd");
                std::os::unix::fs::symlink(host.join("etc/passwd"), root.join("etc/passwd")).expect("plant");
            },
            "/etc/passwd is a symbolic link",
        ),
    ];
    for (case, plant, fragment) in plants {
        let (_dir, root, host) = resource_tree();
        plant(&root, &host);
        let resource = baton::agents::resource::Resource::new(root.clone());
        let find = call_agent(&resource, "find", json!({"type": "user", "title": "hostonly"}));
        assert_eq!(find.status, StatusCode::Aborted, "{case}: read through the link: {find:?}");
        assert!(find.message.contains(fragment), "{case}: {}", find.message);
        let search = call_agent(&resource, "search", json!({"type": "user"}));
        assert_eq!(search.status, StatusCode::Aborted, "{case}: {search:?}");
        let created = create_deploy_user(&resource);
        assert_eq!(created.status, StatusCode::Aborted, "{case}: {created:?}");
        assert!(created.message.contains(fragment), "{case}: {}", created.message);
        assert_eq!(std::fs::read_to_string(host.join("etc/passwd")).expect("host"), HOST_PASSWD, "{case}");
    }
}

/// A rewritten file keeps its mode and its owner and group (etc/shadow is root:shadow 0640).
#[test]
fn a_rewritten_resource_file_keeps_mode_and_owner() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, root, _host) = resource_tree();
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").expect("shadow");
    chmod(&root.join("etc/shadow"), 0o640);
    std::os::unix::fs::chown(root.join("etc/shadow"), Some(0), Some(42)).expect("chown");
    let resource = baton::agents::resource::Resource::new(root.clone());
    let created = create_deploy_user(&resource);
    assert_eq!(created.status, StatusCode::Ok, "{created:?}");
    let shadow = std::fs::metadata(root.join("etc/shadow")).expect("shadow");
    assert_eq!((shadow.mode() & 0o7777, shadow.uid(), shadow.gid()), (0o640, 0, 42));
    assert!(std::fs::read_to_string(root.join("etc/shadow")).expect("read").contains("deploy:!:"));
}

// ---- what resource create may change (issue 12, finding 5) ----------------------------------

const ACCOUNTS_PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nalice:x:1001:1001:Alice:/home/alice:/bin/sh\n";
const ACCOUNTS_GROUP: &str = "root:x:0:\nsudo:x:27:\nalice:x:1001:\n";

fn accounts_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
    std::fs::write(dir.path().join("etc/passwd"), ACCOUNTS_PASSWD).expect("passwd");
    std::fs::write(dir.path().join("etc/group"), ACCOUNTS_GROUP).expect("group");
    dir
}

fn create(
    resource: &baton::agents::resource::Resource,
    kind: &str,
    title: &str,
    properties: Value,
) -> ActionOutcome {
    call_agent(resource, "create", json!({"type": kind, "title": title, "properties": properties}))
}

/// Regression (finding 5): `resource create` accepted uid and gid 0, rewrote existing system
/// accounts (root's shell became /tmp/x) and took NUL bytes in text fields: it amounted to
/// root. By default it now refuses each, saying which node setting would allow it.
#[test]
fn resource_create_refuses_root_ids_system_accounts_and_control_characters() {
    let dir = accounts_tree();
    let resource = baton::agents::resource::Resource::new(dir.path().to_owned());
    let refusals = [
        ("user", "mallory", json!({"uid": 0}), "uid 0 is root's"),
        ("user", "mallory", json!({"gid": 0}), "gid 0 is root's"),
        ("user", "alice", json!({"uid": 0}), "uid 0 is root's"),
        ("user", "root", json!({"shell": "/tmp/x"}), "user root is a system user"),
        ("user", "daemon", json!({"shell": "/bin/sh"}), "user daemon is a system user"),
        ("user", "mallory", json!({"uid": 5}), "uid 5 is a system id"),
        ("user", "alice", json!({"gid": 27}), "gid 27 is a system id"),
        ("user", "sudo", json!({}), "gid 27 is a system id"),
        ("group", "sudo", json!({"members": ["alice"]}), "group sudo is a system group"),
        ("group", "wheel2", json!({"gid": 0}), "gid 0 is root's"),
        ("user", "mallory", json!({"comment": "a\u{0}b"}), "holds control characters"),
        ("user", "mallory", json!({"shell": "/bin/sh\u{1b}[2J"}), "holds control characters"),
        ("user", "alice", json!({"home": "/home/\u{7f}"}), "holds control characters"),
    ];
    for (kind, title, properties, fragment) in refusals {
        let refused = create(&resource, kind, title, properties.clone());
        assert_eq!(refused.status, StatusCode::InvalidData, "{kind} {title} {properties}: {refused:?}");
        assert!(refused.message.contains(fragment), "{kind} {title} {properties}: {}", refused.message);
        assert!(refused.message.contains("agents.resource."), "names the setting: {}", refused.message);
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("etc/passwd")).expect("passwd"), ACCOUNTS_PASSWD);
    assert_eq!(std::fs::read_to_string(dir.path().join("etc/group")).expect("group"), ACCOUNTS_GROUP);

    // Regular accounts stay open, and re-creating a system account exactly as it is changes
    // nothing, so cloning identical accounts still works.
    let ok = create(&resource, "user", "alice", json!({"shell": "/bin/bash", "comment": "Alice Liddell"}));
    assert_eq!((ok.status, ok.data.get("changed")), (StatusCode::Ok, Some(&json!(true))), "{ok:?}");
    let ok = create(&resource, "user", "bob", json!({"uid": 1500, "gid": 1500}));
    assert_eq!(ok.status, StatusCode::Ok, "{ok:?}");
    let same = create(&resource, "user", "root", json!({"uid": 0, "gid": 0, "shell": "/bin/bash"}));
    assert_eq!((same.status, same.data.get("changed")), (StatusCode::Ok, Some(&json!(false))), "{same:?}");
}

#[test]
fn the_node_configuration_can_lift_each_resource_limit() {
    let dir = accounts_tree();
    let limits = baton::agents::resource::ResourceLimits {
        first_regular_id: 500,
        allow_root_ids: true,
        allow_system_accounts: true,
        allow_control_characters: true,
    };
    let resource = baton::agents::resource::Resource::with_limits(dir.path().to_owned(), limits);
    for (kind, title, properties) in [
        ("user", "toor", json!({"uid": 0, "gid": 0})),
        ("user", "root", json!({"shell": "/bin/zsh"})),
        ("group", "sudo", json!({"members": ["alice"]})),
        ("user", "svc", json!({"uid": 600, "comment": "tab\there"})),
    ] {
        let done = create(&resource, kind, title, properties.clone());
        assert_eq!(done.status, StatusCode::Ok, "{kind} {title} {properties}: {done:?}");
    }
    let passwd = std::fs::read_to_string(dir.path().join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("toor:x:0:0:") && passwd.contains("root:x:0:0:root:/root:/bin/zsh"), "{passwd}");
    // The boundary is the node's: 600 is regular at 500, 450 is not.
    let limits = baton::agents::resource::ResourceLimits { first_regular_id: 500, ..Default::default() };
    let resource = baton::agents::resource::Resource::with_limits(dir.path().to_owned(), limits);
    assert_eq!(create(&resource, "user", "svc", json!({"shell": "/bin/sh"})).status, StatusCode::Ok);
    let refused = create(&resource, "user", "svc2", json!({"uid": 450}));
    assert!(refused.message.contains("uid 450 is a system id (below 500)"), "{}", refused.message);
}
