//! One STOMP connection: URL parsing, TCP and TLS, the CONNECT handshake with heart-beat
//! negotiation, and the two tasks that own the socket once it is up.
//!
//! The reader task decodes frames (never trusting the peer: see [`super::frame`]), answers
//! receipts, hands MESSAGE frames to their subscription's channel, and ends the session when the
//! broker sends an ERROR that answers no receipt, sends a malformed frame, closes the socket, or
//! stays silent for twice its heart-beat interval. The writer task sends queued frames and our
//! own heart-beats. Either ending ends the [`Session`]: every receipt still awaited is answered
//! with [`Answer::Lost`], and every subscription channel is closed, which tells the owner task to
//! reconnect.
//!
//! TLS (`stomp+ssl://`) uses the rustls configuration built from `[tls]` (our CA, optional client
//! certificate), with the server's certificate checked against the URL's host or
//! `tls.server_name`, exactly as the AMQP transport does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::dialect::{self, ErrorText};
use super::frame::{Command, Decoder, Frame, FrameError, Item};
use crate::broker::transport::{self, OpenError, UrlProblem, tls_target};
use crate::broker::wording::{self, seconds_text};
use crate::broker::{BrokerError, BrokerSettings, StompDialect, sleep_until_some};

/// The heart-beat interval we offer and ask for. The broker may ask for slower ones; a broker
/// silent for twice the agreed interval is taken for dead.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(5);

/// Room for STOMP headers above the message size limit when decoding frames.
pub(super) const FRAME_HEADROOM: usize = 64 * 1024;

/// Frames waiting for the writer; senders wait (backpressure) beyond this.
const OUTGOING_CAPACITY: usize = 1024;

/// One broker URL, parsed once, with what messages need to name it.
#[derive(Clone)]
pub(in crate::broker) struct Endpoint {
    pub host: String,
    pub port: u16,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// The URL's path: RabbitMQ's virtual host (sent as the `host` header).
    pub vhost: Option<String>,
    /// The connector and the name the server certificate must be valid for (TLS only).
    pub tls: Option<(TlsConnector, String)>,
}

impl Endpoint {
    pub fn user(&self) -> &str {
        self.login.as_deref().unwrap_or("")
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl transport::Endpoint for Endpoint {
    fn parse(url: &str, settings: &BrokerSettings) -> Result<Endpoint, UrlProblem> {
        let form = "stomp[+ssl]://user:password@host:port[/vhost]";
        let parsed = parse_url(url).map_err(|reason| UrlProblem::Invalid { reason, form })?;
        let tls = if parsed.tls {
            let (config, server_name) = tls_target(settings, &parsed.host, "a stomp:// URL")?;
            Some((TlsConnector::from(config), server_name))
        } else {
            None
        };
        let ParsedUrl { host, port, login, passcode, vhost, .. } = parsed;
        Ok(Endpoint { host, port, login, passcode, vhost, tls })
    }
}

/// The parts of a `stomp://` or `stomp+ssl://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParsedUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub login: Option<String>,
    pub passcode: Option<String>,
    pub vhost: Option<String>,
}

/// Parses `stomp[+ssl]://[user[:password]@]host[:port][/vhost]`; user, password and vhost are
/// percent-decoded. Default ports are the standard 61613 and 61614.
pub(super) fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("stomp+ssl://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("stomp://") {
        (false, rest)
    } else {
        return Err("the scheme must be stomp:// or stomp+ssl://".to_string());
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], Some(&rest[slash + 1..])),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (login, passcode) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (Some(percent_decode(user)?), Some(percent_decode(password)?)),
            None => (Some(percent_decode(info)?), None),
        },
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err("an IPv6 address must be closed with ']'".to_string());
        };
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    let port = match port {
        Some(text) => text.parse::<u16>().map_err(|_| format!("port {text:?} is not a port number"))?,
        None if tls => 61614,
        None => 61613,
    };
    let vhost = match path {
        Some(path) if !path.is_empty() => Some(percent_decode(path)?),
        _ => None,
    };
    for (what, value) in [("user", &login), ("password", &passcode), ("vhost", &vhost)] {
        if value.as_deref().is_some_and(|text| text.contains(['\n', '\r', '\0'])) {
            return Err(format!("the {what} holds a line break or NUL, which STOMP cannot carry"));
        }
    }
    Ok(ParsedUrl { tls, host, port, login, passcode, vhost })
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex =
                text.get(index + 1..index + 3).ok_or_else(|| format!("bad percent escape in {text:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad percent escape in {text:?}"))?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection that has finished the STOMP handshake.
