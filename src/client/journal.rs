//! A rollout's saved state, so that a stopped or killed rollout can be resumed.
//!
//! Every tracked rollout (one with batches, a canary, a check or `--max-failures`) gets an id
//! and a file `$XDG_STATE_HOME/baton/rollouts/<id>.json` holding what was asked (as typed, so
//! that it is prepared again exactly like the first time), the order of the targets and every
//! node's [`NodeState`]. The file is rewritten by writing a new file and renaming it over the
//! old one, so a client killed at any moment leaves a complete record behind; between two
//! rewrites, each node's change of state is appended as one line to `<id>.json.log` beside it
//! (rewriting a 10,000-node record for every reply took 1.5 ms a node, 14.5 s for the
//! rollout), and reading the record replays those lines. A node is `sent` before its request
//! is published, and `ok` only once its reply (and its check) said so. Resuming sends to every
//! node that is not `ok`, in the saved order, so no node that succeeded is sent the action
//! twice.
//!
//! The file is the first source. A rollout run with `--events` also leaves its events on the
//! broker, where they are retained (`client::events`): another machine without the file
//! rebuilds the same record from them, and a resume there saves it ([`Journal::unsaved`]).
//! Whoever runs a rollout holds its locks: a file lock on `<id>.lock` beside the record on
//! this machine ([`Journal::lock`]), and an exclusive queue on the broker
//! ([`Client::lock_rollout`]), so two runs of one rollout never send at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rollout::{NodeState, RolloutOutcome, nodes_in};
use super::{Client, ClientError, Event};
use crate::broker::{BrokerError, Subscription};
use crate::protocol::filter::FilterSpec;
use crate::protocol::now_ms;

/// What was asked, as typed on the command line; resuming prepares it again from this.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutRequest {
    pub agent: String,
    pub action: String,
    /// Input name and text, in the order given.
    pub inputs: Vec<(String, String)>,
    pub filter: FilterSpec,
    pub canary: Option<usize>,
    /// `--batch` as typed (`5`, `20%`).
    pub batch: Option<String>,
    pub batch_sleep_secs: Option<f64>,
    /// `--max-failures` as typed.
    pub max_failures: Option<String>,
    /// `--check` as typed.
    pub check: Option<String>,
    pub check_wait_secs: Option<f64>,
    pub check_retries: Option<u32>,
    pub timeout_secs: Option<f64>,
    /// `--events`: the rollout's events go to `C.events` too.
    #[serde(default)]
    pub events: bool,
}

/// Where a rollout as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Started, and not known to have ended: running now, or its client was killed.
    Running,
    /// Ended early at `--max-failures`, with nodes left.
    Stopped,
    /// Every node was sent the action; some may have failed.
    Finished,
}

impl RolloutStatus {
    pub fn name(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::Stopped => "stopped",
            RolloutStatus::Finished => "finished",
        }
    }
}

/// What a rollout's `started` event carries: everything a machine without its record needs to
/// rebuild it and resume it (the request as typed, the order, this run's nodes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStart {
    pub rollout_id: Uuid,
    pub collective: String,
    /// 1, plus one per resume.
    pub run: u32,
    pub request: RolloutRequest,
    /// Every target, in rollout order.
    pub order: Vec<String>,
    /// The nodes this run sends to, in order: every node not yet `ok`.
    pub nodes: Vec<String>,
    pub created_ms: u64,
}

