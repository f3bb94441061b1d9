//! Cross-field rules that no single key can check on its own.
//!
//! Node sections are handed to their factories; the pipeline is resolved and type-checked;
//! in `process_supervisor` mode the control block must exist and every node must be placed in
//! exactly one group; nodes sharing a store must share a group; and `workers > 1` is refused
//! wherever splitting a group across processes could change a result.

use std::collections::{BTreeMap, HashMap};

use super::error::{ConfigErrorCode, ConfigPath};
use super::model::Config;
use super::reader::{Diagnostics, closest};
use crate::graph::{Graph, GraphNode, NodeRole, NodeState, Registry};

/// Runs every cross-field rule, normalising node sections in place.
pub fn validate(config: &mut Config, registry: &Registry, diag: &mut Diagnostics) {
    normalise_node_sections(config, registry, diag);
    let graph = Graph::check(config, registry, diag);
    if config.is_process_mode() {
        check_control_block(config, diag);
        check_placement(config, diag);
        if let Some(graph) = &graph {
            check_shared_stores(config, graph, diag);
            check_parallel_groups(config, graph, diag);
        }
    }
    check_readiness_timeout(config, diag);
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

fn check_control_block(config: &Config, diag: &mut Diagnostics) {
    if config.runtime.platform.execution_ipc.control.is_none() {
        diag.error(
            &ConfigPath::parse("runtime.platform.execution_ipc.control"),
            ConfigErrorCode::Required,
            "a control block (transport, bind_host, auth, ...) when bootstrap.mode is process_supervisor",
            "nothing (key missing)",
        );
    }
}

fn groups_path() -> ConfigPath {
    ConfigPath::parse("runtime.platform.process_groups")
}

fn check_placement(config: &Config, diag: &mut Diagnostics) {
    let groups = &config.runtime.platform.process_groups;
    if groups.is_empty() {
        diag.error(
            &groups_path(),
            ConfigErrorCode::Required,
            "at least one process group when bootstrap.mode is process_supervisor",
            "no groups",
        );
        return;
    }
    let mut group_names: HashMap<&str, usize> = HashMap::new();
    for (g, group) in groups.iter().enumerate() {
        if let Some(first) = group_names.insert(&group.name, g) {
            diag.error(
                &groups_path().index(g).key("name"),
                ConfigErrorCode::Duplicate,
                "a group name used once",
                format!("`{}`, also the name of process_groups[{first}]", group.name),
            );
        }
    }
    let mut placed: HashMap<&str, (usize, &str)> = HashMap::new();
    for (g, group) in groups.iter().enumerate() {
        for (k, node) in group.nodes.iter().enumerate() {
            let path = groups_path().index(g).key("nodes").index(k);
            if !config.pipeline.nodes.contains(node) {
                diag.error(
                    &path,
                    ConfigErrorCode::NotInPipeline,
                    "a node of pipeline.nodes",
                    format!("`{node}`"),
                );
                continue;
            }
            if let Some((_, other)) = placed.get(node.as_str()) {
                diag.error(
                    &path,
                    ConfigErrorCode::Duplicate,
                    format!(
                        "each node in exactly one group; `{node}` is already in group `{other}`"
                    ),
                    format!("`{node}` also in group `{}`", group.name),
                );
                continue;
            }
            placed.insert(node, (g, &group.name));
        }
    }
    check_contiguous(config, diag);
    let unplaced: Vec<&str> = config
        .pipeline
        .nodes
        .iter()
        .map(String::as_str)
        .filter(|n| !placed.contains_key(n))
        .collect();
    if !unplaced.is_empty() {
        diag.error(
            &groups_path(),
            ConfigErrorCode::Unplaced,
            "every pipeline node placed in a group",
            format!("unplaced: {}", unplaced.join(", ")),
        );
    }
}

/// Records only move forward through the chain of groups, one ring per pair of neighbours, so
/// each group must hold consecutive pipeline nodes (a group holding nodes 1 and 3 while
/// another holds node 2 would send every record back and forth between processes).
fn check_contiguous(config: &Config, diag: &mut Diagnostics) {
    for (g, group) in config.runtime.platform.process_groups.iter().enumerate() {
        let mut positions: Vec<usize> = group
            .nodes
            .iter()
            .filter_map(|n| config.pipeline.nodes.iter().position(|p| p == n))
            .collect();
        positions.sort_unstable();
        if positions.windows(2).any(|w| w[1] != w[0] + 1) {
            let names: Vec<&str> = positions
                .iter()
                .map(|p| config.pipeline.nodes[*p].as_str())
                .collect();
            diag.error(
                &groups_path().index(g).key("nodes"),
                ConfigErrorCode::GroupNotContiguous,
                "consecutive pipeline nodes in each group (records only move forward from group to group)",
                format!("`{}` holds {}", group.name, names.join(", ")),
            );
        }
    }
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
/// their inbound rings (data-plane.md), so they see the inline order.
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

fn check_readiness_timeout(config: &Config, diag: &mut Diagnostics) {
    let platform = &config.runtime.platform;
    let timeout = platform.readiness.readiness_timeout_seconds;
    for (g, group) in platform.process_groups.iter().enumerate() {
        if timeout < group.start_timeout_seconds {
            diag.warn(
                &ConfigPath::parse("runtime.platform.readiness.readiness_timeout_seconds"),
                format!(
                    "{timeout}s is below process_groups[{g}] (`{}`) start_timeout_seconds {}s; readiness fails first",
                    group.name, group.start_timeout_seconds
                ),
            );
        }
    }
}
