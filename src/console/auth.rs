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
    #[error("cannot read the users file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the users file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
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
            .map_err(|source| UsersError::Read { path: path.to_owned(), source })?;
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
        let decoy = hashes.values().next().map(|hash| PasswordHash {
            iterations: hash.iterations,
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
        Err(source) => return Err(UsersError::Read { path: path.to_owned(), source }),
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
    write_private(path, &text).map_err(|source| UsersError::Write { path: path.to_owned(), source })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
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

/// The `Set-Cookie` value that starts a session.
pub fn session_cookie(token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn expired_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Which `Host` headers the console answers to.
#[derive(Debug, Clone)]
pub enum AllowedHosts {
    /// Bound to a loopback address: only `localhost`, `127.0.0.1` and `[::1]` on our port, so a
    /// DNS name rebound to 127.0.0.1 by a hostile page is refused.
    Loopback { port: u16 },
    /// Bound elsewhere, behind a login: any host name people use to reach it.
    Any,
}

impl AllowedHosts {
    pub fn allows(&self, host: &str) -> bool {
        match self {
            AllowedHosts::Any => !host.is_empty(),
            AllowedHosts::Loopback { port } => {
                let Some((name, host_port)) = host.rsplit_once(':') else { return false };
                host_port == port.to_string() && matches!(name, "localhost" | "127.0.0.1" | "[::1]")
            }
        }
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
/// one) is that same host, `Sec-Fetch-Site` (when sent) is not cross-site, and the CSRF
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
    if let Some(origin) = request.origin {
        let allowed = [format!("http://{host}"), format!("https://{host}")];
        if !allowed.iter().any(|candidate| candidate == origin) {
            return Err(Refusal::Origin { origin: origin.to_owned(), expected: allowed[0].clone() });
        }
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
        let cookie = session_cookie("tok");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    }

    #[test]
    fn forged_and_foreign_requests_are_refused() {
        let loopback = AllowedHosts::Loopback { port: 8080 };
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
        // Behind a login on a public address any host name goes, but the origin must match it.
        let any = AllowedHosts::Any;
        let public = RequestOrigin {
            host: Some("console.example:8443"),
            origin: Some("https://console.example:8443"),
            ..good.clone()
        };
        assert_eq!(check_request(&public, &any, Some("token")), Ok(()));
        // The login form has no token yet; the origin checks still apply.
        assert_eq!(
            check_request(&RequestOrigin { csrf_header: None, ..good.clone() }, &loopback, None),
            Ok(())
        );
    }
}
