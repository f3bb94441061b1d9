//! Graph building: `pipeline.nodes` resolved against the registry, with every edge type-checked.
//!
//! The default edge of a node is the next node in `pipeline.nodes`. A source may only be first
//! (it has no input), a sink ends the chain (it has no output), and on every edge the upstream
//! output type must equal the downstream input type; a mismatch is a config error naming both
//! nodes and both types.

use std::collections::HashSet;

use super::message::MessageType;
use super::registry::{NodeRole, NodeState, Registry};
use crate::config::reader::{Diagnostics, closest};
use crate::config::{Config, ConfigErrorCode, ConfigPath, ConfigReport};

/// One node of a built graph.
#[derive(Debug, Clone)]
pub struct GraphNode {
    /// The node's name.
    pub name: String,
    /// Source, node or sink.
    pub role: NodeRole,
    /// The type it reads (`None` for a source).
    pub input: Option<MessageType>,
    /// The type it emits (`None` for a sink).
    pub output: Option<MessageType>,
    /// Whether and how it keeps state across records.
    pub state: NodeState,
    /// A store it shares with other nodes (they must run in one group).
    pub shared_store: Option<&'static str>,
}

impl GraphNode {
    /// Order-sensitive nodes must see their inputs in `seq` order whatever the worker counts
    /// upstream: stateful nodes, and sinks when `sink_mode: source_seq`.
    pub fn is_order_sensitive(&self, config: &Config) -> bool {
        use crate::config::SinkMode;
        self.state.is_stateful()
            || (self.role == NodeRole::Sink
                && config.runtime.ordering.sink_mode == SinkMode::SourceSeq)
    }
}

/// The pipeline as a typed chain of nodes.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The nodes in pipeline order.
    pub nodes: Vec<GraphNode>,
}

impl Graph {
    /// The graph of an already loaded config, or its problems as a config report (what a
    /// runtime needs before it starts).
    pub fn checked(config: &Config, registry: &Registry) -> Result<Graph, ConfigReport> {
        let mut diag = Diagnostics::default();
        Self::check(config, registry, &mut diag).ok_or(ConfigReport {
            errors: diag.errors,
            warnings: diag.warnings,
        })
    }

    /// Resolves and checks `config.pipeline.nodes`; problems go to `diag`.
    pub fn check(config: &Config, registry: &Registry, diag: &mut Diagnostics) -> Option<Graph> {
        let list_path = ConfigPath::parse("pipeline.nodes");
        let known: Vec<&str> = registry.names().collect();
        let mut seen = HashSet::new();
        let mut nodes = Vec::with_capacity(config.pipeline.nodes.len());
        let mut complete = true;
        for (i, name) in config.pipeline.nodes.iter().enumerate() {
            let path = list_path.index(i);
            if !seen.insert(name.as_str()) {
                diag.error(
                    &path,
                    ConfigErrorCode::Duplicate,
                    "expected each node once in the pipeline",
                    format!("`{name}` a second time"),
                );
                complete = false;
                continue;
            }
            let Some(factory) = registry.get(name) else {
                let expected = match closest(name, &known) {
                    Some(hint) => format!("expected a registered node; did you mean `{hint}`?"),
                    None => format!("expected a registered node ({})", known.join(", ")),
                };
                diag.error(
                    &path,
                    ConfigErrorCode::UnknownNode,
                    expected,
                    format!("`{name}`"),
                );
                complete = false;
                continue;
            };
            nodes.push(GraphNode {
                name: name.clone(),
                role: factory.role,
                input: factory.input,
                output: factory.output,
                state: factory.state_for(config),
                shared_store: factory.shared_store(),
            });
        }
        if !complete {
            return None;
        }
        let graph = Graph { nodes };
        graph.check_edges(&list_path, diag).then_some(graph)
    }

    fn check_edges(&self, list_path: &ConfigPath, diag: &mut Diagnostics) -> bool {
        let before = diag.errors.len();
        for (i, node) in self.nodes.iter().enumerate() {
            let path = list_path.index(i);
            if node.role == NodeRole::Source && i != 0 {
                diag.error(
                    &path,
                    ConfigErrorCode::EdgeTypeMismatch,
                    format!(
                        "a source only at the start of the pipeline (`{}` has no input)",
                        node.name
                    ),
                    format!("source `{}` after `{}`", node.name, self.nodes[i - 1].name),
                );
                continue;
            }
            let Some(prev) = i.checked_sub(1).map(|p| &self.nodes[p]) else {
                continue;
            };
            match (prev.output, node.input) {
                (None, _) => diag.error(
                    &path,
                    ConfigErrorCode::EdgeTypeMismatch,
                    format!("nothing after sink `{}` (a sink has no output)", prev.name),
                    format!("`{}`", node.name),
                ),
                (Some(out), Some(input)) if out != input => diag.error(
                    &path,
                    ConfigErrorCode::EdgeTypeMismatch,
                    format!(
                        "edge `{}` -> `{}`: `{}` emits {out} but `{}` reads {input}",
                        prev.name, node.name, prev.name, node.name
                    ),
                    format!("{out} -> {input}"),
                ),
                _ => {}
            }
        }
        diag.errors.len() == before
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The default downstream node of `index`, if it has one.
    pub fn next_of(&self, index: usize) -> Option<usize> {
        let node = self.nodes.get(index)?;
        (node.output.is_some() && index + 1 < self.nodes.len()).then_some(index + 1)
    }

    /// True when the first node is a source (otherwise records are submitted by a host).
    pub fn has_source(&self) -> bool {
        self.nodes
            .first()
            .is_some_and(|n| n.role == NodeRole::Source)
    }
}
