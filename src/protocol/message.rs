//! Message types and their CBOR codec.
//!
//! A message on the wire is an [`Envelope`]: the payload bytes and a signature over exactly
//! those bytes. The payload is itself CBOR: a [`Request`] or a [`Reply`]. Nothing outside the
//! signed payload influences what a node does, which is why the reply destination, the ttl and
//! the filter all live inside the payload rather than in broker headers.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::filter::FilterSpec;

/// The protocol version this build speaks. A node refuses envelopes of any other version.
pub const PROTOCOL_VERSION: u8 = 1;

/// The default size limit for one message on the wire, in bytes (1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The default collective, used when configuration names none.
pub const DEFAULT_COLLECTIVE: &str = "baton";

/// What a sealed message looks like on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub version: u8,
    /// Security scheme that produced `signature`: `"psk"` or `"ed25519"`.
    pub scheme: String,
    /// Which key signed: for PSK a fingerprint of the key, for ed25519 the caller's key name.
    pub key_id: String,
    /// What the payload is, so that a request can never be accepted as a reply or vice versa.
    pub kind: PayloadKind,
    /// The CBOR-encoded [`Request`] or [`Reply`]; the signature covers exactly these bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Signature over the scheme tag, the kind and the payload bytes.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The kind of payload an envelope carries; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    Request,
    Reply,
    Registration,
    /// A rollout's event line (`client::events`): signed, never sent in an envelope.
    Event,
}

impl PayloadKind {
    /// The tag mixed into the signature, so a signed reply cannot be replayed as a request.
    pub fn tag(self) -> &'static [u8] {
        match self {
            PayloadKind::Request => b"request",
            PayloadKind::Reply => b"reply",
            PayloadKind::Registration => b"registration",
            PayloadKind::Event => b"event",
        }
    }
}

/// A request for one action of one agent, on every node its filter matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Unique per request; replies carry it back and the replay window remembers it.
    pub id: Uuid,
    /// The client's identity (the `identity` of its configuration).
    pub sender: String,
    /// Who asks, e.g. `user=alice`; what authorization policies match on.
    pub caller: String,
    /// The collective the request was sent in.
    pub collective: String,
    pub agent: String,
    pub action: String,
    /// Which nodes should act. An empty filter matches every node.
    pub filter: FilterSpec,
    /// When the client created the request, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// How long the request stays valid after `time_ms`, in seconds.
    pub ttl_secs: u32,
    /// Where replies go: an address the transport understands (a queue name or destination).
    pub reply_to: String,
    /// The action's inputs, by name.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Run this action at most once per node for this key (a tracked rollout sends
    /// `rollout:<id>`): a node that already succeeded with the same key, agent, action and
    /// inputs answers with that outcome instead of running it again, and one still running it
    /// answers when that run ends. Optional: absent in every other request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<String>,
}

/// Whether `identity` is a usable node identity: host-name characters only (letters, digits,
/// `.`, `-`, `_`), 1 to 255 of them, because it becomes part of queue names and routing keys.
/// Nodes refuse to start with another (configuration), and clients drop replies that claim
/// another, so a node name shown anywhere carries no terminal codes.
pub fn is_node_identity(identity: &str) -> bool {
    !identity.is_empty()
        && identity.len() <= 255
        && identity.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A node's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub request_id: Uuid,
    /// The replying node's identity.
    pub sender: String,
    pub agent: String,
    pub action: String,
    /// When the node produced the reply, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub status: StatusCode,
    /// Empty when `status` is OK; otherwise what went wrong and what to do about it.
    pub status_message: String,
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// MCollective's status codes, which operators and their scripts already know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum StatusCode {
    /// 0: the action ran and succeeded.
    Ok,
    /// 1: the action was refused or failed ("not authorized", a failed command).
    Aborted,
    /// 2: the node has no such agent or action.
    UnknownAction,
    /// 3: a required input is missing.
    MissingData,
    /// 4: an input is present but invalid.
    InvalidData,
    /// 5: anything else: a crash, a timeout, an internal error.
    UnknownError,
}

impl StatusCode {
    pub fn code(self) -> u8 {
        match self {
            StatusCode::Ok => 0,
            StatusCode::Aborted => 1,
            StatusCode::UnknownAction => 2,
            StatusCode::MissingData => 3,
            StatusCode::InvalidData => 4,
            StatusCode::UnknownError => 5,
        }
    }

    /// The short text shown next to a failed node, as MCollective printed it.
    pub fn text(self) -> &'static str {
        match self {
            StatusCode::Ok => "OK",
            StatusCode::Aborted => "Request Aborted",
            StatusCode::UnknownAction => "Unknown Action",
            StatusCode::MissingData => "Missing Request Data",
            StatusCode::InvalidData => "Invalid Request Data",
            StatusCode::UnknownError => "Unknown Request Status",
        }
    }

    pub fn is_ok(self) -> bool {
        self == StatusCode::Ok
    }
}

impl From<StatusCode> for u8 {
    fn from(status: StatusCode) -> u8 {
        status.code()
    }
}

impl TryFrom<u8> for StatusCode {
    type Error = String;
    fn try_from(code: u8) -> Result<Self, String> {
        Ok(match code {
            0 => StatusCode::Ok,
            1 => StatusCode::Aborted,
            2 => StatusCode::UnknownAction,
            3 => StatusCode::MissingData,
            4 => StatusCode::InvalidData,
            5 => StatusCode::UnknownError,
            other => return Err(format!("unknown status code {other}")),
        })
    }
}

/// A node's inventory, published to the registration exchange at start and periodically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub identity: String,
    pub collectives: Vec<String>,
    pub facts: serde_json::Map<String, serde_json::Value>,
    pub classes: Vec<String>,
    pub agents: Vec<String>,
    pub version: String,
    pub time_ms: u64,
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not a valid CBOR {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("protocol version {got} is not supported (this build speaks version {PROTOCOL_VERSION})")]
    Version { got: u8 },
}

/// Encodes any message type as CBOR. Serializing these types cannot fail short of running out
/// of memory, so the error is folded into a panic-free `Vec` by construction.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256);
    // Writing into a Vec has no I/O errors, and every message type is plain data that CBOR
    // can represent, so this only fails on a programming error.
    ciborium::into_writer(value, &mut bytes).expect("message types always encode to CBOR");
    bytes
}

/// Decodes CBOR bytes into a message type, enforcing the size limit first.
pub fn from_cbor<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge { size: bytes.len(), limit });
    }
    ciborium::from_reader(bytes).map_err(|error| DecodeError::Malformed { what, reason: error.to_string() })
}

impl Envelope {
    /// Decodes an envelope off the wire: size limit first, then CBOR, then the version.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Envelope, DecodeError> {
        let envelope: Envelope = from_cbor(bytes, limit, "envelope")?;
        if envelope.version != PROTOCOL_VERSION {
            return Err(DecodeError::Version { got: envelope.version });
        }
        Ok(envelope)
    }

    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh request id.
pub fn new_request_id() -> Uuid {
    Uuid::new_v4()
}

#[cfg(test)]
mod tests {
    use super::is_node_identity;

    #[test]
    fn a_node_identity_is_host_name_characters() {
        for good in ["web01", "web01.example.com", "db_2-b", &"a".repeat(255)] {
            assert!(is_node_identity(good), "{good:?}");
        }
        for bad in ["", "web01\u{1b}[2J", "web 01", "web/01", "wéb", "a.b\n", &"a".repeat(256)] {
            assert!(!is_node_identity(bad), "{bad:?}");
        }
    }
}
