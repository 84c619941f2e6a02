//! The `puppet` agent: run the real Puppet agent once, enable and disable it, report its state.
//!
//! Everything goes through the `puppet` command and the files it keeps, whose paths come from
//! `puppet config print` (so `--confdir`/`--vardir` style settings in
//! [`PuppetSettings::extra_args`] move them too):
//!
//! - `agent_disabled_lockfile`: present while Puppet is disabled; holds the reason as JSON
//!   (`{"disabled_message": "..."}`), written by `puppet agent --disable "..."`;
//! - `agent_catalog_run_lockfile`: present while a run is in progress;
//! - `lastrunfile`: `last_run_summary.yaml`, written at the end of every run.
//!
//! `runonce` refuses to start while Puppet is disabled or already running (status 1, saying
//! why), then runs `puppet agent --onetime --no-daemonize`, or `puppet apply MANIFEST` when
//! [`PuppetSettings::manifest`] is set (masterless sites, and tests), with
//! `--detailed-exitcodes` so that "changed something" and "failed" can be told apart.
//!
//! A caller's text never becomes a Puppet option: the disable message and the tags are passed
//! joined to their option (`--disable=MESSAGE`, `--tags=TAGS`), so a value starting with `-`
//! stays a value (as its own argument, `--disable --logdest=/PATH` made Puppet append its log
//! to any file, as root). Tags must also have Puppet's tag syntax, and the message no control
//! characters.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::process::Command;

use super::command::{self, Finished};
use super::{ActionContext, ActionOutcome, Agent, BoxFuture, Call, builtin_definition};
use crate::protocol::ddl::Definition;
use crate::protocol::{StatusCode, now_ms};

/// The most of Puppet's output kept, in bytes.
const MAX_OUTPUT: usize = 512 * 1024;

/// How long the quick `puppet` commands (config print, enable, disable) may take.
const QUICK_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the state files' paths from `puppet config print` are reused. Each print starts
/// Ruby and loads Puppet (seconds on a busy node, and the console asks `status` and
/// `last_run_summary` at once on every refresh); the paths change only when Puppet's own
/// configuration does.
const STATE_FILES_TTL: Duration = Duration::from_secs(60);

/// How the node runs Puppet: the `[agents.puppet]` table of `node.toml`, read by `config`
/// straight into this type (the agent owns its settings; see docs/ARCHITECTURE.md).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PuppetSettings {
    /// The `puppet` executable.
    #[serde(default = "default_puppet_command")]
    pub command: PathBuf,
    /// Arguments added to every `puppet` command, e.g. `["--confdir", "/srv/puppet/etc"]`.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// When set, `runonce` applies this manifest with `puppet apply` instead of asking a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
}

fn default_puppet_command() -> PathBuf {
    PathBuf::from("puppet")
}

impl Default for PuppetSettings {
    fn default() -> Self {
        PuppetSettings { command: default_puppet_command(), extra_args: Vec::new(), manifest: None }
    }
}

/// The built-in `puppet` agent.
pub struct Puppet {
    definition: Arc<Definition>,
    settings: PuppetSettings,
    /// The last `puppet config print`'s answer and when it came. Held across the print, so
    /// that calls arriving together wait for one print (each runs its own after a failure).
    state_files: tokio::sync::Mutex<Option<(Instant, StateFiles)>>,
}

impl Puppet {
    pub fn new(settings: PuppetSettings) -> Puppet {
        Puppet {
            definition: builtin_definition("puppet"),
            settings,
            state_files: tokio::sync::Mutex::new(None),
        }
    }
}

impl Agent for Puppet {
    fn definition(&self) -> &Arc<Definition> {
        &self.definition
    }

