//! Files under the `resource` agent's root directory, reached without ever following a
//! symbolic link.
//!
//! The root may be a container's or a chroot's tree, which whoever controls that tree can fill
//! with links: a linked `etc`, an `etc/passwd` pointing at the host's, a planted
//! `etc/.passwd.baton-new` waiting for the next write. Every path is opened component by
//! component from the root with `openat(O_NOFOLLOW)`, so a link anywhere on the way is refused
//! rather than followed, and the answer cannot change between a check and its use. A file is
//! replaced by writing a new file created with `O_CREAT | O_EXCL | O_NOFOLLOW` beside it, then
//! renaming it over the old one in the same directory. The root itself is the node's
//! configuration and is opened as configured.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why a file under the root could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RootedError {
    #[error(
        "{} is a symbolic link: the resource agent never follows links under its root {} \
         (replace the link with the real file or directory)",
        path.display(), root.display()
    )]
    Link { path: PathBuf, root: PathBuf },
    #[error("{} is not a regular file (replace it with one)", path.display())]
    NotRegular { path: PathBuf },
    #[error("{} is not a plain relative path under the resource root", path.display())]
    BadPath { path: PathBuf },
    #[error("cannot {doing} {}: {source}", path.display())]
    Io { doing: &'static str, path: PathBuf, source: std::io::Error },
}

/// A directory tree reached only through its root, never through a link.
#[derive(Debug, Clone)]
pub struct Rooted {
    root: PathBuf,
}

