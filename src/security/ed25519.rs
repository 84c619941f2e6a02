//! The `ed25519` scheme: every party signs with its own key; the other side trusts a directory
//! of public keys.
//!
//! A key has a name. For a caller the name is its caller id (`user=alice`), and a node accepts
//! a request only when the key that verified it carries the name of the request's `caller`, so
//! the caller a policy sees is proven, not claimed. For a node the name is its identity, and a
//! client accepts a reply only when it verifies with a node key it trusts.
//!
//! Key files are text, one `key = value` per line, `#` starting a comment, so the name travels
//! with the key:
//!
//! ```text
//! # baton ed25519 private key
//! name = user=alice
//! secret = 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
//! ```
//!
//! A public key file has `name` and `public` (the 32-byte key in hex); a trusted-keys directory
//! holds any number of them (`*.pub`). A trusted key file is named after its key: `NAME.pub`, or
//! `NAME+LABEL.pub` (a key name never holds `+`), and a file whose name line says otherwise is
//! refused ([`Ed25519Error::NameMismatch`]), so what a directory listing shows is whom each file
//! lets sign: `alice.pub` cannot quietly hold Bob's name. Several files may carry the same name
//! (`user=alice.pub` and `user=alice+2027.pub`): that is a key rotation in progress, and a
//! signature by any of that name's keys is accepted, so a fleet can trust the new key everywhere
//! before the old one is retired (docs/OPERATIONS.md, "Rotating keys"). [`generate`] makes a
//! pair (`baton keygen`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::file_trust::{Purpose, check_trusted};

/// The largest key file read, in bytes: a key file is three short lines.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// One party's signing key and the public keys it trusts.
#[derive(Clone)]
pub struct Ed25519 {
    name: String,
    signing: SigningKey,
    /// Every trusted key of each name: more than one while a rotation is under way.
    trusted: BTreeMap<String, Vec<VerifyingKey>>,
    trusted_dir: PathBuf,
}

/// Why keys could not be loaded. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Ed25519Error {
    #[error("cannot read key file {}: {source} (make a key pair with `baton keygen`)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is not a baton ed25519 key file: {reason} (make one with `baton keygen`)", path.display())]
    Format { path: PathBuf, reason: String },
    /// A key file others could read or replace (see [`super::file_trust`]).
    #[error(transparent)]
    Untrusted(#[from] super::file_trust::UntrustedFile),
    #[error("cannot read trusted keys directory {}: {source} (create it and copy public keys into it)", path.display())]
    Directory { path: PathBuf, source: std::io::Error },
    /// A trusted key file whose file name and name line disagree: neither is believed.
    #[error(
        "trusted key file {} is named for {file_name:?} but its name line says {key_name:?}: refused, \
         so that no file lets one caller sign as another (a trusted key file is named after its key: \
         rename it {key_name}.pub, or {key_name}+LABEL.pub beside another key of that name, or fix \
         its name line)",
        path.display()
    )]
    NameMismatch { path: PathBuf, file_name: String, key_name: String },
}

/// What separates a key's name from a label in a trusted key file's name
/// (`user=alice+2027.pub`); never part of a key name (see [`is_key_name`]).
pub const LABEL_SEPARATOR: char = '+';

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFailure {
    /// No trusted key has this name.
    UnknownKey,
    /// The named key is trusted but the signature is not its signature over these bytes.
    BadSignature,
}

impl Ed25519 {
    /// Loads this party's private key and every public key in `trusted_dir`; any key file that
    /// does not load is an error (a daemon refuses to start on it).
    pub fn load(key_file: &Path, trusted_dir: &Path) -> Result<Ed25519, Ed25519Error> {
        let (name, signing) = read_private_key(key_file)?;
        let (trusted, mut skipped) = read_trusted_dir(trusted_dir)?;
        if !skipped.is_empty() {
            return Err(skipped.remove(0));
        }
        Ok(Ed25519 { name, signing, trusted, trusted_dir: trusted_dir.to_owned() })
    }

    /// As [`Ed25519::load`], for a reload: a trusted key file that does not load is skipped and
    /// returned, and the others are trusted. Keeping the previous set instead would keep trusting
    /// a key that was just removed whenever another file has a mistake; skipping only refuses
    /// the caller whose file is broken (security review of issue 13, finding 4).
    pub fn reload(key_file: &Path, trusted_dir: &Path) -> Result<(Ed25519, Vec<Ed25519Error>), Ed25519Error> {
        let (name, signing) = read_private_key(key_file)?;
        let (trusted, skipped) = read_trusted_dir(trusted_dir)?;
        Ok((Ed25519 { name, signing, trusted, trusted_dir: trusted_dir.to_owned() }, skipped))
    }