/// The saved state of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub rollout_id: Uuid,
    pub collective: String,
    pub request: RolloutRequest,
    /// The targets in rollout order.
    pub order: Vec<String>,
    pub nodes: BTreeMap<String, NodeState>,
    pub status: RolloutStatus,
    /// How many times it was started: 1, plus one per resume.
    pub runs: u32,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl RolloutRecord {
    /// The nodes a resume sends to: every node not known to have succeeded, in rollout order.
    pub fn remaining(&self) -> Vec<String> {
        self.order.iter().filter(|node| self.nodes.get(*node) != Some(&NodeState::Ok)).cloned().collect()
    }

    /// The nodes in `state`, sorted.
    pub fn nodes_in(&self, state: NodeState) -> Vec<String> {
        nodes_in(&self.nodes, state)
    }

    /// The `started` event of this run, sending to `nodes`.
    pub fn start(&self, nodes: &[String]) -> RolloutStart {
        RolloutStart {
            rollout_id: self.rollout_id,
            collective: self.collective.clone(),
            run: self.runs,
            request: self.request.clone(),
            order: self.order.clone(),
            nodes: nodes.to_vec(),
            created_ms: self.created_ms,
        }
    }

    /// The record as a `started` event says it stands: its run's nodes pending, and every
    /// other node `ok` (a run sends to every node that is not; earlier runs' events may be
    /// gone from the broker).
    pub fn from_start(start: RolloutStart) -> RolloutRecord {
        let nodes = start
            .order
            .iter()
            .map(|node| {
                let state = if start.nodes.contains(node) { NodeState::Pending } else { NodeState::Ok };
                (node.clone(), state)
            })
            .collect();
        RolloutRecord {
            rollout_id: start.rollout_id,
            collective: start.collective,
            request: start.request,
            order: start.order,
            nodes,
            status: RolloutStatus::Running,
            runs: start.run,
            created_ms: start.created_ms,
            updated_ms: now_ms(),
        }
    }

    /// Takes in a later run's `started` event: its nodes go back to pending, and the rollout
    /// is running again (what [`Journal::resume`] did on the machine that ran it).
    pub fn restart(&mut self, start: &RolloutStart) {
        for node in &start.nodes {
            self.nodes.insert(node.clone(), NodeState::Pending);
        }
        self.runs = start.run;
        self.status = RolloutStatus::Running;
    }
}

/// Parses a rollout id as typed.
pub fn parse_id(id: &str) -> Result<Uuid, ClientError> {
    Uuid::parse_str(id).map_err(|_| {
        ClientError::Usage(format!("{id:?} is not a rollout id (a UUID, as baton printed when it started)"))
    })
}

/// A rollout's record and the file it is kept in, saved as the rollout goes.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    record: RolloutRecord,
    /// The open lock file while this process holds the rollout's lock ([`Journal::lock`]).
    lock: Option<std::fs::File>,
    /// The state log `<id>.json.log`, open for appending since the last rewrite.
    log: Option<std::fs::File>,
}

/// One line of the state log: a node's new state, when, and in which run of the rollout (a
/// line of an earlier run, left by a client killed just as a resume rewrote the record, is not
/// replayed over the new run's states).
#[derive(Serialize, Deserialize)]
struct StateLine {
    node: String,
    state: NodeState,
    ms: u64,
    run: u32,
}

/// Where rollouts are recorded: `$XDG_STATE_HOME/baton/rollouts`, or
/// `~/.local/state/baton/rollouts`.
pub fn rollouts_dir() -> Option<PathBuf> {
    super::state_home().map(|dir| dir.join("rollouts"))
}

impl Journal {
    /// Records a new rollout of `request` to `order` in `dir`, and saves it.
    pub fn create(
        dir: &Path,
        collective: &str,
        request: RolloutRequest,
        order: &[String],
    ) -> Result<Journal, ClientError> {
        let now = now_ms();
        let record = RolloutRecord {
            rollout_id: Uuid::new_v4(),
            collective: collective.to_owned(),
            request,
            order: order.to_vec(),
            nodes: order.iter().map(|node| (node.clone(), NodeState::Pending)).collect(),
            status: RolloutStatus::Running,
            runs: 1,
            created_ms: now,
            updated_ms: now,
        };
        Journal::adopt(dir, record)
    }

    /// Saves `record` in `dir`, as this machine's record of it.
    fn adopt(dir: &Path, record: RolloutRecord) -> Result<Journal, ClientError> {
        let mut journal = Journal::unsaved(dir, record);
        std::fs::create_dir_all(dir).map_err(|error| journal.io_error(&error))?;
        journal.save()?;
        Ok(journal)
    }

    /// `record` (rebuilt from the broker) as this machine's record of it in `dir`, saved only
    /// once it changes: a resume refused by the rollout's lock leaves nothing behind.
    pub fn unsaved(dir: &Path, record: RolloutRecord) -> Journal {
        Journal { path: dir.join(format!("{}.json", record.rollout_id)), record, lock: None, log: None }
    }

    /// Takes the broker's record of the rollout instead of this one, and saves it, when the
    /// broker's is of a later run (another machine resumed it since this one last did).
    pub fn catch_up(&mut self, remote: RolloutRecord) -> Result<(), ClientError> {
        if remote.rollout_id == self.record.rollout_id && remote.runs > self.record.runs {
            self.record = remote;
            self.save()?;
        }
        Ok(())
    }

