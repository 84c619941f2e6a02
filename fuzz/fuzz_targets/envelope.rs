//! Fuzz target: arbitrary bytes off the wire through envelope decoding and opening.
//!
//! Whatever the bytes, decoding and opening must return an error or a message, never panic,
//! and an envelope that decodes must survive an encode/decode round trip unchanged. The bytes
//! are also sealed as a payload with the fuzzing key, so that the request, reply and
//! registration decoders behind signature verification see arbitrary input too.

#![no_main]

use std::sync::LazyLock;

use baton::protocol::{DEFAULT_MAX_MESSAGE_BYTES, Envelope, PayloadKind};
use baton::security::{Psk, Security};
use libfuzzer_sys::fuzz_target;

static SECURITY: LazyLock<Security> = LazyLock::new(|| {
    let psk = Psk::from_bytes(b"3f5e0c9d7a1b2c4d6e8f90a1b2c3d4e5", "the fuzzing key")
        .expect("the fixed fuzzing key passes the key checks");
    Security::Psk(psk)
});

fuzz_target!(|data: &[u8]| {
    let limit = DEFAULT_MAX_MESSAGE_BYTES;
    if let Ok(envelope) = Envelope::decode(data, limit) {
        let again = Envelope::decode(&envelope.encode(), usize::MAX)
            .expect("an envelope that decoded once re-encodes to one that decodes");
        assert_eq!(again, envelope, "envelope changed in an encode/decode round trip");
    }
    let _ = SECURITY.open_request(data, limit);
    let _ = SECURITY.open_reply(data, limit);
    let _ = SECURITY.open_registration(data, limit);

    for kind in [PayloadKind::Request, PayloadKind::Reply, PayloadKind::Registration] {
        let sealed = SECURITY.seal(kind, data.to_vec()).encode();
        let opened = match kind {
            PayloadKind::Request => SECURITY.open_request(&sealed, usize::MAX).map(drop),
            PayloadKind::Reply => SECURITY.open_reply(&sealed, usize::MAX).map(drop),
            PayloadKind::Registration => SECURITY.open_registration(&sealed, usize::MAX).map(drop),
            // A rollout event's signature is never carried in an envelope (client::events).
            PayloadKind::Event => continue,
        };
        // Authentic envelopes may still carry a payload that does not decode; nothing else
        // may go wrong with them.
        if let Err(error) = opened {
            assert!(
                matches!(error, baton::security::OpenError::Malformed(_)),
                "authentic envelope refused for a reason other than its payload: {error}"
            );
        }
    }
});