    /// The same trusted keys, signing with the private key in `key_file` instead: how the
    /// console signs as a logged-in user, trusting the nodes it trusts.
    pub fn signing_as(&self, key_file: &Path) -> Result<Ed25519, Ed25519Error> {
        let (name, signing) = read_private_key(key_file)?;
        Ok(Ed25519 { name, signing, trusted: self.trusted.clone(), trusted_dir: self.trusted_dir.clone() })
    }

    /// Builds a scheme from keys in memory (tests and tools).
    pub fn from_keys(
        name: &str,
        secret: [u8; 32],
        trusted: impl IntoIterator<Item = (String, [u8; 32])>,
    ) -> Result<Ed25519, String> {
        let mut keys: BTreeMap<String, Vec<VerifyingKey>> = BTreeMap::new();
        for (name, public) in trusted {
            let key =
                VerifyingKey::from_bytes(&public).map_err(|error| format!("public key {name}: {error}"))?;
            keys.entry(name).or_default().push(key);
        }
        Ok(Ed25519 {
            name: name.to_owned(),
            signing: SigningKey::from_bytes(&secret),
            trusted: keys,
            trusted_dir: PathBuf::new(),
        })
    }

    /// This party's key name, written into envelopes as the key id.
    pub fn key_id(&self) -> &str {
        &self.name
    }

    /// This party's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// How many public keys are trusted (a name being rotated counts each of its keys).
    pub fn trusted_count(&self) -> usize {
        self.trusted.values().map(Vec::len).sum()
    }

    /// Where the trusted keys came from, for messages.
    pub fn trusted_dir(&self) -> &Path {
        &self.trusted_dir
    }

    /// Signs the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.signing.sign(&parts.concat()).to_bytes().to_vec()
    }

    /// Verifies a signature over the concatenation of `parts` with this party's own key.
    pub fn verify_own(&self, parts: &[&[u8]], signature: &[u8]) -> Result<(), VerifyFailure> {
        let signature = Signature::from_slice(signature).map_err(|_| VerifyFailure::BadSignature)?;
        self.signing
            .verifying_key()
            .verify_strict(&parts.concat(), &signature)
            .map_err(|_| VerifyFailure::BadSignature)
    }

    /// Verifies a signature over the concatenation of `parts` with a trusted key named
    /// `key_id` (any of them, while that name's key is being rotated).
    pub fn verify(&self, key_id: &str, parts: &[&[u8]], signature: &[u8]) -> Result<(), VerifyFailure> {
        let keys = self.trusted.get(key_id).ok_or(VerifyFailure::UnknownKey)?;
        let signature = Signature::from_slice(signature).map_err(|_| VerifyFailure::BadSignature)?;
        let message = parts.concat();
        if keys.iter().any(|key| key.verify_strict(&message, &signature).is_ok()) {
            Ok(())
        } else {
            Err(VerifyFailure::BadSignature)
        }
    }
}

impl fmt::Debug for Ed25519 {
    // The private key must never reach a log line through `{:?}`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Ed25519")
            .field("name", &self.name)
            .field("trusted", &self.trusted.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A new key pair for `name`: the private key file's text and the public key file's text.
pub fn generate(name: &str) -> (String, String) {
    let secret: [u8; 32] = rand::random();
    let signing = SigningKey::from_bytes(&secret);
    let private = format!(
        "# baton ed25519 private key: keep it secret (mode 600)\nname = {name}\nsecret = {}\n",
        super::hex::encode(&secret)
    );
    let public = format!(
        "# baton ed25519 public key: copy it, as {name}.pub, into the trusted_keys_dir of whoever must trust {name}\nname = {name}\npublic = {}\n",
        super::hex::encode(&signing.verifying_key().to_bytes())
    );
    (private, public)
}

/// Where the key pair named `name` lives in `dir`: `NAME.key` and `NAME.pub`, the name as it is
/// (a key name holds no `/`, see [`is_key_name`]). The one naming `baton keygen` writes and
/// `baton console --user-keys` reads.
pub fn key_pair_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")))
}

/// Whether a key name is usable: what callers and identities are made of, no spaces.
pub fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|byte| {
            byte.is_ascii_alphanumeric() || matches!(byte, b'=' | b'.' | b'-' | b'_' | b'@' | b':')
        })
}

