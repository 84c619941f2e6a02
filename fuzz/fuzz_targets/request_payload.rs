//! Fuzz target: an unverified request payload as a node sees it.
//!
//! The bytes are the CBOR inside a request envelope, sealed with the node's key so that they
//! get past the signature to the decoder, then taken through what a node does with a request,
//! in order: the size check, opening (envelope, signature, payload), the freshness arithmetic,
//! the filter and the action's inputs. Whatever the bytes, nothing panics; the same envelope
//! never verifies under another key; a request that opens re-seals and opens to itself.

#![no_main]

use std::sync::LazyLock;

use baton::agents::AgentRegistry;
use baton::protocol::filter::Filter;
use baton::protocol::{DEFAULT_MAX_MESSAGE_BYTES, PayloadKind};
use baton::security::{OpenError, Psk, Security, check_age, expires_at_ms};
use libfuzzer_sys::fuzz_target;

fn security(key: &[u8; 32], name: &str) -> Security {
    Security::Psk(Psk::from_bytes(key, name).expect("the fixed fuzzing keys pass the key checks"))
}

static NODE: LazyLock<Security> = LazyLock::new(|| security(b"3f5e0c9d7a1b2c4d6e8f90a1b2c3d4e5", "node"));
static OTHER: LazyLock<Security> = LazyLock::new(|| security(b"a1b2c3d4e5f60718293a4b5c6d7e8f90", "other"));
static AGENTS: LazyLock<AgentRegistry> = LazyLock::new(AgentRegistry::builtin);

/// A fixed "now" (2026-01-01), so that a crash reproduces whatever the clock says.
const NOW_MS: u64 = 1_767_225_600_000;
const SKEW_MS: u64 = 30_000;

fuzz_target!(|payload: &[u8]| {
    let limit = DEFAULT_MAX_MESSAGE_BYTES;
    let sealed = NODE.seal(PayloadKind::Request, payload.to_vec()).encode();
    let opened = NODE.open_request(&sealed, limit);
    if sealed.len() > limit {
        assert!(
            matches!(opened, Err(OpenError::TooLarge { .. })),
            "an oversized request was not refused for its size"
        );
        return;
    }
    assert!(
        matches!(OTHER.open_request(&sealed, limit), Err(OpenError::BadSignature { .. })),
        "a request verified under a key that did not sign it"
    );
    let request = match opened {
        Ok(request) => request.into_inner(),
        Err(OpenError::Malformed(_)) => return,
        Err(error) => panic!("an authentic request refused for a reason other than its payload: {error}"),
    };

    let _ = check_age(request.time_ms, request.ttl_secs, NOW_MS, SKEW_MS);
    let _ = expires_at_ms(request.time_ms, request.ttl_secs, SKEW_MS);
    if let Err(error) = Filter::compile(&request.filter) {
        let _ = error.to_string();
        let _ = error.caret();
    }
    if let Some(agent) = AGENTS.agent(&request.agent) {
        if let Some(action) = agent.definition().action(&request.action) {
            if let Err(error) = action.validate_inputs(&request.agent, &request.action, &request.data) {
                let _ = error.to_string();
            }
        }
    }

    let again = NODE.open_request(&NODE.seal_request(&request), usize::MAX).expect("a request re-seals");
    assert_eq!(again.into_inner(), request, "request changed in a seal/open round trip");
});
