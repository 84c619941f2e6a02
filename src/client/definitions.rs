//! Definitions that travel: a client without an external agent's definition gets it from a
//! node that has the agent (`rpcutil definition`) and keeps it in a cache, so that typed
//! inputs, aggregates, output labels and the display policy work without copying definition
//! files to every client and console.
//!
//! The cache is `$XDG_CACHE_HOME/baton/definitions` (`~/.cache/baton/definitions`): one file
//! per agent and definition, `<agent>/<hash>.json`, the hash being SHA-256 of the definition as
//! a node sent it, so two versions in a fleet never overwrite each other and the same version
//! fetched twice is one file. The newest file of an agent is used; one older than
//! [`MAX_AGE`] is asked for again first (and still used if no node answers). A local
//! `definitions_dir` and the built-in definitions always win: the cache is consulted only for
//! agents the catalog does not have.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Client, ClientError, RequestSpec, Targets};
use crate::agents::catalog::Catalog;
use crate::config::ClientConfig;
use crate::protocol::ddl::{Definition, is_agent_name};
use crate::protocol::filter::{Filter, FilterSpec};

/// How long a cached definition is used without asking the nodes whether it changed.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// How long the nodes are given to answer once the first of them has (the answers are the same
/// definition, or versions of it; the first valid one is used).
const QUIET_AFTER_FIRST: Duration = Duration::from_millis(300);

/// The definitions cache. See the module doc.
#[derive(Debug, Clone)]
pub struct DefinitionCache {
    dir: PathBuf,
}

/// A definition found in the cache, and whether it is recent enough to use without asking.
#[derive(Debug)]
pub struct Cached {
    pub definition: Definition,
    pub fresh: bool,
}

impl DefinitionCache {
    pub fn new(dir: PathBuf) -> DefinitionCache {
        DefinitionCache { dir }
    }

