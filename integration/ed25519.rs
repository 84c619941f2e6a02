//! The ed25519 scheme on real nodes: callers are proven by their keys, so policies mean
//! something. An unknown caller is refused by every node, a known one is allowed or denied per
//! policy, a request re-signed by another trusted key is refused, and a client accepts only
//! replies signed by node keys it trusts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton::protocol::{FilterSpec, Request, new_request_id, now_ms};
use baton::security::{Ed25519, Security};
use serde_json::json;

use crate::agents::install_agents;
use crate::harness::{BatonOutput, Fleet, NodeSpec, RawClient, run_baton};

/// Writes `name`'s key pair into `keys/` (as `file`) and its public key into `trusted` (if
/// given), where a trusted key file is named after its key (`NAME.pub`).
pub(crate) fn keypair(root: &Path, file: &str, name: &str, trusted: Option<&str>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let (private, public) = baton::security::ed25519::generate(name);
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    let private_path = keys.join(format!("{file}.key"));
    std::fs::write(&private_path, private).expect("write private key");
    std::fs::set_permissions(&private_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(keys.join(format!("{file}.pub")), &public).expect("write public key");
    if let Some(trusted) = trusted {
        let dir = root.join(trusted);
        std::fs::create_dir_all(&dir).expect("trusted dir");
        std::fs::write(dir.join(format!("{name}.pub")), public).expect("trust key");
    }
    private_path
}

pub(crate) fn security_table(key_file: &Path, trusted_dir: &Path) -> String {
    format!(
        "scheme = \"ed25519\"\nkey_file = {:?}\ntrusted_keys_dir = {:?}\n",
        key_file.display().to_string(),
        trusted_dir.display().to_string()
    )
}

struct Setup {
    fleet: Fleet,
    root: PathBuf,
}

impl Setup {
    fn start() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        let alice = keypair(&root, "alice", "user=alice", Some("callers"));
        keypair(&root, "bob", "user=bob", Some("callers"));
        keypair(&root, "mallory", "user=mallory", None);
        let agents = install_agents(&root, &["hello"]);
        let policies = root.join("policy");
        std::fs::create_dir_all(&policies).expect("policy dir");
        std::fs::write(policies.join("hello.policy"), "policy default deny\nallow\tuser=alice\t*\t*\t*\n")
            .expect("policy");
        let specs = ["n1", "n2"]
            .iter()
            .map(|node| {
                let key = keypair(&root, node, node, Some("nodes"));
                let mut spec = NodeSpec::new(node, json!({}), &[]).with_config(&format!(
                    "[agents]\ndir = {:?}\n\n[authorization]\npolicy_dir = {:?}\n",
                    agents.display().to_string(),
                    policies.display().to_string()
                ));
                spec.security = Some(security_table(&key, &root.join("callers")));
                spec
            })
            .collect();
        let fleet = Fleet::start_in(dir, Some(security_table(&alice, &root.join("nodes"))), specs);
        Setup { fleet, root }
    }

    /// `baton` as another caller, trusting the node keys in `trusted` (default: all nodes).
    fn baton_as(&self, caller_file: &str, trusted: &str, args: &[&str]) -> BatonOutput {
        let security = security_table(
            &self.root.join("keys").join(format!("{caller_file}.key")),
            &self.root.join(trusted),
        );
        let config = self.fleet.client_config("");
        let text = std::fs::read_to_string(&config).expect("client config");
        let (before, _) = text.split_once("[security]").expect("a security table");
        std::fs::write(&config, format!("{before}[security]\n{security}")).expect("rewrite client config");
        run_baton(&config, args, None)
    }
}