pub(super) struct Opened {
    reader: ReadHalf<Box<dyn Stream>>,
    writer: WriteHalf<Box<dyn Stream>>,
    buffer: Vec<u8>,
    decoder: Decoder,
    /// How often we must send something (None: the broker wants no heart-beats).
    send_every: Option<Duration>,
    /// How often the broker promised to send something (None: it will not).
    expect_every: Option<Duration>,
    pub server: String,
}

/// Connects to `endpoint` (TCP, TLS, CONNECT/CONNECTED) within `settings.connect_timeout`.
/// The error is a sentence saying why, meant to follow the redacted URL.
pub(super) async fn open(endpoint: &Endpoint, settings: &BrokerSettings) -> Result<Opened, OpenError> {
    let timeout = settings.connect_timeout;
    match tokio::time::timeout(timeout, handshake(endpoint, settings)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(OpenError::Failed(format!(
            "no STOMP handshake with {} within {} (is the host up, and is this a STOMP port?)",
            endpoint.address(),
            seconds_text(timeout)
        ))),
    }
}

async fn handshake(endpoint: &Endpoint, settings: &BrokerSettings) -> Result<Opened, OpenError> {
    let address = endpoint.address();
    let failed = |error: std::io::Error| describe_io_error(&error, endpoint, settings.connect_timeout);
    let tcp =
        tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await.map_err(failed)?;
    // Frames are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match &endpoint.tls {
        None => Box::new(tcp),
        Some((connector, server_name)) => {
            let name = ServerName::try_from(server_name.clone()).map_err(|_| {
                format!("\"{server_name}\" is not a valid TLS server name (set tls.server_name)")
            })?;
            Box::new(connector.connect(name, tcp).await.map_err(failed)?)
        }
    };
    let (mut reader, mut writer) = tokio::io::split(stream);

    let host = match (&endpoint.vhost, settings.dialect) {
        (Some(vhost), _) => Some(vhost.clone()),
        // RabbitMQ reads `host` as the virtual host: without one it uses its default vhost.
        (None, StompDialect::RabbitMq) => None,
        (None, StompDialect::ActiveMq) => Some(endpoint.host.clone()),
    };
    let mut connect = Frame::new(Command::Connect).header("accept-version", "1.2");
    if let Some(host) = host {
        connect = connect.header("host", host);
    }
    if let Some(login) = &endpoint.login {
        connect = connect.header("login", login.clone());
    }
    if let Some(passcode) = &endpoint.passcode {
        connect = connect.header("passcode", passcode.clone());
    }
    if let Some((name, value)) = settings
        .claimed_identity
        .as_deref()
        .and_then(|identity| dialect::connect_claim(settings.dialect, identity))
    {
        connect = connect.header(name, value);
    }
    let beat = HEARTBEAT.as_millis().to_string();
    connect = connect.header("heart-beat", format!("{beat},{beat}"));
    let bytes = connect.to_bytes().map_err(|error| error.to_string())?;
    writer.write_all(&bytes).await.map_err(failed)?;
    writer.flush().await.map_err(failed)?;

    let mut decoder = Decoder::new(settings.max_message_bytes.saturating_add(FRAME_HEADROOM));
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0_u8; 16 * 1024];
    let connected = loop {
        match decoder.decode(&mut buffer) {
            Ok(Some(Item::Frame(frame))) => break frame,
            Ok(Some(Item::HeartBeat)) => continue,
            Ok(Some(Item::Oversized { frame, declared })) => {
                return Err(OpenError::Failed(format!(
                    "the broker answered CONNECT with a {declared}-byte {} frame (is this a STOMP port?)",
                    frame.command
                )));
            }
            Ok(None) => {}
            Err(error) => {
                return Err(OpenError::Failed(format!(
                    "the broker sent a malformed frame during the STOMP handshake: {error} (is this a STOMP port?)"
                )));
            }
        }
        let read = reader.read(&mut chunk).await.map_err(failed)?;
        if read == 0 {
            return Err(OpenError::Failed(format!(
                "{address} closed the connection during the STOMP handshake (is this a STOMP port, and \
                 does it expect TLS?)"
            )));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    match connected.command {
        Command::Connected => {}
        Command::Error => {
            let error = ErrorText::of(&connected);
            if let Some(identity) = &settings.claimed_identity
                && dialect::refuses_claim(settings.dialect, &error)
            {
                return Err(OpenError::IdentityInUse(BrokerError::IdentityInUse {
                    identity: identity.clone(),
                    detail: format!("the broker refused this connection's client-id: {}", error.text()),
                }));
            }
            return Err(OpenError::Failed(format!(
                "the broker refused the connection for user \"{}\": {} (check the URL's user, password{})",
                endpoint.user(),
                error.text(),
                if settings.dialect == StompDialect::RabbitMq { " and vhost" } else { "" }
            )));
        }
        other => {
            return Err(OpenError::Failed(format!(
                "the broker answered CONNECT with {other} instead of CONNECTED (is this a STOMP port?)"
            )));
        }
    }
    if connected.value("version").is_some_and(|version| version != "1.2") {
        return Err(OpenError::Failed(format!(
            "the broker speaks STOMP {}, Baton needs 1.2",
            connected.value("version").unwrap_or_default()
        )));
    }
    let (server_every, server_wants) = match connected.value("heart-beat") {
        Some(text) => parse_heart_beat(text)
            .ok_or_else(|| format!("the broker sent a malformed heart-beat header {text:?} in CONNECTED"))?,
        None => (0, 0),
    };
    // STOMP 1.2 section "Heart-beating": each side uses the larger of what one offers and the
    // other asks for; zero on either side means none.
    let ours = u64::try_from(HEARTBEAT.as_millis()).unwrap_or(u64::MAX);
    let send_every = (server_wants > 0).then(|| Duration::from_millis(server_wants.max(ours)));
    let expect_every = (server_every > 0).then(|| Duration::from_millis(server_every.max(ours)));
    Ok(Opened {
        reader,
        writer,
        buffer,
        decoder,
        send_every,
        expect_every,
        server: connected.value("server").unwrap_or("unknown").to_string(),
    })
}

fn parse_heart_beat(text: &str) -> Option<(u64, u64)> {
    let (every, wants) = text.split_once(',')?;
    Some((every.trim().parse().ok()?, wants.trim().parse().ok()?))
}

/// Turns a failed TCP or TLS step into a sentence a person can act on.
fn describe_io_error(error: &std::io::Error, endpoint: &Endpoint, timeout: Duration) -> String {
    let tls_host = endpoint.tls.as_ref().map_or(endpoint.host.as_str(), |(_, name)| name.as_str());
    wording::connect_failure(error, &endpoint.address(), "STOMP", tls_host, timeout)
}

/// How the broker answered a frame sent with a `receipt` header.
#[derive(Debug, Clone)]
pub(super) enum Answer {
    /// RECEIPT: the broker has processed the frame.
    Receipt,
    /// An ERROR carrying our receipt id: the broker refused this frame and kept the connection
    /// (ActiveMQ does this).
    Error(ErrorText),
    /// The connection ended before an answer; `error` is the ERROR frame that ended it, if any
    /// (RabbitMQ closes the connection after an ERROR and names no receipt).
    Lost { reason: String, error: Option<ErrorText> },
    /// No answer within the wait; the connection may still be up.
    TimedOut,
}

/// A message for one subscription, on its way to the subscription's forwarder.
#[derive(Debug)]
pub(super) struct Delivered {
    pub body: Vec<u8>,
    /// The `destination` header: where the message was sent.
    pub destination: String,
    /// The `ack` header to acknowledge it with.
    pub ack: Option<String>,
    /// The declared size of a body the decoder threw away for being over the frame limit.
    pub oversized: Option<usize>,
}

/// Why and how a session ended.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    pub reason: String,
    pub error: Option<ErrorText>,
}

