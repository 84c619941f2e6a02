//! Message security: sealing and opening envelopes, freshness, the replay window, and TLS.
//!
//! This module knows nothing of brokers. [`Security`] turns a payload into a signed
//! [`Envelope`], and turns bytes off the wire back into a [`Verified`] message, which can only
//! exist once every check passed. Opening checks, in this order: the size limit (before any
//! decoding), the CBOR envelope, the protocol version, the scheme, the payload kind, the
//! signature, and only then the payload itself, so that unauthenticated bytes never reach the
//! payload decoder.
//!
//! What a signature covers is the same for every scheme: the scheme tag, a zero byte, the kind
//! tag, a zero byte, then the payload bytes (see [`signed_parts`]). Binding the scheme and kind
//! means a signed reply can never be accepted as a request, and a message signed under one
//! scheme can never be re-labelled as another. The envelope's `key_id` is not signed: it is a
//! hint for choosing a key and for error messages, never a reason to trust a message.
//!
//! The submodules: [`psk`] (the pre-shared key and its HMAC), [`ed25519`] (per-party keys and
//! the directory of trusted public keys), [`freshness`] (request age and
//! ttl), [`replay`] (the bounded window of request ids seen), [`tls`] (rustls client
//! configuration and handshake error explanations), [`password`] (PBKDF2 password hashes),
//! [`constant_time`] (the one comparison of secrets) and [`hex`]. [`file_trust`] decides whether
//! a key, policy or agent file on disk may be trusted. Everything here is synchronous.

pub mod constant_time;
pub mod ed25519;
pub mod file_trust;
pub mod freshness;
pub mod hex;
pub mod password;
pub mod psk;
pub mod replay;
pub mod tls;

use std::ops::Deref;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::message::{
    DecodeError, Envelope, PROTOCOL_VERSION, PayloadKind, Registration, Reply, Request, from_cbor, to_cbor,
};

pub use ed25519::{Ed25519, Ed25519Error};
pub use freshness::{
    DEFAULT_NODE_MAX_TTL_SECS, MAX_TTL_SECS, Stale, check_age, check_ttl_within, expires_at_ms,
};
pub use psk::{KeyError, Psk};
pub use replay::{ReplayWindow, Replayed};
pub use tls::{TlsError, TlsSettings, client_config, explain_handshake_error};

/// The scheme tag of pre-shared-key HMAC-SHA256 signatures, as it appears in envelopes.
pub const SCHEME_PSK: &str = "psk";

/// The scheme tag of ed25519 signatures, as it appears in envelopes.
pub const SCHEME_ED25519: &str = "ed25519";

/// The longest scheme name or key id from an envelope that error messages repeat; the rest is
/// cut, because these strings come from whoever sent the message and end up in logs.
const MAX_ECHOED_CHARS: usize = 64;

/// The bytes a signature covers, in order: scheme tag, 0, kind tag, 0, payload.
///
/// Every scheme signs exactly this sequence, so a scheme implementation cannot forget to bind
/// the scheme or the kind. The zero separators keep the parts unambiguous (neither tag
/// contains a zero byte).
pub fn signed_parts<'a>(scheme: &'a str, kind: PayloadKind, payload: &'a [u8]) -> [&'a [u8]; 5] {
    [scheme.as_bytes(), &[0], kind.tag(), &[0], payload]
}

/// How this process signs and verifies messages.
///
/// One variant per scheme. Callers should match on [`Security::scheme`] or use the methods
/// below rather than on the variants, so that adding a scheme changes nothing for them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Security {
    /// HMAC-SHA256 with one key shared by every node and client of the collective.
    Psk(Psk),
    /// Each party signs with its own ed25519 key and trusts a directory of public keys.
    Ed25519(Box<Ed25519>),
}

