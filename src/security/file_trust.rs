//! Whether a file the node acts on may be trusted: external agents it runs, the keys and PSK it
//! signs and verifies with, the policies it authorizes by.
//!
//! A file is trusted when nobody but root and the user baton runs as could have written it:
//! the file and every directory above it, up to `/`, are owned by root or by that user, and
//! none of them may be written by group or others. Anyone who can replace the file, or rename a
//! directory on its way, could otherwise run code as the daemon or sign as it. A world-writable
//! directory with the sticky bit (`/tmp`) is accepted, because there only an entry's owner may
//! rename or remove it, and that owner is checked too. Symbolic links are followed, and both
//! the path as written and the path it resolves to must pass.
//!
//! Secret files (a private key, the PSK) must also not be readable by group or others.
//!
//! This is the one place these rules live: [`check_trusted`] is called when a file is loaded
//! and, for external agents, again before every run, since a file may be replaced after load.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a file is for, which decides whether it must also be secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An external agent's executable, run by the node.
    ExternalAgent,
    /// An external agent's definition, which decides what inputs reach the executable.
    AgentDefinition,
    /// An ed25519 private key. Secret.
    PrivateKey,
    /// A public key in the trusted keys directory: whoever adds one may sign requests.
    TrustedKey,
    /// The pre-shared key. Secret.
    Psk,
    /// An authorization policy file.
    Policy,
}

impl Purpose {
    /// Whether group and others must not even read the file.
    pub fn is_secret(self) -> bool {
        matches!(self, Purpose::PrivateKey | Purpose::Psk)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Purpose::ExternalAgent => "external agent",
            Purpose::AgentDefinition => "agent definition",
            Purpose::PrivateKey => "private key file",
            Purpose::TrustedKey => "trusted public key",
            Purpose::Psk => "PSK file",
            Purpose::Policy => "policy file",
        })
    }
}

/// Why a file is not trusted. Each message names the file, the path at fault and the fix.
#[derive(Debug, thiserror::Error)]
pub enum UntrustedFile {
    #[error("cannot check {purpose} {}: {source} (check the path)", path.display())]
    Unreadable { purpose: Purpose, path: PathBuf, source: std::io::Error },
    #[error(
        "{purpose} {} is not trusted: {} is owned by uid {owner}, not by root or the user baton \
         runs as (uid {daemon}) (run `chown root {}`)",
        file.display(), culprit.display(), culprit.display()
    )]
    Owner { purpose: Purpose, file: PathBuf, culprit: PathBuf, owner: u32, daemon: u32 },
    #[error(
        "{purpose} {} is not trusted: {} has mode {mode:o}, so group or other users may change \
         it (run `chmod go-w {}`)",
        file.display(), culprit.display(), culprit.display()
    )]
    Writable { purpose: Purpose, file: PathBuf, culprit: PathBuf, mode: u32 },
    #[error(
        "{purpose} {} has mode {mode:o}: users other than its owner may read or change it \
         (run `chmod 600 {}`)",
        file.display(), file.display()
    )]
    NotSecret { purpose: Purpose, file: PathBuf, mode: u32 },
}

/// Checks that `path` may be trusted for `purpose` (see the module documentation), or says
/// why not and what to run to fix it.
pub fn check_trusted(path: &Path, purpose: Purpose) -> Result<(), UntrustedFile> {
    let unreadable =
        |path: &Path, source| UntrustedFile::Unreadable { purpose, path: path.to_owned(), source };
    let absolute = std::path::absolute(path).map_err(|source| unreadable(path, source))?;
    let canonical = std::fs::canonicalize(&absolute).map_err(|source| unreadable(&absolute, source))?;
    if purpose.is_secret() {
        let mode = std::fs::metadata(&canonical).map_err(|source| unreadable(&canonical, source))?.mode();
        if mode & 0o077 != 0 {
            return Err(UntrustedFile::NotSecret { purpose, file: absolute, mode: mode & 0o7777 });
        }
    }
    let daemon = rustix::process::geteuid().as_raw();
    let chain = Chain { purpose, file: &absolute, daemon };
    chain.check(&absolute)?;
    if canonical != absolute {
        chain.check(&canonical)?;
    }
    Ok(())
}

/// The checks on one path's chain of directories.
struct Chain<'a> {
    purpose: Purpose,
    file: &'a Path,
    daemon: u32,
}

impl Chain<'_> {
    /// Checks `path` and each directory above it. Links are not followed here: a link's own
    /// owner matters (in a sticky directory it may re-point it); its target is checked by the
    /// caller through the resolved path.
    fn check(&self, path: &Path) -> Result<(), UntrustedFile> {
        for culprit in path.ancestors() {
            let metadata = std::fs::symlink_metadata(culprit).map_err(|source| {
                UntrustedFile::Unreadable { purpose: self.purpose, path: culprit.to_owned(), source }
            })?;
            let owner = metadata.uid();
            if owner != 0 && owner != self.daemon {
                return Err(UntrustedFile::Owner {
                    purpose: self.purpose,
                    file: self.file.to_owned(),
                    culprit: culprit.to_owned(),
                    owner,
                    daemon: self.daemon,
                });
            }
            if metadata.file_type().is_symlink() {
                continue;
            }
            let mode = metadata.mode() & 0o7777;
            let sticky_directory = metadata.is_dir() && mode & 0o1000 != 0;
            if mode & 0o022 != 0 && !sticky_directory {
                return Err(UntrustedFile::Writable {
                    purpose: self.purpose,
                    file: self.file.to_owned(),
                    culprit: culprit.to_owned(),
                    mode,
                });
            }
        }
        Ok(())
    }
}
