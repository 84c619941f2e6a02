//! The console's users: the users file (one line per user, `NAME:HASH` with the stored form
//! of [`PasswordHash`]), written by `baton console --add-user NAME` and checked at login.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::security::password::{ITERATIONS, PasswordHash};

/// Why the users file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    // The cause is in the message and is not also a `source()`: the CLI prints the whole
    // chain, which would say it twice.
    #[error("cannot read the users file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write the users file {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("users file {path}, line {line}: {reason}")]
    Invalid { path: PathBuf, line: usize, reason: String },
    #[error("user name {0:?} is not allowed (letters, digits, '.', '_' and '-', at most 64 characters)")]
    BadName(String),
    #[error("the password is empty")]
    EmptyPassword,
}

/// Whether `name` may be a console user: it becomes the caller `user=NAME` in requests.
pub fn is_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The console's users, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    hashes: HashMap<String, PasswordHash>,
    /// Verified against when the name is unknown, so a wrong name takes as long as a wrong
    /// password and names cannot be guessed by timing.
    decoy: Option<PasswordHash>,
}

impl Users {
    /// Reads a users file. Blank lines and lines starting with `#` are ignored.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| UsersError::Read { path: path.to_owned(), error })?;
        Users::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Users, UsersError> {
        let mut hashes = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid =
                |reason: String| UsersError::Invalid { path: path.to_owned(), line: index + 1, reason };
            let (name, hash) =
                line.split_once(':').ok_or_else(|| invalid("expected NAME:HASH".to_owned()))?;
            if !is_user_name(name) {
                return Err(invalid(format!("user name {name:?} is not allowed")));
            }
            let hash = PasswordHash::parse(hash).map_err(|error| invalid(error.to_string()))?;
            if hashes.insert(name.to_owned(), hash).is_some() {
                return Err(invalid(format!("user {name:?} appears twice")));
            }
        }
        // The most iterations of any user, so an unknown name never answers faster than a known one.
        let decoy = hashes.values().map(PasswordHash::iterations).max().map(PasswordHash::decoy);
        Ok(Users { hashes, decoy })
    }

    /// The user's name when `password` is theirs.
    pub fn authenticate(&self, name: &str, password: &str) -> bool {
        match self.hashes.get(name) {
            Some(hash) => hash.verify(password),
            None => {
                if let Some(decoy) = &self.decoy {
                    decoy.verify(password);
                }
                false
            }
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Adds a user to the users file (creating it, readable by its owner only), or replaces that
/// user's password. Other lines are kept as they are.
pub fn add_user(path: &Path, name: &str, password: &str) -> Result<(), UsersError> {
    add_user_with_iterations(path, name, password, ITERATIONS)
}

fn add_user_with_iterations(
    path: &Path,
    name: &str,
    password: &str,
    iterations: u32,
) -> Result<(), UsersError> {
    if !is_user_name(name) {
        return Err(UsersError::BadName(name.to_owned()));
    }
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(UsersError::Read { path: path.to_owned(), error }),
    };
    // Refuse to rewrite a file we cannot read back.
    Users::parse(&existing, path)?;
    let mut text = String::new();
    for line in existing.lines() {
        if line.trim().split_once(':').is_some_and(|(other, _)| other == name) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    let _ = writeln!(text, "{name}:{}", PasswordHash::with_iterations(password, iterations));
    write_private(path, &text).map_err(|error| UsersError::Write { path: path.to_owned(), error })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let temporary = path.with_extension("tmp");
    // A leftover from an interrupted run may have any mode: start from a fresh private file.
    match std::fs::remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
    // The umask may have narrowed the mode further, never widened it; set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::password::MIN_ITERATIONS;

    #[test]
    fn the_users_file_is_written_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        // Few iterations keep the test fast; `add_user` itself uses ITERATIONS.
        let add =
            |name: &str, password: &str| add_user_with_iterations(&path, name, password, MIN_ITERATIONS);
        add("alice", "wonderland").expect("add alice");
        add("bob", "builder").expect("add bob");
        add("alice", "looking-glass").expect("replace alice");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let users = Users::load(&path).expect("load");
        assert_eq!(users.len(), 2);
        assert!(users.authenticate("alice", "looking-glass"));
        assert!(!users.authenticate("alice", "wonderland"), "the old password is gone");
        assert!(users.authenticate("bob", "builder"));
        assert!(!users.authenticate("carol", "builder"));
        assert!(matches!(add("al ice", "x"), Err(UsersError::BadName(_))));
        assert!(matches!(add("dave", ""), Err(UsersError::EmptyPassword)));
    }

    #[test]
    fn a_bad_users_file_names_the_line() {
        let error = Users::parse("# users\nalice:nothing\n", Path::new("users")).expect_err("invalid");
        assert!(error.to_string().contains("users file users, line 2"), "{error}");
    }

    #[test]
    fn an_unknown_user_is_checked_with_the_most_iterations() {
        let text = format!(
            "a:{}\nb:{}\n",
            PasswordHash::with_iterations("x", MIN_ITERATIONS),
            PasswordHash::with_iterations("y", MIN_ITERATIONS * 2)
        );
        let users = Users::parse(&text, Path::new("users")).expect("parse");
        assert_eq!(users.decoy.as_ref().map(PasswordHash::iterations), Some(MIN_ITERATIONS * 2));
    }

    #[test]
    fn a_leftover_temporary_file_does_not_widen_the_users_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        let leftover = path.with_extension("tmp");
        std::fs::write(&leftover, "junk").expect("leftover");
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        add_user_with_iterations(&path, "alice", "pw", MIN_ITERATIONS).expect("add");
        assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
        assert!(!std::fs::read_to_string(&path).expect("read").contains("junk"));
    }
}