impl Security {
    /// The scheme tag this process writes into envelopes and expects in them.
    pub fn scheme(&self) -> &'static str {
        match self {
            Security::Psk(_) => SCHEME_PSK,
            Security::Ed25519(_) => SCHEME_ED25519,
        }
    }

    /// The id of the key this process signs with, as written into envelopes.
    pub fn key_id(&self) -> &str {
        match self {
            Security::Psk(psk) => psk.key_id(),
            Security::Ed25519(keys) => keys.key_id(),
        }
    }

    /// Whether a verified message's key id proves who sent it. With ed25519 it does: a node
    /// insists that a request's `caller` is the name of the key that signed it, and a client
    /// that a reply's `sender` is. With a PSK every holder signs with the same key, so callers
    /// and senders are only claims.
    pub fn proves_callers(&self) -> bool {
        matches!(self, Security::Ed25519(_))
    }

    /// Signs `payload` as a message of `kind` and wraps it in an envelope.
    pub fn seal(&self, kind: PayloadKind, payload: Vec<u8>) -> Envelope {
        let parts = signed_parts(self.scheme(), kind, &payload);
        let signature = match self {
            Security::Psk(psk) => psk.sign(&parts),
            Security::Ed25519(keys) => keys.sign(&parts),
        };
        Envelope {
            version: PROTOCOL_VERSION,
            scheme: self.scheme().to_owned(),
            key_id: self.key_id().to_owned(),
            kind,
            payload,
            signature,
        }
    }

    /// Encodes, signs and wraps a request; returns the bytes to put on the wire.
    pub fn seal_request(&self, request: &Request) -> Vec<u8> {
        self.seal_message(PayloadKind::Request, request)
    }

    /// Encodes, signs and wraps a reply; returns the bytes to put on the wire.
    pub fn seal_reply(&self, reply: &Reply) -> Vec<u8> {
        self.seal_message(PayloadKind::Reply, reply)
    }

    /// Encodes, signs and wraps a node's registration; returns the bytes to put on the wire.
    pub fn seal_registration(&self, registration: &Registration) -> Vec<u8> {
        self.seal_message(PayloadKind::Registration, registration)
    }

    /// Checks wire bytes and decodes the request inside. See the module documentation for the
    /// order of checks; `limit` is the largest message accepted, in bytes.
    pub fn open_request(&self, bytes: &[u8], limit: usize) -> Result<Verified<Request>, OpenError> {
        self.open(bytes, limit, PayloadKind::Request, "request")
    }

    /// Checks wire bytes and decodes the reply inside.
    pub fn open_reply(&self, bytes: &[u8], limit: usize) -> Result<Verified<Reply>, OpenError> {
        self.open(bytes, limit, PayloadKind::Reply, "reply")
    }

    /// Checks wire bytes and decodes the registration inside.
    pub fn open_registration(&self, bytes: &[u8], limit: usize) -> Result<Verified<Registration>, OpenError> {
        self.open(bytes, limit, PayloadKind::Registration, "registration")
    }

    /// Checks an envelope's version, scheme, kind and signature, without decoding its payload.
    ///
    /// On success returns the id of the key that verified it. Used by `open_*`, and useful to a
    /// caller that already decoded the envelope (to count or route it) before verifying.
    pub fn verify(&self, envelope: &Envelope, expected_kind: PayloadKind) -> Result<String, OpenError> {
        if envelope.version != PROTOCOL_VERSION {
            return Err(OpenError::Version { got: envelope.version });
        }
        if envelope.scheme != self.scheme() {
            return Err(OpenError::WrongScheme { expected: self.scheme(), got: echoable(&envelope.scheme) });
        }
        if envelope.kind != expected_kind {
            return Err(OpenError::WrongKind { expected: expected_kind, got: envelope.kind });
        }
        let parts = signed_parts(self.scheme(), envelope.kind, &envelope.payload);
        match self {
            Security::Psk(psk) => {
                if psk.verify(&parts, &envelope.signature) {
                    Ok(psk.key_id().to_owned())
                } else {
                    Err(OpenError::BadSignature {
                        key_id_seen: echoable(&envelope.key_id),
                        our_key_id: psk.key_id().to_owned(),
                    })
                }
            }
            Security::Ed25519(keys) => match keys.verify(&envelope.key_id, &parts, &envelope.signature) {
                Ok(()) => Ok(envelope.key_id.clone()),
                Err(ed25519::VerifyFailure::UnknownKey) => Err(OpenError::UnknownKey {
                    key_id: echoable(&envelope.key_id),
                    trusted_dir: keys.trusted_dir().display().to_string(),
                }),
                Err(ed25519::VerifyFailure::BadSignature) => {
                    Err(OpenError::ForgedSignature { key_id: echoable(&envelope.key_id) })
                }
            },
        }
    }

    /// As [`Security::verify`], also accepting this process's own key: what a client checks
    /// its own rollout events with (a client's trusted keys are the others').
    pub fn verify_own_or_trusted(
        &self,
        envelope: &Envelope,
        expected_kind: PayloadKind,
    ) -> Result<String, OpenError> {
        if let Security::Ed25519(keys) = self
            && envelope.scheme == SCHEME_ED25519
            && envelope.kind == expected_kind
            && envelope.key_id == keys.key_id()
            && keys
                .verify_own(
                    &signed_parts(SCHEME_ED25519, expected_kind, &envelope.payload),
                    &envelope.signature,
                )
                .is_ok()
        {
            return Ok(envelope.key_id.clone());
        }
        self.verify(envelope, expected_kind)
    }

    fn seal_message<T: Serialize>(&self, kind: PayloadKind, message: &T) -> Vec<u8> {
        self.seal(kind, to_cbor(message)).encode()
    }

    fn open<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        limit: usize,
        kind: PayloadKind,
        what: &'static str,
    ) -> Result<Verified<T>, OpenError> {
        // Envelope::decode checks the size before decoding and the version right after.
        let envelope = Envelope::decode(bytes, limit).map_err(OpenError::from)?;
        let key_id = self.verify(&envelope, kind)?;
        // The payload is authenticated from here on, but still only as well-formed as the
        // sender made it: a decode failure is a sender bug or a version skew, not an attack.
        let message = from_cbor(&envelope.payload, limit, what).map_err(OpenError::from)?;
        Ok(Verified { message, key_id, scheme: self.scheme() })
    }
}

