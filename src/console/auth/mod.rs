//! Who may use the console: the users file and logins ([`users`], with password hashing from
//! [`crate::security::password`]), the login throttle ([`throttle`]), sessions and their cookie
//! ([`sessions`]), the names the console answers to ([`hosts`]) and the checks that protect
//! every state-changing request against cross-site forgery ([`forgery`]).
//!
//! A login gives a session: a random token in a cookie, plus a CSRF token the page reads from
//! `/api/session` and sends back in the `X-CSRF-Token` header of every state-changing request.
//! Without a users file (only allowed on a loopback address) there is no login, but the CSRF
//! token and the `Origin`/`Host` checks still apply, so a web page the operator visits cannot
//! drive a console on their own machine.

pub mod forgery;
pub mod hosts;
pub mod sessions;
pub mod throttle;
pub mod users;

pub use forgery::{CSRF_HEADER, Refusal, RequestOrigin, check_request};
pub use hosts::{AllowedHosts, PublicOrigin};
pub use sessions::{
    SESSION_COOKIE, SESSION_LIFETIME, Session, Sessions, cookie_value, expired_cookie, random_token,
    session_cookie,
};
pub use throttle::{FREE_FAILURES, LoginThrottle, MAX_LOCKOUT, TRACKED, lockout};
pub use users::{Users, UsersError, add_user, is_user_name};
