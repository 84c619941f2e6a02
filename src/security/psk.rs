//! The pre-shared key: loading it safely, and HMAC-SHA256 with it.
//!
//! A PSK is only as good as its randomness, and a daemon that starts with `changeme` as its key
//! lets anyone on the broker run actions on every node. So loading refuses empty keys, short
//! keys and keys that look like placeholders, and every refusal says how to make a good key.
//! The key's fingerprint ([`Psk::key_id`]) travels in envelopes so that a mismatch can be told
//! apart from tampering: "signed with key 1a2b.., this node holds 9f8e..".

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Keys shorter than this are refused. 16 bytes is a floor, not a recommendation: the
/// recommended key is 32 random bytes written as 64 hex characters.
pub const MIN_KEY_BYTES: usize = 16;

/// A PSK file larger than this is not a key file (a key is one line).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// How to make a good key; every refusal ends with this.
const MAKE_A_KEY: &str = "generate a random key with `openssl rand -hex 32 > /etc/baton/psk` \
                          and give every node and client the same file";

/// Fragments that mark a key as a placeholder or a guessable word. Compared against the key
/// lowercased with separators removed, so `Change_Me`, `change-me` and `CHANGEME` all match.
/// None of these can occur in hex output, and random base64 output contains one with negligible
/// probability.
const PLACEHOLDER_FRAGMENTS: &[&str] = &[
    "changeme",
    "changethis",
    "replaceme",
    "placeholder",
    "example",
    "secret",
    "password",
    "passw0rd",
    "letmein",
    "qwerty",
    "12345678",
    "yourkey",
    "insertkey",
];

/// Keys with fewer distinct bytes than this are refused as not random (`abababab...`).
const MIN_DISTINCT_BYTES: usize = 5;

/// A pre-shared key that passed the checks for emptiness, length and placeholders.
#[derive(Clone)]
pub struct Psk {
    key: Vec<u8>,
    key_id: String,
}

/// Why a PSK was refused. Every message names where the key came from and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read PSK file {}: {source} ({MAKE_A_KEY})", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "PSK file {} is {size} bytes, too large to be a key; it should hold one line \
         ({MAKE_A_KEY})",
        path.display()
    )]
    FileTooLarge { path: PathBuf, size: u64 },
    #[error("{origin} is empty ({MAKE_A_KEY})")]
    Empty { origin: String },
    #[error("{origin} is {length} bytes, shorter than the minimum of {MIN_KEY_BYTES} ({MAKE_A_KEY})")]
    TooShort { origin: String, length: usize },
    #[error("{origin} looks like a placeholder, not a random key: {why} ({MAKE_A_KEY})")]
    Placeholder { origin: String, why: String },
    /// A key file others could read or replace (see [`super::file_trust`]).
    #[error(transparent)]
    Untrusted(#[from] super::file_trust::UntrustedFile),
}

impl Psk {
    /// Reads and checks a key file. One trailing newline (`\n` or `\r\n`) is not part of the
    /// key; anything else is. A file that group or others may read or write, or that sits in a
    /// directory others may change, is refused ([`super::file_trust`]).
    pub fn from_file(path: &Path) -> Result<Psk, KeyError> {
        use std::io::Read;
        let read_error = |source| KeyError::Read { path: path.to_owned(), source };
        // Mode and contents come from one open file, so the file cannot be swapped in between.
        let file = std::fs::File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        if metadata.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::FileTooLarge { path: path.to_owned(), size: metadata.len() });
        }
        super::file_trust::check_trusted(path, super::file_trust::Purpose::Psk)?;
        let mut contents = Vec::new();
        file.take(MAX_KEY_FILE_BYTES).read_to_end(&mut contents).map_err(read_error)?;
        Psk::from_bytes(&contents, &format!("PSK file {}", path.display()))
    }

    /// Checks a key given directly. `origin` says where it came from, for error messages
    /// (for example `"environment variable BATON_PSK"`).
    pub fn from_bytes(key: &[u8], origin: &str) -> Result<Psk, KeyError> {
        let key = strip_one_newline(key);
        if key.is_empty() {
            return Err(KeyError::Empty { origin: origin.to_owned() });
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { origin: origin.to_owned(), length: key.len() });
        }
        if let Some(why) = placeholder_reason(key) {
            return Err(KeyError::Placeholder { origin: origin.to_owned(), why });
        }
        Ok(Psk { key: key.to_vec(), key_id: fingerprint(key) })
    }

    /// The key's fingerprint: the first 8 bytes of its SHA-256, in hex. Safe to log.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.mac_over(parts).finalize().into_bytes().to_vec()
    }

    /// Whether `signature` is the HMAC-SHA256 of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        super::constant_time::eq(&self.sign(parts), signature)
    }

    fn mac_over(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac
    }
}