    /// Opens the record of rollout `id` in `dir`.
    pub fn open(dir: &Path, id: &str) -> Result<Journal, ClientError> {
        let parsed = parse_id(id)?;
        Journal::find(dir, parsed)?.ok_or_else(|| {
            ClientError::Usage(format!(
                "no rollout {parsed} in {}; rollouts are recorded per user, under $XDG_STATE_HOME/baton/rollouts",
                dir.display()
            ))
        })
    }

    /// The record of rollout `id` in `dir`, or `None` when this machine has none.
    pub fn find(dir: &Path, id: Uuid) -> Result<Option<Journal>, ClientError> {
        use std::io::Read as _;
        use std::os::unix::fs::MetadataExt as _;
        let path = dir.join(format!("{id}.json"));
        let unreadable =
            |error: std::io::Error| ClientError::Usage(format!("cannot read {} ({error})", path.display()));
        // The record and its log as one snapshot: a run may rewrite the record (a new file
        // renamed over it, then the log removed) between the two reads, so read again if the
        // record's file changed meanwhile.
        loop {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(unreadable(error)),
            };
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(unreadable)?;
            let mut record: RolloutRecord = serde_json::from_str(&text).map_err(|error| {
                ClientError::Usage(format!("{} is not a rollout record: {error}", path.display()))
            })?;
            replay_log(&log_path(&path), &mut record)?;
            let read = file.metadata().map_err(unreadable)?.ino();
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() != read => continue,
                _ => return Ok(Some(Journal { path, record, lock: None, log: None })),
            }
        }
    }

    /// Takes the rollout's lock on this machine, held until the journal is dropped (or the
    /// process ends: the kernel releases a dead process's file locks). Refused while another
    /// process holds it.
    pub fn lock(&mut self) -> Result<(), ClientError> {
        use rustix::fs::{FlockOperation, flock};
        let path = self.path.with_extension("lock");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| self.io_error(&error))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| self.io_error(&error))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                self.lock = Some(file);
                // Read again under the lock: a run that ended since it was read may have
                // done some of the nodes.
                if let Some(latest) =
                    Journal::find(self.path.parent().unwrap_or(Path::new(".")), self.record.rollout_id)?
                {
                    self.record = latest.record;
                }
                Ok(())
            }
            Err(rustix::io::Errno::WOULDBLOCK) => Err(ClientError::Usage(format!(
                "rollout {id} is running in another process on this machine ({} is locked); wait for it to end (see it with: baton rollout status {id}), then resume it if nodes remain",
                path.display(),
                id = self.record.rollout_id
            ))),
            Err(error) => Err(self.io_error(&std::io::Error::from(error))),
        }
    }

    pub fn record(&self) -> &RolloutRecord {
        &self.record
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a resume: the remaining nodes go back to pending, and the rollout is running again.
    pub fn resume(&mut self) -> Result<Vec<String>, ClientError> {
        let remaining = self.record.remaining();
        for node in &remaining {
            self.record.nodes.insert(node.clone(), NodeState::Pending);
        }
        self.record.status = RolloutStatus::Running;
        self.record.runs += 1;
        self.save()?;
        Ok(remaining)
    }

    /// Takes in one event of the running rollout, saving the record when a node's state
    /// changed. `sent` is saved once per batch, when its request goes out (every node of the
    /// batch is marked by then), not once per node.
    pub fn observe(&mut self, event: &Event<'_>) -> Result<(), ClientError> {
        match event {
            Event::NodeState { node, state } => {
                self.record.nodes.insert((*node).to_owned(), *state);
                if *state != NodeState::Sent {
                    self.append(node, *state)?;
                }
            }
            Event::Sent { .. } => self.save()?,
            _ => {}
        }
        Ok(())
    }

    /// Records how the run ended and saves it; returns every node's state over the whole
    /// rollout (earlier runs included).
    pub fn finish(&mut self, outcome: &RolloutOutcome) -> Result<BTreeMap<String, NodeState>, ClientError> {
        for (node, state) in &outcome.nodes {
            self.record.nodes.insert(node.clone(), *state);
        }
        self.record.status =
            if outcome.stopped.is_some() { RolloutStatus::Stopped } else { RolloutStatus::Finished };
        self.save()?;
        Ok(self.record.nodes.clone())
    }

    /// Writes the record to a new file and renames it over the old one, so the file on disk is
    /// always one whole record, whenever the client is killed; then removes the state log,
    /// which the record now holds. (Killed between the two, the log's lines of this run replay
    /// states the record already has; those of an earlier run are skipped.)
    fn save(&mut self) -> Result<(), ClientError> {
        self.record.updated_ms = now_ms();
        let text = serde_json::to_string_pretty(&self.record)
            .map_err(|error| ClientError::Usage(error.to_string()))?;
        let partial = self.path.with_extension("json.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &self.path))
            .map_err(|error| self.io_error(&error))?;
        self.log = None;
        match std::fs::remove_file(log_path(&self.path)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(self.io_error(&error)),
        }
    }

    /// Appends one node's new state to the state log, as one write of one whole line: a
    /// client killed mid-write leaves at most a partial last line, which a read skips.
    fn append(&mut self, node: &str, state: NodeState) -> Result<(), ClientError> {
        use std::io::Write as _;
        let ms = now_ms();
        self.record.updated_ms = ms;
        let line = StateLine { node: node.to_owned(), state, ms, run: self.record.runs };
        let mut line = serde_json::to_vec(&line).map_err(|error| ClientError::Usage(error.to_string()))?;
        line.push(b'\n');
        if self.log.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path(&self.path))
                .map_err(|error| self.io_error(&error))?;
            self.log = Some(file);
        }
        let written = self.log.as_mut().map_or(Ok(()), |log| log.write_all(&line));
        if written.is_err() {
            // A line written in part would spoil the next one too: rewrite the whole record
            // instead (which says why, if that fails as well).
            return self.save();
        }
        Ok(())
    }

    fn io_error(&self, error: &std::io::Error) -> ClientError {
        ClientError::Usage(format!(
            "cannot save the rollout's state in {} ({error}); set XDG_STATE_HOME to a writable directory",
            self.path.display()
        ))
    }
}

