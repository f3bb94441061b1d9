//! The routing table: node names to graph indices, default edges, and input types.
//!
//! Built once from the graph. Default edges are the next node of `pipeline.nodes`; a node may
//! also emit to a node named at run time, which must come later in the pipeline (the graph
//! stays acyclic) and must read the emitted type.

use std::collections::HashMap;

use crate::graph::{Graph, MessageType, NodeError};

#[derive(Debug, Clone)]
pub struct Routes {
    by_name: HashMap<String, usize>,
    names: Vec<String>,
    inputs: Vec<Option<MessageType>>,
    next: Vec<Option<usize>>,
}

impl Routes {
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
        }
    }

    /// The default downstream node of `from`.
    pub fn next_of(&self, from: usize) -> Option<usize> {
        self.next.get(from).copied().flatten()
    }

    pub fn name_of(&self, index: usize) -> &str {
        self.names.get(index).map_or("?", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Resolves an explicit target named by node `from_name` (at index `from`) for a value of
    /// type `ty`; unknown, backward or mistyped targets are typed errors naming both nodes.
    pub fn resolve_named(
        &self,
        from: usize,
        from_name: &str,
        target: &str,
        ty: MessageType,
    ) -> Result<usize, NodeError> {
        let unknown = || NodeError::UnknownTarget {
            node: from_name.to_string(),
            target: target.to_string(),
        };
        let index = *self.by_name.get(target).ok_or_else(unknown)?;
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
