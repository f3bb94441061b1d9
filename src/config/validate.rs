//! Cross-field rules of the config itself, which no single key can check on its own: in
//! `process_supervisor` mode the control block must exist, every pipeline node must be placed
//! in exactly one group and groups hold consecutive nodes; readiness must not expire before a
//! group's start timeout; groups placed on hosts all name one, with a `cross_host` block.
//!
//! Rules that need to know the nodes (their sections, types, state and roles) belong to the
//! [`NodeCatalog`] a program passes to the loader (the graph plane's registry).

use std::collections::HashMap;

use super::error::{ConfigErrorCode, ConfigPath};
use super::model::Config;
use super::reader::Diagnostics;

/// What the config loader needs from the nodes a program knows: each node's section validated
/// and normalised, the pipeline checked as a typed graph, and the placement rules that depend on
/// node facts (shared stores, which groups may run several workers). The node registry
/// implements it; the config plane itself knows no node.
pub trait NodeCatalog {
    /// Checks `config` against the known nodes, normalising node sections in place; every
    /// problem goes to `diag` with its dotted path.
    fn check(&self, config: &mut Config, diag: &mut Diagnostics);
}

/// Runs the catalog's checks and every cross-field rule of the config.
pub fn validate(config: &mut Config, catalog: &dyn NodeCatalog, diag: &mut Diagnostics) {
    catalog.check(config, diag);
    if config.is_process_mode() {
        check_placement(config, diag);
        check_hosts(config, diag);
    }
    check_readiness_timeout(config, diag);
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

/// Placement on hosts is all or nothing: when one group names a host every group must (a
/// group "on the local host" would run on every host), and the edges between hosts need a
/// `cross_host` block.
fn check_hosts(config: &Config, diag: &mut Diagnostics) {
    let platform = &config.runtime.platform;
    let named: Vec<&str> = platform
        .process_groups
        .iter()
        .filter_map(|g| g.host.as_deref())
        .collect();
    if named.is_empty() {
        return;
    }
    for (g, group) in platform.process_groups.iter().enumerate() {
        if group.host.is_none() {
            diag.error(
                &groups_path().index(g).key("host"),
                ConfigErrorCode::Required,
                format!(
                    "a host for every group once one group names a host (hosts named: {})",
                    named.join(", ")
                ),
                "nothing (key missing)",
            );
        }
    }
    if platform.cross_host.is_none() {
        diag.error(
            &ConfigPath::parse("runtime.platform.cross_host"),
            ConfigErrorCode::Required,
            "a cross_host block (transport: nats_jetstream, url, ...) when groups are placed on hosts",
            "nothing (key missing)",
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
