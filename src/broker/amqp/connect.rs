//! Opening one AMQP connection to one URL, and saying in plain words why it failed.
//!
//! TLS (`amqps://`) always uses the rustls configuration the security module built from our CA
//! (and optional client certificate), never the system roots; the server's certificate is
//! checked against the URL's host, or `tls.server_name` when set. Every URL that reaches a
//! message or a log line goes through [`redact`] first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ErrorKind};
use rustls::{AlertDescription, CertificateError};

use crate::broker::{BrokerError, BrokerSettings};

/// One broker URL, parsed once, with what messages need to name it.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub uri: AMQPUri,
    /// The URL as given, password replaced by `***`.
    pub redacted: String,
    /// The host name the server certificate must be valid for (TLS only).
    pub tls: Option<(RustlsConnector, String)>,
}

impl Endpoint {
    pub fn user(&self) -> &str {
        &self.uri.authority.userinfo.username
    }
}

/// The largest AMQP frame Baton asks for, in bytes, unless the URL says otherwise.
pub(super) const FRAME_MAX: u32 = 16 * 1024;

/// Parses and checks every URL up front, so a typo is a configuration error, not a retry loop.
pub(super) fn endpoints(settings: &BrokerSettings) -> Result<Vec<Endpoint>, BrokerError> {
    settings
        .urls
        .iter()
        .map(|url| {
            let redacted = redact(url);
            let mut uri: AMQPUri = url.parse().map_err(|error| {
                BrokerError::Config(format!(
                    "broker URL {redacted} is not a valid AMQP URL: {error} \
                     (expected amqp[s]://user:password@host:port/vhost)"
                ))
            })?;
            // lapin keeps a send and a receive buffer of 32 frames each, so RabbitMQ's default
            // frame_max (128 KiB) costs 8 MiB of memory per connection; Baton's messages are
            // small, and a large one is simply split into more frames. A `frame_max` in the
            // URL wins.
            uri.query.frame_max.get_or_insert(FRAME_MAX);
            let tls = match uri.scheme {
                AMQPScheme::AMQP => None,
                AMQPScheme::AMQPS => {
                    let Some(config) = &settings.tls else {
                        return Err(BrokerError::Config(format!(
                            "broker URL {redacted} uses TLS but no CA is configured \
                             (set tls.ca, or use an amqp:// URL)"
                        )));
                    };
                    let server_name =
                        settings.tls_server_name.clone().unwrap_or_else(|| uri.authority.host.clone());
                    Some((RustlsConnector::from(Arc::clone(config)), server_name))
                }
            };
            Ok(Endpoint { uri, redacted, tls })
        })
        .collect()
}

/// Replaces the password in a URL with `***`: `amqp://node:***@mq1:5672/baton`.
///
/// Works on the raw text so that even an unparsable URL is safe to print. The password runs
/// from the first `:` of the user info to the last `@`, so a password containing `@` or `/`
/// is hidden whole.
pub(crate) fn redact(url: &str) -> String {
    // Without a scheme, still hide anything that looks like `user:password@`.
    let authority_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let rest = &url[authority_start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..authority_start], &userinfo[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

/// Connects to `endpoint` (TCP, TLS, AMQP handshake) within `settings.connect_timeout`.
/// The error is a sentence saying why, meant to follow the redacted URL.
pub(super) async fn open(endpoint: &Endpoint, settings: &BrokerSettings) -> Result<Connection, String> {
    let runtime = lapin::runtime::default_runtime()
        .map_err(|error| format!("no async runtime to connect with: {error}"))?;
    let properties =
        ConnectionProperties::default().with_connection_name(settings.connection_name.clone().into());
    let timeout = settings.connect_timeout;
    let tls = endpoint.tls.clone();
    // lapin calls this from its I/O thread for the initial connection only: its own
    // reconnection is off (zero retries by default) because this module does failover itself.
    let connect = async move |uri: AMQPUri, _runtime| {
        let address = format!("{}:{}", uri.authority.host, uri.authority.port);
        let stream = tokio::time::timeout(timeout, async {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host(address.as_str()).await?.collect();
            let stream = AsyncTcpStream::connect(&_runtime, addresses).await?;
            match &tls {
                None => Ok(stream),
                Some((connector, server_name)) => stream.into_rustls(connector, server_name).await,
            }
        })
        .await
        .map_err(|_elapsed| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
        stream.map_err(lapin::Error::from)
    };
    let connecting = Connection::connector(endpoint.uri.clone(), runtime, connect, properties);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(describe_connect_error(&error, endpoint, timeout)),
        Err(_elapsed) => {
            Err(format!("no AMQP handshake within {} (is this an AMQP port?)", seconds_text(timeout)))
        }
    }
}

/// Turns a failed connection attempt into a sentence a person can act on.
fn describe_connect_error(error: &lapin::Error, endpoint: &Endpoint, timeout: Duration) -> String {
    let address = format!("{}:{}", endpoint.uri.authority.host, endpoint.uri.authority.port);
    let user = endpoint.user();
    match error.kind() {
        ErrorKind::ProtocolError(amqp_error) => {
            let code = amqp_error.get_id();
            let broker_text = amqp_error.get_message().as_str();
            match code {
                403 => {
                    format!("broker refused login for user \"{user}\" (check the URL's user and password)")
                }
                530 => format!(
                    "broker refused user \"{user}\" access to vhost \"{}\" \
                     (check the URL's vhost and the user's permissions): {broker_text}",
                    endpoint.uri.vhost
                ),
                _ => format!("broker closed the connection: {amqp_error}"),
            }
        }
        ErrorKind::IOError(io_error) => {
            if let Some(tls_error) = find_rustls_error(io_error.as_ref()) {
                return describe_tls_error(tls_error, endpoint);
            }
            match io_error.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("connection refused at {address} (is the broker running?)")
                }
                std::io::ErrorKind::TimedOut => format!(
                    "no connection to {address} within {} (is the host up and the port open?)",
                    seconds_text(timeout)
                ),
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof => format!(
                    "{address} closed the connection during the handshake \
                     (is this an AMQP port, and does it expect TLS?): {io_error}"
                ),
                _ => format!("cannot connect to {address}: {io_error}"),
            }
        }
        _ => format!("cannot connect to {address}: {error}"),
    }
}

