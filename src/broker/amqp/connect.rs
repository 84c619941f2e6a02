//! Opening one AMQP connection to one URL, and saying in plain words why it failed.
//!
//! TLS (`amqps://`) always uses the rustls configuration the security module built from our CA
//! (and optional client certificate), never the system roots; the server's certificate is
//! checked against the URL's host, or `tls.server_name` when set. A connection that failed
//! before AMQP's own handshake is worded by [`wording::connect_failure`], as for STOMP.

use std::net::SocketAddr;

use std::time::Duration;

use lapin::tcp::{AsyncTcpStream, RustlsConnector};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ErrorKind};

use crate::broker::BrokerSettings;
use crate::broker::transport::{self, UrlProblem, tls_target};
use crate::broker::wording::{self, seconds_text};

/// One broker URL, parsed once, with what messages need to name it.
#[derive(Debug, Clone)]
pub(in crate::broker) struct Endpoint {
    pub uri: AMQPUri,
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

impl transport::Endpoint for Endpoint {
    fn parse(url: &str, settings: &BrokerSettings) -> Result<Endpoint, UrlProblem> {
        let form = "amqp[s]://user:password@host:port/vhost";
        let mut uri: AMQPUri = url.parse().map_err(|reason| UrlProblem::Invalid { reason, form })?;
        // lapin keeps a send and a receive buffer of 32 frames each, so RabbitMQ's default
        // frame_max (128 KiB) costs 8 MiB of memory per connection; Baton's messages are
        // small, and a large one is simply split into more frames. A `frame_max` in the URL
        // wins.
        uri.query.frame_max.get_or_insert(FRAME_MAX);
        let tls = match uri.scheme {
            AMQPScheme::AMQP => None,
            AMQPScheme::AMQPS => {
                let (config, server_name) = tls_target(settings, &uri.authority.host, "an amqp:// URL")?;
                Some((RustlsConnector::from(config), server_name))
            }
        };
        Ok(Endpoint { uri, tls })
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
            let tls_host =
                endpoint.tls.as_ref().map_or(endpoint.uri.authority.host.as_str(), |(_, name)| name);
            wording::connect_failure(io_error, &address, "AMQP", tls_host, timeout)
        }
        _ => format!("cannot connect to {address}: {error}"),
    }
}