    fn call<'a>(&'a self, call: Call<'a>, _context: &'a ActionContext) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(async move {
            let result = match call.action {
                "status" => self.status().await.map(|state| ActionOutcome::ok(state.outputs())),
                "last_run_summary" => self.last_run_summary().await,
                "runonce" => self.runonce(call.data).await,
                "enable" => self.set_enabled(None).await,
                "disable" => {
                    let message =
                        call.data.get("message").and_then(Value::as_str).unwrap_or("disabled by baton");
                    self.disable(message).await
                }
                other => Err(ActionOutcome::fail(
                    StatusCode::UnknownAction,
                    format!("puppet has no action \"{other}\""),
                )),
            };
            match result {
                Ok(outcome) | Err(outcome) => outcome,
            }
        })
    }
}

/// The files Puppet keeps its state in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StateFiles {
    disabled_lock: PathBuf,
    run_lock: PathBuf,
    last_run_summary: PathBuf,
}

/// Puppet's state as `status` reports it.
#[derive(Debug, Clone, PartialEq)]
struct State {
    enabled: bool,
    applying: bool,
    disable_message: String,
    lastrun: u64,
}

impl State {
    fn status(&self) -> &'static str {
        if self.applying {
            "applying"
        } else if !self.enabled {
            "disabled"
        } else {
            "idling"
        }
    }

    fn outputs(&self) -> Map<String, Value> {
        let now = now_ms() / 1000;
        let since = if self.lastrun == 0 { Value::Null } else { json!(now.saturating_sub(self.lastrun)) };
        let message = match (self.status(), self.lastrun) {
            ("disabled", _) => format!("Puppet is disabled: {}", self.disable_message),
            ("applying", _) => "Puppet is applying a catalog".to_owned(),
            (_, 0) => "Puppet is idle and has never run".to_owned(),
            (_, lastrun) => format!("Puppet is idle; last run {} s ago", now.saturating_sub(lastrun)),
        };
        Map::from_iter([
            ("status".to_owned(), json!(self.status())),
            ("enabled".to_owned(), json!(self.enabled)),
            ("applying".to_owned(), json!(self.applying)),
            ("disable_message".to_owned(), json!(self.disable_message)),
            ("lastrun".to_owned(), json!(self.lastrun)),
            ("since_lastrun".to_owned(), since),
            ("message".to_owned(), json!(message)),
        ])
    }
}

