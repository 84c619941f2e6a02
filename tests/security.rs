//! Hermetic tests of `baton::security`: sealing and opening envelopes, tampering, key loading,
//! freshness, the replay window, and TLS client configuration (with real in-memory handshakes
//! against the fixtures in `tests/fixtures/tls`, which `make.sh` there regenerates).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton::protocol::{
    Envelope, FilterSpec, PROTOCOL_VERSION, PayloadKind, Registration, Reply, Request, StatusCode,
};
use baton::security::{
    KeyError, OpenError, Psk, ReplayWindow, Replayed, Security, Stale, TlsError, TlsSettings, check_age,
    client_config, expires_at_ms, explain_handshake_error,
};
use uuid::Uuid;

const LIMIT: usize = 64 * 1024;
const NODE_KEY: &[u8] = b"3f5e0c9d7a1b2c4d6e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6\n";
const OTHER_KEY: &[u8] = b"9a8b7c6d5e4f30211203948576afbecd0f1e2d3c4b5a69788796a5b4c3d2e1f0\n";

fn security_with(key: &[u8]) -> Security {
    Security::Psk(Psk::from_bytes(key, "test key").expect("the test keys are good keys"))
}

fn node() -> Security {
    security_with(NODE_KEY)
}

fn sample_request() -> Request {
    let mut data = serde_json::Map::new();
    data.insert("service".to_owned(), serde_json::json!("nginx"));
    Request {
        id: Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0),
        sender: "ci-runner".to_owned(),
        caller: "user=alice".to_owned(),
        collective: "baton".to_owned(),
        agent: "service".to_owned(),
        action: "restart".to_owned(),
        filter: FilterSpec::default(),
        time_ms: 1_700_000_000_000,
        ttl_secs: 60,
        reply_to: "baton.reply.ci-runner".to_owned(),
        data,
        once: None,
    }
}

fn sample_reply() -> Reply {
    Reply {
        request_id: sample_request().id,
        sender: "web01".to_owned(),
        agent: "service".to_owned(),
        action: "restart".to_owned(),
        time_ms: 1_700_000_000_100,
        status: StatusCode::Ok,
        status_message: String::new(),
        data: serde_json::Map::new(),
    }
}

/// Seals the sample request, lets `tamper` change the envelope, and re-encodes it.
fn tampered_request(tamper: impl FnOnce(&mut Envelope)) -> Vec<u8> {
    let mut envelope =
        Envelope::decode(&node().seal_request(&sample_request()), LIMIT).expect("fresh envelope");
    tamper(&mut envelope);
    envelope.encode()
}

// ---- sealing and opening -----------------------------------------------------------------

#[test]
fn request_round_trips_with_the_key_id_of_the_verifying_key() {
    let security = node();
    let opened =
        security.open_request(&security.seal_request(&sample_request()), LIMIT).expect("own request opens");
    assert_eq!(*opened, sample_request());
    assert_eq!(opened.key_id(), security.key_id());
    assert_eq!(opened.scheme(), "psk");
    assert_eq!(opened.into_inner(), sample_request());
}

#[test]
fn reply_and_registration_round_trip() {
    let security = node();
    let reply = security.open_reply(&security.seal_reply(&sample_reply()), LIMIT).expect("opens");
    assert_eq!(*reply, sample_reply());

    let registration = Registration {
        identity: "web01".to_owned(),
        collectives: vec!["baton".to_owned()],
        facts: serde_json::Map::new(),
        classes: vec!["role::web".to_owned()],
        agents: vec!["rpcutil".to_owned()],
        version: "0.1.0".to_owned(),
        time_ms: 1,
    };
    let sealed = security.seal_registration(&registration);
    assert_eq!(*security.open_registration(&sealed, LIMIT).expect("opens"), registration);
}

#[test]
fn two_processes_with_the_same_key_file_interoperate() {
    let client = security_with(NODE_KEY);
    let node = security_with(NODE_KEY);
    assert!(node.open_request(&client.seal_request(&sample_request()), LIMIT).is_ok());
}

fn check_open_request(bytes: &[u8], expected: OpenError) {
    assert_eq!(node().open_request(bytes, LIMIT).expect_err("must be refused"), expected);
}

