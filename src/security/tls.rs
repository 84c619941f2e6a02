//! TLS client configuration for broker connections, and handshake errors a person can act on.
//!
//! Certificate verification and host name verification are always on: [`client_config`] uses
//! rustls's WebPKI verifier and offers no way to turn either off. The trusted roots are the CA
//! file from `tls.ca`, or the Mozilla roots (`webpki-roots`) when none is given; a client
//! certificate is optional. Every error names the file and the setting involved.
//!
//! rustls reports handshake failures as enum values such as
//! `InvalidCertificate(NotValidForNameContext { .. })`; [`explain_handshake_error`] turns those
//! into sentences that say what to change, for the broker module to put in its connect errors.

use std::error::Error as StdError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};

/// The `[tls]` settings: where the CA, the client certificate and its key are, and the host
/// name to expect in the broker's certificate when it differs from the host in the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA certificate(s) that issued the broker's certificate. When absent, the
    /// Mozilla root certificates are trusted instead.
    pub ca: Option<PathBuf>,
    /// PEM file of the client certificate chain, leaf first; requires `key`.
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, RSA or SEC1); requires `cert`.
    pub key: Option<PathBuf>,
    /// The name to verify the broker's certificate against, instead of the URL's host.
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// The name the broker's certificate must carry when connecting to `url_host`:
    /// `server_name` if set, else `url_host` (a DNS name or an IP address).
    pub fn server_name_for(&self, url_host: &str) -> Result<ServerName<'static>, TlsError> {
        let (name, setting) = match &self.server_name {
            Some(name) => (name.as_str(), "tls.server_name"),
            None => (url_host, "the broker URL's host"),
        };
        // An IPv6 host from a URL comes in brackets; the certificate names the bare address.
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_owned()).map_err(|error| TlsError::ServerName {
            name: name.to_owned(),
            setting,
            reason: error.to_string(),
        })
    }
}

/// Why a TLS configuration could not be built. Each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot use CA file {} (tls.ca): {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot use client certificate file {} (tls.cert): {reason}", path.display())]
    CertFile { path: PathBuf, reason: String },
    #[error("cannot use client key file {} (tls.key): {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "tls.key is set ({}) but tls.cert is not: set both for a client certificate, or neither",
        key.display()
    )]
    KeyWithoutCert { key: PathBuf },
    #[error(
        "tls.cert is set ({}) but tls.key is not: set both for a client certificate, or neither",
        cert.display()
    )]
    CertWithoutKey { cert: PathBuf },
    #[error(
        "client certificate {} and key {} do not work together: {reason} \
         (check that the key is the one the certificate was issued for)",
        cert.display(), key.display()
    )]
    ClientIdentity { cert: PathBuf, key: PathBuf, reason: String },
    #[error("{name:?} from {setting} is not a valid TLS server name: {reason}")]
    ServerName { name: String, setting: &'static str, reason: String },
    #[error("cannot set up TLS: {0}")]
    Rustls(#[source] rustls::Error),
}

/// Builds the rustls client configuration for broker connections.
///
/// Uses the process's default crypto provider if one is installed, otherwise aws-lc-rs; an
/// explicit provider keeps this from panicking should another dependency ever enable a second
/// rustls provider.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match &settings.ca {
        Some(path) => load_ca_file(path)?,
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots);
    let config = match (&settings.cert, &settings.key) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some(key)) => return Err(TlsError::KeyWithoutCert { key: key.clone() }),
        (Some(cert), None) => return Err(TlsError::CertWithoutKey { cert: cert.clone() }),
        (Some(cert_path), Some(key_path)) => {
            let chain = load_cert_chain(cert_path)?;
            let key = load_private_key(key_path)?;
            builder.with_client_auth_cert(chain, key).map_err(|error| TlsError::ClientIdentity {
                cert: cert_path.clone(),
                key: key_path.clone(),
                reason: explain_rustls_error(&error, ""),
            })?
        }
    };
    Ok(Arc::new(config))
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => "the file does not exist".to_owned(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (the file must be readable by the user baton runs as)".to_owned()
        }
        _ => error.to_string(),
    })
}

/// Why a file meant to hold certificates yielded none, with a hint for the usual mistakes.
fn no_certificates_reason(contents: &[u8]) -> String {
    let text = String::from_utf8_lossy(contents);
    let hint = if contents.first() == Some(&0x30) {
        " (this looks like DER; convert it with `openssl x509 -inform der -in FILE -out FILE.pem`)"
    } else if text.contains("PRIVATE KEY-----") {
        " (the file holds a private key, not a certificate)"
    } else {
        ""
    };
    format!("no certificates found (expected PEM 'BEGIN CERTIFICATE'){hint}")
}

