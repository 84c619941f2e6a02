//! From loaded configuration to working parts: the message key, the TLS client configuration
//! and the broker settings. Loading these reads key and certificate files, so it happens once,
//! at start, and every failure names the file and what to do.

use super::{BrokerConfig, SchemeKind, SecurityConfig, TlsConfig};
use crate::broker::BrokerSettings;
use crate::security::tls::{TlsSettings, client_config};
use crate::security::{Ed25519, Psk, Security};

/// Why configuration could not be turned into working parts.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(
        "security.psk_file is not set (scheme \"psk\" needs it; make a key with: openssl rand -hex 32 > /etc/baton/psk)"
    )]
    NoPskFile,
    #[error("security.key_file is not set (scheme \"ed25519\" needs it; make a key pair with: baton keygen)")]
    NoKeyFile,
    #[error(
        "security.trusted_keys_dir is not set (scheme \"ed25519\" needs the directory of public keys to trust)"
    )]
    NoTrustedKeysDir,
    #[error(transparent)]
    Ed25519(#[from] crate::security::Ed25519Error),
    #[error(transparent)]
    Key(#[from] crate::security::KeyError),
    /// The TLS error is in the message and deliberately not a `#[source]`, so a cause chain
    /// (`{:#}`) prints it once.
    #[error("TLS settings: {0}")]
    Tls(crate::security::tls::TlsError),
}

impl From<crate::security::tls::TlsError> for WiringError {
    fn from(error: crate::security::tls::TlsError) -> WiringError {
        WiringError::Tls(error)
    }
}

impl SecurityConfig {
    /// Loads the message key the scheme names. Refuses empty and placeholder keys.
    pub fn load_security(&self) -> Result<Security, WiringError> {
        match self.scheme {
            SchemeKind::Psk => {
                let path = self.psk_file.as_deref().ok_or(WiringError::NoPskFile)?;
                Ok(Security::Psk(Psk::from_file(path)?))
            }
            SchemeKind::Ed25519 => {
                let key_file = self.key_file.as_deref().ok_or(WiringError::NoKeyFile)?;
                let trusted_dir = self.trusted_keys_dir.as_deref().ok_or(WiringError::NoTrustedKeysDir)?;
                let keys = Ed25519::load(key_file, trusted_dir)?;
                if keys.trusted_count() == 0 {
                    tracing::warn!(dir = %trusted_dir.display(), "no trusted public keys: every message will be refused");
                }
                Ok(Security::Ed25519(Box::new(keys)))
            }
        }
    }

    /// As [`SecurityConfig::load_security`], for a reload (SIGHUP): a trusted public key file
    /// that does not load is skipped, and named in the returned problems, rather than failing
    /// the whole reload (see [`Ed25519::reload`]). The PSK or the private key must load.
    pub fn reload_security(&self) -> Result<(Security, Vec<String>), WiringError> {
        match self.scheme {
            SchemeKind::Psk => Ok((self.load_security()?, Vec::new())),
            SchemeKind::Ed25519 => {
                let key_file = self.key_file.as_deref().ok_or(WiringError::NoKeyFile)?;
                let trusted_dir = self.trusted_keys_dir.as_deref().ok_or(WiringError::NoTrustedKeysDir)?;
                let (keys, skipped) = Ed25519::reload(key_file, trusted_dir)?;
                let problems = skipped.iter().map(ToString::to_string).collect();
                Ok((Security::Ed25519(Box::new(keys)), problems))
            }
        }
    }
}

impl TlsConfig {
    pub fn settings(&self) -> TlsSettings {
        TlsSettings {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            server_name: self.server_name.clone(),
        }
    }
}

/// Reads and checks every TLS file the configuration names (the CA, the client certificate and
/// its key, and that they belong together), whether or not a URL uses TLS yet: what
/// `batond --check` promises. [`broker_settings`] builds the same configuration on start.
pub fn check_tls(tls: &TlsConfig) -> Result<(), WiringError> {
    if tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() {
        client_config(&tls.settings())?;
    }
    Ok(())
}

/// Broker settings with the TLS client configuration built when any URL asks for TLS.
pub fn broker_settings(
    broker: &BrokerConfig,
    tls: &TlsConfig,
    connection_name: String,
) -> Result<BrokerSettings, WiringError> {
    let tls_config = if broker.uses_tls() { Some(client_config(&tls.settings())?) } else { None };
    Ok(broker.settings(tls_config, tls.server_name.clone(), connection_name))
}