#[test]
fn tampering_with_any_signed_field_is_refused_with_the_right_error() {
    let key_id = node().key_id().to_owned();
    let bad_signature = OpenError::BadSignature { key_id_seen: key_id.clone(), our_key_id: key_id.clone() };

    check_open_request(
        &tampered_request(|envelope| {
            let last = envelope.payload.len() - 1;
            envelope.payload[last] ^= 0x01;
        }),
        bad_signature.clone(),
    );
    check_open_request(&tampered_request(|envelope| envelope.signature[0] ^= 0x80), bad_signature.clone());
    check_open_request(&tampered_request(|envelope| envelope.signature.truncate(16)), bad_signature.clone());
    check_open_request(&tampered_request(|envelope| envelope.signature.clear()), bad_signature);
    check_open_request(
        &tampered_request(|envelope| envelope.kind = PayloadKind::Reply),
        OpenError::WrongKind { expected: PayloadKind::Request, got: PayloadKind::Reply },
    );
    check_open_request(
        &tampered_request(|envelope| envelope.scheme = "ed25519".to_owned()),
        OpenError::WrongScheme { expected: "psk", got: "ed25519".to_owned() },
    );
    check_open_request(
        &tampered_request(|envelope| envelope.version = PROTOCOL_VERSION + 1),
        OpenError::Version { got: PROTOCOL_VERSION + 1 },
    );
}

#[test]
fn relabelling_a_request_as_a_reply_breaks_the_signature() {
    // The kind is signed: an attacker who changes the label to get past the kind check still
    // fails verification.
    let relabelled = tampered_request(|envelope| envelope.kind = PayloadKind::Reply);
    let error = node().open_reply(&relabelled, LIMIT).expect_err("must be refused");
    assert!(matches!(error, OpenError::BadSignature { .. }), "{error:?}");
}

#[test]
fn a_reply_cannot_be_opened_as_a_request() {
    let security = node();
    let error = security
        .open_request(&security.seal_reply(&sample_reply()), LIMIT)
        .expect_err("a reply is not a request");
    assert_eq!(error, OpenError::WrongKind { expected: PayloadKind::Request, got: PayloadKind::Reply });
    assert!(security.open_reply(&security.seal_request(&sample_request()), LIMIT).is_err());
}

#[test]
fn the_key_id_is_a_hint_and_not_signed() {
    // Changing the unsigned key id neither breaks a genuine message nor changes whose key
    // verified it: the verified key id is the node's own.
    let relabelled = tampered_request(|envelope| envelope.key_id = "0000000000000000".to_owned());
    let opened = node().open_request(&relabelled, LIMIT).expect("signature still verifies");
    assert_eq!(opened.key_id(), node().key_id());
}

#[test]
fn wrong_key_names_both_key_ids() {
    let client = security_with(OTHER_KEY);
    let node = node();
    let error =
        node.open_request(&client.seal_request(&sample_request()), LIMIT).expect_err("different keys");
    assert_eq!(
        error,
        OpenError::BadSignature {
            key_id_seen: client.key_id().to_owned(),
            our_key_id: node.key_id().to_owned(),
        }
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "signed with key {}, this node holds key {} (check the PSK file)",
            client.key_id(),
            node.key_id()
        )),
        "{message}"
    );
}

#[test]
fn oversize_messages_are_refused_before_decoding() {
    // Garbage of limit + 1 bytes: TooLarge rather than Malformed shows nothing was decoded.
    let garbage = vec![0xff; LIMIT + 1];
    check_open_request(&garbage, OpenError::TooLarge { size: LIMIT + 1, limit: LIMIT });
}

#[test]
fn a_genuine_message_just_over_the_limit_is_refused() {
    let sealed = node().seal_request(&sample_request());
    let error = node().open_request(&sealed, sealed.len() - 1).expect_err("over the limit");
    assert_eq!(error, OpenError::TooLarge { size: sealed.len(), limit: sealed.len() - 1 });
    assert!(node().open_request(&sealed, sealed.len()).is_ok(), "exactly the limit is allowed");
}

