//! Building the local pipeline: the nodes this process runs, built from the registry in
//! pipeline order, their links resolved once (a later local stage, another process, or a
//! terminal output), and started source first.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::{ChainEnv, Link, LocalPipeline, Stage};
use crate::config::Config;
use crate::graph::{BuildContext, BuiltNode, Graph, NodeRole, Placement, Registry, Services};
use crate::runtime::resume::{InputTrail, ResumePlan};
use crate::runtime::routes::Routes;
use crate::runtime::summary::NodeStats;

/// Building or starting the local nodes failed; nothing was ingested.
#[derive(Debug, thiserror::Error)]
#[error("node `{node}` failed to start: {message}")]
pub struct StartError {
    pub node: String,
    pub message: String,
}

/// What a local pipeline is built for: its run, where a resumed run resumes, and the counter
/// its source reports consumed input bytes into ([`crate::graph::InputProgress`]).
#[derive(Debug, Clone, Default)]
pub struct PipelineRun {
    /// The run's id (trace ids derive from it).
    pub run_id: u64,
    /// Where a resumed run resumes (empty: a fresh run).
    pub resume: ResumePlan,
    /// Input bytes the source consumed.
    pub input_bytes: Arc<AtomicU64>,
}

/// The routing table as seen from `group`: in process mode every node's group is its chain
/// position; inline, everything is group 0.
fn routes_for(config: &Config, graph: &Graph, group: &str) -> Routes {
    let routes =
        Routes::from_graph(graph).with_cache(config.runtime.platform.routing_cache.clone());
    if !config.is_process_mode() {
        return routes;
    }
    let topology = crate::runtime::topology::Topology::of(config, graph);
    let groups = (0..graph.nodes.len())
        .map(|node| topology.group_of_node(node).map_or(0, |g| g.index))
        .collect();
    let home = topology.group(group).map_or(0, |g| g.index);
    routes.with_groups(groups, home)
}

impl LocalPipeline {
    /// Builds the nodes of `graph` for which `is_local` holds, in pipeline order, and links
    /// them (does not start them).
    pub fn build(
        config: &Config,
        registry: &Registry,
        graph: &Graph,
        placement: &Placement,
        is_local: impl Fn(usize) -> bool,
        run: &PipelineRun,
    ) -> Result<Self, StartError> {
        let (run_id, resume_after) = (run.run_id, run.resume.after);
        let mut services = Services::default();
        let input_bytes = Arc::clone(&run.input_bytes);
        services.get_or_insert_with(|| crate::graph::InputProgress(input_bytes));
        let mut source = None;
        let mut source_name = String::new();
        let mut built = Vec::new();
        let null = serde_norway::Value::Null;
        for (index, node) in graph.nodes.iter().enumerate().filter(|(i, _)| is_local(*i)) {
            let start_error = |message: String| StartError {
                node: node.name.clone(),
                message,
            };
            let factory = registry
                .get(&node.name)
                .ok_or_else(|| start_error("not in the node registry".to_string()))?;
            let mut ctx = BuildContext {
                node: &node.name,
                settings: config.nodes.get(&node.name).unwrap_or(&null),
                config,
                placement,
                services: &mut services,
                resume_after,
                output_lengths: &run.resume.output_lengths,
            };
            match factory
                .build(&mut ctx)
                .map_err(|e| start_error(e.to_string()))?
            {
                BuiltNode::Source(s) if node.role == NodeRole::Source => {
                    source = Some(s);
                    source_name = node.name.clone();
                }
                BuiltNode::Source(_) => {
                    return Err(start_error("a source must be the first node".to_string()));
                }
                BuiltNode::Node(n) => built.push((node.name.clone(), index, n)),
            }
        }
        let routes = routes_for(config, graph, &placement.group);
        let mut local = vec![None; graph.nodes.len()];
        for (position, (_, index, _)) in built.iter().enumerate() {
            local[*index] = Some(position);
        }
        let link_of = |index: usize| match routes.next_of(index) {
            None => Link::Terminal,
            Some(next) => match local.get(next).copied().flatten() {
                Some(position) => Link::Local(position),
                None => Link::Remote(next),
            },
        };
        let stages = built
            .into_iter()
            .map(|(name, index, node)| Stage {
                name,
                index,
                node,
                next: link_of(index),
                stats: NodeStats::default(),
            })
            .collect();
        let source_next = link_of(0);
        Ok(Self {
            source,
            source_name,
            source_next,
            source_stats: NodeStats::default(),
            stages,
            env: ChainEnv::new(
                routes,
                config.runtime.on_node_error,
                local,
                graph.nodes.iter().map(|n| n.name.clone()).collect(),
            ),
            group: placement.group.clone(),
            stats_out: None,
            run_id,
            ends_records: graph.nodes.len().checked_sub(1).is_some_and(&is_local),
            trail: InputTrail::new(
                &run.resume.input_positions,
                crate::text::printable(&crate::runtime::journal::input_identity(config).name)
                    .into_owned(),
            ),
            resume_after,
            journal: None,
            max_output_delay: Duration::from_micros(config.runtime.latency.max_output_delay_us),
        })
    }

    /// Calls every local node's `on_start`, source first.
    pub fn start(&mut self) -> Result<(), StartError> {
        if let Some(source) = self.source.as_mut() {
            source.on_start().map_err(|e| StartError {
                node: self.source_name.clone(),
                message: e.to_string(),
            })?;
        }
        for stage in &mut self.stages {
            stage.node.on_start().map_err(|e| StartError {
                node: stage.name.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The position of local node `index` (graph index), if it runs here.
    pub fn position_of(&self, index: usize) -> Option<usize> {
        self.env.local.get(index).copied().flatten()
    }
}
