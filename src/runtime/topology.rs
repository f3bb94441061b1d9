//! The process topology: groups as a chain in pipeline order, and the rings between them.
//!
//! Every group holds consecutive pipeline nodes (the validator insists), so the groups form a
//! chain and records only ever move forward: one ring per (worker of a group, worker of the
//! next group) pair. An envelope whose target is not in the receiving group (a dead letter, a
//! drop marker, an explicit target further on) is forwarded down the chain, which keeps every
//! ring in `seq` order.

use crate::config::Config;
use crate::graph::{Graph, NodeRole};

/// One group's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpan {
    /// The group's name.
    pub name: String,
    /// Position in the chain (the envelope's `source_group`).
    pub index: u16,
    /// Graph indices of its first and last node.
    pub first: usize,
    /// Graph index of its last node.
    pub last: usize,
    /// Workers of the group.
    pub workers: u32,
    /// Whether it holds the source.
    pub holds_source: bool,
    /// Whether it holds the sink.
    pub holds_sink: bool,
}

/// The chain of groups.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The groups in chain order.
    pub groups: Vec<GroupSpan>,
}

impl Topology {
    /// The chain of a validated process-mode config.
    pub fn of(config: &Config, graph: &Graph) -> Self {
        let mut spans: Vec<GroupSpan> = config
            .runtime
            .platform
            .process_groups
            .iter()
            .filter_map(|group| {
                let indices: Vec<usize> = graph
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| group.nodes.contains(&n.name))
                    .map(|(i, _)| i)
                    .collect();
                let holds = |role: NodeRole| indices.iter().any(|i| graph.nodes[*i].role == role);
                Some(GroupSpan {
                    name: group.name.clone(),
                    index: 0,
                    first: *indices.first()?,
                    last: *indices.last()?,
                    workers: group.workers,
                    holds_source: holds(NodeRole::Source),
                    holds_sink: holds(NodeRole::Sink),
                })
            })
            .collect();
        spans.sort_by_key(|s| s.first);
        for (i, span) in spans.iter_mut().enumerate() {
            span.index = i as u16;
        }
        Self { groups: spans }
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupSpan> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The group that holds graph node `node`.
    pub fn group_of_node(&self, node: usize) -> Option<&GroupSpan> {
        self.groups
            .iter()
            .find(|g| (g.first..=g.last).contains(&node))
    }

    /// The group after `name` in the chain.
    pub fn next(&self, name: &str) -> Option<&GroupSpan> {
        let at = self.groups.iter().position(|g| g.name == name)?;
        self.groups.get(at + 1)
    }

    /// The name of the group at chain position `index`.
    pub fn name_of(&self, index: u16) -> Option<&str> {
        self.groups.get(usize::from(index)).map(|g| g.name.as_str())
    }
}