impl fmt::Debug for Psk {
    // The key itself must never reach a log line through `{:?}`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Psk").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

fn strip_one_newline(key: &[u8]) -> &[u8] {
    key.strip_suffix(b"\r\n").or_else(|| key.strip_suffix(b"\n")).unwrap_or(key)
}

fn fingerprint(key: &[u8]) -> String {
    super::hex::encode(&Sha256::digest(key)[..8])
}

fn placeholder_reason(key: &[u8]) -> Option<String> {
    let normalized: Vec<u8> =
        key.iter().filter(|byte| byte.is_ascii_alphanumeric()).map(u8::to_ascii_lowercase).collect();
    for fragment in PLACEHOLDER_FRAGMENTS {
        if normalized.windows(fragment.len()).any(|window| window == fragment.as_bytes()) {
            return Some(format!("it contains {fragment:?}"));
        }
    }
    let mut distinct = [false; 256];
    for byte in key {
        distinct[usize::from(*byte)] = true;
    }
    let distinct_count = distinct.iter().filter(|seen| **seen).count();
    if distinct_count == 1 {
        return Some("it is one character repeated".to_owned());
    }
    if distinct_count < MIN_DISTINCT_BYTES {
        return Some(format!("it uses only {distinct_count} distinct characters"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_refused(key: &str, expected_fragment: &str) {
        let error = Psk::from_bytes(key.as_bytes(), "test key").expect_err(key).to_string();
        assert!(error.contains(expected_fragment), "{key:?}: {error}");
        assert!(error.contains("openssl rand -hex 32"), "{key:?}: {error}");
    }

    #[test]
    fn weak_keys_are_refused() {
        check_refused("", "is empty");
        check_refused("\n", "is empty");
        check_refused("short-key", "shorter than the minimum");
        check_refused("changeme-changeme-changeme", "\"changeme\"");
        check_refused("CHANGE_ME_BEFORE_PRODUCTION", "\"changeme\"");
        check_refused("my-super-secret-key-2024", "\"secret\"");
        check_refused("Password1234567890", "\"password\"");
        check_refused("example-psk-for-the-docs", "\"example\"");
        check_refused("xxxxxxxxxxxxxxxxxxxxxxxx", "one character repeated");
        check_refused("abababababababababab", "only 2 distinct characters");
        check_refused("1234567890123456", "\"12345678\"");
    }

    #[test]
    fn good_keys_are_accepted_and_one_newline_is_trimmed() {
        let hex = "3f5e0c9d7a1b2c4d6e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012a3b4c5d6";
        let plain = Psk::from_bytes(hex.as_bytes(), "test").expect("a hex key is good");
        let with_newline = Psk::from_bytes(format!("{hex}\n").as_bytes(), "test").expect("good");
        let with_crlf = Psk::from_bytes(format!("{hex}\r\n").as_bytes(), "test").expect("good");
        assert_eq!(plain.key_id(), with_newline.key_id());
        assert_eq!(plain.key_id(), with_crlf.key_id());
        // Only one newline is trimmed: a second one is part of the key.
        let two_newlines = Psk::from_bytes(format!("{hex}\n\n").as_bytes(), "test").expect("good");
        assert_ne!(plain.key_id(), two_newlines.key_id());
    }

    #[test]
    fn key_id_is_the_sha256_prefix_in_hex() {
        // SHA-256("abcdefghijklmnopqrstuvwxyz") starts with 71c480df93d6ae2f.
        let psk = Psk::from_bytes(b"abcdefghijklmnopqrstuvwxyz", "test").expect("good");
        assert_eq!(psk.key_id(), "71c480df93d6ae2f");
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // RFC 4231 case 2 uses the key "Jefe", too short for a PSK; the MAC itself is what is
        // checked here, so build the struct directly.
        let psk = Psk { key: b"Jefe".to_vec(), key_id: String::new() };
        let signature = psk.sign(&[b"what do ya want ", b"for nothing?"]);
        let hex: String = signature.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(psk.verify(&[b"what do ya want for nothing?"], &signature));
        assert!(!psk.verify(&[b"what do ya want for nothing!"], &signature));
        assert!(!psk.verify(&[b"what do ya want for nothing?"], &signature[..31]));
    }

    #[test]
    fn debug_output_does_not_show_the_key() {
        let psk = Psk::from_bytes(b"a-very-distinctive-key-material-42", "test").expect("good");
        assert!(!format!("{psk:?}").contains("distinctive"));
    }
}
