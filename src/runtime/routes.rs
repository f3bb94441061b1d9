//! The routing table: node names to graph indices and groups, default edges, input types, and
//! the route cache for explicit targets.
//!
//! Default edges are the next node of `pipeline.nodes`; a node may also emit to a node named at
//! run time, which must come later in the pipeline (the graph stays acyclic) and must read the
//! emitted type. Named targets resolve through a [`RouteCache`] keyed by `(target,
//! source_group)`: a placement update (a node moved to another group) bumps its generation and
//! clears it, so a stale placement is never served.

use std::collections::{HashMap, VecDeque};

use crate::config::RoutingCache;
use crate::graph::{Graph, MessageType, NodeError};

/// Where a named node lives: its graph index and its group's chain position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Graph index of the node.
    pub node: usize,
    /// Chain position of the node's group.
    pub group: u16,
}

/// The route cache's counters, as `/metrics` and the run summary show them.
///
/// `hits` counts positive hits only; `negative_hits` counts lookups answered "unknown" from a
/// negative entry; every lookup that went to the table is a `miss`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCacheCounters {
    /// Positive hits.
    pub hits: u64,
    /// Lookups that went to the table.
    pub misses: u64,
    /// Lookups answered "unknown" from a negative entry.
    pub negative_hits: u64,
    /// Positive entries held.
    pub positive_entries: u64,
    /// Negative entries held.
    pub negative_entries: u64,
    /// Times the cache was invalidated (placement changed).
    pub generation: u64,
}

impl RouteCacheCounters {
    /// Adds values given in [`Self::pairs`] order; `generation` takes the maximum.
    pub fn add(&mut self, values: &[u64]) {
        let at = |i: usize| values.get(i).copied().unwrap_or(0);
        self.hits += at(0);
        self.misses += at(1);
        self.negative_hits += at(2);
        self.positive_entries += at(3);
        self.negative_entries += at(4);
        self.generation = self.generation.max(at(5));
    }

    /// `(name, value)` pairs in a fixed order.
    pub fn pairs(&self) -> [(&'static str, u64); 6] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("negative_hits", self.negative_hits),
            ("positive_entries", self.positive_entries),
            ("negative_entries", self.negative_entries),
            ("generation", self.generation),
        ]
    }
}

/// Cache of `(target name, source group) -> placement or unknown`, FIFO-evicted at
/// `max_entries`.
#[derive(Debug, Clone)]
pub struct RouteCache {
    settings: RoutingCache,
    /// Per source group, target name -> cached answer (`None`: no such node).
    entries: HashMap<u16, HashMap<String, Option<Location>>>,
    /// Insertion order, for FIFO eviction.
    order: VecDeque<(u16, String)>,
    counters: RouteCacheCounters,
}

impl RouteCache {
    /// An empty cache with `settings`.
    pub fn new(settings: RoutingCache) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
            order: VecDeque::new(),
            counters: RouteCacheCounters::default(),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> RouteCacheCounters {
        self.counters
    }

    /// The cached answer for `(target, source_group)`, or `lookup`'s (cached on the way).
    fn resolve(
        &mut self,
        target: &str,
        source_group: u16,
        lookup: impl FnOnce(&str) -> Option<Location>,
    ) -> Option<Location> {
        if !self.settings.enabled {
            self.counters.misses += 1;
            return lookup(target);
        }
        if let Some(cached) = self
            .entries
            .get(&source_group)
            .and_then(|by_name| by_name.get(target))
        {
            match cached {
                Some(_) => self.counters.hits += 1,
                None => self.counters.negative_hits += 1,
            }
            return *cached;
        }
        self.counters.misses += 1;
        let answer = lookup(target);
        if answer.is_some() || self.settings.negative_cache {
            self.insert(target, source_group, answer);
        }
        answer
    }

    fn insert(&mut self, target: &str, source_group: u16, answer: Option<Location>) {
        let limit = usize::try_from(self.settings.max_entries).unwrap_or(usize::MAX);
        while self.order.len() >= limit.max(1) {
            let Some((group, name)) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.entries.get_mut(&group).and_then(|m| m.remove(&name)) {
                self.count_entry(evicted, false);
            }
        }
        self.entries
            .entry(source_group)
            .or_default()
            .insert(target.to_string(), answer);
        self.order.push_back((source_group, target.to_string()));
        self.count_entry(answer, true);
    }