struct Shared {
    receipts: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    routes: Mutex<HashMap<String, mpsc::Sender<Delivered>>>,
    ended: watch::Sender<Option<Ending>>,
}

impl Shared {
    /// Ends the session once: answers every awaited receipt and closes every subscription.
    fn end(&self, reason: String, error: Option<ErrorText>) {
        let first = self.ended.send_if_modified(|ended| {
            if ended.is_some() {
                return false;
            }
            *ended = Some(Ending { reason: reason.clone(), error: error.clone() });
            true
        });
        if !first {
            return;
        }
        let receipts: Vec<_> = lock(&self.receipts).drain().collect();
        for (_, answer) in receipts {
            let _ = answer.send(Answer::Lost { reason: reason.clone(), error: error.clone() });
        }
        lock(&self.routes).clear();
    }

    fn is_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (plain maps of senders).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One live STOMP connection. Cheap to share: publish tasks and forwarders hold it in an `Arc`.
pub(in crate::broker) struct Session {
    pub endpoint: Endpoint,
    outgoing: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl Session {
    /// Starts the reader and writer tasks on an opened connection.
    pub fn start(opened: Opened, endpoint: Endpoint) -> Session {
        let (ended, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            receipts: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            ended,
        });
        let (outgoing, frames) = mpsc::channel(OUTGOING_CAPACITY);
        let Opened { reader, writer, buffer, decoder, send_every, expect_every, server } = opened;
        tracing::debug!(address = %endpoint.address(), %server, ?send_every, ?expect_every, "STOMP session up");
        tokio::spawn(write_loop(writer, frames, send_every, Arc::clone(&shared)));
        tokio::spawn(read_loop(reader, buffer, decoder, expect_every, Arc::clone(&shared)));
        Session { endpoint, outgoing, shared, next_id: AtomicU64::new(0) }
    }

