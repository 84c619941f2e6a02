//! STOMP 1.2 frames: encoding, and a decoder that treats every byte from the network as hostile.
//!
//! A frame is a command line, header lines, a blank line, a body and a NUL byte; end of lines are
//! `\n` or `\r\n`, and end of lines between frames are heart-beats. Header names and values are
//! escaped (`\r`, `\n`, `\c` for `:`, `\\`) in every frame except `CONNECT`/`STOMP` and
//! `CONNECTED`. Baton's bodies are CBOR, so the encoder always sends `content-length` and the
//! decoder honours it, NUL bytes in the body included.
//!
//! The decoder never holds more than the configured frame limit: a header section over
//! [`MAX_HEADER_BYTES`] or a frame without `content-length` that grows past the limit is an
//! error, and a frame whose declared `content-length` is over the limit has its body skipped
//! without being buffered ([`Item::Oversized`]), so that one oversized message costs one dropped
//! message, not the connection (the broker would otherwise deliver it again on every reconnect).

use std::fmt;

/// Longest header section (command, headers, blank line) the decoder accepts.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most headers one frame may carry.
pub const MAX_HEADERS: usize = 128;

/// A STOMP 1.2 command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Connected,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Message,
    Receipt,
    Error,
}

impl Command {
    const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Connected,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The command as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// The command named by `text` exactly (commands are case-sensitive).
    pub fn parse(text: &[u8]) -> Option<Command> {
        Command::ALL.into_iter().find(|command| command.as_str().as_bytes() == text)
    }

    /// STOMP 1.2 escapes headers in every frame except the connection handshake, so that 1.0
    /// peers can still read a CONNECT or CONNECTED frame.
    fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One STOMP frame. Headers keep their order; when a name repeats, the first one counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Frame {
        Frame { command, headers: Vec::new(), body: Vec::new() }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn body(mut self, body: Vec<u8>) -> Frame {
        self.body = body;
        self
    }

    /// The value of the first header called `name`, as STOMP 1.2 says repeated headers count.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header, _)| header == name).map(|(_, value)| value.as_str())
    }

    /// Appends the wire form of this frame to `out`. A non-empty body always gets a
    /// `content-length` (any given one is replaced), so bodies may hold NUL bytes.
    ///
    /// What this encodes, [`Decoder`] decodes: a frame whose head would be over
    /// [`MAX_HEADERS`] headers or [`MAX_HEADER_BYTES`] bytes (the added `content-length` and
    /// escaping included) is refused, as are handshake frames (which cannot escape) whose header
    /// holds a line break, or whose header name holds a `:`. On error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let head = self.encode_head(out).and_then(|()| match out.len() - start {
            bytes if bytes > MAX_HEADER_BYTES => {
                Err(EncodeError::HeadTooLarge { command: self.command, bytes })
            }
            _ => Ok(()),
        });
        if let Err(error) = head {
            out.truncate(start);
            return Err(error);
        }
        out.extend_from_slice(&self.body);
        out.push(0);
        Ok(())
    }

    /// The command, headers and blank line.
    fn encode_head(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let given = self.headers.iter().filter(|(name, _)| name != "content-length");
        let count = given.clone().count() + usize::from(!self.body.is_empty());
        if count > MAX_HEADERS {
            return Err(EncodeError::TooManyHeaders { command: self.command, count });
        }
        let escape = self.command.escapes_headers();
        out.extend_from_slice(self.command.as_str().as_bytes());
        out.push(b'\n');
        for (name, value) in given {
            if escape {
                escape_into(name, out);
                out.push(b':');
                escape_into(value, out);
            } else {
                let breaks = |text: &str| text.contains(['\n', '\r']);
                if breaks(name) || breaks(value) || name.contains(':') {
                    return Err(EncodeError::Unescapable { command: self.command, name: name.clone() });
                }
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend_from_slice(value.as_bytes());
            }
            out.push(b'\n');
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.push(b'\n');
        Ok(())
    }

    /// The wire form of this frame.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64 + self.body.len());
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// A frame that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "header \"{name}\" cannot be sent in a {command} frame: handshake headers cannot hold line \
         breaks (or a ':' in the name)"
    )]
    Unescapable { command: Command, name: String },
    #[error(
        "a {command} frame would carry {count} headers (content-length included), over the \
         {MAX_HEADERS} a STOMP peer accepts: send fewer headers"
    )]
    TooManyHeaders { command: Command, count: usize },
    #[error(
        "a {command} frame's header section would be {bytes} bytes (escaped), over the \
         {MAX_HEADER_BYTES} a STOMP peer accepts: send shorter headers"
    )]
    HeadTooLarge { command: Command, bytes: usize },
}

/// What the peer sent that is not STOMP 1.2. Any of these ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame is over the {limit}-byte limit (at least {size} bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error("the header section is over {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("a frame has more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("header line {0:?} has no ':'")]
    MalformedHeader(String),
    #[error("header line {0:?} has an invalid escape (only \\r, \\n, \\c and \\\\ are allowed)")]
    BadEscape(String),
    #[error("the command or a header is not UTF-8")]
    NotUtf8,
    #[error("content-length {0:?} is not a byte count")]
    BadContentLength(String),
    #[error("the {length}-byte body (by content-length) is not followed by a NUL byte")]
    MissingNul { length: usize },
}

