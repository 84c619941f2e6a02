//! External agents: an executable in any language plus its definition, run once per request.
//!
//! The agents directory holds one subdirectory per agent, named after it:
//!
//! ```text
//! /usr/lib/baton/agents/
//!   hello/
//!     definition.json   the agent's definition (docs/AGENTS.md)
//!     agent             the executable: a script with a #! line, or a binary
//! ```
//!
//! For each request the node starts `agent` in its own directory and process group, with a
//! clean environment, writes one JSON document to its standard input:
//!
//! ```json
//! {"protocol": 1, "agent": "hello", "action": "greet", "data": {"name": "world"},
//!  "request_id": "...", "caller": "user=alice", "sender": "alice@laptop", "identity": "web01"}
//! ```
//!
//! and reads one JSON document from its standard output:
//! `{"data": {...}}` on success, or `{"status": 1, "message": "why", "data": {...}}` on failure
//! (`status` 1 to 5, see docs/PROTOCOL.md). Anything else is a failure with status 5 that says what
//! went wrong, with the tail of the program's standard error: not starting, a non-zero exit,
//! a signal, output that is not that JSON document, outputs the definition does not declare,
//! and running past the definition's timeout (the whole process group is then killed, so the
//! program's children go too). At most [`super::AgentSettings::max_processes`] agent programs
//! run at once; more wait their turn, inside their timeout.
//!
//! Both files, and every directory above them, must be owned by root or the daemon's user and
//! not writable by group or others ([`crate::security::file_trust`]): checked at load, and the
//! executable again before every run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use super::command::{self, RunError};
use super::{ActionContext, ActionOutcome, Agent, BoxFuture, Call};
use crate::protocol::StatusCode;
use crate::protocol::ddl::Definition;
use crate::security::file_trust::{Purpose, check_trusted};

/// The definition file in an agent's directory.
pub const DEFINITION_FILE: &str = "definition.json";

/// The executable in an agent's directory.
pub const EXECUTABLE_FILE: &str = "agent";

/// The version of the stdin/stdout protocol, sent as `protocol` in every request document.
pub const PROTOCOL: u64 = 1;

/// The most an agent may print on standard output, in bytes (the default message limit).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Extra time the node allows past the definition's timeout, so that the runner's own timeout
/// (which kills the process group and reports standard error) is the one that fires.
const NODE_GRACE: Duration = Duration::from_secs(2);

/// The `PATH` external agents run with; the rest of the node's environment is not passed on.
const AGENT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One external agent, loaded from its directory.
pub struct ExternalAgent {
    definition: Arc<Definition>,
    executable: PathBuf,
    directory: PathBuf,
    limiter: Arc<Semaphore>,
}

impl ExternalAgent {
    /// Loads one agent directory. The directory's name must be the agent's name.
    pub fn load(directory: &Path, limiter: Arc<Semaphore>) -> Result<ExternalAgent, String> {
        let definition_path = directory.join(DEFINITION_FILE);
        let bytes = read_bounded(&definition_path)?;
        let definition = Definition::from_json(&bytes, &definition_path.display().to_string())
            .map_err(|error| error.to_string())?;
        let directory_name = directory.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        if definition.name() != directory_name {
            return Err(format!(
                "{} declares agent \"{}\" but lives in directory \"{directory_name}\" (rename one to match)",
                definition_path.display(),
                definition.name()
            ));
        }
        let executable = directory.join(EXECUTABLE_FILE);
        check_executable(&executable)?;
        check_trusted(&definition_path, Purpose::AgentDefinition).map_err(|error| error.to_string())?;
        Ok(ExternalAgent {
            definition: Arc::new(definition),
            executable,
            directory: directory.to_owned(),
            limiter,
        })
    }

    async fn run(&self, call: Call<'_>, context: &ActionContext) -> ActionOutcome {
        let name = self.definition.name();
        let Ok(_permit) = self.limiter.acquire().await else {
            return ActionOutcome::fail(StatusCode::UnknownError, "the node is shutting down");
        };
        // Checked again on every run, not only at load: a file replaced since (or a directory
        // made writable since) must not run as the daemon's user.
        if let Err(error) = check_trusted(&self.executable, Purpose::ExternalAgent) {
            tracing::warn!(agent = name, %error, "external agent not run: its file is not trusted");
            return ActionOutcome::fail(StatusCode::UnknownError, format!("agent {name} not run: {error}"));
        }
        let document = json!({
            "protocol": PROTOCOL,
            "agent": name,
            "action": call.action,
            "data": call.data,
            "request_id": call.request_id,
            "caller": call.caller,
            "sender": call.sender,
            "identity": context.identity,
        });
        let mut process = command::new(&self.executable);
        process
            .current_dir(&self.directory)
            .env_clear()
            .env("PATH", AGENT_PATH)
            .env("LANG", "C.UTF-8")
            .env("BATON_AGENT", name)
            .env("BATON_ACTION", call.action)
            .env("BATON_IDENTITY", &context.identity);
        let timeout = Duration::from_secs(self.definition.metadata.timeout);
        let input = document.to_string().into_bytes();
        let finished = match command::run(process, &input, timeout, MAX_REPLY_BYTES).await {
            Ok(finished) => finished,
            Err(error @ RunError::TimedOut { .. }) => {
                return ActionOutcome::fail(
                    StatusCode::UnknownError,
                    format!("agent {name}#{}: {error}", call.action),
                );
            }
            Err(error) => {
                return ActionOutcome::fail(StatusCode::UnknownError, format!("agent {name}: {error}"));
            }
        };
        let stderr = stderr_note(&finished.stderr_tail);
        if !finished.status.success() {
            return ActionOutcome::fail(
                StatusCode::UnknownError,
                format!("agent {name}#{} {}{stderr}", call.action, finished.describe_exit()),
            );
        }
        if finished.stdout_truncated {
            return ActionOutcome::fail(
                StatusCode::UnknownError,
                format!(
                    "agent {name}#{} printed more than {MAX_REPLY_BYTES} bytes; its reply was refused{stderr}",
                    call.action
                ),
            );
        }
        match parse_reply(&finished.stdout) {
            Ok(mut outcome) => {
                let Some(action) = self.definition.action(call.action) else {
                    return outcome;
                };
                let undeclared = action.undeclared_outputs(&outcome.data);
                if !undeclared.is_empty() {
                    return ActionOutcome::fail(
                        StatusCode::UnknownError,
                        format!(
                            "agent {name}#{} returned outputs its definition does not declare: {} \
                             (declare them in {DEFINITION_FILE} or stop returning them)",
                            call.action,
                            undeclared.join(", ")
                        ),
                    );
                }
                if outcome.status.is_ok() {
                    action.fill_output_defaults(&mut outcome.data);
                }
                outcome
            }
            Err(reason) => ActionOutcome::fail(
                StatusCode::UnknownError,
                format!("agent {name}#{} did not print a valid reply: {reason}{stderr}", call.action),
            ),
        }
    }
}

