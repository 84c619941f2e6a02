//! Sessions of logged-in users and the cookie that carries them: a random token in a cookie
//! that scripts cannot read (`HttpOnly`) and that browsers never send with a request started by
//! another site (`SameSite=Strict`), plus a CSRF token per session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::security::hex;

/// How long a session lasts after login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The cookie that carries the session token.
pub const SESSION_COOKIE: &str = "baton_session";

/// A random token: 32 bytes from the operating system's generator, in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(&bytes)
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
#[cfg(test)]
mod tests {
    use super::*;

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
}