/// The keys in force in a long-running process (a node, the console), replaced whole on a
/// reload (SIGHUP) while tasks keep using them.
///
/// Each use takes [`SharedSecurity::current`], so a message being signed or checked finishes
/// with the keys it started with, and the next one sees the new keys. One of these is shared by
/// everything that signs or verifies for the process, so a reload reaches all of them at once.
#[derive(Debug)]
pub struct SharedSecurity(std::sync::RwLock<std::sync::Arc<Security>>);

impl SharedSecurity {
    pub fn new(security: Security) -> SharedSecurity {
        SharedSecurity(std::sync::RwLock::new(std::sync::Arc::new(security)))
    }

    /// The keys in force now.
    pub fn current(&self) -> std::sync::Arc<Security> {
        // A poisoned lock means a panic while swapping two Arcs, which cannot leave the value
        // half-written: keep using it.
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Puts `security` in force for every later use.
    pub fn replace(&self, security: Security) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(security);
    }
}

/// A message whose envelope passed every check; only this module can make one.
///
/// Code that acts on messages (the node's pipeline, agents, the client's reply collector)
/// accepts `Verified<T>` so that an unverified message cannot reach it by mistake.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified<T> {
    message: T,
    key_id: String,
    scheme: &'static str,
}

impl<T> Verified<T> {
    /// The id of the key whose signature verified: the PSK fingerprint, or (with ed25519) the
    /// caller's key name, which is then a proven identity.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The scheme that verified the message.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Gives up the proof of verification and returns the message.
    pub fn into_inner(self) -> T {
        self.message
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.message
    }
}

