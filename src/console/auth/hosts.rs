//! The names the console answers to: the address it is bound to and the `--origin`s people
//! reach it at ([`PublicOrigin`]), as `Host` headers and `Origin`s ([`AllowedHosts`]).

use super::forgery::RequestOrigin;

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
    pub(super) fn allows_origin(&self, host: &str, origin: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let origin = origin.to_ascii_lowercase();
        self.public.iter().any(|public| public.origin() == origin)
            || (self.local.contains(&host) && origin == format!("http://{host}"))
    }

    /// The origin a request from `host` is expected to come from, for messages.
    pub(super) fn expected_origin(&self, host: &str) -> String {
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
#[cfg(test)]
mod tests {
    use super::*;

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
}
