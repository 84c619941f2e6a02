//! Request freshness: is a request young enough to act on, and not from the future?
//!
//! A request is valid from its `time_ms` until `time_ms + ttl`. Clocks differ between client and
//! node, so both ends of that interval are widened by a skew allowance. The same widened end,
//! [`expires_at_ms`], is how long the replay window must remember the request's id: an id
//! forgotten any earlier could be replayed while the request still looks fresh.

/// The longest ttl the protocol allows: one day. A longer ttl is refused because the replay
/// window would have to remember the id for that long.
pub const MAX_TTL_SECS: u32 = 24 * 60 * 60;

/// The longest ttl a node accepts unless configured otherwise (`requests.max_ttl_secs`): one
/// hour. Every accepted request holds a place in the replay window for its whole ttl, so a
/// node keeps ttls short (security review finding 3).
pub const DEFAULT_NODE_MAX_TTL_SECS: u32 = 60 * 60;

/// Why a request's time or ttl is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error(
        "request is {age_ms} ms old, past its ttl of {ttl_ms} ms plus {allowance_ms} ms clock \
         skew allowance (resend it, or check that client and node clocks are synchronised)"
    )]
    Expired { age_ms: u64, ttl_ms: u64, allowance_ms: u64 },
    #[error(
        "request is dated {ahead_ms} ms in the future, more than the {allowance_ms} ms clock \
         skew allowance (synchronise the client's and the node's clocks, e.g. with NTP)"
    )]
    FromFuture { ahead_ms: u64, allowance_ms: u64 },
    #[error("request ttl of {ttl_secs} s is invalid: it must be between 1 and {MAX_TTL_SECS} seconds")]
    InvalidTtl { ttl_secs: u32 },
    #[error(
        "request ttl of {ttl_secs} s is over this node's maximum of {max_ttl_secs} s: send it \
         with a shorter ttl (the client's ttl_secs), or raise requests.max_ttl_secs on the node"
    )]
    TtlOverNodeMaximum { ttl_secs: u32, max_ttl_secs: u32 },
}

/// Checks a request's ttl against the node's own maximum, which is at most [`MAX_TTL_SECS`].
pub fn check_ttl_within(ttl_secs: u32, max_ttl_secs: u32) -> Result<(), Stale> {
    if ttl_secs > max_ttl_secs {
        return Err(Stale::TtlOverNodeMaximum { ttl_secs, max_ttl_secs });
    }
    Ok(())
}

/// Checks that a request created at `request_time_ms` with `ttl_secs` is acceptable at `now_ms`.
///
/// Accepted: `request_time_ms - allowance <= now_ms <= request_time_ms + ttl + allowance`, and a
/// ttl between 1 second and [`MAX_TTL_SECS`].
pub fn check_age(
    request_time_ms: u64,
    ttl_secs: u32,
    now_ms: u64,
    skew_allowance_ms: u64,
) -> Result<(), Stale> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(Stale::InvalidTtl { ttl_secs });
    }
    let ttl_ms = u64::from(ttl_secs) * 1000;
    if request_time_ms > now_ms {
        let ahead_ms = request_time_ms - now_ms;
        if ahead_ms > skew_allowance_ms {
            return Err(Stale::FromFuture { ahead_ms, allowance_ms: skew_allowance_ms });
        }
        return Ok(());
    }
    let age_ms = now_ms - request_time_ms;
    if age_ms > ttl_ms.saturating_add(skew_allowance_ms) {
        return Err(Stale::Expired { age_ms, ttl_ms, allowance_ms: skew_allowance_ms });
    }
    Ok(())
}

/// The last moment, in ms since the epoch, at which [`check_age`] accepts the request: what the
/// replay window must remember its id until.
pub fn expires_at_ms(request_time_ms: u64, ttl_secs: u32, skew_allowance_ms: u64) -> u64 {
    request_time_ms.saturating_add(u64::from(ttl_secs) * 1000).saturating_add(skew_allowance_ms)
}