#[test]
fn callers_are_proven_and_policies_apply_to_them() {
    let setup = Setup::start();
    let fleet = &setup.fleet;

    // Alice's key is trusted and the policy allows her.
    let output = fleet.baton(&["rpc", "hello", "greet", "name=alice", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.nodes("replies"), ["n1", "n2"]);

    // Bob's key is trusted, so he is who he says, and the policy denies him.
    let output = setup.baton_as("bob", "nodes", &["rpc", "hello", "greet", "name=bob", "--json"]);
    assert_eq!(output.code, 1, "{output:?}");
    let document = output.json();
    for reply in document["replies"].as_array().expect("replies") {
        assert_eq!(reply["status"], 1, "{reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains("not authorized: user=bob may not run hello#greet"), "{message}");
        // The rule is for the audit log, not for the refused caller (issue 12, finding 11).
        assert!(!message.contains("hello.policy"), "{message}");
    }
    let refusal = fleet
        .node("n1")
        .audit_lines()
        .into_iter()
        .find(|line| line["outcome"] == "refused" && line["caller"] == "user=bob")
        .expect("bob's refusal is audited");
    assert!(
        refusal["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("hello.policy: no rule matched; policy default deny")),
        "{refusal}"
    );

    // Mallory's key is not trusted anywhere: every node refuses, none answers.
    let output = setup.baton_as(
        "mallory",
        "nodes",
        &["rpc", "hello", "greet", "name=m", "-I", "n1", "-I", "n2", "-t", "3", "--json"],
    );
    assert_eq!(output.code, 3, "{output:?}");
    assert_eq!(output.json()["no_response"], json!(["n1", "n2"]));
    for node in ["n1", "n2"] {
        let refused = fleet
            .node(node)
            .audit_lines()
            .into_iter()
            .filter(|line| line["outcome"] == "refused" && line["caller"] == "user=mallory")
            .collect::<Vec<_>>();
        assert!(!refused.is_empty(), "{node} audited no refusal of mallory");
        assert!(
            refused.iter().all(|line| line["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("not among the trusted keys"))),
            "{refused:?}"
        );
    }
}

#[test]
fn a_request_re_signed_by_another_key_is_refused() {
    let setup = Setup::start();
    let fleet = &setup.fleet;
    // Bob holds a trusted key and signs a request that claims to come from Alice.
    let bob = Security::Ed25519(Box::new(
        Ed25519::load(&setup.root.join("keys/bob.key"), &setup.root.join("nodes")).expect("bob's keys"),
    ));
    let mut raw = RawClient::connect(fleet);
    let request = Request {
        id: new_request_id(),
        sender: "bob@laptop".to_owned(),
        caller: "user=alice".to_owned(),
        collective: fleet.collective.clone(),
        agent: "hello".to_owned(),
        action: "greet".to_owned(),
        filter: FilterSpec::default(),
        time_ms: now_ms(),
        ttl_secs: 60,
        reply_to: raw.reply_queue.clone(),
        data: json!({"name": "alice"}).as_object().cloned().unwrap_or_default(),
        once: None,
    };
    raw.publish_to_node(fleet, "n1", &bob.seal_request(&request));
    // The same request signed honestly by Bob, as Bob, is answered (denied by policy), which
    // shows the silence above is the refusal and not a lost message.
    let honest = Request { id: new_request_id(), caller: "user=bob".to_owned(), ..request.clone() };
    raw.publish_to_node(fleet, "n1", &bob.seal_request(&honest));
    let bytes = raw.next_reply(Duration::from_secs(15)).expect("the honest request is answered");
    let reply = bob.open_reply(&bytes, 1 << 20).expect("n1's reply verifies with its trusted key");
    assert_eq!(reply.request_id, honest.id, "only the honest request is answered");
    assert_eq!(reply.status.code(), 1, "{reply:?}");
    assert!(raw.next_reply(Duration::from_millis(500)).is_none(), "the re-signed request was answered");

    let refusal = fleet
        .node("n1")
        .audit_lines()
        .into_iter()
        .find(|line| line["request_id"] == request.id.to_string())
        .expect("the re-signed request is audited");
    assert_eq!(refusal["outcome"], "refused");
    assert!(
        refusal["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("does not match the key that signed the request")),
        "{refusal}"
    );
    assert_eq!(fleet.daemon_stats("n1")["bad_signature"], 1);
}

#[test]
fn replies_count_only_when_signed_by_a_trusted_node_key() {
    let setup = Setup::start();
    // A client that trusts only n1's key drops n2's replies: n2 counts as not responding.
    let only_n1 = setup.root.join("only-n1");
    std::fs::create_dir_all(&only_n1).expect("dir");
    std::fs::copy(setup.root.join("keys/n1.pub"), only_n1.join("n1.pub")).expect("copy n1.pub");
    let output = setup.baton_as(
        "alice",
        "only-n1",
        &["rpc", "rpcutil", "ping", "-I", "n1", "-I", "n2", "-t", "3", "--json"],
    );
    assert_eq!(output.code, 3, "{output:?}");
    assert_eq!(output.nodes("replies"), ["n1"]);
    assert_eq!(output.json()["no_response"], json!(["n2"]));
}
