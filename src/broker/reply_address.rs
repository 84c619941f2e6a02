//! The names of client reply queues, `<collective>.reply.<suffix>`, in one place.
//!
//! Clients make these names ([`reply_address`]) and nodes check that a request's `reply_to` is
//! one of them before publishing a reply there ([`is_reply_address_of`]): a node must never
//! be made to publish into another node's queue or any other destination a request names
//! (security review finding 10). The suffix is kept to letters, digits, `-` and `_`, so the
//! address is one plain queue name on every transport (ActiveMQ, for one, reads `,` in a
//! destination as a list of destinations).

/// The longest suffix of a reply address: a UUID in hex, `console-` and one, or a reply queue
/// name the user chose (at most 100 characters).
pub const MAX_REPLY_SUFFIX_CHARS: usize = 128;

/// The reply address of `collective` with `suffix`.
pub fn reply_address(collective: &str, suffix: &str) -> String {
    format!("{collective}.reply.{suffix}")
}

/// Whether `address` is a client reply address of `collective`: `<collective>.reply.` and a
/// suffix of 1 to [`MAX_REPLY_SUFFIX_CHARS`] letters, digits, `-` or `_`.
pub fn is_reply_address_of(address: &str, collective: &str) -> bool {
    let Some(suffix) = address.strip_prefix(collective).and_then(|rest| rest.strip_prefix(".reply.")) else {
        return false;
    };
    !suffix.is_empty()
        && suffix.len() <= MAX_REPLY_SUFFIX_CHARS
        && suffix.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_addresses_of_a_collective() {
        let check = |address: &str, expected: bool| {
            assert_eq!(is_reply_address_of(address, "baton"), expected, "{address}");
        };
        check(&reply_address("baton", "6c1f0e5a9b2d4c3e8f7a1b0c9d8e7f6a"), true);
        check("baton.reply.console-6c1f0e5a", true);
        check("baton.reply.nightly_run", true);
        check("baton.reply.", false);
        check("baton.node.web01", false);
        check("other.reply.abc", false);
        check("batonx.reply.abc", false);
        check("baton.reply.abc,baton.node.web01", false);
        check("baton.reply.a.b", false);
        check("baton.reply./queue/x", false);
        check(&format!("baton.reply.{}", "a".repeat(MAX_REPLY_SUFFIX_CHARS + 1)), false);
    }
}
