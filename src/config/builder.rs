//! Declaring a pipeline in code: [`PipelineBuilder`] writes the same document a YAML file
//! would hold and hands it to the same loader, so a built config has the same defaults, the
//! same checks and the same errors (with the same dotted paths) as a file. `validate --print`
//! of a file and [`PipelineBuilder::to_yaml`] of a builder are comparable line by line.
//!
//! ```
//! use stream_kernel::config::PipelineBuilder;
//!
//! let mut registry = stream_kernel::graph::Registry::new();
//! registry.line_source("lines");
//! registry.map("upper", |line: &stream_kernel::adapters::Line| {
//!     stream_kernel::adapters::Line::new(line.bytes.to_ascii_uppercase())
//! });
//! registry.line_sink("write");
//!
//! let config = PipelineBuilder::new("shout")
//!     .nodes(["lines", "upper", "write"])
//!     .input_file("in.txt")
//!     .output_file("out.txt")
//!     .group("read", ["lines"])
//!     .group("work", ["upper"])
//!     .workers(2)
//!     .group("write", ["write"])
//!     .build(&registry)
//!     .expect("a valid pipeline")
//!     .config;
//! assert!(config.is_process_mode());
//! ```

use std::path::Path;

use serde_norway::{Mapping, Value};

use super::{ConfigErrorCode, ConfigPath, ConfigReport, LoadedConfig, NodeCatalog, load_value};

/// A pipeline declared in code (see the module header).
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    root: Value,
    /// Index of the last group added, for [`PipelineBuilder::workers`] and friends.
    last_group: Option<usize>,
    /// `edge(from, to)` pairs, turned into `pipeline.nodes` when built.
    edges: Vec<(String, String)>,
}

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

