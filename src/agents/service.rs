//! The `service` agent: start, stop, restart and query services.
//!
//! Where systemd runs (`/run/systemd/system` exists) it goes through `systemctl`; elsewhere
//! through the init scripts, by way of `service` (or `/etc/init.d/NAME` when `service` is not
//! installed). A service's status is what the manager's `status` says: running when it exits 0,
//! stopped otherwise. A failed start, stop or restart answers status 1 with the manager's own
//! error output.
//!
//! Only services are started, stopped and restarted: a name with no unit suffix (which
//! systemctl reads as `NAME.service`) or ending in `.service`. Other unit types are refused
//! (`reboot.target`, `poweroff.target`, sockets, mounts, timers: starting one can stop the
//! machine or pull in anything), and so are the names that mean stopping the machine
//! (`reboot`, `systemd-poweroff`, and the init scripts `halt`, `sendsigs`, ...). `status` may
//! ask about any unit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::process::Command;

use super::command::{self, Finished};
use super::{ActionContext, ActionOutcome, Agent, BoxFuture, Call, builtin_definition, required_string};
use crate::protocol::StatusCode;
use crate::protocol::ddl::Definition;

/// The most of a manager's output kept, in bytes.
const MAX_OUTPUT: usize = 64 * 1024;

/// The built-in `service` agent.
pub struct Service {
    definition: Arc<Definition>,
}

impl Service {
    pub fn new() -> Service {
        Service { definition: builtin_definition("service") }
    }
}

impl Default for Service {
    fn default() -> Self {
        Service::new()
    }
}

/// What starts and stops services on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    Systemd,
    InitScripts,
}

impl Manager {
    fn detect() -> Manager {
        if Path::new("/run/systemd/system").is_dir() { Manager::Systemd } else { Manager::InitScripts }
    }

    fn name(self) -> &'static str {
        match self {
            Manager::Systemd => "systemd",
            Manager::InitScripts => "init scripts",
        }
    }

    fn command(self, service: &str, verb: &str) -> Command {
        match self {
            Manager::Systemd => {
                let mut command = command::new("systemctl");
                if verb == "status" {
                    command.args(["is-active", "--quiet", service]);
                } else {
                    command.args([verb, service]);
                }
                command
            }
            Manager::InitScripts if command::on_path("service") => {
                let mut command = command::new("service");
                command.args([service, verb]);
                command
            }
            Manager::InitScripts => {
                let mut command = command::new(format!("/etc/init.d/{service}"));
                command.arg(verb);
                command
            }
        }
    }
}

impl Agent for Service {
    fn definition(&self) -> &Arc<Definition> {
        &self.definition
    }

    fn call<'a>(&'a self, call: Call<'a>, _context: &'a ActionContext) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(async move {
            match run(call.action, call.data, self.timeout()).await {
                Ok(outcome) | Err(outcome) => outcome,
            }
        })
    }
}

async fn run(
    action: &str,
    data: &Map<String, Value>,
    timeout: Duration,
) -> Result<ActionOutcome, ActionOutcome> {
    let service = required_string(data, "service")?;
    if action != "status" {
        check_service_unit(service)?;
    }
    let manager = Manager::detect();
    // Without systemd every service is an init script; asking `service` about one that does not
    // exist says "unrecognized service", which must not read as "stopped".
    if manager == Manager::InitScripts && !Path::new(&format!("/etc/init.d/{service}")).is_file() {
        return Err(ActionOutcome::aborted_with(
            format!("no such service \"{service}\": there is no /etc/init.d/{service}"),
            outputs("unknown", manager),
        ));
    }
    if action != "status" {
        let finished = execute(manager, service, action, timeout).await?;
        if !finished.status.success() {
            let status = status_of(manager, service, timeout).await;
            return Err(ActionOutcome::aborted_with(
                format!(
                    "could not {action} {service} ({} {}): {}",
                    manager.name(),
                    finished.describe_exit(),
                    last_lines(&finished)
                ),
                outputs(status, manager),
            ));
        }
    }
    let status = status_of(manager, service, timeout).await;
    Ok(ActionOutcome::ok(outputs(status, manager)))
}

async fn execute(
    manager: Manager,
    service: &str,
    verb: &str,
    timeout: Duration,
) -> Result<Finished, ActionOutcome> {
    command::run(manager.command(service, verb), b"", timeout, MAX_OUTPUT).await.map_err(|error| {
        ActionOutcome::fail(StatusCode::Aborted, format!("cannot {verb} {service}: {error}"))
    })
}

async fn status_of(manager: Manager, service: &str, timeout: Duration) -> &'static str {
    match execute(manager, service, "status", timeout).await {
        Ok(finished) if finished.status.success() => "running",
        Ok(_) => "stopped",
        Err(_) => "unknown",
    }
}

fn outputs(status: &str, manager: Manager) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("status".to_owned(), json!(status));
    data.insert("manager".to_owned(), json!(manager.name()));
    data
}

/// systemd's unit types other than `service`: starting any of them is not starting a service.
const OTHER_UNIT_TYPES: &[&str] =
    &["target", "socket", "device", "mount", "automount", "swap", "path", "timer", "slice", "scope"];

/// Services (and init scripts) whose start, stop or restart stops or reboots the machine, or
/// takes it out of service. `systemd-` names are compared without that prefix.
const MACHINE_STATE_NAMES: &[&str] = &[
    "reboot",
    "poweroff",
    "halt",
    "kexec",
    "shutdown",
    "soft-reboot",
    "emergency",
    "rescue",
    "default",
    "ctrl-alt-del",
    "exit",
    "suspend",
    "hibernate",
    "hybrid-sleep",
    "suspend-then-hibernate",
    "sleep",
    "sendsigs",
    "killprocs",
    "umountfs",
    "umountroot",
    "umountnfs.sh",
    "single",
    "rc",
    "rcs",
];

/// Refuses to start, stop or restart anything but a plain service (see the module docs).
fn check_service_unit(unit: &str) -> Result<(), ActionOutcome> {
    let refuse = |why: String| {
        Err(ActionOutcome::fail(
            StatusCode::InvalidData,
            format!(
                "refusing to change {unit:?}: {why}; the service agent starts, stops and restarts services only"
            ),
        ))
    };
    if !unit.starts_with(|first: char| first.is_ascii_alphanumeric()) {
        return refuse("a unit name starts with a letter or digit".to_owned());
    }
    let base = unit.strip_suffix(".service").unwrap_or(unit);
    if let Some((_, suffix)) = base.rsplit_once('.')
        && OTHER_UNIT_TYPES.contains(&suffix)
    {
        return refuse(format!("it is a .{suffix} unit, not a service"));
    }
    let name = base.to_ascii_lowercase();
    let name = name.strip_prefix("systemd-").unwrap_or(&name);
    if MACHINE_STATE_NAMES.contains(&name) {
        return refuse("it stops, reboots or suspends the machine".to_owned());
    }
    Ok(())
}

/// The last few lines of a command's error output (or its standard output when that is empty).
pub(super) fn last_lines(finished: &Finished) -> String {
    let text = if finished.stderr_tail.trim().is_empty() {
        finished.stdout_text()
    } else {
        finished.stderr_tail.clone()
    };
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    let tail = lines[start..].join(" / ");
    if tail.is_empty() { "no output".to_owned() } else { tail }
}
