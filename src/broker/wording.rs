//! How the broker's messages say durations and failed connection attempts, the same way for
//! every transport.
//!
//! A failed TLS handshake is explained by `security::tls` (the module that builds the TLS
//! configuration knows what each setting does); everything else about a connection attempt that
//! failed before the protocol's own handshake is worded here.

use std::io;
use std::time::Duration;

use crate::security::tls;

/// A failed TCP or TLS step of a connection to `address` (`host:port`), as a sentence a person
/// can act on. `protocol` names what should listen there (`AMQP`, `STOMP`); `tls_host` is the
/// name the server certificate must carry (the URL's host, or `tls.server_name`).
pub(super) fn connect_failure(
    error: &io::Error,
    address: &str,
    protocol: &str,
    tls_host: &str,
    timeout: Duration,
) -> String {
    if let Some(tls_error) = tls::find_rustls_error(error) {
        return tls::explain_rustls_error(tls_error, tls_host);
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => {
            format!("connection refused at {address} (is the broker running?)")
        }
        io::ErrorKind::TimedOut => format!(
            "no connection to {address} within {} (is the host up and the port open?)",
            seconds_text(timeout)
        ),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof => {
            format!(
                "{address} closed the connection during the handshake (is this {} {protocol} port, \
                 and does it expect TLS?): {error}",
                article(protocol)
            )
        }
        _ => format!("cannot connect to {address}: {error}"),
    }
}

/// "an AMQP port", "a STOMP port".
fn article(word: &str) -> &'static str {
    if word.starts_with(['A', 'E', 'I', 'O', 'U']) { "an" } else { "a" }
}

/// "3 s", "0.5 s": durations as people read them in messages.
pub(super) fn seconds_text(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 { format!("{seconds:.0} s") } else { format!("{seconds} s") }
}

/// Whole seconds for the error variants that carry `seconds: u64`, rounded up so that a
/// sub-second timeout never reads as "0 s".
pub(super) fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(100)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(5)), 5);
        assert_eq!(whole_seconds(Duration::from_millis(5001)), 6);
    }

    #[test]
    fn seconds_read_as_people_write_them() {
        assert_eq!(seconds_text(Duration::from_secs(3)), "3 s");
        assert_eq!(seconds_text(Duration::from_millis(500)), "0.5 s");
    }

    fn check(kind: io::ErrorKind, protocol: &str, expected: &str) {
        let error = io::Error::new(kind, "boom");
        let text = connect_failure(&error, "mq1:5672", protocol, "mq1", Duration::from_secs(5));
        assert!(text.starts_with(expected), "{kind:?}: {text}");
    }

    #[test]
    fn connect_failures_say_what_to_check() {
        check(
            io::ErrorKind::ConnectionRefused,
            "AMQP",
            "connection refused at mq1:5672 (is the broker running?)",
        );
        check(io::ErrorKind::TimedOut, "AMQP", "no connection to mq1:5672 within 5 s (is the host up");
        check(
            io::ErrorKind::UnexpectedEof,
            "AMQP",
            "mq1:5672 closed the connection during the handshake (is this an AMQP port, and does it expect TLS?)",
        );
        check(
            io::ErrorKind::ConnectionReset,
            "STOMP",
            "mq1:5672 closed the connection during the handshake (is this a STOMP port",
        );
        check(io::ErrorKind::PermissionDenied, "STOMP", "cannot connect to mq1:5672: boom");
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let text = connect_failure(&tls, "mq1:5671", "AMQP", "mq1", Duration::from_secs(5));
        assert!(text.starts_with("certificate was not issued by the configured CA"), "{text}");
    }
}