fn pem_reason(error: &pem::Error) -> String {
    format!("the PEM is damaged: {error}")
}

fn parse_certificates(contents: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(contents)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_reason(&error))?;
    if certificates.is_empty() {
        return Err(no_certificates_reason(contents));
    }
    Ok(certificates)
}

fn load_ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let ca_error = |reason| TlsError::CaFile { path: path.to_owned(), reason };
    let contents = read_pem_file(path).map_err(ca_error)?;
    let certificates = parse_certificates(&contents).map_err(ca_error)?;
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|error| ca_error(format!("certificate {} is not usable as a CA: {error}", index + 1)))?;
    }
    Ok(roots)
}

fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_error = |reason| TlsError::CertFile { path: path.to_owned(), reason };
    let contents = read_pem_file(path).map_err(cert_error)?;
    parse_certificates(&contents).map_err(cert_error)
}

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key_error = |reason| TlsError::KeyFile { path: path.to_owned(), reason };
    let contents = read_pem_file(path).map_err(key_error)?;
    PrivateKeyDer::from_pem_slice(&contents).map_err(|error| {
        let text = String::from_utf8_lossy(&contents);
        key_error(match error {
            pem::Error::NoItemsFound if text.contains("ENCRYPTED") => {
                "the key is encrypted; baton needs an unencrypted key \
                 (decrypt it with `openssl pkey -in FILE -out FILE.key`)"
                    .to_owned()
            }
            pem::Error::NoItemsFound if text.contains("BEGIN CERTIFICATE") => {
                "the file holds a certificate, not a private key (expected PEM 'BEGIN PRIVATE \
                 KEY', 'BEGIN RSA PRIVATE KEY' or 'BEGIN EC PRIVATE KEY')"
                    .to_owned()
            }
            pem::Error::NoItemsFound => "no private key found (expected PEM 'BEGIN PRIVATE KEY', \
                                         'BEGIN RSA PRIVATE KEY' or 'BEGIN EC PRIVATE KEY')"
                .to_owned(),
            other => pem_reason(&other),
        })
    })
}

/// Explains a failed TLS handshake with `host` in words a person can act on.
///
/// Accepts a `rustls::Error`, an `io::Error` from tokio-rustls or lapin (which wrap the rustls
/// error, sometimes twice), or any error whose source chain holds one of those; anything
/// unrecognised is shown as is. Both transports word their TLS failures with this, so a TLS
/// problem reads the same over AMQP and STOMP.
pub fn explain_handshake_error(error: &(dyn StdError + 'static), host: &str) -> String {
    if let Some(rustls_error) = find_rustls_error(error) {
        return explain_rustls_error(rustls_error, host);
    }
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(explained) = error.downcast_ref::<io::Error>().and_then(explain_io_error) {
            return explained;
        }
        current = error.source();
    }
    error.to_string()
}

/// The rustls error inside `error`, however deeply wrapped: `io::Error`'s `source()` skips the
/// error it wraps, so this looks inside each `io::Error` explicitly.
pub fn find_rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(rustls_error) = error.downcast_ref::<rustls::Error>() {
            return Some(rustls_error);
        }
        current = match error.downcast_ref::<io::Error>() {
            Some(io_error) => io_error.get_ref().map(|inner| {
                let inner: &(dyn StdError + 'static) = inner;
                inner
            }),
            None => error.source(),
        };
    }
    None
}

fn explain_io_error(error: &io::Error) -> Option<String> {
    match error.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Some(format!(
            "the broker closed the connection during the TLS handshake ({error}): it may require \
             a client certificate (set tls.cert and tls.key), or this port may not speak TLS"
        )),
        _ => None,
    }
}

/// Explains one rustls error; see [`explain_handshake_error`].
pub fn explain_rustls_error(error: &rustls::Error, host: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(certificate_error) => {
            explain_certificate_error(certificate_error, host)
        }
        rustls::Error::AlertReceived(alert) => explain_alert(*alert),
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the broker did not answer with TLS (is this a plain-text port? use the TLS port, or \
             a URL scheme without TLS)"
                .to_owned()
        }
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the private key does not match the certificate".to_owned()
        }
        rustls::Error::PeerIncompatible(incompatibility) => format!(
            "the broker and baton have no TLS version or cipher suite in common \
             ({incompatibility:?}); baton needs TLS 1.2 or 1.3"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

fn explain_certificate_error(error: &CertificateError, host: &str) -> String {
    match error {
        CertificateError::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
            let names: Vec<String> =
                presented.iter().map(|name| format!("{:?}", bare_presented_name(name))).collect();
            format!(
                "certificate is not valid for host {host:?}: it names {} (set tls.server_name \
                 or fix the certificate)",
                names.join(", ")
            )
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "certificate is not valid for host {host:?} (set tls.server_name or fix the \
                 certificate)"
            )
        }
        CertificateError::UnknownIssuer => {
            "certificate was not issued by the configured CA (check tls.ca; without it only \
             public CAs are trusted)"
                .to_owned()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the broker's certificate has expired (renew it, or check this machine's clock)".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the broker's certificate is not valid yet (check this machine's clock)".to_owned()
        }
        CertificateError::Revoked => "the broker's certificate has been revoked".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the broker's certificate is not meant for TLS servers (it lacks the serverAuth \
             extended key usage; reissue it)"
                .to_owned()
        }
        CertificateError::BadEncoding => "the broker's certificate is malformed".to_owned(),
        CertificateError::BadSignature => {
            "the broker's certificate signature does not verify against its issuer (check tls.ca)".to_owned()
        }
        other => format!("the broker's certificate was refused: {other}"),
    }
}

