//! Hostile and broken input: wrong keys, replays, expired, oversized and random messages.
//! Each is refused, counted in `rpcutil daemon_stats`, audited, and the node keeps answering.

use std::time::Duration;

use baton::protocol::{FilterSpec, Reply, Request, new_request_id, now_ms};
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