#[test]
fn an_authentic_envelope_with_an_undecodable_payload_is_malformed() {
    let security = node();
    let bytes = security.seal(PayloadKind::Request, b"not cbor at all".to_vec()).encode();
    match security.open_request(&bytes, LIMIT) {
        Err(OpenError::Malformed(reason)) => assert!(reason.contains("request"), "{reason}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// SplitMix64: a fixed-seed generator, so that a failing input can be reproduced.
struct Pseudorandom(u64);

impl Pseudorandom {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn random_bytes_are_refused_without_panicking() {
    let security = node();
    let mut random = Pseudorandom(0x0ba7_0ba7);
    for round in 0..4000 {
        let length = random.below(300);
        let mut bytes: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();
        // Every other input starts like a CBOR map, so that decoding gets past the first byte.
        if round % 2 == 0 && !bytes.is_empty() {
            bytes[0] = 0xa0 | (bytes[0] & 0x07);
        }
        let result = security.open_request(&bytes, LIMIT);
        assert!(
            matches!(result, Err(OpenError::Malformed(_) | OpenError::Version { .. })),
            "round {round}, input {bytes:02x?}: {result:?}"
        );
        assert!(security.open_reply(&bytes, LIMIT).is_err());
    }
}

#[test]
fn mutated_genuine_messages_never_open_to_different_content() {
    // Flipping bytes of a real envelope reaches the deeper checks; whatever still opens (a
    // change to the unsigned key id) must carry exactly the original request.
    let security = node();
    let original = security.seal_request(&sample_request());
    let mut random = Pseudorandom(42);
    let mut opened_count = 0;
    for _ in 0..3000 {
        let mut bytes = original.clone();
        for _ in 0..=random.below(3) {
            let position = random.below(bytes.len());
            bytes[position] ^= 1 << random.below(8);
        }
        if let Ok(opened) = security.open_request(&bytes, LIMIT) {
            assert_eq!(*opened, sample_request());
            opened_count += 1;
        }
    }
    assert!(opened_count < 3000, "mutations must be refused in general");
}

// ---- key loading -------------------------------------------------------------------------

fn write_key_file(directory: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = directory.join(name);
    std::fs::write(&path, contents).expect("write to the temporary directory");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn check_key_file_refused(contents: &[u8], mode: u32, expected_fragment: &str) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = write_key_file(directory.path(), "psk", contents, mode);
    let error = Psk::from_file(&path).expect_err("must be refused").to_string();
    assert!(error.contains(&path.display().to_string()), "names the file: {error}");
    assert!(error.contains(expected_fragment), "{error}");
}

#[test]
fn bad_key_files_are_refused_naming_the_file_and_the_fix() {
    let fix = "openssl rand -hex 32 > /etc/baton/psk";
    check_key_file_refused(b"", 0o600, "is empty");
    check_key_file_refused(b"\n", 0o600, fix);
    check_key_file_refused(b"tooshort\n", 0o600, "shorter than the minimum of 16");
    check_key_file_refused(b"changeme-changeme\n", 0o600, fix);
    check_key_file_refused(b"CHANGE_ME_PLEASE_NOW\n", 0o600, "placeholder");
    check_key_file_refused(b"secretsecretsecret\n", 0o600, "placeholder");
    check_key_file_refused(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", 0o600, "one character repeated");
    check_key_file_refused(NODE_KEY, 0o666, "chmod 600");
    check_key_file_refused(NODE_KEY, 0o620, "may read or change it");
}

#[test]
fn a_missing_key_file_is_named() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("no-such-psk");
    let error = Psk::from_file(&path).expect_err("missing");
    assert!(matches!(error, KeyError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}

#[test]
fn only_key_files_private_to_their_owner_load() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let private = Psk::from_file(&write_key_file(directory.path(), "private", NODE_KEY, 0o600))
        .expect("a good key file");
    // Issue 12, finding 9: the PSK is the collective's root credential; a key that group or
    // others may read is refused, not warned about.
    for mode in [0o640, 0o644] {
        let path = write_key_file(directory.path(), &format!("readable-{mode:o}"), NODE_KEY, mode);
        let error = Psk::from_file(&path).expect_err("readable by group or others").to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
    // The trailing newline is not part of the key: the file and the bytes agree.
    assert_eq!(private.key_id(), node().key_id());
}

// ---- freshness ---------------------------------------------------------------------------

fn check_freshness(request_time_ms: u64, ttl_secs: u32, now_ms: u64, expected: Result<(), Stale>) {
    let skew_allowance_ms = 5_000;
    assert_eq!(
        check_age(request_time_ms, ttl_secs, now_ms, skew_allowance_ms),
        expected,
        "time {request_time_ms}, ttl {ttl_secs}s, now {now_ms}"
    );
}

#[test]
fn freshness() {
    const T: u64 = 1_700_000_000_000;
    check_freshness(T, 60, T, Ok(()));
    check_freshness(T, 60, T + 60_000, Ok(()));
    check_freshness(T, 60, T + 65_000, Ok(()));
    check_freshness(
        T,
        60,
        T + 65_001,
        Err(Stale::Expired { age_ms: 65_001, ttl_ms: 60_000, allowance_ms: 5_000 }),
    );
    check_freshness(T + 5_000, 60, T, Ok(()));
    check_freshness(T + 5_001, 60, T, Err(Stale::FromFuture { ahead_ms: 5_001, allowance_ms: 5_000 }));
    check_freshness(T, 0, T, Err(Stale::InvalidTtl { ttl_secs: 0 }));
    check_freshness(T, 86_400, T, Ok(()));
    check_freshness(T, 86_401, T, Err(Stale::InvalidTtl { ttl_secs: 86_401 }));
    check_freshness(T, u32::MAX, T, Err(Stale::InvalidTtl { ttl_secs: u32::MAX }));
    check_freshness(
        0,
        60,
        u64::MAX,
        Err(Stale::Expired { age_ms: u64::MAX, ttl_ms: 60_000, allowance_ms: 5_000 }),
    );
}

#[test]
fn freshness_and_replay_expiry_agree() {
    // The replay window must remember an id exactly as long as check_age accepts the request.
    let (time, ttl, skew) = (1_000_000, 30, 2_000);
    let expiry = expires_at_ms(time, ttl, skew);
    assert!(check_age(time, ttl, expiry, skew).is_ok());
    assert!(check_age(time, ttl, expiry + 1, skew).is_err());
}

#[test]
fn stale_messages_say_what_to_do() {
    let future = Stale::FromFuture { ahead_ms: 9_000, allowance_ms: 5_000 }.to_string();
    assert!(future.contains("clocks"), "{future}");
    let invalid = Stale::InvalidTtl { ttl_secs: 0 }.to_string();
    assert!(invalid.contains("between 1 and 86400"), "{invalid}");
}

// ---- replay window -----------------------------------------------------------------------

fn id(number: u128) -> Uuid {
    Uuid::from_u128(number)
}

/// A caller per number, so that tests of the window as a whole do not meet the caller share.
fn caller(number: impl std::fmt::Display) -> String {
    format!("user=u{number}")
}

#[test]
fn a_duplicate_id_is_refused_until_it_expires() {
    let mut window = ReplayWindow::new(10);
    assert_eq!(window.remember(id(1), &caller(1), 1_000, 0), Ok(()));
    assert_eq!(window.remember(id(1), &caller(1), 1_000, 500), Err(Replayed::Duplicate { id: id(1) }));
    // The expiry is inclusive: at 1000 the request is still fresh, so still a replay.
    assert_eq!(window.remember(id(1), &caller(1), 1_000, 1_000), Err(Replayed::Duplicate { id: id(1) }));
    assert_eq!(window.remember(id(2), &caller(2), 2_000, 1_001), Ok(()));
    assert_eq!(window.len(), 1, "id 1 was forgotten once it expired");
    assert_eq!(window.remember(id(1), &caller(1), 3_000, 1_002), Ok(()));
}

#[test]
fn a_full_window_refuses_new_ids_instead_of_forgetting_fresh_ones() {
    let mut window = ReplayWindow::new(3);
    for number in 1..=3 {
        assert_eq!(window.remember(id(number), &caller(number), 1_000 + number as u64, 0), Ok(()));
    }
    assert_eq!(
        window.remember(id(4), &caller(4), 5_000, 10),
        Err(Replayed::WindowFull { capacity: 3, retry_after_ms: 992 })
    );
    // Nothing was forgotten to make room: every remembered id is still refused.
    for number in 1..=3 {
        assert_eq!(
            window.remember(id(number), &caller(number), 1_000, 20),
            Err(Replayed::Duplicate { id: id(number) })
        );
    }
    // Once the oldest expires, there is room again.
    assert_eq!(window.remember(id(4), &caller(4), 5_000, 1_002), Ok(()));
    assert_eq!(window.len(), 3);
    let message = Replayed::WindowFull { capacity: 3, retry_after_ms: 992 }.to_string();
    assert!(message.contains("raise security.replay_window"), "{message}");
}

#[test]
fn a_steady_stream_stays_within_capacity() {
    let mut window = ReplayWindow::new(1_000);
    for step in 0..20_000u64 {
        // Ten ids per millisecond, each fresh for 50 ms: about 500 live at once.
        let now = step / 10;
        window
            .remember(id(u128::from(step)), &caller(step % 16), now + 50, now)
            .expect("the window is big enough for this rate");
        assert!(window.len() <= 520, "expired ids must be evicted, len {}", window.len());
    }
    assert_eq!(window.capacity(), 1_000);
}

// ---- TLS ---------------------------------------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

fn settings(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TlsSettings {
    TlsSettings { ca: ca.map(fixture), cert: cert.map(fixture), key: key.map(fixture), server_name: None }
}

fn check_tls_error(settings: TlsSettings, expected_fragments: &[&str]) {
    let error = client_config(&settings).expect_err("must be refused").to_string();
    for fragment in expected_fragments {
        assert!(error.contains(fragment), "missing {fragment:?} in: {error}");
    }
}

#[test]
fn bad_tls_files_give_errors_naming_file_and_problem() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let garbage = directory.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").expect("write");
    let damaged = directory.path().join("damaged.pem");
    std::fs::write(&damaged, "-----BEGIN CERTIFICATE-----\nAAAA\n").expect("write");
    let missing = directory.path().join("missing.pem");

    let with_ca = |path: &Path| TlsSettings { ca: Some(path.to_owned()), ..TlsSettings::default() };
    check_tls_error(
        with_ca(&garbage),
        &[&garbage.display().to_string(), "tls.ca", "no certificates found", "BEGIN CERTIFICATE"],
    );
    check_tls_error(with_ca(&missing), &[&missing.display().to_string(), "does not exist"]);
    check_tls_error(with_ca(&damaged), &[&damaged.display().to_string(), "PEM is damaged"]);
    check_tls_error(
        settings(Some("server.key"), None, None),
        &["server.key", "holds a private key, not a certificate"],
    );
    check_tls_error(
        settings(Some("ca.pem"), None, Some("client-pkcs8.key")),
        &["tls.key is set", "client-pkcs8.key", "tls.cert is not"],
    );
    check_tls_error(settings(Some("ca.pem"), Some("client-pkcs8.pem"), None), &["tls.cert is set"]);
    check_tls_error(
        settings(Some("ca.pem"), Some("client-pkcs8.pem"), Some("client-pkcs8.pem")),
        &["tls.key", "client-pkcs8.pem", "holds a certificate, not a private key"],
    );
    check_tls_error(
        settings(Some("ca.pem"), Some("client-pkcs8.pem"), Some("client-sec1.key")),
        &["client-pkcs8.pem", "client-sec1.key", "do not work together"],
    );
}

#[test]
fn valid_tls_files_build_configs() {
    assert!(client_config(&settings(Some("ca.pem"), None, None)).is_ok());
    assert!(client_config(&settings(None, None, None)).is_ok(), "webpki roots without tls.ca");
    for name in ["client-pkcs8", "client-sec1", "client-rsa"] {
        let config = client_config(&settings(
            Some("ca.pem"),
            Some(&format!("{name}.pem")),
            Some(&format!("{name}.key")),
        ));
        assert!(config.is_ok(), "{name}: {:?}", config.err());
    }
}

/// A broker stand-in: rustls server config for `localhost`, optionally requiring client certs.
fn server_config(require_client_cert: bool) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("server.pem"))
        .expect("fixture")
        .collect::<Result<_, _>>()
        .expect("fixture");
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("fixture");
    let builder = rustls::ServerConfig::builder();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(fixture("ca.pem")).expect("fixture") {
            roots.add(ca.expect("fixture")).expect("fixture");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().expect("roots");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(builder.with_single_cert(chain, key).expect("fixture pair"))
}

/// Runs a TLS handshake in memory; returns the client's error, or the server's if the client
/// saw none.
fn handshake(
    client: &TlsSettings,
    server: Arc<rustls::ServerConfig>,
    host: &str,
) -> Result<(), rustls::Error> {
    let config = client_config(client).expect("client config");
    let name = client.server_name_for(host).expect("valid host");
    let mut client = rustls::ClientConnection::new(config, name)?;
    let mut server = rustls::ServerConnection::new(server)?;
    let mut server_error = None;
    for _ in 0..16 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).expect("writing to a Vec");
        }
        if !to_server.is_empty() && server_error.is_none() {
            server.read_tls(&mut &to_server[..]).expect("reading from a slice");
            server_error = server.process_new_packets().err();
        }
        let mut to_client = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut to_client).expect("writing to a Vec");
        }
        if !to_client.is_empty() {
            client.read_tls(&mut &to_client[..]).expect("reading from a slice");
            client.process_new_packets()?;
        }
        if let Some(error) = server_error.take() {
            return Err(error);
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn check_handshake_explained(client: TlsSettings, require_client_cert: bool, host: &str, expected: &str) {
    let error = handshake(&client, server_config(require_client_cert), host).expect_err("must fail");
    let explained = explain_handshake_error(&error, host);
    assert!(explained.contains(expected), "{error:?} explained as: {explained}");
    // tokio-rustls hands the same error over wrapped in an io::Error.
    let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
    assert_eq!(explain_handshake_error(&wrapped, host), explained);
}

#[test]
fn handshakes_with_the_right_settings_succeed() {
    assert!(handshake(&settings(Some("ca.pem"), None, None), server_config(false), "localhost").is_ok());
    assert!(handshake(&settings(Some("ca.pem"), None, None), server_config(false), "127.0.0.1").is_ok());
    let with_client_cert = settings(Some("ca.pem"), Some("client-rsa.pem"), Some("client-rsa.key"));
    assert!(handshake(&with_client_cert, server_config(true), "localhost").is_ok());
    // tls.server_name overrides the URL's host.
    let renamed =
        TlsSettings { server_name: Some("localhost".to_owned()), ..settings(Some("ca.pem"), None, None) };
    assert!(handshake(&renamed, server_config(false), "mq1.example.net").is_ok());
}

#[test]
fn handshake_failures_are_explained() {
    check_handshake_explained(
        settings(Some("ca.pem"), None, None),
        false,
        "mq1.example.net",
        r#"certificate is not valid for host "mq1.example.net": it names "localhost", "127.0.0.1""#,
    );
    check_handshake_explained(
        settings(Some("ca.pem"), None, None),
        false,
        "mq1.example.net",
        "(set tls.server_name or fix the certificate)",
    );
    check_handshake_explained(
        settings(Some("other-ca.pem"), None, None),
        false,
        "localhost",
        "certificate was not issued by the configured CA (check tls.ca;",
    );
    check_handshake_explained(settings(None, None, None), false, "localhost", "check tls.ca");
    check_handshake_explained(
        settings(Some("ca.pem"), None, None),
        true,
        "localhost",
        "the broker requires a client certificate (set tls.cert and tls.key)",
    );
}

#[test]
fn tls_error_variants_are_matchable() {
    let error =
        client_config(&settings(Some("ca.pem"), None, Some("client-rsa.key"))).expect_err("key without cert");
    assert!(matches!(error, TlsError::KeyWithoutCert { .. }), "{error:?}");
}
