//! The checks that protect every state-changing request against cross-site forgery and DNS
//! rebinding: `Host`, `Origin`, `Sec-Fetch-Site` and the session's CSRF token.

use super::hosts::AllowedHosts;
use crate::security::constant_time;

/// The request header that must carry the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

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
        if !constant_time::eq(given.as_bytes(), expected.as_bytes()) {
            return Err(Refusal::Csrf);
        }
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::auth::hosts::PublicOrigin;

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
}