/// The base flags of every open: no link followed, no descriptor leaked to child processes.
fn no_follow() -> OFlags {
    OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Rooted {
    pub fn new(root: PathBuf) -> Rooted {
        Rooted { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `relative` is, for messages.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// A file's text, or `None` when it (or a directory on its way) does not exist.
    pub fn read(&self, relative: &str) -> Result<Option<String>, RootedError> {
        let (directory, name) = match self.parent_of(relative, false)? {
            Some(found) => found,
            None => return Ok(None),
        };
        // O_NONBLOCK: a FIFO planted in the tree must not hang the agent on open.
        let file = match rustix::fs::openat(
            &directory,
            name,
            no_follow() | OFlags::RDONLY | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(file) => file,
            Err(Errno::NOENT) => return Ok(None),
            Err(error) => return Err(self.refusal(&directory, name, relative, error, "read")),
        };
        let stat = rustix::fs::fstat(&file).map_err(|error| self.io("read", relative, error.into()))?;
        if !FileType::from_raw_mode(stat.st_mode).is_file() {
            return Err(RootedError::NotRegular { path: self.path(relative) });
        }
        let mut text = String::new();
        std::fs::File::from(file)
            .read_to_string(&mut text)
            .map_err(|error| self.io("read", relative, error))?;
        Ok(Some(text))
    }

    /// Replaces a file's contents whole, keeping its mode and owner (new files get 0644), so a
    /// reader never sees half a file and nothing outside the root is touched.
    pub fn write_replacing(&self, relative: &str, text: &str) -> Result<(), RootedError> {
        let Some((directory, name)) = self.parent_of(relative, false)? else {
            return Err(self.io("write", relative, std::io::ErrorKind::NotFound.into()));
        };
        let existing = match rustix::fs::statat(&directory, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode).is_symlink() => {
                return Err(RootedError::Link { path: self.path(relative), root: self.root.clone() });
            }
            Ok(stat) if !FileType::from_raw_mode(stat.st_mode).is_file() => {
                return Err(RootedError::NotRegular { path: self.path(relative) });
            }
            Ok(stat) => Some(stat),
            Err(Errno::NOENT) => None,
            Err(error) => return Err(self.io("write", relative, error.into())),
        };
        let temporary = format!(".{name}.baton-new");
        // A leftover (or planted) temporary is removed, not followed: unlinking a link removes
        // the link itself. O_EXCL then refuses anything planted in between.
        match rustix::fs::unlinkat(&directory, temporary.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(error) => return Err(self.io("write", relative, error.into())),
        }
        let mode =
            existing.as_ref().map_or(Mode::from_raw_mode(0o644), |stat| Mode::from_raw_mode(stat.st_mode));
        let file = rustix::fs::openat(
            &directory,
            temporary.as_str(),
            no_follow() | OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|error| self.io("write", relative, error.into()))?;
        let written = self.fill(file, text, mode, existing.as_ref()).and_then(|()| {
            rustix::fs::renameat(&directory, temporary.as_str(), &directory, name).map_err(Into::into)
        });
        if let Err(error) = written {
            let _ = rustix::fs::unlinkat(&directory, temporary.as_str(), AtFlags::empty());
            return Err(self.io("write", relative, error));
        }
        Ok(())
    }

    fn fill(
        &self,
        file: OwnedFd,
        text: &str,
        mode: Mode,
        existing: Option<&rustix::fs::Stat>,
    ) -> std::io::Result<()> {
        if let Some(stat) = existing {
            // etc/shadow is root:shadow: a rewritten copy must keep its group, or readers lose it.
            rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(stat.st_uid)),
                Some(rustix::fs::Gid::from_raw(stat.st_gid)),
            )?;
        }
        rustix::fs::fchmod(&file, mode)?;
        let mut file = std::fs::File::from(file);
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }

    /// The names in a directory, sorted; none when it does not exist or is reached by a link.
    pub fn names(&self, relative: &str) -> Vec<String> {
        let Ok(Some(directory)) = self.directory(relative, false) else {
            return Vec::new();
        };
        let Ok(entries) = rustix::fs::Dir::read_from(&directory) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str().ok().map(str::to_owned))
            .filter(|name| name != "." && name != "..")
            .collect();
        names.sort();
        names
    }

    /// What kind of entry `relative` is (a link is reported as a link), or `None` when it does
    /// not exist or a directory on its way is missing or a link.
    pub fn kind(&self, relative: &str) -> Option<FileType> {
        let (directory, name) = self.parent_of(relative, false).ok()??;
        let stat = rustix::fs::statat(&directory, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        Some(FileType::from_raw_mode(stat.st_mode))
    }

    /// Creates the symbolic link `relative` pointing at `target`, creating missing directories
    /// on its way (mode 0755).
    pub fn symlink(&self, target: &str, relative: &str) -> Result<(), RootedError> {
        let Some((directory, name)) = self.parent_of(relative, true)? else {
            return Err(self.io("create", relative, std::io::ErrorKind::NotFound.into()));
        };
        rustix::fs::symlinkat(target, &directory, name)
            .map_err(|error| self.io("create", relative, error.into()))
    }

    /// Removes the file or link `relative` (a link itself, never what it points at).
    pub fn remove(&self, relative: &str) -> Result<(), RootedError> {
        let Some((directory, name)) = self.parent_of(relative, false)? else {
            return Err(self.io("remove", relative, std::io::ErrorKind::NotFound.into()));
        };
        rustix::fs::unlinkat(&directory, name, AtFlags::empty())
            .map_err(|error| self.io("remove", relative, error.into()))
    }

    /// The directory holding `relative`'s last component, opened without following links, and
    /// that last component; `None` when a directory on the way does not exist.
    fn parent_of<'a>(
        &self,
        relative: &'a str,
        create: bool,
    ) -> Result<Option<(OwnedFd, &'a str)>, RootedError> {
        let (parent, name) = relative.rsplit_once('/').unwrap_or(("", relative));
        if !is_plain_component(name) {
            return Err(RootedError::BadPath { path: PathBuf::from(relative) });
        }
        Ok(self.directory(parent, create)?.map(|directory| (directory, name)))
    }

    /// Opens the directory `relative` (`""` is the root) one component at a time.
    fn directory(&self, relative: &str, create: bool) -> Result<Option<OwnedFd>, RootedError> {
        let flags = no_follow() | OFlags::DIRECTORY | OFlags::RDONLY;
        let mut directory =
            rustix::fs::open(&self.root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|error| self.io("open", "", error.into()))?;
        let mut walked = String::new();
        for component in relative.split('/').filter(|component| !component.is_empty()) {
            if !is_plain_component(component) {
                return Err(RootedError::BadPath { path: PathBuf::from(relative) });
            }
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(component);
            let opened = match rustix::fs::openat(&directory, component, flags, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    rustix::fs::mkdirat(&directory, component, Mode::from_raw_mode(0o755))
                        .map_err(|error| self.io("create", &walked, error.into()))?;
                    rustix::fs::openat(&directory, component, flags, Mode::empty())
                }
                other => other,
            };
            directory = match opened {
                Ok(next) => next,
                Err(Errno::NOENT) => return Ok(None),
                Err(error) => return Err(self.refusal(&directory, component, &walked, error, "open")),
            };
        }
        Ok(Some(directory))
    }

    /// The error for a failed open: a link when the entry is one, the system's error otherwise.
    fn refusal(
        &self,
        directory: &OwnedFd,
        name: &str,
        relative: &str,
        error: Errno,
        doing: &'static str,
    ) -> RootedError {
        let is_link = rustix::fs::statat(directory, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode).is_symlink());
        if is_link {
            RootedError::Link { path: self.path(relative), root: self.root.clone() }
        } else {
            self.io(doing, relative, error.into())
        }
    }

    fn io(&self, doing: &'static str, relative: &str, source: std::io::Error) -> RootedError {
        RootedError::Io { doing, path: self.path(relative), source }
    }
}

fn is_plain_component(component: &str) -> bool {
    !component.is_empty() && component != "." && component != ".." && !component.contains('\0')
}
