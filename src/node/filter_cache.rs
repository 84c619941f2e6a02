//! A bounded cache of compiled filters, keyed by their source text.
//!
//! A broadcast's filter reaches every node, and a fleet sees the same few filters over and
//! over; compiling each one once per node rather than once per request takes regex
//! compilation off the path of almost every request (security review finding 8). The cache is
//! bounded twice: by entries, and by the compile cost of the filters it holds (a bound on the
//! memory their regexes take, see [`Filter::compile_cost`]). When full, the least recently
//! used filter goes. Filters that do not compile are cached too, so a bad filter sent again and
//! again costs one compilation.

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::filter::{Filter, FilterError, FilterSpec};

/// How many filters the cache holds at most.
pub const FILTER_CACHE_ENTRIES: usize = 256;

/// The most compile cost (bytes of regex size limits, see [`Filter::compile_cost`]) the cached
/// filters may add up to.
pub const FILTER_CACHE_COST: usize = 16 * 1024 * 1024;

/// A compiled filter, or why it does not compile.
pub type Compiled = Result<Arc<Filter>, FilterError>;

/// See the module documentation. Not thread-safe by itself; the pipeline wraps it in a mutex.
#[derive(Debug, Default)]
pub struct FilterCache {
    entries: HashMap<FilterSpec, (Compiled, u64)>,
    cost: usize,
    clock: u64,
}

impl FilterCache {
    /// The compiled filter for `spec`, compiling it on a miss.
    pub fn compile(&mut self, spec: &FilterSpec) -> Compiled {
        self.clock += 1;
        if let Some((compiled, last_used)) = self.entries.get_mut(spec) {
            *last_used = self.clock;
            return compiled.clone();
        }
        let compiled = Filter::compile(spec).map(Arc::new);
        let cost = cost_of(&compiled);
        if cost <= FILTER_CACHE_COST {
            while self.entries.len() >= FILTER_CACHE_ENTRIES || self.cost + cost > FILTER_CACHE_COST {
                self.evict_least_recently_used();
            }
            self.cost += cost;
            self.entries.insert(spec.clone(), (compiled.clone(), self.clock));
        }
        compiled
    }

    /// How many filters are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn evict_least_recently_used(&mut self) {
        // A linear scan over at most FILTER_CACHE_ENTRIES entries, only on a miss with a full
        // cache: cheaper than compiling, and no second index to keep in step.
        let oldest =
            self.entries.iter().min_by_key(|(_, (_, last_used))| *last_used).map(|(spec, _)| spec.clone());
        if let Some(spec) = oldest
            && let Some((compiled, _)) = self.entries.remove(&spec)
        {
            self.cost -= cost_of(&compiled);
        }
    }
}

fn cost_of(compiled: &Compiled) -> usize {
    compiled.as_ref().map_or(0, |filter| filter.compile_cost())
}