impl Agent for ExternalAgent {
    fn definition(&self) -> &Arc<Definition> {
        &self.definition
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.definition.metadata.timeout) + NODE_GRACE
    }

    fn strict_outputs(&self) -> bool {
        true
    }

    fn call<'a>(&'a self, call: Call<'a>, context: &'a ActionContext) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(self.run(call, context))
    }
}

/// Loads every agent directory in `dir`. Returns the agents that loaded and, for the rest, why
/// not (one line each, for the daemon's log).
pub fn load_dir(dir: &Path, limiter: Arc<Semaphore>) -> (Vec<ExternalAgent>, Vec<String>) {
    let mut agents = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            problems.push(format!(
                "agents directory {} does not exist: no external agents (create it or change agents.dir)",
                dir.display()
            ));
            return (agents, problems);
        }
        Err(error) => {
            problems.push(format!("cannot read agents directory {}: {error}", dir.display()));
            return (agents, problems);
        }
    };
    let mut directories: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .filter(|path| {
            !path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with('.'))
        })
        .collect();
    directories.sort();
    for directory in directories {
        match ExternalAgent::load(&directory, limiter.clone()) {
            Ok(agent) => agents.push(agent),
            Err(problem) => {
                problems.push(format!("external agent in {} not loaded: {problem}", directory.display()))
            }
        }
    }
    (agents, problems)
}

/// Turns an agent's standard output into an outcome, or says what is wrong with it.
fn parse_reply(stdout: &[u8]) -> Result<ActionOutcome, String> {
    let text = String::from_utf8_lossy(stdout);
    if text.trim().is_empty() {
        return Err("standard output was empty (print one JSON object such as {\"data\": {}})".to_owned());
    }
    let value: Value = serde_json::from_str(text.trim()).map_err(|error| {
        format!("standard output is not one JSON document ({error}); it begins {:?}", preview(&text))
    })?;
    let Value::Object(mut reply) = value else {
        return Err(format!("standard output is JSON but not an object: {}", preview(&text)));
    };
    let status = match reply.remove("status") {
        None | Some(Value::Null) => StatusCode::Ok,
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|code| u8::try_from(code).ok())
            .and_then(|code| StatusCode::try_from(code).ok())
            .ok_or_else(|| format!("\"status\" is {number}, not a status code from 0 to 5"))?,
        Some(other) => return Err(format!("\"status\" must be a number from 0 to 5, got {other}")),
    };
    let message = match reply.remove("message") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(message)) => message,
        Some(other) => return Err(format!("\"message\" must be a string, got {other}")),
    };
    let data = match reply.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(other) => {
            return Err(format!("\"data\" must be an object, got {}", preview(&other.to_string())));
        }
    };
    if let Some(key) = reply.keys().next() {
        return Err(format!("unknown key \"{key}\" (a reply has only status, message and data)"));
    }
    if !status.is_ok() && message.trim().is_empty() {
        return Ok(ActionOutcome {
            status,
            message: format!("the agent reported status {} without a message", status.code()),
            data,
        });
    }
    Ok(ActionOutcome { status, message, data })
}

fn preview(text: &str) -> String {
    let mut shown: String = text.trim().chars().take(80).collect();
    if text.trim().chars().count() > 80 {
        shown.push('…');
    }
    shown
}

fn stderr_note(tail: &str) -> String {
    let tail = tail.trim();
    if tail.is_empty() { String::new() } else { format!("; stderr: {tail}") }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if metadata.len() > crate::protocol::ddl::MAX_DEFINITION_BYTES as u64 {
        return Err(format!("{} is {} bytes, too large for a definition", path.display(), metadata.len()));
    }
    std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn check_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|error| {
        format!("cannot find the executable {} ({error}); every agent directory needs one", path.display())
    })?;
    if !metadata.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable (chmod +x it)", path.display()));
    }
    // The node runs this file, often as root: anyone who may change it could run anything.
    check_trusted(path, Purpose::ExternalAgent).map_err(|error| error.to_string())
}
