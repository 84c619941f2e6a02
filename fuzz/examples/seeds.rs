//! Writes the committed seed corpus, `fuzz/corpus/<target>/`, from Baton's own encoders, so the
//! fuzzers start from real messages rather than from nothing:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (stable is enough).
//!
//! Seeds are small and few on purpose: libFuzzer grows the corpus itself; these only give it
//! the shapes of real input (envelopes as the codec writes them, the filters of
//! `tests/filter.rs`, the built-in agent definitions, STOMP frames as brokers send them).

use std::fs;
use std::path::{Path, PathBuf};

use baton::broker::stomp::frame::{Command, Frame};
use baton::protocol::{FilterSpec, Registration, Reply, Request, StatusCode, to_cbor};
use baton::security::{Psk, Security};
use serde_json::{Map, json};

/// The key of the `envelope` target, so that seeded envelopes verify there.
const FUZZ_KEY: &[u8; 32] = b"3f5e0c9d7a1b2c4d6e8f90a1b2c3d4e5";

/// Filters from `tests/filter.rs`, one flag each: (flag index as the targets read it, text).
const FILTERS: &[(u8, &str)] = &[
    (0, "web01.example.com"),
    (0, r"/^web\d+\./"),
    (1, "role::web"),
    (1, "/^role::/"),
    (2, "role=web"),
    (2, "role=/^(web|db)$/"),
    (2, "role=~^w"),
    (2, "processorcount>=8"),
    (2, "os.release.major=12"),
    (2, r#"motd="hello world""#),
    (3, "/^pup/"),
    (4, "apache and (role=web or not /^db/)"),
    (4, "!ntp and processorcount<16"),
];

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let psk = Psk::from_bytes(FUZZ_KEY, "the fuzzing key").expect("a valid fixed key");
    let security = Security::Psk(psk);
    let request = request();

    let envelopes = [
        ("request", security.seal_request(&request)),
        ("reply", security.seal_reply(&reply(&request))),
        ("registration", security.seal_registration(&registration())),
    ];
    write(&corpus.join("envelope"), &envelopes);
    let payloads = [
        ("request", to_cbor(&request)),
        ("request-empty-filter", to_cbor(&Request { filter: FilterSpec::default(), ..request.clone() })),
    ];
    write(&corpus.join("request_payload"), &payloads);

    let filter_seeds: Vec<(String, Vec<u8>)> = FILTERS
        .iter()
        .enumerate()
        .map(|(index, (flag, text))| (format!("filter-{index:02}"), [&[*flag][..], text.as_bytes()].concat()))
        .collect();
    write(&corpus.join("filter"), &filter_seeds);
    // filter_cost reads a repeat count after the flag: once, and enough to pass the limits.
    let cost_seeds: Vec<(String, Vec<u8>)> = FILTERS
        .iter()
        .enumerate()
        .flat_map(|(index, (flag, text))| {
            [0u8, 255].map(|repeat| {
                (format!("filter-{index:02}-x{repeat}"), [&[*flag, repeat][..], text.as_bytes()].concat())
            })
        })
        .collect();
    write(&corpus.join("filter_cost"), &cost_seeds);

    let definitions_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/agents/definitions");
    let mut definitions = Vec::new();
    for entry in fs::read_dir(&definitions_dir).expect("the built-in definitions") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_stem().expect("a file name").to_string_lossy().into_owned();
        let mut bytes = fs::read(&path).expect("a readable definition");
        // After the NUL: inputs for the target to check against every action.
        bytes.extend_from_slice(b"\0{\"service\":\"nginx\",\"timeout\":30}");
        definitions.push((name, bytes));
    }
    write(&corpus.join("definition"), &definitions);

    let frames = [
        (
            "connected",
            Frame::new(Command::Connected).header("version", "1.2").header("heart-beat", "10000,10000"),
        ),
        (
            "message",
            Frame::new(Command::Message)
                .header("subscription", "s0")
                .header("message-id", "ID:broker-1:1:1:1")
                .header("destination", "/queue/baton.collective.node")
                .header("ack", "a\\c1")
                .body(security.seal_request(&request)),
        ),
        ("receipt", Frame::new(Command::Receipt).header("receipt-id", "r7")),
        ("error", Frame::new(Command::Error).header("message", "access refused").body(b"no\nway".to_vec())),
    ];
    let mut stomp: Vec<(String, Vec<u8>)> = frames
        .iter()
        .map(|(name, frame)| (name.to_string(), frame.to_bytes().expect("encodable seed frames")))
        .collect();
    stomp.push(("heart-beats-then-frame".to_string(), [&b"\n\r\n"[..], &stomp[2].1].concat()));
    write(&corpus.join("stomp_frame"), &stomp);
}

fn request() -> Request {
    let mut data = Map::new();
    data.insert("service".to_string(), json!("nginx"));
    Request {
        id: uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        sender: "client.example.com".to_string(),
        caller: "user=alice".to_string(),
        collective: "baton".to_string(),
        agent: "service".to_string(),
        action: "status".to_string(),
        filter: FilterSpec {
            class: vec!["role::web".to_string()],
            fact: vec!["os.family=Debian".to_string()],
            ..FilterSpec::default()
        },
        time_ms: 1_767_225_600_000,
        ttl_secs: 60,
        reply_to: "baton.reply.client-1".to_string(),
        data,
        once: None,
    }
}

fn reply(request: &Request) -> Reply {
    let mut data = Map::new();
    data.insert("status".to_string(), json!("running"));
    Reply {
        request_id: request.id,
        sender: "web01.example.com".to_string(),
        agent: request.agent.clone(),
        action: request.action.clone(),
        time_ms: request.time_ms + 120,
        status: StatusCode::Ok,
        status_message: String::new(),
        data,
    }
}

fn registration() -> Registration {
    let mut facts = Map::new();
    facts.insert("os".to_string(), json!({ "family": "Debian", "release": { "major": "12" } }));
    facts.insert("processorcount".to_string(), json!(8));
    Registration {
        identity: "web01.example.com".to_string(),
        collectives: vec!["baton".to_string()],
        facts,
        classes: vec!["apache".to_string(), "role::web".to_string()],
        agents: vec!["rpcutil".to_string(), "service".to_string()],
        version: "0.1.0".to_string(),
        time_ms: 1_767_225_600_000,
    }
}

/// Replaces the seeds in `dir` with `seeds` (name, bytes).
fn write(dir: &PathBuf, seeds: &[(impl AsRef<str>, Vec<u8>)]) {
    fs::create_dir_all(dir).expect("a corpus directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(name.as_ref()), bytes).expect("a writable corpus");
    }
}