/// Finds the rustls error inside an I/O error, however deeply wrapped.
pub(in crate::broker) fn find_rustls_error(io_error: &std::io::Error) -> Option<&rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = io_error.get_ref().map(|inner| {
        let inner: &(dyn std::error::Error + 'static) = inner;
        inner
    });
    while let Some(error) = current {
        if let Some(tls_error) = error.downcast_ref::<rustls::Error>() {
            return Some(tls_error);
        }
        if let Some(nested_io) = error.downcast_ref::<std::io::Error>()
            && let Some(tls_error) = find_rustls_error(nested_io)
        {
            return Some(tls_error);
        }
        current = error.source();
    }
    None
}

fn describe_tls_error(error: &rustls::Error, endpoint: &Endpoint) -> String {
    let expected =
        endpoint.tls.as_ref().map_or(endpoint.uri.authority.host.as_str(), |(_, name)| name.as_str());
    describe_tls(error, expected)
}

/// A failed TLS handshake with a server expected to be `expected`, in words a person can act
/// on. Shared by every transport, so that TLS problems read the same whatever the protocol.
pub(in crate::broker) fn describe_tls(error: &rustls::Error, expected: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. }) => {
            format!(
                "certificate is not valid for host \"{expected}\" (it is for {}; set tls.server_name \
             or fix the certificate)",
                presented
                    .iter()
                    .map(|name| format!("\"{}\"", presented_name(name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => format!(
            "certificate is not valid for host \"{expected}\" (set tls.server_name or fix the \
             certificate)"
        ),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate was not issued by the configured CA (check tls.ca)".to_string()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the broker's certificate has expired (renew it on the broker)".to_string(),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the broker requires a client certificate (set tls.cert and tls.key)".to_string()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::HandshakeFailure),
        ) => format!(
            "the broker rejected the TLS handshake ({alert:?}); check that our client \
             certificate (tls.cert) is issued by a CA the broker trusts"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// rustls reports the certificate's names in Debug form (`DnsName("mq1")`,
/// `IpAddress(10.0.0.1)`); people want just the name.
fn presented_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| presented.strip_prefix("IpAddress(").and_then(|rest| rest.strip_suffix(')')))
        .unwrap_or(presented)
}

/// "3 s", "0.5 s": durations as people read them in messages.
pub(in crate::broker) fn seconds_text(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 { format!("{seconds:.0} s") } else { format!("{seconds} s") }
}

/// Whole seconds for the error variants that carry `seconds: u64`, rounded up so that a
/// sub-second timeout never reads as "0 s".
pub(in crate::broker) fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: &str) {
        assert_eq!(redact(url), expected, "redacting {url}");
    }

    #[test]
    fn redacts_passwords() {
        check("amqp://node:secret@mq1:5672/baton", "amqp://node:***@mq1:5672/baton");
        check("amqps://node:s3cr%2Ft@mq1:5671/%2f", "amqps://node:***@mq1:5671/%2f");
        check("amqp://node:p@ss/w@rd@mq1/baton", "amqp://node:***@mq1/baton");
        check("amqp://node@mq1:5672/baton", "amqp://node@mq1:5672/baton");
        check("amqp://mq1:5672/baton", "amqp://mq1:5672/baton");
        check("not a url user:pw@host", "not a url user:***@host");
        check("amqp://:pw@mq1", "amqp://:***@mq1");
    }

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(presented_name("DnsName(\"mq1.example\")"), "mq1.example");
        assert_eq!(presented_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(presented_name("*.example"), "*.example");
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(whole_seconds(Duration::from_millis(100)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(5)), 5);
        assert_eq!(whole_seconds(Duration::from_millis(5001)), 6);
    }
}
