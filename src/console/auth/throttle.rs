//! The login throttle: slows password guessing down per client address and per user name,
//! remembering a bounded number of each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::users::is_user_name;

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
#[cfg(test)]
mod tests {
    use super::*;

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
}