/// Why bytes off the wire were not accepted as a message. Each variant is worth its own counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "message is {size} bytes, over the {limit}-byte limit (raise the size limit on both \
         ends if such messages are expected)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("message is malformed: {0}")]
    Malformed(String),
    #[error(
        "protocol version {got} is not supported (this build speaks version \
         {PROTOCOL_VERSION}; upgrade the older side)"
    )]
    Version { got: u8 },
    #[error(
        "message uses security scheme {got:?} but this node uses {expected:?} (set the same \
         security.scheme everywhere)"
    )]
    WrongScheme { expected: &'static str, got: String },
    #[error("message is a {got:?} where a {expected:?} was expected")]
    WrongKind { expected: PayloadKind, got: PayloadKind },
    #[error("{}", bad_signature_text(key_id_seen, our_key_id))]
    BadSignature { key_id_seen: String, our_key_id: String },
    /// ed25519: signed by a key this party does not trust.
    #[error(
        "signed with key \"{key_id}\", which is not among the trusted keys in {trusted_dir} \
         (copy its .pub file there to trust it)"
    )]
    UnknownKey { key_id: String, trusted_dir: String },
    /// ed25519: the named key is trusted but did not make this signature.
    #[error(
        "signature does not verify with the trusted key \"{key_id}\": the message was altered \
         or signed by someone else under that name"
    )]
    ForgedSignature { key_id: String },
}

impl From<DecodeError> for OpenError {
    fn from(error: DecodeError) -> OpenError {
        match error {
            DecodeError::TooLarge { size, limit } => OpenError::TooLarge { size, limit },
            DecodeError::Version { got } => OpenError::Version { got },
            malformed @ DecodeError::Malformed { .. } => OpenError::Malformed(malformed.to_string()),
        }
    }
}

fn bad_signature_text(key_id_seen: &str, our_key_id: &str) -> String {
    if key_id_seen == our_key_id {
        // Same key claimed, signature still wrong: the bytes changed after signing, or someone
        // who does not hold the key copied our key id.
        format!(
            "signature does not verify although the message claims this node's key {our_key_id}: \
             it was altered in transit or forged"
        )
    } else {
        format!(
            "signature does not verify: signed with key {key_id_seen}, this node holds key \
             {our_key_id} (check the PSK file)"
        )
    }
}

/// Makes a string from an envelope safe to repeat in a message: bounded and free of control
/// characters, which could otherwise forge log lines.
fn echoable(untrusted: &str) -> String {
    let bounded: String = untrusted.chars().take(MAX_ECHOED_CHARS).collect();
    let mut echoed = crate::logging::escape_control_characters(&bounded).into_owned();
    if untrusted.chars().count() > MAX_ECHOED_CHARS {
        echoed.push('…');
    }
    echoed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoable_escapes_control_characters_and_bounds_length() {
        assert_eq!(echoable("abc"), "abc");
        assert_eq!(echoable("a\nb"), "a\\nb");
        let long = "x".repeat(200);
        assert_eq!(echoable(&long).chars().count(), MAX_ECHOED_CHARS + 1);
    }

    #[test]
    fn signed_parts_bind_scheme_and_kind() {
        let request = signed_parts("psk", PayloadKind::Request, b"p").concat();
        assert_eq!(request, b"psk\0request\0p");
        let reply = signed_parts("psk", PayloadKind::Reply, b"p").concat();
        assert_ne!(request, reply);
    }

    #[test]
    fn bad_signature_text_says_which_case_it_is() {
        assert!(
            bad_signature_text("1a2b", "9f8e").contains("signed with key 1a2b, this node holds key 9f8e")
        );
        assert!(bad_signature_text("9f8e", "9f8e").contains("altered in transit or forged"));
    }
}