/// What [`Decoder::decode`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// An end of line between frames: the peer is alive.
    HeartBeat,
    /// A frame whose declared body was over the limit; its body was read and thrown away.
    /// `frame.body` is empty; `declared` is its `content-length`.
    Oversized { frame: Frame, declared: usize },
}

/// Incremental STOMP decoder: feed it the bytes read so far, take items off the front.
///
/// Decoding costs time linear in the bytes received, however a peer splits them: the decoder
/// remembers how far it has looked (lines of a head already parsed, body bytes already searched
/// for their NUL), so no byte is looked at twice, and it removes what it has decoded from the
/// buffer in one go when it needs more input rather than after every item.
#[derive(Debug)]
pub struct Decoder {
    max_frame_bytes: usize,
    state: State,
    /// Bytes at the front of the caller's buffer already decoded. Removing from the front of a
    /// `Vec` moves everything behind it, so removing after every item would cost the square of
    /// a read full of small items (heart-beats); they go when the decoder needs more input.
    consumed: usize,
    /// Bytes searched or moved so far: see [`Decoder::work`].
    work: u64,
}

#[derive(Debug)]
enum State {
    /// Waiting for (the rest of) a command and its headers.
    Head(Head),
    /// Headers parsed; waiting for the body and its NUL.
    Body {
        frame: Frame,
        head_bytes: usize,
        length: Option<usize>,
        /// Bytes of the body already searched for NUL (bodies without content-length).
        scanned: usize,
    },
    /// Throwing away an oversized body: `remaining` bytes plus the NUL.
    Skip { frame: Frame, declared: usize, remaining: usize },
}

/// A head read so far. Offsets count from the first byte of the frame.
#[derive(Debug, Default)]
struct Head {
    command: Option<Command>,
    headers: Vec<(String, String)>,
    /// Where the line being read starts.
    line_start: usize,
    /// How far the line being read has been searched for its end.
    scanned: usize,
}

impl Decoder {
    /// A decoder that refuses frames larger than `max_frame_bytes` (headers and body).
    pub fn new(max_frame_bytes: usize) -> Decoder {
        Decoder { max_frame_bytes, state: State::Head(Head::default()), consumed: 0, work: 0 }
    }