fn read_private_key(path: &Path) -> Result<(String, SigningKey), Ed25519Error> {
    let text = read_key_file(path)?;
    check_trusted(path, Purpose::PrivateKey)?;
    let fields = parse_fields(&text, path)?;
    let name = required(&fields, "name", path)?;
    let secret = hex_key(required(&fields, "secret", path)?, "secret", path)?;
    Ok((name.to_owned(), SigningKey::from_bytes(&secret)))
}

type Trusted = BTreeMap<String, Vec<VerifyingKey>>;

/// Every `*.pub` file of `dir`: the keys that load, and the errors of the files that do not.
fn read_trusted_dir(dir: &Path) -> Result<(Trusted, Vec<Ed25519Error>), Ed25519Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|source| Ed25519Error::Directory { path: dir.to_owned(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "pub"))
        .collect();
    files.sort();
    let mut trusted = Trusted::new();
    let mut skipped = Vec::new();
    for file in files {
        match read_trusted_key(&file) {
            Ok((name, key)) => trusted.entry(name).or_default().push(key),
            Err(error) => skipped.push(error),
        }
    }
    Ok((trusted, skipped))
}

fn read_trusted_key(file: &Path) -> Result<(String, VerifyingKey), Ed25519Error> {
    let text = read_key_file(file)?;
    // Whoever can add or change a file here can sign as anyone.
    check_trusted(file, Purpose::TrustedKey)?;
    let fields = parse_fields(&text, file)?;
    let name = required(&fields, "name", file)?.to_owned();
    check_file_named_after(file, &name)?;
    let public = hex_key(required(&fields, "public", file)?, "public", file)?;
    let key = VerifyingKey::from_bytes(&public).map_err(|error| Ed25519Error::Format {
        path: file.to_owned(),
        reason: format!("not an ed25519 public key: {error}"),
    })?;
    Ok((name, key))
}

/// A trusted key file must be `NAME.pub` or `NAME+LABEL.pub` for the `name` its line gives.
fn check_file_named_after(file: &Path, key_name: &str) -> Result<(), Ed25519Error> {
    let stem = file.file_stem().map(|stem| stem.to_string_lossy()).unwrap_or_default();
    let file_name = stem.split_once(LABEL_SEPARATOR).map_or(stem.as_ref(), |(name, _label)| name);
    if file_name == key_name {
        Ok(())
    } else {
        Err(Ed25519Error::NameMismatch {
            path: file.to_owned(),
            file_name: file_name.to_owned(),
            key_name: key_name.to_owned(),
        })
    }
}

fn read_key_file(path: &Path) -> Result<String, Ed25519Error> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|source| Ed25519Error::Read { path: path.to_owned(), source })?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|source| Ed25519Error::Read { path: path.to_owned(), source })?;
    Ok(text)
}

fn parse_fields<'a>(text: &'a str, path: &Path) -> Result<BTreeMap<&'a str, &'a str>, Ed25519Error> {
    let mut fields = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            return Err(Ed25519Error::Format {
                path: path.to_owned(),
                reason: format!("line {line:?} is not key = value"),
            });
        };
        fields.insert(key.trim(), value.trim());
    }
    Ok(fields)
}

fn required<'a>(fields: &BTreeMap<&str, &'a str>, key: &str, path: &Path) -> Result<&'a str, Ed25519Error> {
    let value = fields
        .get(key)
        .copied()
        .ok_or_else(|| Ed25519Error::Format { path: path.to_owned(), reason: format!("no {key} line") })?;
    if key == "name" && !is_key_name(value) {
        return Err(Ed25519Error::Format {
            path: path.to_owned(),
            reason: format!("name {value:?} may hold letters, digits and = . - _ @ : only"),
        });
    }
    Ok(value)
}

fn hex_key(text: &str, what: &str, path: &Path) -> Result<[u8; 32], Ed25519Error> {
    let format = |reason: String| Ed25519Error::Format { path: path.to_owned(), reason };
    if text.len() != 64 || !text.is_ascii() {
        return Err(format(format!("{what} must be 64 hex digits, found {} characters", text.len())));
    }
    super::hex::decode(text)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format(format!("{what} is not hexadecimal")))
}
