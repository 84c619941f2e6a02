//! What an unverified request claims about itself, read without decoding it.
//!
//! A node that cannot verify a message still writes an audit line naming what the message
//! claims to be (its id, sender, caller, ...), so an operator can find the client. The bytes
//! are an attacker's, so they are never decoded in full: a 1 MiB payload of 340 000 tiny maps
//! once cost a node 250 MB that way (security review finding 7). [`dangerous_claimed_request`]
//! walks the payload's CBOR item headers with a cursor and a counter, reads only a few short
//! top-level text fields, and skips everything else without building it: no allocation per
//! item, work linear in the payload's length, never a panic.

use uuid::Uuid;

/// The longest claimed text field kept, in bytes; a longer one is left out.
pub const MAX_CLAIMED_FIELD_BYTES: usize = 256;

/// How many top-level entries of the payload are looked at (a request has eleven).
const MAX_TOP_LEVEL_ENTRIES: u64 = 16;

/// The few fields an unverified request claims, each empty (or `None`) when the payload does
/// not hold it as a short text (or a UUID). Nothing here is trusted or acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimedRequest {
    pub id: Option<Uuid>,
    pub sender: String,
    pub caller: String,
    pub collective: String,
    pub agent: String,
    pub action: String,
}

/// Reads what a request payload claims, for the audit line of a message that failed
/// verification. See the module documentation for what it will not do.
pub fn dangerous_claimed_request(payload: &[u8]) -> ClaimedRequest {
    let mut claimed = ClaimedRequest::default();
    let mut cursor = Cursor { bytes: payload, position: 0 };
    let Some(Header { major: MAP, argument: Some(entries) }) = cursor.header() else {
        return claimed;
    };
    for _ in 0..entries.min(MAX_TOP_LEVEL_ENTRIES) {
        // `?`-style early ends: once the input ends or breaks, keep what was read so far.
        let Some(key) = cursor.short_text(16) else { break };
        let slot = match key {
            Some(b"sender") => &mut claimed.sender,
            Some(b"caller") => &mut claimed.caller,
            Some(b"collective") => &mut claimed.collective,
            Some(b"agent") => &mut claimed.agent,
            Some(b"action") => &mut claimed.action,
            Some(b"id") => match cursor.uuid() {
                Some(id) => {
                    claimed.id = id;
                    continue;
                }
                None => break,
            },
            _ if cursor.skip_item() => continue,
            _ => break,
        };
        match cursor.short_text(MAX_CLAIMED_FIELD_BYTES) {
            Some(Some(text)) => *slot = String::from_utf8_lossy(text).into_owned(),
            Some(None) => {}
            None => break,
        }
    }
    claimed
}

const UNSIGNED: u8 = 0;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;