    /// The user's cache: `$XDG_CACHE_HOME/baton/definitions`, or `~/.cache/baton/definitions`.
    pub fn user() -> Option<DefinitionCache> {
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|value| !value.is_empty()) {
            Some(cache) => PathBuf::from(cache),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
        };
        Some(DefinitionCache::new(base.join("baton/definitions")))
    }

    /// The newest cached definition of `agent` that still loads, if any.
    pub fn cached(&self, agent: &str) -> Option<Cached> {
        if !is_agent_name(agent) {
            return None;
        }
        let entries = std::fs::read_dir(self.dir.join(agent)).ok()?;
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "json"))
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        files.sort();
        files.into_iter().rev().find_map(|(modified, path)| {
            let bytes = std::fs::read(&path).ok()?;
            let definition = Definition::from_json(&bytes, &path.display().to_string()).ok()?;
            // A file named for another agent is not this agent's definition, whatever it says.
            (definition.name() == agent)
                .then(|| Cached { definition, fresh: modified.elapsed().is_ok_and(|age| age < MAX_AGE) })
        })
    }

    /// Stores the definition `document` (as a node sent it) under its agent and hash; storing
    /// it again marks it as just fetched. Returns the file.
    pub fn store(&self, definition: &Definition, document: &[u8]) -> std::io::Result<PathBuf> {
        let dir = self.dir.join(definition.name());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", definition_hash(document)));
        // Written whole to a temporary name and renamed, so a reader never sees half a file.
        let partial = dir.join(format!(".{}.partial", uuid::Uuid::new_v4().simple()));
        std::fs::write(&partial, document)?;
        std::fs::rename(&partial, &path)?;
        Ok(path)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The first 16 bytes of SHA-256 of a definition document, in hex: its name in the cache.
pub fn definition_hash(document: &[u8]) -> String {
    Sha256::digest(document).iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

/// Asks the nodes that have `agent` for its definition (`rpcutil definition`); the first valid
/// answer wins. Returns the definition and the document as the node sent it.
pub async fn fetch_connected(
    config: &ClientConfig,
    agent: &str,
) -> Result<Option<(Definition, Vec<u8>)>, ClientError> {
    let client = Client::connect(config).await?;
    let timeout = Duration::from_secs(config.discovery_timeout_secs.max(1));
    let fetched = fetch(&client, agent, timeout).await;
    client.close().await;
    fetched
}

/// As [`fetch_connected`], on a client already connected, waiting at most `timeout`.
pub async fn fetch(
    client: &Client,
    agent: &str,
    timeout: Duration,
) -> Result<Option<(Definition, Vec<u8>)>, ClientError> {
    let filter = Filter::compile(&FilterSpec { agent: vec![agent.to_owned()], ..FilterSpec::default() })?;
    let data = Map::from_iter([("agent".to_owned(), Value::String(agent.to_owned()))]);
    let request = RequestSpec {
        agent: "rpcutil".to_owned(),
        action: "definition".to_owned(),
        data,
        filter,
        once: None,
    };
    let outcome =
        client.call(&request, &Targets::Broadcast, timeout, Some(QUIET_AFTER_FIRST), &mut |_| {}).await?;
    for reply in outcome.replies.iter().filter(|reply| reply.is_ok()) {
        let Some(document) = reply.data.get("definition") else { continue };
        let bytes = document.to_string().into_bytes();
        let origin = format!("node {}", reply.node);
        if let Ok(definition) = Definition::from_json(&bytes, &origin)
            && definition.name() == agent
        {
            return Ok(Some((definition, bytes)));
        }
    }
    Ok(None)
}

/// Where a definition added to a catalog came from, for the caller to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The catalog had it already (built in, or `definitions_dir`), or the name is not valid.
    NotNeeded,
    /// From the cache, recent enough.
    Cached,
    /// Fetched from a node now, and cached in this file (`None`: it could not be cached).
    Fetched(Option<PathBuf>),
    /// No node answered with it; an older cached copy was used.
    StaleCached,
    /// Nowhere to be found: inputs go as text and the nodes check them.
    Missing,
}

/// Adds `agent`'s definition to `catalog` when it lacks one: from `cache` if fresh, else from
/// the nodes by awaiting `fetch` (e.g. [`fetch`] on a client; only awaited when needed), cached
/// for next time, else from a stale cached copy. A broker that cannot be reached is the same as
/// no answer: the request goes out without the definition and the nodes check its inputs.
pub async fn complete_catalog<E: std::fmt::Display>(
    catalog: &mut Catalog,
    cache: Option<&DefinitionCache>,
    agent: &str,
    fetch: impl std::future::Future<Output = Result<Option<(Definition, Vec<u8>)>, E>>,
) -> Completion {
    if catalog.definition(agent).is_some() || !is_agent_name(agent) {
        return Completion::NotNeeded;
    }
    let cached = match cache.and_then(|cache| cache.cached(agent)) {
        Some(Cached { definition, fresh: true }) => {
            catalog.insert(definition.into());
            return Completion::Cached;
        }
        stale_or_none => stale_or_none,
    };
    let fetched = fetch.await;
    let (definition, document) = match fetched {
        Ok(Some(found)) => found,
        Ok(None) => return stale_or_missing(catalog, cached),
        Err(error) => {
            tracing::debug!(%error, agent, "cannot ask the nodes for the definition");
            return stale_or_missing(catalog, cached);
        }
    };
    let stored = cache.and_then(|cache| match cache.store(&definition, &document) {
        Ok(path) => Some(path),
        Err(error) => {
            tracing::warn!(dir = %cache.dir().display(), %error, "cannot cache the definition");
            None
        }
    });
    catalog.insert(definition.into());
    Completion::Fetched(stored)
}

fn stale_or_missing(catalog: &mut Catalog, cached: Option<Cached>) -> Completion {
    match cached {
        Some(Cached { definition, .. }) => {
            catalog.insert(definition.into());
            Completion::StaleCached
        }
        None => Completion::Missing,
    }
}
