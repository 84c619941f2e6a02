//! Hostile and broken input: wrong keys, replays, expired, oversized and random messages.
//! Each is refused, counted in `rpcutil daemon_stats`, audited, and the node keeps answering.

use std::path::Path;
use std::time::Duration;

use baton::protocol::{FilterSpec, PayloadKind, Reply, Request, new_request_id, now_ms};
use baton::security::{Psk, Security};
use serde_json::json;

use crate::harness::{Fleet, NodeSpec, RawClient, Wire};

fn security(fleet: &Fleet) -> Security {
    Security::Psk(Psk::from_file(&fleet.dir.path().join("psk")).expect("fleet psk"))
}

fn request(fleet: &Fleet, raw: &RawClient, time_ms: u64, ttl_secs: u32) -> Request {
    Request {
        id: new_request_id(),
        sender: "raw-tester".to_string(),
        caller: "user=raw".to_string(),
        collective: fleet.collective.clone(),
        agent: "rpcutil".to_string(),
        action: "ping".to_string(),
        filter: FilterSpec::default(),
        time_ms,
        ttl_secs,
        reply_to: raw.reply_queue.clone(),
        data: serde_json::Map::new(),
        once: None,
    }
}

fn opened_reply(security: &Security, bytes: &[u8]) -> Reply {
    security.open_reply(bytes, 1 << 20).expect("reply verifies").into_inner()
}

crate::on_every_transport!(a_node_with_another_key_is_never_counted_and_audits_why);

fn a_node_with_another_key_is_never_counted_and_audits_why(wire: Wire) {
    let mut impostor = NodeSpec::new("rogue01", json!({"role": "web"}), &[]);
    impostor.psk = Some(uuid::Uuid::new_v4().simple().to_string());
    let fleet = Fleet::start_on(wire, vec![NodeSpec::new("web01", json!({"role": "web"}), &[]), impostor]);
    fleet.wait_until_subscribed("rogue01");
    let output =
        fleet.baton(&["rpc", "rpcutil", "ping", "-I", "web01", "-I", "rogue01", "-t", "3", "--json"]);
    assert_eq!(output.code, 3, "{output:?}");
    let document = output.json();
    assert_eq!(document["no_response"], json!(["rogue01"]));
    assert_eq!(output.nodes("replies"), ["web01"]);

    let discovered = fleet.baton(&["discover", "-F", "role=web", "--json"]);
    assert_eq!(discovered.nodes("nodes"), ["web01"], "{discovered:?}");

    let refusals: Vec<serde_json::Value> =
        fleet.node("rogue01").audit_lines().into_iter().filter(|line| line["outcome"] == "refused").collect();
    assert!(!refusals.is_empty(), "rogue01 audited no refusal");
    assert!(
        refusals
            .iter()
            .all(|line| line["reason"].as_str().is_some_and(|reason| reason.contains("signature"))),
        "refusals should say the signature did not verify: {refusals:?}"
    );
}

#[test]
fn replayed_expired_oversized_and_garbage_requests_are_refused_and_counted() {
    let fleet = Fleet::start(vec![NodeSpec::new("node01", json!({}), &[])]);
    let security = security(&fleet);
    let mut raw = RawClient::connect(&fleet);

    // A fresh request is answered once; the same bytes published again are a replay.
    let fresh = request(&fleet, &raw, now_ms(), 60);
    let sealed = security.seal_request(&fresh);
    raw.publish_to_node(&fleet, "node01", &sealed);
    let reply = raw.next_reply(Duration::from_secs(10)).expect("the fresh request is answered");
    let reply = opened_reply(&security, &reply);
    assert_eq!(reply.request_id, fresh.id);
    assert!(reply.status.is_ok(), "{reply:?}");
    raw.publish_to_node(&fleet, "node01", &sealed);

    // Signed correctly but ten minutes old with a one-minute ttl. (Two minutes was exactly the
    // ttl plus the default 60 s skew allowance, so a node checking it within the same
    // millisecond rightly accepted it: the age must be past the boundary, not on it.)
    let stale = request(&fleet, &raw, now_ms() - 600_000, 60);
    raw.publish_to_node(&fleet, "node01", &security.seal_request(&stale));

    // Over the 1 MiB limit, and random bytes.
    raw.publish_to_node(&fleet, "node01", &vec![0xA5; 2 * 1024 * 1024]);
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    raw.publish_to_node(&fleet, "node01", &noise);

    // The node keeps answering, and none of the refused messages produced a reply.
    let ping = fleet.baton(&["ping", "-I", "node01", "--json"]);
    assert_eq!(ping.code, 0, "{ping:?}");
    if let Some(extra) = raw.next_reply(Duration::from_millis(500)) {
        let stats = fleet.daemon_stats("node01");
        panic!(
            "a refused request was answered: {:?}\nnode stats: {stats:?}\naudit: {:?}",
            security.open_reply(&extra, 1 << 20).map(|verified| verified.into_inner()),
            fleet.node("node01").audit_lines()
        );
    }

    let stats = fleet.daemon_stats("node01");
    assert_eq!(stats["replayed"], 1, "{stats:?}");
    assert_eq!(stats["expired"], 1, "{stats:?}");
    assert_eq!(stats["too_large"], 1, "{stats:?}");
    assert_eq!(stats["malformed"], 1, "{stats:?}");

    let audit = fleet.node("node01").audit_lines();
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|line| line["outcome"] == "refused")
        .filter_map(|line| line["reason"].as_str())
        .collect();
    for fragment in ["replay", "expired", "limit", "CBOR"] {
        assert!(
            reasons.iter().any(|reason| reason.contains(fragment)),
            "no refusal mentions {fragment:?}: {reasons:?}"
        );
    }
}