/// rustls reports the names a certificate presents in debug form (`DnsName("mq2")`,
/// `IpAddress(10.0.0.1)`); a person wants just the name.
fn bare_presented_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| presented.strip_prefix("IpAddress(").and_then(|rest| rest.strip_suffix(')')))
        .unwrap_or(presented)
}

fn explain_alert(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => {
            "the broker requires a client certificate (set tls.cert and tls.key)".to_owned()
        }
        AlertDescription::HandshakeFailure => {
            "the broker refused the handshake: it may require a client certificate (set tls.cert \
             and tls.key), or it shares no cipher suite with baton"
                .to_owned()
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnsupportedCertificate => format!(
            "the broker refused our client certificate ({alert:?}): check that tls.cert was \
             issued by a CA the broker trusts and is meant for client authentication"
        ),
        AlertDescription::CertificateExpired => {
            "the broker says our client certificate has expired (renew tls.cert)".to_owned()
        }
        AlertDescription::CertificateRevoked => {
            "the broker says our client certificate has been revoked".to_owned()
        }
        AlertDescription::ProtocolVersion => {
            "the broker does not accept TLS 1.2 or 1.3, the versions baton speaks".to_owned()
        }
        other => format!("the broker ended the TLS handshake with alert {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: rustls::Error, expected: &str) {
        let explained = explain_rustls_error(&error, "mq1");
        assert!(explained.contains(expected), "{error:?}: {explained}");
    }

    #[test]
    fn rustls_errors_are_explained() {
        use rustls::Error::{AlertReceived, InvalidCertificate};
        check(
            InvalidCertificate(CertificateError::NotValidForName),
            r#"certificate is not valid for host "mq1" (set tls.server_name or fix the certificate)"#,
        );
        check(
            InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("mq1").expect("a valid DNS name"),
                presented: vec![r#"DnsName("mq2")"#.to_owned(), "IpAddress(10.0.0.2)".to_owned()],
            }),
            r#"not valid for host "mq1": it names "mq2", "10.0.0.2" (set tls.server_name"#,
        );
        check(
            InvalidCertificate(CertificateError::UnknownIssuer),
            "certificate was not issued by the configured CA (check tls.ca;",
        );
        check(InvalidCertificate(CertificateError::Expired), "has expired");
        check(InvalidCertificate(CertificateError::NotValidYet), "not valid yet");
        check(
            AlertReceived(AlertDescription::CertificateRequired),
            "the broker requires a client certificate (set tls.cert and tls.key)",
        );
        check(AlertReceived(AlertDescription::HandshakeFailure), "set tls.cert and tls.key");
        check(AlertReceived(AlertDescription::UnknownCA), "refused our client certificate");
        check(
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            "did not answer with TLS",
        );
    }

    #[test]
    fn wrapped_errors_are_found() {
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(explain_handshake_error(&wrapped, "mq1").contains("check tls.ca"));
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert!(explain_handshake_error(&eof, "mq1").contains("closed the connection"));
        let twice = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        assert!(explain_handshake_error(&twice, "mq1").contains("check tls.ca"));
        let unrelated = io::Error::other("something else");
        assert_eq!(explain_handshake_error(&unrelated, "mq1"), "something else");
    }

    #[test]
    fn server_name_prefers_the_setting() {
        let mut settings = TlsSettings::default();
        assert_eq!(settings.server_name_for("mq1").expect("valid").to_str(), "mq1");
        assert_eq!(settings.server_name_for("[::1]").expect("valid").to_str(), "::1");
        settings.server_name = Some("broker.example.net".to_owned());
        assert_eq!(settings.server_name_for("10.0.0.1").expect("valid").to_str(), "broker.example.net");
        settings.server_name = Some("not a name!".to_owned());
        let error = settings.server_name_for("mq1").expect_err("invalid name").to_string();
        assert!(error.contains("tls.server_name"), "{error}");
    }
}