impl Puppet {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = command::new(&self.settings.command);
        command.args(args).args(&self.settings.extra_args);
        command
    }

    async fn run(&self, command: Command, timeout: Duration, what: &str) -> Result<Finished, ActionOutcome> {
        command::run(command, b"", timeout, MAX_OUTPUT).await.map_err(|error| {
            ActionOutcome::fail(
                StatusCode::Aborted,
                format!("cannot {what}: {error} (is Puppet installed? apt-get install puppet-agent)"),
            )
        })
    }

    /// Where Puppet keeps its state: asked of `puppet config print` at most once every
    /// [`STATE_FILES_TTL`]; a failed print is not kept.
    async fn state_files(&self) -> Result<StateFiles, ActionOutcome> {
        let mut cached = self.state_files.lock().await;
        if let Some((asked, files)) = cached.as_ref()
            && asked.elapsed() < STATE_FILES_TTL
        {
            return Ok(files.clone());
        }
        let files = self.print_state_files().await?;
        *cached = Some((Instant::now(), files.clone()));
        Ok(files)
    }

    async fn print_state_files(&self) -> Result<StateFiles, ActionOutcome> {
        let command = self.command(&[
            "config",
            "print",
            "--section",
            "agent",
            "agent_disabled_lockfile",
            "agent_catalog_run_lockfile",
            "lastrunfile",
        ]);
        let finished = self.run(command, QUICK_TIMEOUT, "ask Puppet where its state lives").await?;
        if !finished.status.success() {
            return Err(ActionOutcome::fail(
                StatusCode::Aborted,
                format!(
                    "puppet config print {}: {}",
                    finished.describe_exit(),
                    super::service::last_lines(&finished)
                ),
            ));
        }
        let settings: std::collections::BTreeMap<String, PathBuf> = finished
            .stdout_text()
            .lines()
            .filter_map(|line| line.split_once(" = "))
            .map(|(key, value)| (key.trim().to_owned(), PathBuf::from(value.trim())))
            .collect();
        let setting = |name: &str| {
            settings.get(name).cloned().ok_or_else(|| {
                ActionOutcome::fail(StatusCode::Aborted, format!("puppet config print did not report {name}"))
            })
        };
        Ok(StateFiles {
            disabled_lock: setting("agent_disabled_lockfile")?,
            run_lock: setting("agent_catalog_run_lockfile")?,
            last_run_summary: setting("lastrunfile")?,
        })
    }

    async fn status(&self) -> Result<State, ActionOutcome> {
        let files = self.state_files().await?;
        let disabled = std::fs::read_to_string(&files.disabled_lock).ok();
        let disable_message = disabled
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|lock| lock.get("disabled_message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let summary = read_summary(&files.last_run_summary);
        Ok(State {
            enabled: disabled.is_none(),
            applying: files.run_lock.exists(),
            disable_message,
            lastrun: summary
                .as_ref()
                .and_then(|summary| number_at(summary, &["time", "last_run"]))
                .unwrap_or(0.0) as u64,
        })
    }

    async fn last_run_summary(&self) -> Result<ActionOutcome, ActionOutcome> {
        let files = self.state_files().await?;
        let Some(summary) = read_summary(&files.last_run_summary) else {
            return Err(ActionOutcome::fail(
                StatusCode::Aborted,
                format!(
                    "Puppet has no last run summary at {} (it has not run yet)",
                    files.last_run_summary.display()
                ),
            ));
        };
        Ok(ActionOutcome::ok(summary_outputs(&summary)))
    }

    async fn runonce(&self, data: &Map<String, Value>) -> Result<ActionOutcome, ActionOutcome> {
        let tags = data.get("tags").and_then(Value::as_str).filter(|tags| !tags.is_empty());
        tags.map(check_tags).transpose()?;
        let state = self.status().await?;
        if !state.enabled {
            return Err(ActionOutcome::fail(
                StatusCode::Aborted,
                format!("Puppet is disabled, not running it: {}", state.disable_message),
            ));
        }
        if state.applying {
            return Err(ActionOutcome::fail(
                StatusCode::Aborted,
                "a Puppet run is already in progress; try again later",
            ));
        }
        let mut args: Vec<String> = match &self.settings.manifest {
            Some(manifest) => {
                vec!["apply".into(), "--detailed-exitcodes".into(), manifest.display().to_string()]
            }
            None => vec![
                "agent".into(),
                "--onetime".into(),
                "--no-daemonize".into(),
                "--detailed-exitcodes".into(),
            ],
        };
        args.push("--color=false".into());
        if data.get("noop").and_then(Value::as_bool).unwrap_or(false) {
            args.push("--noop".into());
        }
        if let Some(tags) = tags {
            args.push(format!("--tags={tags}"));
        }
        let argument_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let command = self.command(&argument_refs);
        let timeout = Duration::from_secs(self.definition.metadata.timeout);
        let finished = self.run(command, timeout, "run Puppet").await?;
        let code = finished.status.code();
        // --detailed-exitcodes: 0 nothing to do, 2 changes, 4 failures, 6 changes and failures.
        let changed = matches!(code, Some(2 | 6));
        let output = tail_lines(&finished, 20);
        let data = Map::from_iter([
            ("exitcode".to_owned(), json!(code)),
            ("changed".to_owned(), json!(changed)),
            ("output".to_owned(), json!(output)),
        ]);
        match code {
            Some(0 | 2) => Ok(ActionOutcome::ok(data)),
            _ => Err(ActionOutcome::aborted_with(
                format!(
                    "the Puppet run failed ({}): {}",
                    finished.describe_exit(),
                    super::service::last_lines(&finished)
                ),
                data,
            )),
        }
    }

    async fn disable(&self, message: &str) -> Result<ActionOutcome, ActionOutcome> {
        check_message(message)?;
        self.set_enabled(Some(message)).await
    }

    async fn set_enabled(&self, disable_message: Option<&str>) -> Result<ActionOutcome, ActionOutcome> {
        let command = match disable_message {
            Some(message) => self.command(&["agent", &format!("--disable={message}")]),
            None => self.command(&["agent", "--enable"]),
        };
        let what = if disable_message.is_some() { "disable Puppet" } else { "enable Puppet" };
        let finished = self.run(command, QUICK_TIMEOUT, what).await?;
        let state = self.status().await?;
        let data = Map::from_iter([
            ("enabled".to_owned(), json!(state.enabled)),
            ("status".to_owned(), json!(state.status())),
        ]);
        if !finished.status.success() {
            return Err(ActionOutcome::aborted_with(
                format!(
                    "could not {what} ({}): {}",
                    finished.describe_exit(),
                    super::service::last_lines(&finished)
                ),
                data,
            ));
        }
        Ok(ActionOutcome::ok(data))
    }
}