    pub fn is_alive(&self) -> bool {
        !self.shared.is_ended()
    }

    /// Watches the session's end: `Some` once it has ended, with why.
    pub fn ending(&self) -> watch::Receiver<Option<Ending>> {
        self.shared.ended.subscribe()
    }

    /// A fresh id for a receipt or a subscription on this connection.
    pub fn fresh_id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues `frame` for sending without waiting for an answer.
    pub async fn send(&self, frame: &Frame) -> Result<(), String> {
        let bytes = frame.to_bytes().map_err(|error| error.to_string())?;
        self.outgoing.send(bytes).await.map_err(|_| "the connection is closed".to_string())
    }

    /// Sends `frame` with a `receipt` header and waits up to `wait` for the broker's answer.
    pub async fn request(&self, frame: Frame, wait: Duration) -> Answer {
        let id = self.fresh_id("r");
        let frame = frame.header("receipt", id.clone());
        let (answer, answered) = oneshot::channel();
        lock(&self.shared.receipts).insert(id.clone(), answer);
        // Checked after registering: an ending that came first has drained the map already.
        if let Some(ending) = self.shared.ended.borrow().clone() {
            lock(&self.shared.receipts).remove(&id);
            return Answer::Lost { reason: ending.reason, error: ending.error };
        }
        if let Err(reason) = self.send(&frame).await {
            lock(&self.shared.receipts).remove(&id);
            return Answer::Lost { reason, error: None };
        }
        match tokio::time::timeout(wait, answered).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_dropped)) => Answer::Lost { reason: "the connection ended".to_string(), error: None },
            Err(_elapsed) => {
                lock(&self.shared.receipts).remove(&id);
                Answer::TimedOut
            }
        }
    }

    /// Routes the MESSAGE frames of subscription `id` to `sender`. Returns false if the
    /// session has already ended (the route would never be served).
    pub fn route(&self, id: &str, sender: mpsc::Sender<Delivered>) -> bool {
        lock(&self.shared.routes).insert(id.to_string(), sender);
        if self.shared.is_ended() {
            lock(&self.shared.routes).clear();
            return false;
        }
        true
    }

    pub fn unroute(&self, id: &str) {
        lock(&self.shared.routes).remove(id);
    }

    /// Says goodbye (DISCONNECT, waiting briefly for its receipt) and ends the session.
    pub async fn close(&self, wait: Duration) {
        if self.is_alive() {
            let _ = self.request(Frame::new(Command::Disconnect), wait).await;
        }
        self.shared.end("closed by us".to_string(), None);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The I/O tasks hold only the shared state: tell them to stop.
        self.shared.end("the session was dropped".to_string(), None);
    }
}

