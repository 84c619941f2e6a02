//! What the console keeps across its own restarts, in one SQLite file: the nodes it has seen
//! (their last registration and when it arrived) and the history of jobs it ran.
//!
//! The connection sits behind a mutex; async code reaches it through [`Store::call`], which
//! runs the work on tokio's blocking threads so a slow disk never stalls the web server.
//! The file is created readable by its owner only (it holds who ran what, with which inputs).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::Registration;

/// How many jobs the history keeps; older ones are deleted as new ones finish.
pub const HISTORY_LIMIT: usize = 1000;

/// Why the database could not be used. Each cause is in the message and is not also a
/// `source()`: the CLI prints the whole chain, which would say it twice (SQLite's errors
/// repeat themselves in their own chain, too).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("console database {path}: {error}")]
    Open { path: String, error: rusqlite::Error },
    #[error("cannot create the console database {path}: {error}")]
    Create { path: String, error: std::io::Error },
    #[error("console database: {0}")]
    Sql(rusqlite::Error),
    #[error("console database: a stored record does not decode: {0}")]
    Decode(serde_json::Error),
    #[error("console database: the query was interrupted: {0}")]
    Interrupted(String),
    #[error(
        "the console database {path} is in use by another baton console; stop that one, or give \
         this one its own --database"
    )]
    InUse { path: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sql(error)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> StoreError {
        StoreError::Decode(error)
    }
}

/// What a job that was running when the console stopped says about itself.
pub const ABANDONED: &str = "the console stopped before this job finished; its replies were not collected";

/// A node as last registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredNode {
    pub registration: Registration,
    /// When the console received the registration (ms since the epoch).
    pub last_seen_ms: u64,
}

/// One job in the history: who asked what of whom, and what each node said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub user: String,
    pub caller: String,
    pub agent: String,
    pub action: String,
    pub inputs: Value,
    pub filter: Value,
    pub targets: Vec<String>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// `running`, `finished`, `failed`, `cancelled` or `abandoned` (the console stopped while
    /// it ran).
    pub state: String,
    /// The per-node outcomes, aggregates and counts, once finished.
    pub outcome: Value,
    /// Sent by the page on its own (a status refresh), not asked for by the user: the history
    /// leaves it out unless asked to show it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automatic: bool,
}

/// The console's database.
pub struct Store {
    connection: Mutex<Connection>,
}

