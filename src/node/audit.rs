//! The audit log: one JSON line for every request a node accepts, refuses or drops after
//! reading it, so an operator can answer "who ran what, where, and what happened".
//!
//! Writes go straight to a file opened for appending, one `write` call per line under a mutex,
//! so concurrent requests never interleave their lines and a crash loses at most the line being
//! written. Appending a short line to a local file takes microseconds, so [`AuditLog::write`] is
//! called directly from async code; move it to `spawn_blocking` if the log lives on slow
//! storage. There is no user-space buffer to lose: each line reaches the kernel before `write`
//! returns. Log rotation: rename the file, then have the daemon call [`AuditLog::reopen`] (on
//! SIGHUP), which starts a fresh file at the configured path.
//!
//! The log never creates directories: a missing directory is a configuration mistake worth an
//! error that names it, not a tree silently created with guessed permissions.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::claims::ClaimedRequest;
use crate::protocol::message::{Request, StatusCode};

/// What the node did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The request was verified and answered (whatever the status of the reply).
    Accepted,
    /// Refused without running anything: a bad signature, too old, a replay, malformed.
    /// `reason` says which.
    Refused,
    /// Dropped without a reply for another reason.
    Dropped,
    /// Answered with the outcome of an earlier request with the same `once` key, which ran
    /// the action; nothing ran for this one. `reason` names the earlier request.
    Remembered,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the node decided, RFC 3339 in UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
    pub time: String,
    pub request_id: Uuid,
    /// The client's identity.
    pub sender: String,
    /// Who asked, e.g. `user=alice`.
    pub caller: String,
    pub agent: String,
    pub action: String,
    pub collective: String,
    pub outcome: Outcome,
    /// The status code of the reply, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusCode>,
    /// True when the request fields are only what an unverifiable message claimed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
    /// Why, for anything but a plain success: the status message or the reason for dropping.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl AuditRecord {
    /// A record for `request`, stamped with the current time.
    pub fn for_request(
        request: &Request,
        outcome: Outcome,
        status: Option<StatusCode>,
        reason: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord {
            time: rfc3339_millis(SystemTime::now()),
            request_id: request.id,
            sender: request.sender.clone(),
            caller: request.caller.clone(),
            agent: request.agent.clone(),
            action: request.action.clone(),
            collective: request.collective.clone(),
            outcome,
            status,
            unverified: false,
            reason: reason.into(),
        }
    }

    /// A refusal of a message that could not be verified. The request fields are what the
    /// message claims (empty where it claims nothing readable) and the record says so.
    pub fn unverified(claimed: &ClaimedRequest, reason: impl Into<String>) -> AuditRecord {
        AuditRecord {
            time: rfc3339_millis(SystemTime::now()),
            request_id: claimed.id.unwrap_or_else(Uuid::nil),
            sender: claimed.sender.clone(),
            caller: claimed.caller.clone(),
            agent: claimed.agent.clone(),
            action: claimed.action.clone(),
            collective: claimed.collective.clone(),
            outcome: Outcome::Refused,
            status: None,
            unverified: true,
            reason: reason.into(),
        }
    }
}

/// Why the audit log could not be opened or written. The daemon reports it and carries on:
/// losing an audit line must not stop requests from being answered (nor crash anything).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "cannot open audit log {}: directory {} does not exist (create it, or change audit.file)",
        path.display(), directory.display()
    )]
    MissingDirectory { path: PathBuf, directory: PathBuf },
    #[error("cannot open audit log {}: {source} (check audit.file and its permissions)", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write to audit log {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An append-only JSON-lines audit log. Shareable across tasks (`&self` methods, internally
/// locked).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating if needed, mode 0640) the log at `path` for appending.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        Ok(AuditLog { path: path.to_path_buf(), file: Mutex::new(open_append(path)?) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line. On error nothing partial is claimed to be written; the
    /// caller logs the error and continues.
    pub fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        // Serializing plain strings, a UUID and small enums cannot fail; if it ever did, the
        // error is reported as a write error rather than a panic.
        let mut line = serde_json::to_vec(record).map_err(|error| AuditError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(error),
        })?;
        line.push(b'\n');
        // A panic elsewhere while holding the lock leaves the file itself usable.
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line).map_err(|source| AuditError::Write { path: self.path.clone(), source })
    }

    /// Reopens the file at the configured path (after log rotation moved the old one away).
    /// On error the old file stays in use.
    pub fn reopen(&self) -> Result<(), AuditError> {
        let fresh = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !directory.is_dir() {
        return Err(AuditError::MissingDirectory {
            path: path.to_path_buf(),
            directory: directory.to_path_buf(),
        });
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| AuditError::Open { path: path.to_path_buf(), source })
}

/// `time` as RFC 3339 in UTC with milliseconds. Times before 1970 print as the epoch.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_dates() {
        let check = |seconds: u64, millis: u64, expected: &str| {
            let time = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis);
            assert_eq!(rfc3339_millis(time), expected);
        };
        check(0, 0, "1970-01-01T00:00:00.000Z");
        check(951_782_400, 5, "2000-02-29T00:00:00.005Z");
        check(1_709_251_199, 999, "2024-02-29T23:59:59.999Z");
        check(1_714_564_800, 123, "2024-05-01T12:00:00.123Z");
        check(4_102_444_800, 0, "2100-01-01T00:00:00.000Z");
    }
}