/// A directory for a fleet, with `rpcutil.policy` holding `policy` in `policies/`; returns
/// it and the `[authorization]` table that points a node there.
fn with_rpcutil_policy(policy: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policy dir");
    std::fs::write(policies.join("rpcutil.policy"), policy).expect("write policy");
    let table = format!("[authorization]\npolicy_dir = {policies:?}\n");
    (dir, table)
}

/// The `[security]` table of a fleet node in `dir`, with more keys.
fn psk_security(dir: &Path, more: &str) -> String {
    format!("scheme = \"psk\"\npsk_file = {:?}\n{more}", dir.join("psk"))
}

/// Regression, security review finding 3: a caller whose policy denies everything sent
/// requests with long ttls that matched no node, or were refused, and filled every node's
/// replay window: every other caller was then refused ("replay window is full") fleet-wide.
/// Before the fix, the ping at the end went unanswered.
#[test]
fn a_caller_without_permissions_cannot_lock_others_out_of_the_replay_window() {
    let (dir, authorization) = with_rpcutil_policy("policy default allow\ndeny\tuser=mallory\t*\t*\t*\n");
    let mut spec = NodeSpec::new("node01", json!({"role": "web"}), &[]).with_config(&authorization);
    spec.security = Some(psk_security(dir.path(), "replay_window = 400\n"));
    let fleet = Fleet::start_in(dir, None, vec![spec]);
    let security = security(&fleet);
    let mut raw = RawClient::connect(&fleet);

    for index in 0..1000 {
        let mut hostile = request(&fleet, &raw, now_ms(), 3600);
        hostile.caller = "user=mallory".to_string();
        if index % 2 == 0 {
            hostile.filter.fact.push("role=nothing".to_string());
        }
        raw.publish_to_node(&fleet, "node01", &security.seal_request(&hostile));
    }
    // The refusals are answered; take them off the queue so none is mistaken for another.
    let mut refusals = 0;
    while let Some(bytes) = raw.next_reply(Duration::from_secs(5)) {
        let reply = opened_reply(&security, &bytes);
        assert!(reply.status_message.starts_with("not authorized: user=mallory"), "{reply:?}");
        refusals += 1;
        if refusals == 500 {
            break;
        }
    }
    assert_eq!(refusals, 500);

    let ping = fleet.baton(&["ping", "-I", "node01", "--json"]);
    assert_eq!(ping.code, 0, "another caller is refused after mallory's flood: {ping:?}");
    let stats = fleet.daemon_stats("node01");
    assert_eq!(stats["filtered"], 500, "{stats:?}");
    assert_eq!(stats["unauthorized"], 500, "{stats:?}");
    assert_eq!(stats["replay_window_full"], 0, "{stats:?}");
}