impl Store {
    /// Opens (creating when needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let open_error = |error| StoreError::Open { path: path.display().to_string(), error };
        create_private(path)
            .map_err(|error| StoreError::Create { path: path.display().to_string(), error })?;
        let connection = Connection::open(path).map_err(open_error)?;
        Store::init(connection, &path.display().to_string()).map_err(|error| match error {
            StoreError::Sql(error) => open_error(error),
            other => other,
        })
    }

    /// A database in memory (tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?, ":memory:")
    }

    /// Sets the database up, holding it for this console alone: with an exclusive locking
    /// mode, the write lock taken here is kept until the connection closes, so a second
    /// console on the same file fails at once (and never marks this one's jobs abandoned).
    fn init(connection: Connection, path: &str) -> Result<Store, StoreError> {
        connection.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // Short: another console holds the lock for as long as it runs, waiting is pointless.
        connection.busy_timeout(std::time::Duration::from_millis(200))?;
        let in_use = |error: rusqlite::Error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::InUse { path: path.to_owned() }
            }
            _ => StoreError::Sql(error),
        };
        connection.pragma_update(None, "journal_mode", "WAL").map_err(in_use)?;
        connection.execute_batch("BEGIN IMMEDIATE; COMMIT;").map_err(in_use)?;
        // With WAL, NORMAL is safe against corruption and only risks the last commits on power loss.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS nodes (
                 identity TEXT PRIMARY KEY,
                 registration TEXT NOT NULL,
                 last_seen_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS jobs (
                 id TEXT PRIMARY KEY,
                 started_ms INTEGER NOT NULL,
                 record TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS jobs_by_start ON jobs (started_ms);",
        )?;
        let store = Store { connection: Mutex::new(connection) };
        store.abandon_running()?;
        Ok(store)
    }

    /// Runs `work` on the store from async code, on a blocking thread.
    pub async fn call<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|error| StoreError::Interrupted(error.to_string()))?
    }

    /// Marks the jobs still `running` in the file as `abandoned`: at open, no job runs yet, so
    /// they belong to a console that stopped while they ran.
    fn abandon_running(&self) -> Result<(), StoreError> {
        let running: Vec<JobRecord> = {
            let connection = self.lock();
            let mut statement = connection.prepare("SELECT record FROM jobs")?;
            let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
            let mut running = Vec::new();
            for row in rows {
                let job: JobRecord = serde_json::from_str(&row?)?;
                if job.state == "running" {
                    running.push(job);
                }
            }
            running
        };
        for mut job in running {
            job.state = "abandoned".to_owned();
            job.outcome = serde_json::json!({"error": ABANDONED});
            self.save_job(&job)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // rusqlite leaves the connection usable after a panic elsewhere.
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a node's registration.
    pub fn save_node(&self, node: &StoredNode) -> Result<(), StoreError> {
        self.save_nodes(std::slice::from_ref(node))
    }

    /// Records many nodes' registrations in one transaction (the registry's thousands at
    /// start would otherwise cost one commit each).
    pub fn save_nodes(&self, nodes: &[StoredNode]) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        {
            let mut statement = transaction.prepare_cached(
                "INSERT INTO nodes (identity, registration, last_seen_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (identity) DO UPDATE SET registration = ?2, last_seen_ms = ?3",
            )?;
            for node in nodes {
                let registration = serde_json::to_string(&node.registration)?;
                statement.execute(params![
                    node.registration.identity,
                    registration,
                    node.last_seen_ms as i64
                ])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// Forgets a node.
    pub fn forget_node(&self, identity: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM nodes WHERE identity = ?1", params![identity])?;
        Ok(())
    }

    /// Every node recorded.
    pub fn nodes(&self) -> Result<Vec<StoredNode>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT registration, last_seen_ms FROM nodes ORDER BY identity")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
        let mut nodes = Vec::new();
        for row in rows {
            let (registration, last_seen_ms) = row?;
            nodes.push(StoredNode {
                registration: serde_json::from_str(&registration)?,
                last_seen_ms: u64::try_from(last_seen_ms).unwrap_or_default(),
            });
        }
        Ok(nodes)
    }

    /// Records a job (again, as it progresses), and trims the history to [`HISTORY_LIMIT`].
    pub fn save_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let record = serde_json::to_string(job)?;
        let connection = self.lock();
        connection.execute(
            "INSERT INTO jobs (id, started_ms, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET record = ?3",
            params![job.id, job.started_ms as i64, record],
        )?;
        connection.execute(
            "DELETE FROM jobs WHERE id NOT IN (SELECT id FROM jobs ORDER BY started_ms DESC LIMIT ?1)",
            params![HISTORY_LIMIT as i64],
        )?;
        Ok(())
    }

    /// One job by id.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let record: Option<String> = self
            .lock()
            .query_row("SELECT record FROM jobs WHERE id = ?1", params![id], |row| row.get(0))
            .optional()?;
        Ok(record.map(|record| serde_json::from_str(&record)).transpose()?)
    }

    /// The most recent jobs, newest first, as summaries: the outcome holds only its counts
    /// and error (the whole record is [`Store::job`]).
    /// Automatic jobs (status refreshes) are left out unless `automatic` is true, so that they
    /// cannot push what people asked for off the page.
    pub fn recent_jobs(&self, limit: usize, automatic: bool) -> Result<Vec<JobRecord>, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT record FROM jobs ORDER BY started_ms DESC, rowid DESC")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        let mut jobs = Vec::new();
        for row in rows {
            if jobs.len() == limit {
                break;
            }
            let mut job: JobRecord = serde_json::from_str(&row?)?;
            if job.automatic && !automatic {
                continue;
            }
            job.outcome = summary_of(&job.outcome);
            jobs.push(job);
        }
        Ok(jobs)
    }
}

/// An outcome's counts (`stats`; `counts` in records of earlier versions) and error, without
/// the per-node replies.
fn summary_of(outcome: &Value) -> Value {
    let mut summary = serde_json::Map::new();
    for key in ["stats", "counts", "error"] {
        if let Some(value) = outcome.get(key) {
            summary.insert(key.to_owned(), value.clone());
        }
    }
    if summary.is_empty() { Value::Null } else { Value::Object(summary) }
}

