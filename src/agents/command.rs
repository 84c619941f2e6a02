//! Running a program for an agent: bounded output, a timeout, and nothing left behind.
//!
//! Every program the node starts (an external agent, `systemctl`, `apt-get`, `puppet`, Facter)
//! is made by [`new`] or [`new_blocking`], the one place that decides what of the daemon's
//! environment a child inherits: everything but the variables meant for the daemon alone
//! ([`is_daemon_only`]: systemd's `NOTIFY_SOCKET`, socket activation and watchdog variables, the
//! daemon's `BATON_*` configuration). `tests/tidy.rs` keeps it the one place. Every program an
//! agent starts runs in a process group of its own. When the program outlives its timeout, or the node drops the
//! action (its own timeout, shutdown), the whole group is killed, so children a script started
//! go too. Standard output is read up to a limit; standard error keeps only its tail, which is
//! what a person needs to see why something failed.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// A command for `program` whose environment is the daemon's without its daemon-only variables
/// ([`is_daemon_only`]). The node starts programs only through this (or [`new_blocking`]).
pub fn new(program: impl AsRef<OsStr>) -> Command {
    Command::from(new_blocking(program))
}

/// [`new`], for a program run from blocking code (Facter at start and reload, `hostname`).
pub fn new_blocking(program: impl AsRef<OsStr>) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        if is_daemon_only(&name) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether an environment variable is for the daemon alone. systemd hands the daemon its
/// notification socket (`NOTIFY_SOCKET`: any holder could tell systemd READY, STOPPING or a new
/// MAINPID for batond), its sockets and watchdog (`LISTEN_*`, `WATCHDOG_*`), its invocation and
/// journal stream (which describe batond's stderr, not a child's pipe) and its credentials;
/// `BATON_*` variables are batond's configuration overrides, broker URLs with passwords among
/// them. None of it is any business of Puppet, apt-get or an agent.
pub fn is_daemon_only(name: &OsStr) -> bool {
    const DAEMON_ONLY: [&str; 10] = [
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "CREDENTIALS_DIRECTORY",
        "MAINPID",
    ];
    let name = name.to_string_lossy();
    DAEMON_ONLY.contains(&name.as_ref()) || name.starts_with("BATON_")
}

/// How much of standard error is kept (its end), in bytes.
pub const STDERR_TAIL_BYTES: usize = 2048;

/// What a finished program left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// True when standard output went past the limit and was cut.
    pub stdout_truncated: bool,
    /// The last [`STDERR_TAIL_BYTES`] of standard error, lossily decoded.
    pub stderr_tail: String,
}

impl Finished {
    /// Standard output as text, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// "exited with status 3" or "was killed by signal 9".
    pub fn describe_exit(&self) -> String {
        describe_exit(self.status)
    }
}

/// Why a program did not finish on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} did not finish within {} s; its process group was killed{}", after.as_secs(), tail_suffix(stderr_tail))]
    TimedOut { program: String, after: Duration, stderr_tail: String },
    #[error("lost contact with {program}: {source}")]
    Io { program: String, source: std::io::Error },
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!(" (stderr: {})", tail.trim()) }
}

/// Runs `command` with `stdin` as its standard input, for at most `timeout`.
pub async fn run(
    mut command: Command,
    stdin: &[u8],
    timeout: Duration,
    max_stdout: usize,
) -> Result<Finished, RunError> {
    let program = Path::new(command.as_std().get_program()).display().to_string();
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| RunError::Spawn { program: program.clone(), source })?;
    // From here on, leaving this function in any way (timeout, the caller dropping the future)
    // kills the whole group, unless the program finished and was reaped first.
    let mut group = ProcessGroup { leader: child.id() };

    let mut input = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdin_bytes = stdin.to_vec();
    let stderr_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let work = async {
        let feed = async {
            if let Some(mut input) = input.take() {
                // A program that does not read its input closes the pipe; that is its business.
                let _ = input.write_all(&stdin_bytes).await;
                let _ = input.shutdown().await;
            }
        };
        let (_, (stdout, stdout_truncated), stderr_tail) = tokio::join!(
            feed,
            read_limited(stdout, max_stdout),
            read_tail(stderr, STDERR_TAIL_BYTES, &stderr_seen)
        );
        let status = child.wait().await;
        (status, stdout, stdout_truncated, stderr_tail)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((Ok(status), stdout, stdout_truncated, stderr_tail)) => {
            group.leader = None;
            Ok(Finished { status, stdout, stdout_truncated, stderr_tail })
        }
        Ok((Err(source), ..)) => Err(RunError::Io { program, source }),
        Err(_) => {
            // Kill now rather than at drop, so the group is gone before the reply goes out.
            group.kill();
            let stderr_tail = tail_text(&stderr_seen);
            Err(RunError::TimedOut { program, after: timeout, stderr_tail })
        }
    }
}

/// Kills a process group when dropped, unless its leader was reaped.
struct ProcessGroup {
    leader: Option<u32>,
}

impl ProcessGroup {
    fn kill(&mut self) {
        if let Some(leader) = self.leader.take() {
            // The leader has not been reaped, so its pid (the group id) cannot have been reused.
            // A system call (rustix's safe wrapper), not a `kill` process: this runs on the
            // node's one thread, which must not wait for a program to start.
            let group = i32::try_from(leader).ok().and_then(rustix::process::Pid::from_raw);
            let result = match group {
                Some(group) => {
                    match rustix::process::kill_process_group(group, rustix::process::Signal::KILL) {
                        // Nothing left of the group: nothing to stop.
                        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
                        Err(error) => Err(std::io::Error::from(error)),
                    }
                }
                None => Err(std::io::Error::other(format!("{leader} is not a process id"))),
            };
            if let Err(error) = result {
                tracing::error!(%error, group = leader, "cannot stop a process group");
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn read_limited(reader: Option<impl AsyncRead + Unpin>, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let Some(mut reader) = reader else { return (kept, truncated) };
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let room = limit.saturating_sub(kept.len());
                if read > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
        }
    }
    (kept, truncated)
}

/// Reads to the end, keeping the last `keep` bytes in `seen`, which stays readable if the
/// reading is abandoned (a timeout), so the tail is there to report.
async fn read_tail(
    reader: Option<impl AsyncRead + Unpin>,
    keep: usize,
    seen: &std::sync::Mutex<Vec<u8>>,
) -> String {
    let Some(mut reader) = reader else { return String::new() };
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let mut tail = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > keep {
                    let excess = tail.len() - keep;
                    tail.drain(..excess);
                }
            }
        }
    }
    tail_text(seen)
}

fn tail_text(seen: &std::sync::Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
}

/// "exited with status 3" or "was killed by signal 9".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended abnormally".to_owned(),
    }
}

/// Whether a program can be found on `PATH` (or at the path given).
pub fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
