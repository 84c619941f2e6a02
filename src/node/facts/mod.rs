//! What a node knows about itself: facts (built-in ones merged with fact files), Puppet classes,
//! and the view of both that filters evaluate ([`NodeInventory`]).
//!
//! Facts are structured JSON. Built-in facts follow Facter's names and values (`os.family` is
//! `"Debian"` or `"RedHat"`, `architecture` is `amd64` on Debian), together with the flat legacy
//! names (`osfamily`, `operatingsystem`, ...) so that filters written for MCollective keep
//! matching the same nodes. Fact files (YAML, or JSON when named `*.json`) are merged in order
//! over the built-ins; maps are merged deeply, anything else is replaced by the later file.
//!
//! Reloading is cheap to decide: [`FactSource::stamp`] records each file's size, modification
//! time and inode, and [`FactSource::changed_since`] compares. The daemon polls it (no inotify),
//! and when a reload fails it keeps the facts it has and logs the error, which names the file
//! and the line.
//!
//! The parts: [`builtin`] (what the machine says about itself), [`source`] (fact files, the
//! classes file, change detection), [`classes`] and [`inventory`] (the filter's view).

mod builtin;
pub mod classes;
mod facter;
pub mod inventory;
pub mod source;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::protocol::filter::dotted_fact_in;

pub use classes::Classes;
pub use inventory::NodeInventory;
pub use source::{FactSource, FactsError, Stamp, Warning};

/// A node's facts: a JSON object whose keys are fact names. Shared, not copied, with the
/// agents' view of the node ([`Facts::shared`]): a node keeps one copy of its facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts(Arc<Map<String, Value>>);

impl Facts {
    /// Facts from a JSON object, as they are.
    pub fn from_map(map: Map<String, Value>) -> Facts {
        Facts(Arc::new(map))
    }

    /// The same facts, shared (for `ActionContext::facts`).
    pub fn shared(&self) -> Arc<Map<String, Value>> {
        Arc::clone(&self.0)
    }

    /// The facts this machine reports about itself without any fact file.
    pub fn builtin() -> Facts {
        Facts::from_map(builtin::read())
    }

    /// The facts as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        Arc::unwrap_or_clone(self.0)
    }

    /// A fact by dotted key, as every filter reads it ([`dotted_fact_in`]): a literal key
    /// containing dots wins (`"a.b"`, as fact files sometimes have); otherwise the key walks
    /// into nested objects (`os.family`) and arrays by index (`networking.addresses.0`).
    pub fn lookup(&self, dotted_key: &str) -> Option<&Value> {
        dotted_fact_in(&self.0, dotted_key)
    }

    /// Merges `overlay` over these facts: objects merge key by key, recursively; any other
    /// value in `overlay` replaces what was there.
    pub fn merge(&mut self, overlay: Map<String, Value>) {
        merge_maps(Arc::make_mut(&mut self.0), overlay);
    }
}

fn merge_maps(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                merge_maps(existing, incoming);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