/// Creates the database file, readable and writable by its owner only, unless it exists.
/// (SQLite gives its `-wal` and `-shm` files the same mode.)
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn registration(identity: &str, time_ms: u64) -> Registration {
        Registration {
            identity: identity.to_owned(),
            collectives: vec!["baton".to_owned()],
            facts: json!({"role": "web"}).as_object().cloned().unwrap_or_default(),
            classes: vec!["nginx".to_owned()],
            agents: vec!["rpcutil".to_owned()],
            version: "0.1.0".to_owned(),
            time_ms,
        }
    }

    #[test]
    fn nodes_and_jobs_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/console.sqlite");
        {
            let store = Store::open(&path).expect("open");
            store
                .save_node(&StoredNode { registration: registration("web01", 1), last_seen_ms: 10 })
                .expect("save");
            store
                .save_node(&StoredNode { registration: registration("web01", 2), last_seen_ms: 20 })
                .expect("update");
            store
                .save_node(&StoredNode { registration: registration("db01", 3), last_seen_ms: 30 })
                .expect("save");
            let job = JobRecord {
                id: "j1".to_owned(),
                user: "alice".to_owned(),
                caller: "user=alice".to_owned(),
                agent: "rpcutil".to_owned(),
                action: "ping".to_owned(),
                inputs: json!({}),
                filter: json!({}),
                targets: vec!["web01".to_owned()],
                started_ms: 100,
                finished_ms: None,
                state: "running".to_owned(),
                outcome: Value::Null,
                automatic: false,
            };
            store.save_job(&job).expect("save job");
            store
                .save_job(&JobRecord { state: "finished".to_owned(), finished_ms: Some(200), ..job })
                .expect("update job");
        }
        let store = Store::open(&path).expect("reopen");
        let nodes = store.nodes().expect("nodes");
        assert_eq!(
            nodes.iter().map(|node| node.registration.identity.as_str()).collect::<Vec<_>>(),
            ["db01", "web01"]
        );
        assert_eq!(nodes[1].last_seen_ms, 20);
        assert_eq!(nodes[1].registration.time_ms, 2);
        let job = store.job("j1").expect("query").expect("found");
        assert_eq!((job.state.as_str(), job.finished_ms), ("finished", Some(200)));
        assert_eq!(store.recent_jobs(10, true).expect("recent").len(), 1);
        store.forget_node("db01").expect("forget");
        assert_eq!(store.nodes().expect("nodes").len(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the database is private");
    }

    fn job(id: &str, state: &str, started_ms: u64, outcome: Value) -> JobRecord {
        JobRecord {
            id: id.to_owned(),
            user: "alice".to_owned(),
            caller: "user=alice".to_owned(),
            agent: "rpcutil".to_owned(),
            action: "ping".to_owned(),
            inputs: json!({}),
            filter: json!({}),
            targets: vec!["web01".to_owned()],
            started_ms,
            finished_ms: None,
            state: state.to_owned(),
            outcome,
            automatic: false,
        }
    }

    #[test]
    fn the_history_leaves_automatic_jobs_out_unless_asked() {
        let store = Store::in_memory().expect("store");
        let stats = json!({"stats": {"ok": 1}, "replies": [{"node": "web01"}]});
        for started in 1..=5 {
            let refresh = JobRecord {
                automatic: true,
                ..job(&format!("refresh{started}"), "finished", started, stats.clone())
            };
            store.save_job(&refresh).expect("save");
        }
        store.save_job(&job("asked", "finished", 0, stats.clone())).expect("save");
        let asked = store.recent_jobs(2, false).expect("recent");
        assert_eq!(
            asked.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(),
            ["asked"],
            "five refreshes since"
        );
        assert_eq!(asked[0].outcome, json!({"stats": {"ok": 1}}), "the counts without the replies");
        let all = store.recent_jobs(2, true).expect("recent");
        assert_eq!(all.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), ["refresh5", "refresh4"]);
    }

    #[test]
    fn jobs_running_when_the_console_stopped_are_abandoned_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("console.sqlite");
        let replies = json!({"replies": [{"node": "web01"}], "counts": {"ok": 1}});
        {
            let store = Store::open(&path).expect("open");
            store.save_job(&job("running", "running", 1, Value::Null)).expect("save");
            store.save_job(&job("done", "finished", 2, replies.clone())).expect("save");
        }
        let store = Store::open(&path).expect("reopen");
        let abandoned = store.job("running").expect("query").expect("found");
        assert_eq!(abandoned.state, "abandoned");
        assert_eq!(abandoned.outcome["error"], ABANDONED);
        assert_eq!(store.job("done").expect("query").expect("found").outcome, replies, "the whole record");
        let summaries = store.recent_jobs(10, true).expect("recent");
        assert_eq!(summaries.iter().map(|job| job.id.as_str()).collect::<Vec<_>>(), ["done", "running"]);
        assert_eq!(summaries[0].outcome, json!({"counts": {"ok": 1}}), "the history has no replies");
        assert_eq!(summaries[1].outcome, json!({"error": ABANDONED}));
    }

    #[test]
    fn a_second_console_on_the_same_database_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("console.sqlite");
        let first = Store::open(&path).expect("open");
        first.save_job(&job("inflight", "running", 1, Value::Null)).expect("save");
        let error = Store::open(&path).err().expect("the second open fails");
        assert!(matches!(error, StoreError::InUse { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("in use by another baton console"), "{message}");
        assert!(message.contains(&path.display().to_string()) && message.contains("--database"), "{message}");
        let job = first.job("inflight").expect("query").expect("found");
        assert_eq!(job.state, "running", "the first console's job is untouched");
        first.save_job(&job).expect("the first console still writes");
        drop(first);
        let reopened = Store::open(&path).expect("free again once the first console closes");
        assert_eq!(reopened.job("inflight").expect("query").expect("found").state, "abandoned");
    }

    #[test]
    fn errors_say_their_cause_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("not-a-database");
        std::fs::write(&path, vec![7u8; 4096]).expect("write");
        let error = Store::open(&path).err().expect("not a database");
        let chain = format!("{:#}", anyhow::Error::new(error));
        assert_eq!(chain.matches("not a database").count(), 1, "{chain}");
        let error = crate::console::auth::Users::load(&dir.path().join("no-users")).expect_err("missing");
        let chain = format!("{:#}", anyhow::Error::new(error));
        assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
    }
}