async fn write_loop(
    mut writer: WriteHalf<Box<dyn Stream>>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    send_every: Option<Duration>,
    shared: Arc<Shared>,
) {
    let mut ended = shared.ended.subscribe();
    let mut last_write = Instant::now();
    loop {
        let beat_at = send_every.map(|every| last_write + every);
        let result = tokio::select! {
            frame = frames.recv() => match frame {
                Some(bytes) => write_flush(&mut writer, &bytes).await,
                None => break,
            },
            () = sleep_until_some(beat_at) => write_flush(&mut writer, b"\n").await,
            _ = ended.changed() => break,
        };
        if let Err(error) = result {
            shared.end(format!("writing to the broker failed: {error}"), None);
            break;
        }
        last_write = Instant::now();
        if shared.is_ended() {
            break;
        }
    }
    // Best effort: a TLS close_notify, or a FIN.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}

async fn write_flush(writer: &mut WriteHalf<Box<dyn Stream>>, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

async fn read_loop(
    mut reader: ReadHalf<Box<dyn Stream>>,
    mut buffer: Vec<u8>,
    mut decoder: Decoder,
    expect_every: Option<Duration>,
    shared: Arc<Shared>,
) {
    let mut ended = shared.ended.subscribe();
    let mut chunk = vec![0_u8; 64 * 1024];
    // Twice the promised interval, as STOMP 1.2 suggests tolerating network delays.
    let silence_limit = expect_every.map(|every| every * 2);
    loop {
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(item)) => {
                    if let Err((reason, error)) = handle(item, &shared) {
                        shared.end(reason, error);
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shared.end(malformed(&error), None);
                    return;
                }
            }
        }
        let read = async {
            match silence_limit {
                Some(limit) => tokio::time::timeout(limit, reader.read(&mut chunk)).await.ok(),
                None => Some(reader.read(&mut chunk).await),
            }
        };
        let outcome = tokio::select! {
            outcome = read => outcome,
            _ = ended.changed() => return,
        };
        match outcome {
            None => {
                let limit = silence_limit.unwrap_or_default();
                shared.end(
                    format!(
                        "no heart-beat from the broker for {} (it promised one every {}): the \
                         connection is dead",
                        seconds_text(limit),
                        seconds_text(expect_every.unwrap_or_default())
                    ),
                    None,
                );
                return;
            }
            Some(Ok(0)) => {
                shared.end("the broker closed the connection".to_string(), None);
                return;
            }
            Some(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
            Some(Err(error)) => {
                shared.end(format!("reading from the broker failed: {error}"), None);
                return;
            }
        }
    }
}

fn malformed(error: &FrameError) -> String {
    format!("the broker sent a malformed STOMP frame: {error}")
}

/// Handles one decoded item; an `Err` ends the session with that reason.
fn handle(item: Item, shared: &Shared) -> Result<(), (String, Option<ErrorText>)> {
    let (frame, oversized) = match item {
        Item::HeartBeat => return Ok(()),
        Item::Frame(frame) => (frame, None),
        Item::Oversized { frame, declared } => (frame, Some(declared)),
    };
    match frame.command {
        Command::Message => {
            let Some(subscription) = frame.value("subscription").map(str::to_string) else {
                return Err(("the broker sent a MESSAGE without a subscription header".to_string(), None));
            };
            let route = lock(&shared.routes).get(&subscription).cloned();
            let Some(route) = route else {
                // Unsubscribed a moment ago; unacknowledged, it goes back to the broker.
                tracing::debug!(%subscription, "message for a subscription that is gone");
                return Ok(());
            };
            let delivered = Delivered {
                ack: frame.value("ack").map(str::to_string),
                destination: frame.value("destination").unwrap_or_default().to_string(),
                body: frame.body,
                oversized,
            };
            if let Err(error) = route.try_send(delivered) {
                // The broker sends at most the prefetch count unacknowledged, and the channel
                // holds more than that: a full channel means the broker ignores prefetch.
                tracing::warn!(%subscription, %error, "message dropped: the broker sent more than the prefetch allows");
            }
            Ok(())
        }
        Command::Receipt => {
            if let Some(id) = frame.value("receipt-id")
                && let Some(answer) = lock(&shared.receipts).remove(id)
            {
                let _ = answer.send(Answer::Receipt);
            }
            Ok(())
        }
        Command::Error => {
            let error = ErrorText::of(&frame);
            if let Some(id) = frame.value("receipt-id")
                && let Some(answer) = lock(&shared.receipts).remove(id)
            {
                let _ = answer.send(Answer::Error(error));
                return Ok(());
            }
            Err((format!("the broker sent an ERROR: {}", error.text()), Some(error)))
        }
        other => Err((format!("the broker sent an unexpected {other} frame"), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TLS, host, port, login, passcode, vhost.
    type Parts<'a> = (bool, &'a str, u16, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn check(url: &str, expected: Result<Parts<'_>, &str>) {
        let parsed = parse_url(url);
        match expected {
            Ok((tls, host, port, login, passcode, vhost)) => {
                let want = ParsedUrl {
                    tls,
                    host: host.to_string(),
                    port,
                    login: login.map(str::to_string),
                    passcode: passcode.map(str::to_string),
                    vhost: vhost.map(str::to_string),
                };
                assert_eq!(parsed, Ok(want), "{url}");
            }
            Err(fragment) => {
                assert!(parsed.as_ref().is_err_and(|error| error.contains(fragment)), "{url}: {parsed:?}");
            }
        }
    }

    #[test]
    fn urls_parse() {
        check("stomp://node:pw@mq1:61613", Ok((false, "mq1", 61613, Some("node"), Some("pw"), None)));
        check("stomp://mq1", Ok((false, "mq1", 61613, None, None, None)));
        check("stomp+ssl://mq1", Ok((true, "mq1", 61614, None, None, None)));
        check(
            "stomp+ssl://u:p%40ss@mq1:7000/baton",
            Ok((true, "mq1", 7000, Some("u"), Some("p@ss"), Some("baton"))),
        );
        check("stomp://u:p@ss@mq1/%2f", Ok((false, "mq1", 61613, Some("u"), Some("p@ss"), Some("/"))));
        check("stomp://[::1]:61613", Ok((false, "::1", 61613, None, None, None)));
        check("stomp://u@mq1/", Ok((false, "mq1", 61613, Some("u"), None, None)));
        check("amqp://mq1", Err("scheme"));
        check("stomp://mq1:http", Err("not a port"));
        check("stomp://:61613", Err("host is missing"));
        check("stomp://u:p%0aw@mq1", Err("line break"));
        check("stomp://u:p%zz@mq1", Err("percent"));
    }

    #[test]
    fn heart_beat_headers_parse() {
        assert_eq!(parse_heart_beat("1000,2000"), Some((1000, 2000)));
        assert_eq!(parse_heart_beat("0,0"), Some((0, 0)));
        assert_eq!(parse_heart_beat("1000"), None);
        assert_eq!(parse_heart_beat("a,b"), None);
    }
}
