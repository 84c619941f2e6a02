//! The one rule for Debian package names and versions that reach `apt-get`, shared by the
//! `package` agent and `resource create type=package`.
//!
//! apt reads more than names on its command line: a trailing `-` means "remove" and a trailing
//! `+` "install" (`install curl-` removes curl), a leading `-` is an option, `?` and `~` start
//! search patterns, and a name that is not exactly a package is retried as a regular expression
//! and then a glob (`.` and `+` are regex characters, and `.` is common in real names). So a
//! name must first have Debian's syntax ([`check_name`]), and before apt-get runs it must be
//! exactly the name of a package apt knows ([`check_known`]): apt tries the exact name first,
//! so such a name is never read as a marker, a pattern or an expression.

use std::time::Duration;

use super::ActionOutcome;
use super::command;
use crate::protocol::StatusCode;

/// The most of `apt-cache pkgnames` output read, in bytes (every package name in the archive
/// fits several times over).
const MAX_PKGNAMES_OUTPUT: usize = 8 * 1024 * 1024;

/// Checks a package name against Debian's syntax (policy 5.6.1: lowercase letters, digits,
/// `+`, `-` and `.`, at least two characters, starting with a letter or digit), optionally
/// followed by `:ARCH`. A trailing `-` is refused outright: no package ends in one, and apt
/// would read it as "remove".
pub fn check_name(name: &str) -> Result<(), ActionOutcome> {
    let (package, arch) = match name.split_once(':') {
        Some((package, arch)) => (package, Some(arch)),
        None => (name, None),
    };
    let mut bytes = package.bytes();
    let valid_package = package.len() >= 2
        && matches!(bytes.next(), Some(first) if first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'+' | b'-' | b'.')
        })
        && !package.ends_with('-');
    let valid_arch = arch.is_none_or(|arch| {
        !arch.is_empty() && arch.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
    });
    if valid_package && valid_arch {
        return Ok(());
    }
    Err(ActionOutcome::fail(
        StatusCode::InvalidData,
        format!(
            "{name:?} is not a Debian package name: use lowercase letters, digits and + - . \
             (at least two characters, starting with a letter or digit, not ending in -), \
             optionally followed by :ARCH; apt patterns, globs and regular expressions are not accepted"
        ),
    ))
}

/// Checks a version given to install (`NAME=VERSION`): Debian version characters only.
pub fn check_version(version: &str) -> Result<(), ActionOutcome> {
    let mut bytes = version.bytes();
    let valid = matches!(bytes.next(), Some(first) if first.is_ascii_alphanumeric())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'+' | b'~' | b':' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ActionOutcome::fail(
            StatusCode::InvalidData,
            format!(
                "{version:?} is not a Debian version: use letters, digits and . + ~ : -, starting with a letter or digit"
            ),
        ))
    }
}

/// Checks that apt knows a package of exactly this name (in its lists or installed), so that
/// apt-get takes it as that package and nothing else. Call [`check_name`] first.
pub async fn check_known(name: &str, timeout: Duration) -> Result<(), ActionOutcome> {
    let package = name.split_once(':').map_or(name, |(package, _)| package);
    // `pkgnames` matches a plain prefix, never a pattern; the exact line is the one wanted.
    let mut apt_cache = command::new("apt-cache");
    apt_cache.args(["pkgnames", "--", package]);
    let finished = command::run(apt_cache, b"", timeout, MAX_PKGNAMES_OUTPUT).await.map_err(|error| {
        ActionOutcome::fail(StatusCode::Aborted, format!("cannot ask apt-cache about {name}: {error}"))
    })?;
    if finished.stdout_text().lines().any(|line| line.trim() == package) {
        return Ok(());
    }
    Err(ActionOutcome::fail(
        StatusCode::InvalidData,
        format!(
            "apt knows no package named exactly {package:?} (check the name with `apt-cache policy {package}`, \
             or run apt-get update on the node)"
        ),
    ))
}
