//! Password hashing: PBKDF2-HMAC-SHA256 (RFC 8018), built on the `hmac` and `sha2` crates Baton
//! already uses, and the stored form `pbkdf2-sha256$ITERATIONS$SALT$HASH` (salt and hash in
//! hex). Checking a password compares hashes with [`super::constant_time::eq`].

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::{constant_time, hex};

/// The scheme tag written in front of every stored hash.
pub const SCHEME: &str = "pbkdf2-sha256";

/// PBKDF2 iterations for new hashes (OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256).
pub const ITERATIONS: u32 = 600_000;

/// Stored hashes with fewer iterations than this are refused when read.
pub const MIN_ITERATIONS: u32 = 10_000;

/// Why a stored hash could not be read. Each message says what the text should look like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashFormatError {
    #[error("a hash must look like {SCHEME}$ITERATIONS$SALT$HASH")]
    Shape,
    #[error("unknown hash scheme {0:?} (expected {SCHEME})")]
    Scheme(String),
    #[error("iteration count {0:?} is not a number")]
    Iterations(String),
    #[error("{0} iterations is too few (at least {MIN_ITERATIONS})")]
    TooFewIterations(u32),
    #[error("the salt is not hex")]
    SaltNotHex,
    #[error("the salt is shorter than 8 bytes")]
    SaltTooShort,
    #[error("the hash is not 32 bytes of hex")]
    Hash,
}

/// PBKDF2-HMAC-SHA256 with a 32-byte output (one block, RFC 8018 section 5.2).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes keys of any length");
    let mut first = keyed.clone();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut block: [u8; 32] = first.finalize().into_bytes().into();
    let mut result = block;
    for _ in 1..iterations {
        let mut round = keyed.clone();
        round.update(&block);
        block = round.finalize().into_bytes().into();
        for (out, byte) in result.iter_mut().zip(block) {
            *out ^= byte;
        }
    }
    result
}

/// A stored password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; 32],
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt and [`ITERATIONS`].
    pub fn new(password: &str) -> PasswordHash {
        PasswordHash::with_iterations(password, ITERATIONS)
    }

    /// Hashes `password` with a fresh random salt and the given iteration count.
    pub fn with_iterations(password: &str, iterations: u32) -> PasswordHash {
        let mut salt = vec![0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let hash = pbkdf2_sha256(password.as_bytes(), &salt, iterations);
        PasswordHash { iterations, salt, hash }
    }

    /// A hash no password matches that costs `iterations` to check: checked instead when a
    /// user name is unknown, so that a wrong name takes as long as a wrong password.
    pub fn decoy(iterations: u32) -> PasswordHash {
        PasswordHash { iterations, salt: vec![0; 16], hash: [0; 32] }
    }

    /// How many PBKDF2 iterations checking a password against this hash costs.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Parses `pbkdf2-sha256$ITERATIONS$SALT$HASH`.
    pub fn parse(text: &str) -> Result<PasswordHash, HashFormatError> {
        let mut parts = text.split('$');
        let (Some(scheme), Some(iterations), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HashFormatError::Shape);
        };
        if scheme != SCHEME {
            return Err(HashFormatError::Scheme(scheme.to_owned()));
        }
        let iterations: u32 =
            iterations.parse().map_err(|_| HashFormatError::Iterations(iterations.to_owned()))?;
        if iterations < MIN_ITERATIONS {
            return Err(HashFormatError::TooFewIterations(iterations));
        }
        let salt = hex::decode(salt).ok_or(HashFormatError::SaltNotHex)?;
        if salt.len() < 8 {
            return Err(HashFormatError::SaltTooShort);
        }
        let hash: [u8; 32] =
            hex::decode(hash).and_then(|bytes| bytes.try_into().ok()).ok_or(HashFormatError::Hash)?;
        Ok(PasswordHash { iterations, salt, hash })
    }

    /// Whether `password` is the one this hash was made from.
    pub fn verify(&self, password: &str) -> bool {
        let computed = pbkdf2_sha256(password.as_bytes(), &self.salt, self.iterations);
        constant_time::eq(&computed, &self.hash)
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{SCHEME}${}${}${}",
            self.iterations,
            hex::encode(&self.salt),
            hex::encode(&self.hash)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_test_vectors() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, first 32 bytes of the 64-byte outputs.
        let one = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(hex::encode(&one), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
        let many = pbkdf2_sha256(b"Password", b"NaCl", 80_000);
        assert_eq!(hex::encode(&many), "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56");
    }

    #[test]
    fn a_hash_verifies_its_password_only_and_round_trips_through_text() {
        let hash = PasswordHash::with_iterations("correct horse", MIN_ITERATIONS);
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct horse "));
        assert!(!hash.verify(""));
        let text = hash.to_string();
        assert!(text.starts_with("pbkdf2-sha256$10000$"), "{text}");
        assert_eq!(PasswordHash::parse(&text), Ok(hash));
        assert!(!PasswordHash::decoy(MIN_ITERATIONS).verify(""));
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        let check = |text: &str, expected: &str| {
            let error = PasswordHash::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
        };
        check("plain", "must look like");
        check("md5$1$00", "must look like");
        check("md5$100000$0011223344556677$00", "unknown hash scheme");
        check("pbkdf2-sha256$10$0011223344556677$00", "too few");
        check("pbkdf2-sha256$100000$zz$00", "salt is not hex");
        check("pbkdf2-sha256$100000$0011$00", "shorter than 8 bytes");
        check("pbkdf2-sha256$100000$0011223344556677$0011", "32 bytes");
    }
}