/// Regression, security review finding 10: `reply_to` was not constrained, so a node published
/// its reply into any queue a request named, another node's included (where it arrived as a
/// malformed request), and one broadcast was reflected by every node. Before the fix node02
/// counted node01's reply as a malformed request.
#[test]
fn a_reply_to_naming_another_nodes_queue_is_refused() {
    let fleet =
        Fleet::start(vec![NodeSpec::new("node01", json!({}), &[]), NodeSpec::new("node02", json!({}), &[])]);
    let security = security(&fleet);
    let mut raw = RawClient::connect(&fleet);
    let mut misdirected = request(&fleet, &raw, now_ms(), 60);
    misdirected.reply_to = format!("{}.node.node02", fleet.collective);
    raw.publish_to_node(&fleet, "node01", &security.seal_request(&misdirected));

    let node01 = fleet.daemon_stats("node01");
    let node02 = fleet.daemon_stats("node02");
    assert_eq!(node02["malformed"], 0, "node01 published into node02's queue: {node02:?}");
    assert_eq!(node01.get("bad_reply_to"), Some(&json!(1)), "{node01:?}");
    assert!(raw.next_reply(Duration::from_millis(500)).is_none());
    // (The harness's start-up pings make node01's `ok` count vary; its audit log says that the
    // misdirected request was refused and nothing else.)
    let lines: Vec<serde_json::Value> = fleet
        .node("node01")
        .audit_lines()
        .into_iter()
        .filter(|line| line["request_id"] == misdirected.id.to_string())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let refusal = &lines[0];
    assert_eq!(refusal["outcome"], "refused");
    assert!(
        refusal["reason"].as_str().is_some_and(|reason| reason.contains("not a client reply queue")),
        "{refusal}"
    );
}

/// The peak resident memory of a running process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()).expect("VmHWM in kB")
}

