//! The one URL redactor: broker URLs carry passwords, and every URL that reaches a message or a
//! log line, from the broker or from configuration, goes through [`redact`] first.
//!
//! It lives in `broker`, the lowest module that handles broker URLs: `config` already depends on
//! `broker` (it builds [`BrokerSettings`](super::BrokerSettings)), so both use this one function
//! and no import runs upwards. (`security` would do as well for the dependency order, but it
//! knows nothing of URLs, and nothing there needs one.)

/// Replaces the password in a URL with `***`: `amqp://node:***@mq1:5672/baton`.
///
/// Works on the raw text, so that even an unparsable URL is safe to print. The password runs
/// from the first `:` of the user info to the last `@` before the query (`?`), so a password
/// holding `@` or `/` is hidden whole while a query's `@` is left alone; with no `@` before the
/// query, to the last `@` of all (a password may hold a `?`). Without a scheme, anything that
/// looks like `user:password@` is still hidden.
pub fn redact(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let rest = &url[authority_start..];
    let before_query = &rest[..rest.find('?').unwrap_or(rest.len())];
    let Some(at) = before_query.rfind('@').or_else(|| rest.rfind('@')) else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..authority_start], &userinfo[..colon], &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: &str) {
        assert_eq!(redact(url), expected, "redacting {url}");
    }

    #[test]
    fn passwords_are_hidden_whole_and_nothing_else() {
        check("amqp://node:secret@mq1:5672/baton", "amqp://node:***@mq1:5672/baton");
        check("amqps://node:s3cr%2Ft@mq1:5671/%2f", "amqps://node:***@mq1:5671/%2f");
        check("amqp://node:p@ss/w@rd@mq1/baton", "amqp://node:***@mq1/baton");
        check("amqp://u:p@ss@mq1/x?y=z@w", "amqp://u:***@mq1/x?y=z@w");
        check("amqp://u:p?ss@mq1/x", "amqp://u:***@mq1/x");
        check("stomp+ssl://node:pw@mq1:61614/baton", "stomp+ssl://node:***@mq1:61614/baton");
        check("http://u:pw@mq1", "http://u:***@mq1");
        check("amqp://:pw@mq1", "amqp://:***@mq1");
        check("amqp://node@mq1:5672/baton", "amqp://node@mq1:5672/baton");
        check("amqp://mq1:5672/baton", "amqp://mq1:5672/baton");
        check("stomp://mq1:61613", "stomp://mq1:61613");
        check("not a url user:pw@host", "not a url user:***@host");
        check("not a url", "not a url");
    }
}
