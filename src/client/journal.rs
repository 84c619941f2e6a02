//! A rollout's saved state, so that a stopped or killed rollout can be resumed.
//!
//! Every tracked rollout (one with batches, a canary, a check or `--max-failures`) gets an id
//! and a file `$XDG_STATE_HOME/baton/rollouts/<id>.json` holding what was asked (as typed, so
//! that it is prepared again exactly like the first time), the order of the targets and every
//! node's [`NodeState`]. The file is rewritten as each node's state changes, by writing a new
//! file and renaming it over the old one, so a client killed at any moment leaves the last
//! complete state behind: a node is `sent` before its request is published, and `ok` only once
//! its reply (and its check) said so. Resuming sends to every node that is not `ok`, in the
//! saved order, so no node that succeeded is sent the action twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::rollout::{NodeState, RolloutOutcome, nodes_in};
use super::{ClientError, Event};
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
}

/// A rollout's record and the file it is kept in, saved as the rollout goes.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    record: RolloutRecord,
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
        let mut journal = Journal { path: dir.join(format!("{}.json", record.rollout_id)), record };
        std::fs::create_dir_all(dir).map_err(|error| journal.io_error(&error))?;
        journal.save()?;
        Ok(journal)
    }

    /// Opens the record of rollout `id` in `dir`.
    pub fn open(dir: &Path, id: &str) -> Result<Journal, ClientError> {
        let parsed = Uuid::parse_str(id).map_err(|_| {
            ClientError::Usage(format!(
                "{id:?} is not a rollout id (a UUID, as baton printed when it started)"
            ))
        })?;
        let path = dir.join(format!("{parsed}.json"));
        let text = std::fs::read_to_string(&path).map_err(|error| {
            ClientError::Usage(format!(
                "no rollout {parsed} in {} ({error}); rollouts are recorded per user, under $XDG_STATE_HOME/baton/rollouts",
                dir.display()
            ))
        })?;
        let record = serde_json::from_str(&text).map_err(|error| {
            ClientError::Usage(format!("{} is not a rollout record: {error}", path.display()))
        })?;
        Ok(Journal { path, record })
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
                    self.save()?;
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
    /// always one whole record, whenever the client is killed.
    fn save(&mut self) -> Result<(), ClientError> {
        self.record.updated_ms = now_ms();
        let text = serde_json::to_string_pretty(&self.record)
            .map_err(|error| ClientError::Usage(error.to_string()))?;
        let partial = self.path.with_extension("json.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &self.path))
            .map_err(|error| self.io_error(&error))
    }

    fn io_error(&self, error: &std::io::Error) -> ClientError {
        ClientError::Usage(format!(
            "cannot save the rollout's state in {} ({error}); set XDG_STATE_HOME to a writable directory",
            self.path.display()
        ))
    }
}
