//! Who may use the console: the users file, password hashes, sessions and the checks that
//! protect every state-changing request against cross-site forgery.
//!
//! The users file has one line per user, `NAME:pbkdf2-sha256$ITERATIONS$SALT$HASH` (salt and
//! hash in hex), written by `baton console --add-user NAME`. Passwords are hashed with
//! PBKDF2-HMAC-SHA256 (RFC 8018), built here on the `hmac` and `sha2` crates Baton already
//! uses, and compared in constant time.
//!
//! A login gives a session: a random token in a cookie that scripts cannot read (`HttpOnly`)
//! and that browsers never send with a request started by another site (`SameSite=Strict`),
//! plus a CSRF token the page reads from `/api/session` and sends back in the `X-CSRF-Token`
//! header of every state-changing request. Without a users file (only allowed on a loopback
//! address) there is no login, but the CSRF token and the `Origin`/`Host` checks still apply,
//! so a web page the operator visits cannot drive a console on their own machine.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The scheme tag written in front of every hash in the users file.
pub const SCHEME: &str = "pbkdf2-sha256";

/// PBKDF2 iterations for new hashes (OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256).
pub const ITERATIONS: u32 = 600_000;

/// Hashes with fewer iterations than this are refused when the users file is read.
pub const MIN_ITERATIONS: u32 = 10_000;

/// How long a session lasts after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The cookie that carries the session token.
pub const SESSION_COOKIE: &str = "baton_session";

/// The request header that must carry the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Why the users file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    // The cause is in the message and is not also a `source()`: the CLI prints the whole
    // chain, which would say it twice.
    #[error("cannot read the users file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write the users file {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("users file {path}, line {line}: {reason}")]
    Invalid { path: PathBuf, line: usize, reason: String },
    #[error("user name {0:?} is not allowed (letters, digits, '.', '_' and '-', at most 64 characters)")]
    BadName(String),
    #[error("the password is empty")]
    EmptyPassword,
}

/// PBKDF2-HMAC-SHA256 with a 32-byte output (one block, RFC 8018 section 5.2).
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
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

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
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

    /// Parses `pbkdf2-sha256$ITERATIONS$SALT$HASH`.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        let mut parts = text.split('$');
        let (Some(scheme), Some(iterations), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("a hash must look like {SCHEME}$ITERATIONS$SALT$HASH"));
        };
        if scheme != SCHEME {
            return Err(format!("unknown hash scheme {scheme:?} (expected {SCHEME})"));
        }
        let iterations: u32 =
            iterations.parse().map_err(|_| format!("iteration count {iterations:?} is not a number"))?;
        if iterations < MIN_ITERATIONS {
            return Err(format!("{iterations} iterations is too few (at least {MIN_ITERATIONS})"));
        }
        let salt = from_hex(salt).ok_or("the salt is not hex")?;
        if salt.len() < 8 {
            return Err("the salt is shorter than 8 bytes".to_owned());
        }
        let hash: [u8; 32] = from_hex(hash)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or("the hash is not 32 bytes of hex")?;
        Ok(PasswordHash { iterations, salt, hash })
    }

    /// Whether `password` is the one this hash was made from.
    pub fn verify(&self, password: &str) -> bool {
        let computed = pbkdf2_sha256(password.as_bytes(), &self.salt, self.iterations);
        constant_time_eq(&computed, &self.hash)
    }
}

impl std::fmt::Display for PasswordHash {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{SCHEME}${}${}${}", self.iterations, to_hex(&self.salt), to_hex(&self.hash))
    }
}

/// Whether `name` may be a console user: it becomes the caller `user=NAME` in requests.
pub fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The console's users, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    hashes: HashMap<String, PasswordHash>,
    /// Verified against when the name is unknown, so a wrong name takes as long as a wrong
    /// password and names cannot be guessed by timing.
    decoy: Option<PasswordHash>,
}

