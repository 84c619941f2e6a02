//! Where a configuration value came from, in words a person recognises: a file's path, the
//! exact environment variable (`BATON_BROKER__URLS`), "command-line flags" or "built-in
//! defaults". The loader labels its sources with these names and the errors read them back, so
//! both import this module and neither imports the other's internals.

use figment::{Metadata, Source};

/// Every configuration environment variable starts with this.
pub const ENV_PREFIX: &str = "BATON_";

/// The name figment's metadata carries for values read from environment variables; recognised
/// by [`origin_of`] to name the exact variable.
pub(super) const ENV_SOURCE_NAME: &str = "environment variable";
/// The name for values set by the program on top of file and environment.
pub(super) const OVERRIDE_SOURCE_NAME: &str = "command-line flags";
pub(super) const DEFAULTS_SOURCE_NAME: &str = "built-in defaults";

/// The environment variable that sets the dotted `key` (`broker.urls` -> `BATON_BROKER__URLS`).
pub fn env_var_for(key: &str) -> String {
    format!("{}{}", ENV_PREFIX, key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__"))
}

/// Names where a value came from, given its provider's metadata and the key's path.
pub(super) fn origin_of(metadata: &Metadata, path: &[String]) -> String {
    match &metadata.source {
        Some(Source::File(file)) => file.display().to_string(),
        _ if metadata.name == ENV_SOURCE_NAME => {
            format!("environment variable {}", env_var_for(&path.join(".")))
        }
        _ => metadata.name.to_string(),
    }
}