    fn count_entry(&mut self, entry: Option<Location>, added: bool) {
        let counter = match entry {
            Some(_) => &mut self.counters.positive_entries,
            None => &mut self.counters.negative_entries,
        };
        *counter = if added {
            *counter + 1
        } else {
            counter.saturating_sub(1)
        };
    }

    /// A placement changed: every cached answer may be stale.
    fn invalidate(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.counters.positive_entries = 0;
        self.counters.negative_entries = 0;
        self.counters.generation += 1;
    }
}

/// The routing table of one process: node names, indices, groups, and the route cache.
#[derive(Debug, Clone)]
pub struct Routes {
    by_name: HashMap<String, usize>,
    names: Vec<String>,
    inputs: Vec<Option<MessageType>>,
    next: Vec<Option<usize>>,
    /// Chain position of each node's group (all 0 inline).
    groups: Vec<u16>,
    /// The group this table's owner runs in (the cache key's `source_group`).
    home_group: u16,
    cache: RouteCache,
}

impl Routes {
    /// The table of `graph` with every node in group 0 and the default cache settings.
    pub fn from_graph(graph: &Graph) -> Self {
        Self {
            by_name: graph
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), i))
                .collect(),
            names: graph.nodes.iter().map(|n| n.name.clone()).collect(),
            inputs: graph.nodes.iter().map(|n| n.input).collect(),
            next: (0..graph.nodes.len()).map(|i| graph.next_of(i)).collect(),
            groups: vec![0; graph.nodes.len()],
            home_group: 0,
            cache: RouteCache::new(RoutingCache::default()),
        }
    }

    /// Uses `settings` for the route cache (starting empty).
    pub fn with_cache(mut self, settings: RoutingCache) -> Self {
        self.cache = RouteCache::new(settings);
        self
    }

    /// Places node `i` in group `groups[i]` and names the group this table serves.
    pub fn with_groups(mut self, groups: Vec<u16>, home_group: u16) -> Self {
        if groups.len() == self.groups.len() {
            self.groups = groups;
        }
        self.home_group = home_group;
        self
    }

    /// Moves `node` to `group`: the route cache is cleared and its generation bumped.
    /// Unknown node names are ignored (nothing was placed, nothing can be stale).
    pub fn update_placement(&mut self, node: &str, group: u16) {
        if let Some(&index) = self.by_name.get(node) {
            self.groups[index] = group;
            self.cache.invalidate();
        }
    }

    /// The route cache's counters.
    pub fn cache_counters(&self) -> RouteCacheCounters {
        self.cache.counters()
    }

    /// The default downstream node of `from`.
    pub fn next_of(&self, from: usize) -> Option<usize> {
        self.next.get(from).copied().flatten()
    }

    /// The name of node `index` (`?` if there is none).
    pub fn name_of(&self, index: usize) -> &str {
        self.names.get(index).map_or("?", String::as_str)
    }

    /// Nodes in the table.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Where `target` lives, through the route cache.
    pub fn location_of(&mut self, target: &str) -> Option<Location> {
        let (by_name, groups) = (&self.by_name, &self.groups);
        self.cache.resolve(target, self.home_group, |name| {
            let node = *by_name.get(name)?;
            Some(Location {
                node,
                group: groups[node],
            })
        })
    }

    /// Resolves an explicit target named by node `from_name` (at index `from`) for a value of
    /// type `ty`; unknown, backward or mistyped targets are typed errors naming both nodes.
    pub fn resolve_named(
        &mut self,
        from: usize,
        from_name: &str,
        target: &str,
        ty: MessageType,
    ) -> Result<usize, NodeError> {
        let unknown = || NodeError::UnknownTarget {
            node: from_name.to_string(),
            target: target.to_string(),
        };
        let index = self.location_of(target).ok_or_else(unknown)?.node;
        if index <= from {
            return Err(unknown());
        }
        match self.inputs[index] {
            Some(expected) if expected == ty => Ok(index),
            Some(expected) => Err(NodeError::TargetTypeMismatch {
                node: from_name.to_string(),
                target: target.to_string(),
                emitted: ty,
                expected,
            }),
            None => Err(unknown()),
        }
    }

    /// Looks a node up by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
}
