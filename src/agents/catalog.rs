//! The client's view of agent definitions: the built-in ones, plus a local directory.
//!
//! A client checks inputs and summarises outputs with the same definitions the nodes use.
//! Built-in agents' definitions are compiled into the binary. External agents' definitions
//! are read from `definitions_dir` in the client's configuration, laid out like a node's
//! agents directory (`<dir>/<agent>/definition.json`), so an operator can point it at a copy
//! of what is distributed to the nodes. An agent the client has no definition for is still
//! callable: its inputs go out as strings and the nodes check them (`baton doc` can fetch
//! the definition from a node with `rpcutil definition`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::builtin_definitions;
use super::external::DEFINITION_FILE;
use crate::protocol::ddl::Definition;

/// Definitions by agent name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    definitions: BTreeMap<String, Arc<Definition>>,
}

impl Catalog {
    /// The built-in definitions only.
    pub fn builtin() -> Catalog {
        let mut catalog = Catalog::default();
        for definition in builtin_definitions() {
            catalog.definitions.insert(definition.name().to_owned(), definition);
        }
        catalog
    }

    /// The built-in definitions plus those in `dir`. Definitions that do not load are left
    /// out and reported, one line each, for the caller to show as warnings.
    pub fn load(dir: Option<&Path>) -> (Catalog, Vec<String>) {
        let mut catalog = Catalog::builtin();
        let mut problems = Vec::new();
        let Some(dir) = dir else { return (catalog, problems) };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                problems.push(format!("cannot read definitions_dir {}: {error}", dir.display()));
                return (catalog, problems);
            }
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path().join(DEFINITION_FILE))
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for file in files {
            let loaded = std::fs::read(&file)
                .map_err(|error| format!("cannot read {}: {error}", file.display()))
                .and_then(|bytes| {
                    Definition::from_json(&bytes, &file.display().to_string())
                        .map_err(|error| error.to_string())
                });
            match loaded {
                Ok(definition) if catalog.definitions.contains_key(definition.name()) => {
                    problems.push(format!(
                        "{} is ignored: a built-in agent is called \"{}\"",
                        file.display(),
                        definition.name()
                    ))
                }
                Ok(definition) => {
                    catalog.definitions.insert(definition.name().to_owned(), Arc::new(definition));
                }
                Err(problem) => problems.push(problem),
            }
        }
        (catalog, problems)
    }

    pub fn definition(&self, agent: &str) -> Option<&Arc<Definition>> {
        self.definitions.get(agent)
    }

    pub fn insert(&mut self, definition: Arc<Definition>) {
        self.definitions.insert(definition.name().to_owned(), definition);
    }

    /// Every definition, by agent name.
    pub fn definitions(&self) -> impl Iterator<Item = &Arc<Definition>> {
        self.definitions.values()
    }
}