/// Refuses tags that are not Puppet tags: comma-separated, each a letter, digit or `_` followed
/// by letters, digits and `_ : . -` (Puppet's own rule, in ASCII).
fn check_tags(tags: &str) -> Result<(), ActionOutcome> {
    let is_tag = |tag: &str| {
        let mut bytes = tag.bytes();
        matches!(bytes.next(), Some(first) if first.is_ascii_alphanumeric() || first == b'_')
            && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b':' | b'.' | b'-'))
    };
    if tags.split(',').all(is_tag) {
        Ok(())
    } else {
        Err(ActionOutcome::fail(
            StatusCode::InvalidData,
            format!(
                "tags {tags:?} are not Puppet tags: give comma-separated tags, each starting with a letter, digit or _ and holding only letters, digits and _ : . -"
            ),
        ))
    }
}

/// Refuses a disable message with control characters: Puppet writes it into its lock file and
/// `status` shows it to people.
fn check_message(message: &str) -> Result<(), ActionOutcome> {
    if message.chars().any(char::is_control) {
        return Err(ActionOutcome::fail(
            StatusCode::InvalidData,
            format!("the disable message {message:?} holds control characters; give plain text"),
        ));
    }
    Ok(())
}

/// Reads `last_run_summary.yaml`, or `None` when Puppet never ran (or the file is unreadable).
fn read_summary(path: &std::path::Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_yaml_ng::from_str::<Value>(&text).ok()
}

fn number_at(value: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(value, |current, key| current.get(key))?.as_f64()
}

/// The outputs of `last_run_summary`, from the parsed YAML.
fn summary_outputs(summary: &Value) -> Map<String, Value> {
    let integer = |path: &[&str]| json!(number_at(summary, path).unwrap_or(0.0) as u64);
    Map::from_iter([
        ("lastrun".to_owned(), integer(&["time", "last_run"])),
        (
            "config_version".to_owned(),
            summary
                .get("version")
                .and_then(|version| version.get("config"))
                .map_or(json!(""), |config| json!(crate::protocol::ddl::plain_text(config))),
        ),
        ("changed_resources".to_owned(), integer(&["resources", "changed"])),
        ("failed_resources".to_owned(), integer(&["resources", "failed"])),
        ("total_resources".to_owned(), integer(&["resources", "total"])),
        ("total_time".to_owned(), json!(number_at(summary, &["time", "total"]).unwrap_or(0.0))),
        ("events".to_owned(), summary.get("events").cloned().unwrap_or_else(|| json!({}))),
    ])
}

fn tail_lines(finished: &Finished, count: usize) -> String {
    let mut text = finished.stdout_text();
    text.push_str(&finished.stderr_tail);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