/// One CBOR item header: the major type and its argument (`None`: indefinite length).
#[derive(Debug, Clone, Copy)]
struct Header {
    major: u8,
    argument: Option<u64>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: u64) -> Option<&'a [u8]> {
        let count = usize::try_from(count).ok()?;
        let end = self.position.checked_add(count)?;
        let taken = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(taken)
    }

    fn header(&mut self) -> Option<Header> {
        let initial = *self.take(1)?.first()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        let argument = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let width = 1u64 << (info - 24);
                Some(self.take(width)?.iter().fold(0u64, |value, byte| (value << 8) | u64::from(*byte)))
            }
            31 => None,
            _ => return None,
        };
        Some(Header { major, argument })
    }

    /// A definite text of at most `limit` bytes: `Some(Some(text))`. Any other item is skipped
    /// whole: `Some(None)`. `None` when the input ends or breaks.
    fn short_text(&mut self, limit: usize) -> Option<Option<&'a [u8]>> {
        let start = self.position;
        match self.header()? {
            Header { major: TEXT, argument: Some(length) } if length <= limit as u64 => {
                self.take(length).map(Some)
            }
            _ => self.skip_from(start).then_some(None),
        }
    }

    /// A UUID as serde writes it to CBOR (16 bytes) or as text, in the same shape as
    /// [`Cursor::short_text`].
    fn uuid(&mut self) -> Option<Option<Uuid>> {
        let start = self.position;
        match self.header()? {
            Header { major: BYTES, argument: Some(16) } => Some(Uuid::from_slice(self.take(16)?).ok()),
            Header { major: TEXT, argument: Some(length) } if length <= 36 => {
                Some(std::str::from_utf8(self.take(length)?).ok().and_then(|text| Uuid::parse_str(text).ok()))
            }
            _ => self.skip_from(start).then_some(None),
        }
    }

    fn skip_from(&mut self, start: usize) -> bool {
        self.position = start;
        self.skip_item()
    }

    /// Skips one whole item, nested items included, without recursion or allocation: a
    /// counter of items still to skip. Every header consumes a byte, so this ends within the
    /// payload's length. Returns false at the end of the input or on an indefinite length
    /// (which our encoder never writes), after which the cursor is not to be used.
    fn skip_item(&mut self) -> bool {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let Some(header) = self.header() else { return false };
            let added = match header {
                Header { major: UNSIGNED..=1 | 7, .. } => 0,
                Header { argument: None, .. } => return false,
                Header { major: BYTES | TEXT, argument: Some(length) } => {
                    if self.take(length).is_none() {
                        return false;
                    }
                    0
                }
                Header { major: ARRAY, argument: Some(items) } => items,
                Header { major: MAP, argument: Some(entries) } => entries.saturating_mul(2),
                Header { major: TAG, .. } => 1,
                Header { .. } => return false,
            };
            pending = pending.saturating_add(added);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FilterSpec, Request, to_cbor};

    #[test]
    fn reads_the_claims_of_a_request_as_our_encoder_writes_it() {
        let request = Request {
            id: Uuid::from_u128(7),
            sender: "ci@runner".to_owned(),
            caller: "user=ci".to_owned(),
            collective: "baton".to_owned(),
            agent: "service".to_owned(),
            action: "restart".to_owned(),
            filter: FilterSpec { fact: vec!["role=web".to_owned()], ..FilterSpec::default() },
            time_ms: 1,
            ttl_secs: 60,
            reply_to: "baton.reply.x".to_owned(),
            data: serde_json::json!({"service": "nginx"}).as_object().cloned().unwrap_or_default(),
            once: None,
        };
        let claimed = dangerous_claimed_request(&to_cbor(&request));
        assert_eq!(
            claimed,
            ClaimedRequest {
                id: Some(request.id),
                sender: request.sender,
                caller: request.caller,
                collective: request.collective,
                agent: request.agent,
                action: request.action,
            }
        );
        // Truncated anywhere, it keeps what it read and never panics.
        let bytes = to_cbor(&Request { caller: "x".repeat(300), ..empty_request() });
        for end in 0..bytes.len() {
            let partial = dangerous_claimed_request(&bytes[..end]);
            assert!(partial.caller.is_empty(), "a caller over the limit is left out");
        }
    }

    fn empty_request() -> Request {
        Request {
            id: Uuid::nil(),
            sender: String::new(),
            caller: String::new(),
            collective: String::new(),
            agent: String::new(),
            action: String::new(),
            filter: FilterSpec::default(),
            time_ms: 0,
            ttl_secs: 0,
            reply_to: String::new(),
            data: serde_json::Map::new(),
            once: None,
        }
    }

    #[test]
    fn skips_deep_and_wide_nesting_without_reading_past_the_end() {
        // A map claiming 2^62 entries and an array claiming u64::MAX items end with the input.
        let mut cursor = Cursor { bytes: &[0xbb, 0x40, 0, 0, 0, 0, 0, 0, 0, 0xa0], position: 0 };
        assert!(!cursor.skip_item());
        let mut cursor =
            Cursor { bytes: &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], position: 0 };
        assert!(!cursor.skip_item());
        // 10 000 nested one-item arrays around a zero.
        let mut nested = vec![0x81u8; 10_000];
        nested.push(0);
        let mut cursor = Cursor { bytes: &nested, position: 0 };
        assert!(cursor.skip_item());
        assert_eq!(cursor.position, nested.len());
    }
}
