//! The config rules that need node facts (graph plane side of the config loader): node sections
//! validated by their factories, the pipeline resolved and type-checked, nodes that share a
//! store placed together, and `workers > 1` refused wherever splitting a group across
//! processes could change a result. [`Registry`] is the loader's [`NodeCatalog`].

use std::collections::{BTreeMap, HashMap};

use super::build::{Graph, GraphNode};
use super::registry::{NodeRole, NodeState, Registry};
use crate::config::reader::{Diagnostics, closest};
use crate::config::{Config, ConfigErrorCode, ConfigPath, NodeCatalog};

fn groups_path() -> ConfigPath {
    ConfigPath::parse("runtime.platform.process_groups")
}

impl NodeCatalog for Registry {
    fn check(&self, config: &mut Config, diag: &mut Diagnostics) {
        normalise_node_sections(config, self, diag);
        let graph = Graph::check(config, self, diag);
        if let (true, Some(graph)) = (config.is_process_mode(), &graph) {
            check_shared_stores(config, graph, diag);
            check_parallel_groups(config, graph, diag);
        }
    }
}

fn normalise_node_sections(config: &mut Config, registry: &Registry, diag: &mut Diagnostics) {
    let sections_path = ConfigPath::parse("nodes");
    let pipeline: Vec<&str> = config.pipeline.nodes.iter().map(String::as_str).collect();
    for name in config.nodes.keys() {
        if !pipeline.contains(&name.as_str()) {
            let expected = match closest(name, &pipeline) {
                Some(hint) => format!("a section for a pipeline node; did you mean `{hint}`?"),
                None => "a section for a node of `pipeline.nodes`".to_string(),
            };
            diag.error(
                &sections_path.key(name),
                ConfigErrorCode::UnknownKey,
                expected,
                format!("`{name}`"),
            );
        }
    }
    let mut normalised = BTreeMap::new();
    for name in &config.pipeline.nodes {
        let Some(factory) = registry.get(name) else {
            continue; // reported by the graph check
        };
        let section = config.nodes.get(name);
        if let Some(value) = factory.validate_settings(section, &sections_path.key(name), diag) {
            normalised.insert(name.clone(), value);
        }
    }
    config.nodes = normalised;
}

fn check_shared_stores(config: &Config, graph: &Graph, diag: &mut Diagnostics) {
    let mut first_holder: HashMap<&str, (&str, &str)> = HashMap::new();
    for node in &graph.nodes {
        let (Some(store), Some(group)) = (node.shared_store, config.group_of(&node.name)) else {
            continue;
        };
        match first_holder.get(store) {
            None => {
                first_holder.insert(store, (&node.name, &group.name));
            }
            Some((other, other_group)) if *other_group != group.name => {
                let g = group_index(config, &group.name);
                diag.error(
                    &groups_path().index(g).key("nodes"),
                    ConfigErrorCode::SharedStoreSplit,
                    format!(
                        "`{}` and `{other}` in one group: they share the per-worker `{store}` store",
                        node.name
                    ),
                    format!("`{}` in `{}`, `{other}` in `{other_group}`", node.name, group.name),
                );
            }
            Some(_) => {}
        }
    }
}

fn group_index(config: &Config, name: &str) -> usize {
    config
        .runtime
        .platform
        .process_groups
        .iter()
        .position(|g| g.name == name)
        .unwrap_or(0)
}

/// `workers > 1` is allowed only where it cannot change a result:
/// - never on a group holding a source or a sink (they are singletons);
/// - never on a group holding a stateful node without a partition key (its state would be
///   silently split across workers);
/// - a group holding partitioned nodes gets each record on the worker chosen by the partition
///   key of the group's first node, so that node must be partitioned and every stateful node
///   of the group must use the same key. Stateless groups take records round robin.
///
/// Order-sensitive nodes downstream of parallel workers are fed by a `seq`-ordered merge of
/// their inbound rings (docs/architecture.md), so they see the inline order.
fn check_parallel_groups(config: &Config, graph: &Graph, diag: &mut Diagnostics) {
    for (g, group) in config.runtime.platform.process_groups.iter().enumerate() {
        if group.workers <= 1 {
            continue;
        }
        let path = groups_path().index(g).key("workers");
        let found = format!("workers: {}", group.workers);
        let mut refuse = |reason: String| {
            diag.error(
                &path,
                ConfigErrorCode::CannotParallelize,
                reason,
                found.clone(),
            )
        };
        let nodes: Vec<&GraphNode> = graph
            .nodes
            .iter()
            .filter(|n| group.nodes.contains(&n.name))
            .collect();
        for node in &nodes {
            match (&node.role, &node.state) {
                (NodeRole::Source | NodeRole::Sink, _) => refuse(format!(
                    "workers: 1 because group `{}` holds the {} `{}`, which runs as a single worker",
                    group.name,
                    if node.role == NodeRole::Source {
                        "source"
                    } else {
                        "sink"
                    },
                    node.name
                )),
                (_, NodeState::Global) => refuse(format!(
                    "workers: 1 because node `{}` is stateful without a partition key; its state cannot be split across workers",
                    node.name
                )),
                _ => {}
            }
        }
        let Some(entry) = nodes.first() else {
            continue;
        };
        let entry_key = match &entry.state {
            NodeState::Partitioned(key) => Some(key.name),
            _ => None,
        };
        for node in nodes.iter().skip(1) {
            let NodeState::Partitioned(key) = &node.state else {
                continue;
            };
            match entry_key {
                None => refuse(format!(
                    "workers: 1 because node `{}` is partitioned by `{}` but the group's first node `{}` has no partition key to route records by",
                    node.name, key.name, entry.name
                )),
                Some(entry_key) if entry_key != key.name => refuse(format!(
                    "workers: 1 because node `{}` is partitioned by `{}` but records are routed by the first node `{}`'s key `{entry_key}`",
                    node.name, key.name, entry.name
                )),
                Some(_) => {}
            }
        }
    }
}