fn path_value(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

impl PipelineBuilder {
    /// A pipeline of scenario `name` (the name reports and traces show).
    pub fn new(name: &str) -> Self {
        let mut root = Mapping::new();
        root.insert(key("version"), Value::Number(1.into()));
        let mut scenario = Mapping::new();
        scenario.insert(key("name"), key(name));
        root.insert(key("scenario"), Value::Mapping(scenario));
        Self {
            root: Value::Mapping(root),
            last_group: None,
            edges: Vec::new(),
        }
    }

    /// Sets the value at a dotted path (`runtime.journal.interval_seconds`), creating the
    /// mappings on the way: any key of the config file, for what has no method of its own.
    pub fn set(mut self, dotted: &str, value: impl serde::Serialize) -> Self {
        let value = serde_norway::to_value(value).unwrap_or(Value::Null);
        *self.slot(dotted) = value;
        self
    }

    fn slot(&mut self, dotted: &str) -> &mut Value {
        let mut at = &mut self.root;
        for part in dotted.split('.').filter(|p| !p.is_empty()) {
            if !at.is_mapping() {
                *at = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = at else {
                unreachable!("made a mapping just above")
            };
            at = map.entry(key(part)).or_insert(Value::Null);
        }
        at
    }

    /// The pipeline's nodes, in order (`pipeline.nodes`): each node's default edge leads to
    /// the next one.
    pub fn nodes<I, S>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let list: Vec<String> = nodes.into_iter().map(Into::into).collect();
        self.set("pipeline.nodes", list)
    }

    /// An edge from node `from` to node `to`: the pipeline is the chain these edges make (a
    /// node with two successors, or a chain with a gap, is a config error at
    /// `pipeline.nodes`).
    pub fn edge(mut self, from: &str, to: &str) -> Self {
        self.edges.push((from.to_string(), to.to_string()));
        self
    }

    /// Node `node`'s settings (`nodes.<node>`), any serializable value.
    pub fn settings(mut self, node: &str, settings: impl serde::Serialize) -> Self {
        let value = serde_norway::to_value(settings).unwrap_or(Value::Null);
        let nodes = self.slot("nodes");
        if !nodes.is_mapping() {
            *nodes = Value::Mapping(Mapping::new());
        }
        if let Value::Mapping(map) = nodes {
            map.insert(key(node), value);
        }
        self
    }

    /// Lines come from the file (or FIFO, or device) at `path`.
    pub fn input_file(self, path: impl AsRef<Path>) -> Self {
        let mut source = Mapping::new();
        source.insert(key("kind"), key("file"));
        source.insert(key("path"), path_value(path.as_ref()));
        self.set("adapters.source", Value::Mapping(source))
    }

    /// Lines come from stdin.
    pub fn input_stdin(self) -> Self {
        self.set("adapters.source.kind", "stdin")
    }

    /// Lines come from the program's generator (`lines` of them, from `seed`).
    pub fn input_generated(self, lines: u64, seed: u64) -> Self {
        self.set("adapters.source.kind", "generator")
            .set("adapters.source.lines", lines)
            .set("adapters.source.seed", seed)
    }

    /// The longest input line kept.
    pub fn max_line_bytes(self, bytes: u64) -> Self {
        self.set("adapters.source.max_line_bytes", bytes)
    }

    /// The sink writes the file at `path`.
    pub fn output_file(self, path: impl AsRef<Path>) -> Self {
        let mut sink = Mapping::new();
        sink.insert(key("kind"), key("file"));
        sink.insert(key("path"), path_value(path.as_ref()));
        self.set("adapters.sink", Value::Mapping(sink))
    }

    /// The sink writes stdout.
    pub fn output_stdout(self) -> Self {
        self.set(
            "adapters.sink",
            serde_norway::Mapping::from_iter([(key("kind"), key("stdout"))]),
        )
    }

    /// Records that cannot be processed go to the file at `path`.
    pub fn dead_letters(self, path: impl AsRef<Path>) -> Self {
        let mut file = Mapping::new();
        file.insert(key("kind"), key("file"));
        file.insert(key("path"), path_value(path.as_ref()));
        self.set("adapters.dead_letter", Value::Mapping(file))
    }

    /// Adds process group `name` running `nodes` (consecutive in the pipeline): the pipeline
    /// runs in supervised worker processes. Group settings that follow (`workers`,
    /// `runner_profile`, `partition`...) apply to this group.
    pub fn group<I, S>(mut self, name: &str, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut group = Mapping::new();
        group.insert(key("name"), key(name));
        group.insert(
            key("nodes"),
            serde_norway::to_value(nodes).unwrap_or(Value::Null),
        );
        let groups = self.slot("runtime.platform.process_groups");
        if !groups.is_sequence() {
            *groups = Value::Sequence(Vec::new());
        }
        let index = match groups {
            Value::Sequence(list) => {
                list.push(Value::Mapping(group));
                list.len() - 1
            }
            _ => 0,
        };
        self.last_group = Some(index);
        self.set("runtime.platform.bootstrap.mode", "process_supervisor")
    }

    /// Sets `key` of the group added last (a no-op before the first group).
    pub fn group_setting(mut self, setting: &str, value: impl serde::Serialize) -> Self {
        let Some(index) = self.last_group else {
            return self;
        };
        let value = serde_norway::to_value(value).unwrap_or(Value::Null);
        if let Value::Sequence(groups) = self.slot("runtime.platform.process_groups")
            && let Some(Value::Mapping(group)) = groups.get_mut(index)
        {
            group.insert(key(setting), value);
        }
        self
    }

    /// The group added last runs `workers` worker processes.
    pub fn workers(self, workers: u32) -> Self {
        self.group_setting("workers", workers)
    }

    /// The group added last waits for records as `profile` says (`balanced`, `latency`,
    /// `efficiency`).
    pub fn runner_profile(self, profile: &str) -> Self {
        self.group_setting("runner_profile", profile)
    }

    /// Runs everything in this one process (the default): no groups, no workers.
    pub fn inline(mut self) -> Self {
        self.last_group = None;
        if let Value::Mapping(root) = &mut self.root
            && let Some(Value::Mapping(runtime)) = root.get_mut(key("runtime"))
            && let Some(Value::Mapping(platform)) = runtime.get_mut(key("platform"))
        {
            platform.remove(key("process_groups"));
        }
        self.set("runtime.platform.bootstrap.mode", "inline")
    }

    /// Bytes of each ring between groups (a power of two).
    pub fn ring_bytes(self, bytes: u64) -> Self {
        self.set("runtime.platform.execution_ipc.ring_bytes", bytes)
    }

    /// The document as YAML (what a config file with the same content would say).
    pub fn to_yaml(&self) -> String {
        let mut built = self.clone();
        if let Err(report) = built.apply_edges() {
            return format!("# {report}");
        }
        serde_norway::to_string(&built.root).unwrap_or_default()
    }

    /// Checks the pipeline against `catalog` (a node registry) and returns the validated
    /// config with every default filled in, or every problem, each at its dotted path.
    pub fn build(mut self, catalog: &dyn NodeCatalog) -> Result<LoadedConfig, ConfigReport> {
        self.apply_edges()?;
        load_value(&self.root, catalog)
    }

    /// Turns the `edge` pairs into `pipeline.nodes`.
    fn apply_edges(&mut self) -> Result<(), ConfigReport> {
        if self.edges.is_empty() {
            return Ok(());
        }
        let chain = chain_of(&self.edges).map_err(|found| ConfigReport {
            errors: vec![super::ConfigError::new(
                ConfigPath::parse("pipeline.nodes"),
                ConfigErrorCode::Invalid,
                "edges that make one chain (each node one successor at most, no gap, no cycle)",
                found,
            )],
            warnings: Vec::new(),
        })?;
        *self.slot("pipeline.nodes") = serde_norway::to_value(chain).unwrap_or(Value::Null);
        Ok(())
    }
}

/// The chain `edges` make, from its one start to its one end.
fn chain_of(edges: &[(String, String)]) -> Result<Vec<String>, String> {
    let successor = |node: &str| -> Result<Option<&str>, String> {
        let next: Vec<&str> = edges
            .iter()
            .filter(|(from, _)| from == node)
            .map(|(_, to)| to.as_str())
            .collect();
        match next.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            many => Err(format!("`{node}` leads to {}", many.join(" and "))),
        }
    };
    let mut starts: Vec<&str> = edges
        .iter()
        .map(|(from, _)| from.as_str())
        .filter(|from| !edges.iter().any(|(_, to)| to == from))
        .collect();
    starts.dedup();
    let [start] = starts.as_slice() else {
        return Err(format!("{} chain starts", starts.len()));
    };
    let mut chain = vec![start.to_string()];
    let mut at = *start;
    while let Some(next) = successor(at)? {
        if chain.iter().any(|n| n == next) {
            return Err(format!("a cycle through `{next}`"));
        }
        chain.push(next.to_string());
        at = next;
    }
    let linked = chain.len() - 1;
    if linked != edges.len() {
        return Err(format!(
            "{} edges, {linked} of them in one chain",
            edges.len()
        ));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_make_the_chain_or_say_why_not() {
        let e = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            chain_of(&[e("b", "c"), e("a", "b")]).unwrap(),
            ["a", "b", "c"]
        );
        assert!(
            chain_of(&[e("a", "b"), e("a", "c")])
                .unwrap_err()
                .contains("leads to")
        );
        assert!(
            chain_of(&[e("a", "b"), e("c", "d")])
                .unwrap_err()
                .contains("2 chain starts")
        );
    }
}