impl Users {
    /// Reads a users file. Blank lines and lines starting with `#` are ignored.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| UsersError::Read { path: path.to_owned(), error })?;
        Users::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Users, UsersError> {
        let mut hashes = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid =
                |reason: String| UsersError::Invalid { path: path.to_owned(), line: index + 1, reason };
            let (name, hash) =
                line.split_once(':').ok_or_else(|| invalid("expected NAME:HASH".to_owned()))?;
            if !is_user_name(name) {
                return Err(invalid(format!("user name {name:?} is not allowed")));
            }
            let hash = PasswordHash::parse(hash).map_err(invalid)?;
            if hashes.insert(name.to_owned(), hash).is_some() {
                return Err(invalid(format!("user {name:?} appears twice")));
            }
        }
        // The most iterations of any user, so an unknown name never answers faster than a known one.
        let decoy = hashes.values().map(|hash| hash.iterations).max().map(|iterations| PasswordHash {
            iterations,
            salt: vec![0; 16],
            hash: [0; 32],
        });
        Ok(Users { hashes, decoy })
    }

    /// The user's name when `password` is theirs.
    pub fn authenticate(&self, name: &str, password: &str) -> bool {
        match self.hashes.get(name) {
            Some(hash) => hash.verify(password),
            None => {
                if let Some(decoy) = &self.decoy {
                    decoy.verify(password);
                }
                false
            }
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Adds a user to the users file (creating it, readable by its owner only), or replaces that
/// user's password. Other lines are kept as they are.
pub fn add_user(path: &Path, name: &str, password: &str) -> Result<(), UsersError> {
    add_user_with_iterations(path, name, password, ITERATIONS)
}

fn add_user_with_iterations(
    path: &Path,
    name: &str,
    password: &str,
    iterations: u32,
) -> Result<(), UsersError> {
    if !is_user_name(name) {
        return Err(UsersError::BadName(name.to_owned()));
    }
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(UsersError::Read { path: path.to_owned(), error }),
    };
    // Refuse to rewrite a file we cannot read back.
    Users::parse(&existing, path)?;
    let mut text = String::new();
    for line in existing.lines() {
        if line.trim().split_once(':').is_some_and(|(other, _)| other == name) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    let _ = writeln!(text, "{name}:{}", PasswordHash::with_iterations(password, iterations));
    write_private(path, &text).map_err(|error| UsersError::Write { path: path.to_owned(), error })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let temporary = path.with_extension("tmp");
    // A leftover from an interrupted run may have any mode: start from a fresh private file.
    match std::fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
    // The umask may have narrowed the mode further, never widened it; set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Failed logins allowed (per client address and per user name) before each further attempt
/// must wait.
pub const FREE_FAILURES: u32 = 3;

/// The longest wait imposed after repeated failures.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);

/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);

/// How many client addresses, and how many user names, the throttle remembers at most.
pub const TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    until: Instant,
}

/// Failures by some key (an address or a name), bounded to [`TRACKED`] keys.
#[derive(Debug)]
struct FailureMap<K> {
    entries: HashMap<K, Failures>,
}

impl<K: std::hash::Hash + Eq + Clone> FailureMap<K> {
    fn new() -> Self {
        FailureMap { entries: HashMap::new() }
    }

    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        self.entries.get(key).filter(|failures| failures.until > now).map(|failures| failures.until - now)
    }

    fn fail(&mut self, key: &K, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= TRACKED {
            self.entries.retain(|_, failures| now.saturating_duration_since(failures.last) < FORGET_AFTER);
            if self.entries.len() >= TRACKED
                && let Some(oldest) =
                    self.entries.iter().min_by_key(|(_, failures)| failures.last).map(|(key, _)| key.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let failures =
            self.entries.entry(key.clone()).or_insert(Failures { count: 0, last: now, until: now });
        if now.saturating_duration_since(failures.last) >= FORGET_AFTER {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        failures.until = now + lockout(failures.count);
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// How long to wait after `failures` failed logins in a row: nothing for the first
/// [`FREE_FAILURES`] - 1, then 1 s, doubling each time, up to [`MAX_LOCKOUT`].
pub fn lockout(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(20);
    Duration::from_secs(1u64 << doublings).min(MAX_LOCKOUT)
}

/// The key a user name is throttled by: names that cannot be users share one, so that
/// arbitrary text never fills the throttle's memory.
fn throttle_key(user: &str) -> String {
    if is_user_name(user) { user.to_owned() } else { String::new() }
}

/// Slows password guessing down: after [`FREE_FAILURES`] failed logins from one client address
/// or for one user name, each further attempt must wait (1 s, doubling, up to [`MAX_LOCKOUT`]);
/// a success clears both.
#[derive(Debug)]
pub struct LoginThrottle {
    maps: Mutex<(FailureMap<std::net::IpAddr>, FailureMap<String>)>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle { maps: Mutex::new((FailureMap::new(), FailureMap::new())) }
    }
}

impl LoginThrottle {
    /// How long this client, or anyone logging in as `user`, must still wait.
    pub fn wait(&self, client: std::net::IpAddr, user: &str, now: Instant) -> Option<Duration> {
        let maps = self.lock();
        match (maps.0.wait(&client, now), maps.1.wait(&throttle_key(user), now)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn failed(&self, client: std::net::IpAddr, user: &str, now: Instant) {
        let mut maps = self.lock();
        maps.0.fail(&client, now);
        maps.1.fail(&throttle_key(user), now);
    }

    pub fn succeeded(&self, client: std::net::IpAddr, user: &str) {
        let mut maps = self.lock();
        maps.0.clear(&client);
        maps.1.clear(&throttle_key(user));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (FailureMap<std::net::IpAddr>, FailureMap<String>)> {
        self.maps.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A random token: 32 bytes from the operating system's generator, in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    to_hex(&bytes)
}

/// One logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    expires: Instant,
}

/// The sessions of logged-in users, in memory: a restart logs everyone out.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for `user`; returns its token (for the cookie) and the session.
    pub fn create(&self, user: &str) -> (String, Session) {
        let token = random_token();
        let session = Session {
            user: user.to_owned(),
            csrf: random_token(),
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        sessions.insert(token.clone(), session.clone());
        (token, session)
    }

    /// The live session with this token.
    pub fn find(&self, token: &str) -> Option<Session> {
        let sessions = self.lock();
        sessions.get(token).filter(|session| session.expires > Instant::now()).cloned()
    }

    /// Ends the session with this token.
    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave the map half-updated in a harmful way.
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that starts a session; `secure` (logged in over HTTPS) keeps the
/// browser from ever sending it over plain HTTP.
pub fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn expired_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// An address people type to reach the console (`--origin`, e.g. `https://console.example:8443`):
/// scheme, host name and port, as a browser puts it in `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    https: bool,
    /// Lowercase; an IPv6 address in brackets.
    host: String,
    port: u16,
}

impl PublicOrigin {
    /// Parses `http://HOST[:PORT]` or `https://HOST[:PORT]` (a trailing `/` is allowed, no path).
    pub fn parse(text: &str) -> Result<PublicOrigin, String> {
        let bad = |reason: &str| {
            format!("--origin {text:?}: {reason} (expected e.g. https://console.example:8443)")
        };
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("it must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@'])
            || authority.contains(char::is_whitespace)
        {
            return Err(bad("it must be a scheme, a host and an optional port, nothing else"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host.to_owned(), port.parse::<u16>().map_err(|_| bad("the port is not a number"))?)
            }
            _ => (authority.clone(), default_port),
        };
        let valid_host = if let Some(inner) = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')) {
            inner.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        };
        if !valid_host {
            return Err(bad("the host is not a name or an address"));
        }
        Ok(PublicOrigin { https, host, port })
    }

    /// As browsers send it in `Origin` (the scheme's default port left out).
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.port == self.default_port() {
            format!("{scheme}://{}", self.host)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// Whether the host is this machine (`localhost` or a loopback address).
    pub fn is_loopback(&self) -> bool {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        self.host == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// The `Host` headers a browser sends for this origin.
    fn hosts(&self) -> Vec<String> {
        let mut hosts = vec![format!("{}:{}", self.host, self.port)];
        if self.port == self.default_port() {
            hosts.push(self.host.clone());
        }
        hosts
    }
}

/// Which `Host` headers and `Origin`s the console answers to: the address it is bound to, and
/// the `--origin`s it is reached at (through a reverse proxy, say). Any other `Host` is refused,
/// so a hostile DNS name rebound to the console's address gets nowhere.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// `Host` values naming the bound address directly; a page loaded from one has the origin
    /// `http://HOST`.
    local: Vec<String>,
    public: Vec<PublicOrigin>,
}

impl AllowedHosts {
    /// The hosts of a console bound to `bound` and reached at `public`. On a loopback address
    /// `localhost` also names it; on an unspecified one (`0.0.0.0`, `::`, only allowed with
    /// `--origin`), the loopback names do, for a reverse proxy on the same machine.
    pub fn new(bound: std::net::SocketAddr, public: Vec<PublicOrigin>) -> AllowedHosts {
        let port = bound.port();
        let ip = bound.ip();
        let mut names: Vec<String> = Vec::new();
        if ip.is_unspecified() {
            names.extend(["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()]);
        } else {
            names.push(match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            });
            if ip.is_loopback() {
                names.push("localhost".to_owned());
            }
        }
        let mut local = Vec::new();
        for name in names {
            local.push(format!("{name}:{port}"));
            if port == 80 {
                local.push(name);
            }
        }
        AllowedHosts { local, public }
    }

    /// Whether a request with this `Host` is for this console.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.local.contains(&host) || self.public.iter().any(|origin| origin.hosts().contains(&host))
    }

    /// Whether a page at `origin` may send changes with this (allowed) `Host`: an `--origin`,
    /// or the bound address itself over plain HTTP.
    fn allows_origin(&self, host: &str, origin: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let origin = origin.to_ascii_lowercase();
        self.public.iter().any(|public| public.origin() == origin)
            || (self.local.contains(&host) && origin == format!("http://{host}"))
    }

    /// The origin a request from `host` is expected to come from, for messages.
    fn expected_origin(&self, host: &str) -> String {
        match self.public.first() {
            Some(public) if !self.local.contains(&host.to_ascii_lowercase()) => public.origin(),
            _ => format!("http://{host}"),
        }
    }

    /// Whether the session cookie should be `Secure`: the login came over HTTPS (its `Origin`
    /// is https, or its `Host` is that of an https `--origin`).
    pub fn secure(&self, request: &RequestOrigin<'_>) -> bool {
        if let Some(origin) = request.origin {
            return origin.to_ascii_lowercase().starts_with("https://");
        }
        let host = request.host.unwrap_or_default().to_ascii_lowercase();
        self.public.iter().any(|public| public.https && public.hosts().contains(&host))
    }
}

/// Why a state-changing request was refused before it did anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Host {0:?} is not one this console answers to")]
    Host(String),
    #[error("the request comes from another site (Origin {origin:?}, expected {expected:?})")]
    Origin { origin: String, expected: String },
    #[error("the request comes from another site (Sec-Fetch-Site: {0})")]
    FetchSite(String),
    #[error("the CSRF token is missing or wrong (reload the page)")]
    Csrf,
}

/// What a state-changing request carried that the forgery checks look at.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub fetch_site: Option<&'a str>,
    pub csrf_header: Option<&'a str>,
}

/// Checks a state-changing request: the `Host` is ours, the `Origin` (when the browser sent
/// one) is the bound address itself or an `--origin`, `Sec-Fetch-Site` (when sent) is not cross-site, and the CSRF
/// header equals `expected_csrf` (`None` skips only the token, for the login form, whose
/// password is what a forger lacks).
pub fn check_request(
    request: &RequestOrigin<'_>,
    hosts: &AllowedHosts,
    expected_csrf: Option<&str>,
) -> Result<(), Refusal> {
    let host = request.host.unwrap_or_default();
    if !hosts.allows(host) {
        return Err(Refusal::Host(host.to_owned()));
    }
    if let Some(origin) = request.origin
        && !hosts.allows_origin(host, origin)
    {
        return Err(Refusal::Origin { origin: origin.to_owned(), expected: hosts.expected_origin(host) });
    }
    if let Some(site) = request.fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Refusal::FetchSite(site.to_owned()));
    }
    if let Some(expected) = expected_csrf {
        let given = request.csrf_header.unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(Refusal::Csrf);
        }
    }
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_test_vectors() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, first 32 bytes of the 64-byte outputs.
        let one = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(to_hex(&one), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
        let many = pbkdf2_sha256(b"Password", b"NaCl", 80_000);
        assert_eq!(to_hex(&many), "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56");
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
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        let check = |text: &str, expected: &str| {
            let error = PasswordHash::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        };
        check("plain", "must look like");
        check("md5$1$00", "must look like");
        check("md5$100000$0011223344556677$00", "unknown hash scheme");
        check("pbkdf2-sha256$10$0011223344556677$00", "too few");
        check("pbkdf2-sha256$100000$zz$00", "salt is not hex");
        check("pbkdf2-sha256$100000$0011223344556677$0011", "32 bytes");
    }

    #[test]
    fn the_users_file_is_written_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        // Few iterations keep the test fast; `add_user` itself uses ITERATIONS.
        let add =
            |name: &str, password: &str| add_user_with_iterations(&path, name, password, MIN_ITERATIONS);
        add("alice", "wonderland").expect("add alice");
        add("bob", "builder").expect("add bob");
        add("alice", "looking-glass").expect("replace alice");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let users = Users::load(&path).expect("load");
        assert_eq!(users.len(), 2);
        assert!(users.authenticate("alice", "looking-glass"));
        assert!(!users.authenticate("alice", "wonderland"), "the old password is gone");
        assert!(users.authenticate("bob", "builder"));
        assert!(!users.authenticate("carol", "builder"));
        assert!(matches!(add("al ice", "x"), Err(UsersError::BadName(_))));
        assert!(matches!(add("dave", ""), Err(UsersError::EmptyPassword)));
    }

    #[test]
    fn a_bad_users_file_names_the_line() {
        let error = Users::parse("# users\nalice:nothing\n", Path::new("users")).expect_err("invalid");
        assert!(error.to_string().contains("users file users, line 2"), "{error}");
    }

    #[test]
    fn sessions_are_found_by_token_until_removed() {
        let sessions = Sessions::default();
        let (token, session) = sessions.create("alice");
        assert_eq!(session.user, "alice");
        assert_ne!(token, session.csrf);
        assert_eq!(sessions.find(&token).map(|found| found.csrf), Some(session.csrf));
        assert!(sessions.find("not-a-token").is_none());
        sessions.remove(&token);
        assert!(sessions.find(&token).is_none());
    }

    #[test]
    fn cookies_are_read_by_name() {
        assert_eq!(cookie_value("a=1; baton_session=abc; b=2", SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value("baton_session_x=abc", SESSION_COOKIE), None);
        let cookie = session_cookie("tok", false);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(!cookie.contains("Secure"), "{cookie}");
        assert!(session_cookie("tok", true).ends_with("; Secure"));
    }

    #[test]
    fn forged_and_foreign_requests_are_refused() {
        let loopback = AllowedHosts::new("127.0.0.1:8080".parse().expect("address"), Vec::new());
        let good = RequestOrigin {
            host: Some("127.0.0.1:8080"),
            origin: Some("http://127.0.0.1:8080"),
            fetch_site: Some("same-origin"),
            csrf_header: Some("token"),
        };
        assert_eq!(check_request(&good, &loopback, Some("token")), Ok(()));
        let check = |request: RequestOrigin<'_>, hosts: &AllowedHosts, expected: Refusal| {
            assert_eq!(check_request(&request, hosts, Some("token")), Err(expected));
        };
        check(RequestOrigin { csrf_header: None, ..good.clone() }, &loopback, Refusal::Csrf);
        check(RequestOrigin { csrf_header: Some("tokeN"), ..good.clone() }, &loopback, Refusal::Csrf);
        check(
            RequestOrigin { origin: Some("http://evil.example"), ..good.clone() },
            &loopback,
            Refusal::Origin {
                origin: "http://evil.example".into(),
                expected: "http://127.0.0.1:8080".into(),
            },
        );
        check(
            RequestOrigin { fetch_site: Some("cross-site"), ..good.clone() },
            &loopback,
            Refusal::FetchSite("cross-site".into()),
        );
        // DNS rebinding: a hostile name pointed at 127.0.0.1 carries its own Host header.
        check(
            RequestOrigin {
                host: Some("evil.example:8080"),
                origin: Some("http://evil.example:8080"),
                ..good.clone()
            },
            &loopback,
            Refusal::Host("evil.example:8080".into()),
        );
        check(
            RequestOrigin { host: Some("localhost:9999"), ..good.clone() },
            &loopback,
            Refusal::Host("localhost:9999".into()),
        );
        // The login form has no token yet; the origin checks still apply.
        assert_eq!(
            check_request(&RequestOrigin { csrf_header: None, ..good.clone() }, &loopback, None),
            Ok(())
        );
    }

    #[test]
    fn origins_parse_into_scheme_host_and_port() {
        let origin = PublicOrigin::parse("https://Console.Example:8443/").expect("parses");
        assert_eq!(origin.origin(), "https://console.example:8443");
        assert_eq!(origin.hosts(), ["console.example:8443"]);
        let default = PublicOrigin::parse("https://console.example").expect("parses");
        assert_eq!(default.origin(), "https://console.example");
        assert_eq!(default.hosts(), ["console.example:443", "console.example"]);
        assert_eq!(PublicOrigin::parse("http://[::1]:8080").expect("v6").origin(), "http://[::1]:8080");
        assert!(PublicOrigin::parse("http://localhost:8080").expect("local").is_loopback());
        assert!(!default.is_loopback());
        for bad in
            ["console.example", "ftp://x", "https://", "https://x/path", "https://x:port", "https://u@x"]
        {
            assert!(PublicOrigin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_bound_address_and_the_given_origins_are_answered() {
        let bound = |text: &str| -> std::net::SocketAddr { text.parse().expect("address") };
        // On loopback: the bound address and localhost, on its port; port 80 may be left out.
        let loopback = AllowedHosts::new(bound("127.0.0.1:8080"), Vec::new());
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080"] {
            assert!(loopback.allows(host), "{host}");
        }
        for host in ["127.0.0.2:8080", "[::1]:8080", "127.0.0.1", "evil.example:8080", ""] {
            assert!(!loopback.allows(host), "{host}");
        }
        let other = AllowedHosts::new(bound("127.0.0.2:80"), Vec::new());
        assert!(other.allows("127.0.0.2") && other.allows("127.0.0.2:80") && other.allows("localhost"));
        assert!(!other.allows("127.0.0.1"));
        // On a public address without --origin: that address only.
        let public = AllowedHosts::new(bound("192.0.2.7:8443"), Vec::new());
        assert!(public.allows("192.0.2.7:8443"));
        assert!(!public.allows("console.example:8443") && !public.allows("localhost:8443"));

        // Behind a TLS proxy: the public name, or the address the proxy connects to.
        let origin = PublicOrigin::parse("https://console.example").expect("origin");
        let proxied = AllowedHosts::new(bound("127.0.0.1:8080"), vec![origin]);
        let request = |host: &'static str, origin: &'static str| RequestOrigin {
            host: Some(host),
            origin: Some(origin),
            fetch_site: Some("same-origin"),
            csrf_header: Some("token"),
        };
        for (host, origin) in [
            ("console.example", "https://console.example"),
            ("console.example:443", "https://console.example"),
            ("127.0.0.1:8080", "https://console.example"),
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ] {
            assert_eq!(
                check_request(&request(host, origin), &proxied, Some("token")),
                Ok(()),
                "{host} {origin}"
            );
        }
        assert_eq!(
            check_request(&request("console.example", "http://console.example"), &proxied, Some("token")),
            Err(Refusal::Origin {
                origin: "http://console.example".into(),
                expected: "https://console.example".into()
            })
        );
        assert_eq!(
            check_request(&request("evil.example", "https://console.example"), &proxied, Some("token")),
            Err(Refusal::Host("evil.example".into()))
        );
        assert!(proxied.secure(&request("127.0.0.1:8080", "https://console.example")));
        assert!(!proxied.secure(&request("127.0.0.1:8080", "http://127.0.0.1:8080")));
        assert!(proxied.secure(&RequestOrigin { host: Some("console.example"), ..RequestOrigin::default() }));
        // Listening everywhere (with --origin): the loopback names stay usable for a local proxy.
        let everywhere = AllowedHosts::new(bound("0.0.0.0:8443"), Vec::new());
        assert!(everywhere.allows("127.0.0.1:8443") && everywhere.allows("[::1]:8443"));
        assert!(!everywhere.allows("192.0.2.7:8443"));
    }

    #[test]
    fn repeated_login_failures_wait_longer_and_longer() {
        assert_eq!(lockout(1), Duration::ZERO);
        assert_eq!(lockout(FREE_FAILURES), Duration::from_secs(1));
        assert_eq!(lockout(FREE_FAILURES + 3), Duration::from_secs(8));
        assert_eq!(lockout(u32::MAX), MAX_LOCKOUT);

        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let client: std::net::IpAddr = "192.0.2.1".parse().expect("ip");
        let other: std::net::IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 1..FREE_FAILURES {
            throttle.failed(client, "alice", start);
        }
        assert_eq!(throttle.wait(client, "alice", start), None, "the first failures are free");
        throttle.failed(client, "alice", start);
        assert_eq!(throttle.wait(client, "bob", start), Some(Duration::from_secs(1)), "this client waits");
        assert_eq!(
            throttle.wait(other, "alice", start),
            Some(Duration::from_secs(1)),
            "so does alice's name"
        );
        assert_eq!(throttle.wait(other, "bob", start), None, "others do not");
        let later = start + Duration::from_secs(1);
        assert_eq!(throttle.wait(client, "alice", later), None, "the wait ends");
        throttle.failed(client, "alice", later);
        assert_eq!(throttle.wait(client, "alice", later), Some(Duration::from_secs(2)), "and doubles");
        throttle.succeeded(client, "alice");
        assert_eq!(throttle.wait(client, "alice", later), None, "a success clears it");
        // Failures long ago are forgotten.
        for _ in 0..FREE_FAILURES {
            throttle.failed(client, "alice", start);
        }
        throttle.failed(client, "alice", start + FORGET_AFTER);
        assert_eq!(throttle.wait(client, "alice", start + FORGET_AFTER), None);
    }

    #[test]
    fn the_throttle_remembers_a_bounded_number_of_clients() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for index in 0..(TRACKED as u32 + 10) {
            let client = std::net::IpAddr::from(std::net::Ipv4Addr::from(index));
            throttle.failed(client, "alice", start + Duration::from_millis(u64::from(index)));
        }
        let maps = throttle.lock();
        assert_eq!(maps.0.entries.len(), TRACKED);
        assert_eq!(maps.1.entries.len(), 1);
        assert!(
            !maps.0.entries.contains_key(&std::net::IpAddr::from(std::net::Ipv4Addr::from(0))),
            "the oldest went"
        );
    }

    #[test]
    fn an_unknown_user_is_checked_with_the_most_iterations() {
        let text = format!(
            "a:{}\nb:{}\n",
            PasswordHash::with_iterations("x", MIN_ITERATIONS),
            PasswordHash::with_iterations("y", MIN_ITERATIONS * 2)
        );
        let users = Users::parse(&text, Path::new("users")).expect("parse");
        assert_eq!(users.decoy.as_ref().map(|decoy| decoy.iterations), Some(MIN_ITERATIONS * 2));
    }

    #[test]
    fn a_leftover_temporary_file_does_not_widen_the_users_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        let leftover = path.with_extension("tmp");
        std::fs::write(&leftover, "junk").expect("leftover");
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        add_user_with_iterations(&path, "alice", "pw", MIN_ITERATIONS).expect("add");
        assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
        assert!(!std::fs::read_to_string(&path).expect("read").contains("junk"));
    }
}
