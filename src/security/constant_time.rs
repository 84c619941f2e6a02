//! The one comparison of secrets in Baton: in time that depends only on the lengths, so that
//! how long a refusal takes tells a guesser nothing about how close the guess was. Used for
//! message MACs, password hashes and CSRF tokens alike.

/// Whether `left` and `right` are equal, compared in time that depends only on their lengths.
pub fn eq(left: &[u8], right: &[u8]) -> bool {
    // Every byte is looked at whatever the earlier ones were; only the length check exits early,
    // and lengths (of a MAC, a hash, a token) are public.
    left.len() == right.len() && left.iter().zip(right).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn equal_only_when_every_byte_and_the_length_agree() {
        assert!(super::eq(b"token", b"token"));
        assert!(super::eq(b"", b""));
        assert!(!super::eq(b"token", b"tokeN"));
        assert!(!super::eq(b"token", b"token "));
        assert!(!super::eq(b"Token", b"token"));
    }
}
