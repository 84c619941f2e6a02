//! Lowercase hexadecimal, the one text form Baton writes bytes in: key ids, ed25519 key files,
//! password hashes and salts, session tokens.

use std::fmt::Write as _;

/// The bytes as lowercase hex, two digits each.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// The bytes that `text` spells in hex (either case); `None` when it is not an even number of
/// hex digits.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(decode("000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(decode(""), Some(Vec::new()));
        for bad in ["0", "zz", "+1", "0x", "é0"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