    /// Takes one item off the front of `buffer`. `Ok(None)` means: append more bytes to `buffer`
    /// and call again; by then every decoded byte has been removed from it. Between calls the
    /// caller only appends: the decoder remembers positions in `buffer`. After an error the
    /// connection must be closed: the stream is out of step.
    pub fn decode(&mut self, buffer: &mut Vec<u8>) -> Result<Option<Item>, FrameError> {
        let item = self.next_item(buffer)?;
        if item.is_none() && self.consumed > 0 {
            self.work += (buffer.len() - self.consumed) as u64;
            buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        Ok(item)
    }

    /// Bytes this decoder has searched (for line ends and NULs) or moved (removing decoded bytes
    /// from the buffer) so far. It stays within a small multiple of the bytes fed, whatever the
    /// input and however reads split it; exposed so that tests can check that without a clock.
    pub fn work(&self) -> u64 {
        self.work
    }

    fn next_item(&mut self, buffer: &[u8]) -> Result<Option<Item>, FrameError> {
        loop {
            let input = &buffer[self.consumed..];
            match std::mem::take(&mut self.state) {
                State::Head(mut head) => {
                    if head.line_start == 0 {
                        let beat = if input.starts_with(b"\n") {
                            1
                        } else if input.starts_with(b"\r\n") {
                            2
                        } else {
                            0
                        };
                        if beat > 0 {
                            self.consumed += beat;
                            return Ok(Some(Item::HeartBeat));
                        }
                    }
                    let Some((frame, head_bytes)) = head.read(input, &mut self.work)? else {
                        if input.len() > MAX_HEADER_BYTES + 1 {
                            return Err(FrameError::HeadersTooLarge { limit: MAX_HEADER_BYTES });
                        }
                        self.state = State::Head(head);
                        return Ok(None);
                    };
                    self.consumed += head_bytes;
                    let length = match frame.value("content-length") {
                        Some(text) => Some(parse_length(text)?),
                        None => None,
                    };
                    match length {
                        Some(declared) if head_bytes.saturating_add(declared) > self.max_frame_bytes => {
                            self.state = State::Skip { frame, declared, remaining: declared };
                        }
                        _ => self.state = State::Body { frame, head_bytes, length, scanned: 0 },
                    }
                }
                State::Body { mut frame, head_bytes, length, scanned } => match length {
                    Some(length) => {
                        if input.len() <= length {
                            self.state = State::Body { frame, head_bytes, length: Some(length), scanned };
                            return Ok(None);
                        }
                        if input[length] != 0 {
                            return Err(FrameError::MissingNul { length });
                        }
                        frame.body = input[..length].to_vec();
                        self.consumed += length + 1;
                        return Ok(Some(Item::Frame(frame)));
                    }
                    None => match find(input, scanned, 0, &mut self.work) {
                        Some(end) => {
                            // Checked here too, so the outcome never depends on how reads split.
                            let size = head_bytes + end + 1;
                            if size > self.max_frame_bytes {
                                return Err(FrameError::TooLarge { size, limit: self.max_frame_bytes });
                            }
                            frame.body = input[..end].to_vec();
                            self.consumed += end + 1;
                            return Ok(Some(Item::Frame(frame)));
                        }
                        None => {
                            let size = head_bytes + input.len();
                            if size > self.max_frame_bytes {
                                return Err(FrameError::TooLarge { size, limit: self.max_frame_bytes });
                            }
                            let scanned = input.len();
                            self.state = State::Body { frame, head_bytes, length: None, scanned };
                            return Ok(None);
                        }
                    },
                },
                State::Skip { frame, declared, remaining } => {
                    let take = remaining.min(input.len());
                    self.consumed += take;
                    let remaining = remaining - take;
                    let rest = &input[take..];
                    if remaining > 0 || rest.is_empty() {
                        self.state = State::Skip { frame, declared, remaining };
                        return Ok(None);
                    }
                    if rest[0] != 0 {
                        return Err(FrameError::MissingNul { length: declared });
                    }
                    self.consumed += 1;
                    return Ok(Some(Item::Oversized { frame, declared }));
                }
            }
        }
    }
}

impl Default for State {
    fn default() -> State {
        State::Head(Head::default())
    }
}

impl Head {
    /// Parses the lines of `input` (the frame so far) completed since the last call. Returns the
    /// frame (without body) and the length of its head once the blank line ending it is in.
    fn read(&mut self, input: &[u8], work: &mut u64) -> Result<Option<(Frame, usize)>, FrameError> {
        while let Some(end) = find(input, self.scanned, b'\n', work) {
            let line = &input[self.line_start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line_start = end + 1;
            self.scanned = end + 1;
            let Some(command) = self.command else {
                self.command = Some(Command::parse(line).ok_or_else(|| {
                    FrameError::UnknownCommand(
                        String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned(),
                    )
                })?);
                continue;
            };
            if self.line_start > MAX_HEADER_BYTES {
                // Also when the head is complete, so the outcome never depends on how reads split.
                return Err(FrameError::HeadersTooLarge { limit: MAX_HEADER_BYTES });
            }
            if line.is_empty() {
                let headers = std::mem::take(&mut self.headers);
                return Ok(Some((Frame { command, headers, body: Vec::new() }, self.line_start)));
            }
            if self.headers.len() == MAX_HEADERS {
                return Err(FrameError::TooManyHeaders { limit: MAX_HEADERS });
            }
            self.headers.push(parse_header(command, line)?);
        }
        self.scanned = input.len();
        Ok(None)
    }
}

/// The position of the first `byte` in `input` at or after `from`, adding the bytes looked at
/// to `work`.
fn find(input: &[u8], from: usize, byte: u8, work: &mut u64) -> Option<usize> {
    let found = input[from..].iter().position(|&candidate| candidate == byte);
    *work += found.map_or(input.len() - from, |offset| offset + 1) as u64;
    found.map(|offset| from + offset)
}

/// One `name:value` header line, unescaped if `command` escapes its headers.
fn parse_header(command: Command, line: &[u8]) -> Result<(String, String), FrameError> {
    let text = std::str::from_utf8(line).map_err(|_| FrameError::NotUtf8)?;
    let Some((name, value)) = text.split_once(':') else {
        return Err(FrameError::MalformedHeader(shorten(text)));
    };
    if !command.escapes_headers() {
        return Ok((name.to_string(), value.to_string()));
    }
    let bad_escape = || FrameError::BadEscape(shorten(text));
    Ok((unescape(name).ok_or_else(bad_escape)?, unescape(value).ok_or_else(bad_escape)?))
}

fn parse_length(text: &str) -> Result<usize, FrameError> {
    let bad = || FrameError::BadContentLength(shorten(text));
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

/// At most 60 characters of peer text for an error message.
fn shorten(text: &str) -> String {
    text.chars().take(60).collect()
}

fn escape_into(text: &str, out: &mut Vec<u8>) {
    for byte in text.bytes() {
        match byte {
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            other => out.push(other),
        }
    }
}

/// Undoes header escaping; `None` for an escape STOMP 1.2 does not define (a fatal error).
fn unescape(text: &str) -> Option<String> {
    if !text.contains('\\') {
        return Some(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            out.push(character);
            continue;
        }
        match characters.next()? {
            'r' => out.push('\r'),
            'n' => out.push('\n'),
            'c' => out.push(':'),
            '\\' => out.push('\\'),
            _ => return None,
        }
    }
    Some(out)
}