/// A CBOR text string.
fn cbor_text(out: &mut Vec<u8>, text: &str) {
    assert!(text.len() < 24, "short texts only");
    out.push(0x60 | text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// A request payload claiming to come from `caller` whose inputs hold `maps` one-entry maps:
/// three bytes each on the wire, hundreds of bytes each once decoded.
fn payload_of_tiny_maps(caller: &str, maps: u32) -> Vec<u8> {
    let mut out = vec![0xa7];
    cbor_text(&mut out, "id");
    out.push(0x50);
    out.extend_from_slice(new_request_id().as_bytes());
    for (key, value) in [
        ("sender", "tiny-maps"),
        ("caller", caller),
        ("collective", "baton"),
        ("agent", "rpcutil"),
        ("action", "ping"),
    ] {
        cbor_text(&mut out, key);
        cbor_text(&mut out, value);
    }
    cbor_text(&mut out, "data");
    out.push(0xa1);
    cbor_text(&mut out, "x");
    out.push(0x9a);
    out.extend_from_slice(&maps.to_be_bytes());
    for _ in 0..maps {
        out.extend_from_slice(&[0xa1, 0x60, 0x00]);
    }
    out
}

/// Regression, security review finding 7: an unsigned 1 MiB message of 340 000 tiny maps,
/// sent with only a broker login, was decoded in full for its audit line and raised a node
/// from 13 MB to 264 MB, which the allocator kept. Now only a few short top-level fields are
/// read. A memory bound, not a timing one: before the fix the peak grew by about 250 MB.
#[test]
fn an_unsigned_message_of_tiny_maps_does_not_inflate_the_node() {
    let fleet = Fleet::start(vec![NodeSpec::new("node01", json!({}), &[])]);
    let raw = RawClient::connect(&fleet);
    let pid = fleet.node("node01").child.id();
    let before = peak_rss_kb(pid);

    let unknown_key =
        Security::Psk(Psk::from_bytes(b"a key no node of this fleet holds", "other").expect("key"));
    let payload = payload_of_tiny_maps("user=tiny-maps", 340_000);
    let hostile = unknown_key.seal(PayloadKind::Request, payload).encode();
    assert!(hostile.len() < 1024 * 1024, "under the size limit: {}", hostile.len());
    raw.publish_to_node(&fleet, "node01", &hostile);

    let stats = fleet.daemon_stats("node01");
    assert_eq!(stats["bad_signature"], 1, "{stats:?}");
    let after = peak_rss_kb(pid);
    assert!(
        after < before + 64 * 1024,
        "the node's peak memory grew from {before} kB to {after} kB for one refused message"
    );
    let refusal = fleet
        .node("node01")
        .audit_lines()
        .into_iter()
        .find(|line| line["outcome"] == "refused")
        .expect("the refusal is audited");
    assert_eq!(refusal["unverified"], true);
    assert_eq!(refusal["caller"], "user=tiny-maps", "the claimed caller is still read: {refusal}");
}

/// The design gap of the review: policies restrict by input value. A real node with a policy
/// that allows `rpcutil get_fact` only for some facts, through the real CLI; the refused caller
/// learns neither the rule nor the node's agents (finding 11), the audit log names the rule.
#[test]
fn policies_restrict_by_input_value_on_a_real_node() {
    let policy = "\
policy default deny
deny\t*\tget_fact\t*\t*\tfact=/^secret/
allow\t*\tget_fact\t*\t*\tfact=/^(role|rack)$/
allow\t*\tping daemon_stats\t*\t*
";
    let (dir, authorization) = with_rpcutil_policy(policy);
    let spec =
        NodeSpec::new("node01", json!({"role": "web", "secret_token": "x"}), &[]).with_config(&authorization);
    let fleet = Fleet::start_in(dir, None, vec![spec]);

    let allowed = fleet.baton(&["rpc", "rpcutil", "get_fact", "fact=role", "-I", "node01", "--json"]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert_eq!(allowed.json()["replies"][0]["data"]["value"], "web", "{allowed:?}");

    for fact in ["secret_token", "hostname"] {
        let refused =
            fleet.baton(&["rpc", "rpcutil", "get_fact", &format!("fact={fact}"), "-I", "node01", "--json"]);
        assert_eq!(refused.code, 1, "{refused:?}");
        let message = refused.json()["replies"][0]["message"].as_str().unwrap_or_default().to_owned();
        assert_eq!(message, "not authorized: user=tester may not run rpcutil#get_fact on node01");
    }

    let reasons: Vec<String> = fleet
        .node("node01")
        .audit_lines()
        .into_iter()
        .filter(|line| line["outcome"] == "refused")
        .filter_map(|line| line["reason"].as_str().map(str::to_owned))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("rpcutil.policy line 2 (deny * get_fact * * fact=/^secret/)")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|reason| reason.contains("no rule matched; policy default deny")),
        "{reasons:?}"
    );
}

/// Regression, review of issue 13 (finding 16): with a PSK the caller is whatever the sender
/// writes, and batond's text log printed it raw, so a caller holding a newline ended the log
/// line and forged the next one (and an escape code reached whoever read the log). Every text
/// log line now escapes control characters where it is formatted (`baton::logging`); the audit
/// log, JSON lines, keeps the caller exactly and on one line.
#[test]
fn a_caller_holding_newlines_cannot_forge_log_or_audit_lines() {
    const FORGED: &str =
        "2026-12-02T00:00:00.000000Z  INFO baton::node::pipeline: request accepted caller=user=root";
    // Everyone may ping (the harness waits for that), nobody may ask for the inventory.
    let (dir, authorization) = with_rpcutil_policy("policy default allow\ndeny\t*\tinventory\t*\t*\n");
    let mut spec = NodeSpec::new("node01", json!({}), &[]).with_config(&authorization);
    spec.security = Some(psk_security(dir.path(), ""));
    let fleet = Fleet::start_in(dir, None, vec![spec]);
    let security = security(&fleet);
    let mut raw = RawClient::connect(&fleet);

    let mut hostile = request(&fleet, &raw, now_ms(), 60);
    hostile.caller = format!("user=mallory\n{FORGED}\r\n\u{1b}[2J");
    hostile.sender = format!("raw\n{FORGED}");
    hostile.action = "inventory".to_string();
    raw.publish_to_node(&fleet, "node01", &security.seal_request(&hostile));
    let reply = raw.next_reply(Duration::from_secs(10)).expect("the refusal is answered");
    let reply = opened_reply(&security, &reply);
    assert!(reply.status_message.starts_with("not authorized: user=mallory"), "{reply:?}");

    // The node logs the refusal with the caller; wait for that line, then read the whole log.
    let node = fleet.node("node01");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !node.log().contains("request not authorized") {
        assert!(std::time::Instant::now() < deadline, "no refusal in the log:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = node.log();
    assert!(!log.lines().any(|line| line.starts_with(FORGED)), "a forged log line:\n{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\r'), "raw control characters in the log:\n{log:?}");
    let refusal = log.lines().find(|line| line.contains("request not authorized")).expect("refusal line");
    assert!(refusal.contains(&format!("user=mallory\\n{FORGED}\\r\\n\\u{{1b}}[2J")), "{refusal}");

    let audit_text = std::fs::read_to_string(node.dir.join("audit.log")).expect("audit log");
    assert!(!audit_text.lines().any(|line| line.starts_with(FORGED)), "a forged audit line:\n{audit_text}");
    let records: Vec<serde_json::Value> = audit_text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect();
    let record = records
        .iter()
        .find(|record| record["request_id"] == json!(hostile.id))
        .unwrap_or_else(|| panic!("no audit line for the request: {records:?}"));
    assert_eq!(record["caller"], json!(hostile.caller), "{record}");
    assert_eq!(record["sender"], json!(hostile.sender), "{record}");
}