/// The state log beside a record `<id>.json`: `<id>.json.log`.
fn log_path(record: &Path) -> PathBuf {
    record.with_extension("json.log")
}

/// Applies the state log at `path` (if any) to `record`, line by line, in order. A line that
/// does not parse is the partial last line of a killed client, or damage: it is skipped.
fn replay_log(path: &Path, record: &mut RolloutRecord) -> Result<(), ClientError> {
    // Bytes, not text: a line cut in the middle of a character spoils that line only.
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(ClientError::Usage(format!("cannot read {} ({error})", path.display()))),
    };
    for line in bytes.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()) {
        match serde_json::from_slice::<StateLine>(line) {
            Ok(StateLine { node, state, ms, run }) if run == record.runs => {
                record.nodes.insert(node, state);
                record.updated_ms = record.updated_ms.max(ms);
            }
            Ok(_) => tracing::debug!(path = %path.display(), "state log line of an earlier run skipped"),
            Err(error) => tracing::debug!(%error, path = %path.display(), "state log line skipped"),
        }
    }
    Ok(())
}

/// A rollout's lock on the broker, held until dropped (or the connection ends).
#[derive(Debug)]
pub struct BrokerLock {
    _held: Option<Subscription>,
}

impl Client {
    /// Takes rollout `id`'s lock on the broker: the exclusive queue
    /// `<collective>.reply.rollout-<id>`, which the broker refuses to any other connection
    /// while this one lives, and deletes when it ends (the client killed included). Refused
    /// (a usage error, exit 2) while another process runs the rollout; on a broker without
    /// exclusive queues (ActiveMQ) only this machine's file lock guards the rollout.
    pub async fn lock_rollout(&self, id: Uuid) -> Result<BrokerLock, ClientError> {
        match self.broker.lock(&self.settings.collective, &format!("rollout-{id}")).await {
            Ok(held) => Ok(BrokerLock { _held: Some(held) }),
            Err(BrokerError::LockHeld { queue }) => Err(ClientError::Usage(format!(
                "rollout {id} is running in another process (the broker holds its lock, queue \"{queue}\", for another connection); wait for it to end (see it with: baton rollout status {id}), then resume it if nodes remain"
            ))),
            Err(BrokerError::Unsupported { operation, transport }) => {
                tracing::debug!(%operation, transport, "no lock on the broker: this machine's file lock only");
                Ok(BrokerLock { _held: None })
            }
            Err(error) => Err(error.into()),
        }
    }
}
