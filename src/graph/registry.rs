//! The node registry: named factories that validate a node's config section and build it.
//!
//! Supervisor and workers are the same binary with the same registry, so a bootstrap bundle
//! carries node names and config only, never code. A factory knows its node's role, its input
//! and output message types (for edge checks), whether it is stateful and by which partition
//! key, and which per-worker store it shares with other nodes.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_norway::Value as YamlValue;

use super::message::{Message, MessageType, Value};
use super::node::{
    ErasedNode, ErasedSource, Node, NodeError, Nothing, Source, TypedNode, TypedSource,
};
use crate::config::reader::{Diagnostics, Section};
use crate::config::{Config, ConfigPath};

/// What a node does in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// No input; produces records numbered by `seq`.
    Source,
    /// Input and output.
    Transform,
    /// Input only; writes records out (its output type is [`Nothing`]).
    Sink,
}

/// Hashes the partition key of one value.
type KeyFn = dyn Fn(Value<'_>) -> Option<u64> + Send + Sync;

/// A stateful node's partition key: a function of its input.
#[derive(Clone)]
pub struct PartitionKey {
    /// The key's name for messages (`customer_id`).
    pub name: &'static str,
    key_of: Arc<KeyFn>,
}

impl PartitionKey {
    /// A key computed from the node's input `In`.
    pub fn new<In: Message>(name: &'static str, key: fn(&In) -> u64) -> Self {
        Self {
            name,
            key_of: Arc::new(move |value: Value<'_>| value.downcast::<In>().map(key)),
        }
    }

    /// The partition hash of a value for this node (`None` when it is not the node's input
    /// type, which the graph's edge checks rule out).
    pub fn key_of(&self, value: Value<'_>) -> Option<u64> {
        (self.key_of)(value)
    }
}

impl fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionKey({})", self.name)
    }
}

/// Whether and how a node keeps state across records.
#[derive(Debug, Clone)]
pub enum NodeState {
    /// No state across records: any worker may take any record.
    Stateless,
    /// Per-key state: records with the same key must reach the same worker, in `seq` order.
    Partitioned(PartitionKey),
    /// One state for all records: the node cannot be split across workers.
    Global,
}

impl NodeState {
    /// Whether the node keeps state across records.
    pub fn is_stateful(&self) -> bool {
        !matches!(self, Self::Stateless)
    }
}

/// Per-worker services shared by the nodes built in one process (e.g. a window store that
/// `evaluate_policies` reads and `update_windows` writes).
#[derive(Default)]
pub struct Services {
    by_type: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl Services {
    /// The service of type `T`, created by `make` on first use.
    pub fn get_or_insert_with<T: Clone + Send + 'static>(&mut self, make: impl FnOnce() -> T) -> T {
        self.by_type
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(make()))
            .downcast_ref::<T>()
            .cloned()
            .unwrap_or_else(|| unreachable!("services are keyed by their own TypeId"))
    }
}

/// Bytes of input the process's source has consumed, for progress bars and heartbeats: a
/// source that reads bytes adds to it as it reads (`ctx.services.get_or_insert_with(...)`);
/// the runtime seeds it before the nodes are built, so everyone holds the same counter.
#[derive(Debug, Clone, Default)]
pub struct InputProgress(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

/// Where a node is being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Group name, or `inline` in the memory profile.
    pub group: String,
    /// 1-based worker index within the group.
    pub worker_index: u32,
    /// Workers of the group.
    pub workers: u32,
}

impl Placement {
    /// The placement of the inline profile (group `inline`, one worker).
    pub fn inline() -> Self {
        Self {
            group: "inline".to_string(),
            worker_index: 1,
            workers: 1,
        }
    }
}

/// Everything a factory may use to build its node.
pub struct BuildContext<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The node's normalised config section (`Null` when it has none).
    pub settings: &'a YamlValue,
    /// The whole validated config.
    pub config: &'a Config,
    /// Where the node runs.
    pub placement: &'a Placement,
    /// Services shared by the nodes of this process.
    pub services: &'a mut Services,
    /// Input records a resumed run replays without writing them again (`--resume`,
    /// `--skip N`); 0 for a fresh run. A sink of a resumed run keeps its outputs.
    pub resume_after: u64,
    /// A resumed run's output lengths at `resume_after`, as its run journal recorded them, by
    /// `<node>/<what>` (empty without a journal).
    pub output_lengths: &'a BTreeMap<String, u64>,
}

impl BuildContext<'_> {
    /// The node's settings as the type it declared with [`NodeFactory::settings_type`]
    /// (already validated when the config was loaded).
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, NodeError> {
        let section = match self.settings {
            YamlValue::Null => YamlValue::Mapping(Default::default()),
            other => other.clone(),
        };
        serde_norway::from_value(section)
            .map_err(|e| NodeError::failed(format!("settings of node `{}`: {e}", self.node)))
    }

    /// Where this node's output `what` resumes: open it with
    /// [`RecordWriter::open`](crate::files::writer::RecordWriter::open) and this point, and a
    /// resumed run replays, checks and cuts it exactly.
    pub fn resume_point(&self, what: &str) -> crate::files::writer::Resume {
        crate::files::writer::Resume {
            after: self.resume_after,
            expected_len: self
                .output_lengths
                .get(&format!("{}/{what}", self.node))
                .copied(),
        }
    }
}

/// A built node, ready for a runtime.
pub enum BuiltNode {
    /// A source node.
    Source(Box<dyn ErasedSource>),
    /// A node with an input.
    Node(Box<dyn ErasedNode>),
}

type BuildFn = dyn Fn(&mut BuildContext<'_>) -> Result<BuiltNode, NodeError> + Send + Sync;
/// Validates a node's section and returns it normalised (`None`: the node takes no settings).
pub type SettingsFn = fn(Option<&YamlValue>, &ConfigPath, &mut Diagnostics) -> Option<YamlValue>;
/// Decides a node's statefulness from the whole config.
pub type StateFn = fn(&Config) -> NodeState;

/// How to validate, describe and build one named node.
pub struct NodeFactory {
    /// Source, node or sink.
    pub role: NodeRole,
    /// The type the node reads (`None` for a source).
    pub input: Option<MessageType>,
    /// The type the node emits (`None` for a sink).
    pub output: Option<MessageType>,
    settings: SettingsFn,
    state: StateFn,
    shared_store: Option<&'static str>,
    max_record: Option<MaxRecordFn>,
    writes_sink_file: bool,
    build: Arc<BuildFn>,
}

/// A source's largest record's payload, in bytes, under a config (`None`: unbounded or not
/// known).
pub type MaxRecordFn = fn(&Config) -> Option<u64>;

fn no_settings(
    section: Option<&YamlValue>,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) -> Option<YamlValue> {
    if let Some(section) = section {
        // Opening and dropping the section reports every key as unknown.
        drop(Section::open(section, path.clone(), diag));
    }
    None
}

/// [`NodeFactory::settings_type`]: the section deserializes into `T`, and holds no key that
/// `T`, serialized back, does not.
fn typed_settings<T>(
    section: Option<&YamlValue>,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) -> Option<YamlValue>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let given = section
        .cloned()
        .unwrap_or_else(|| YamlValue::Mapping(Default::default()));
    let parsed: T = match serde_norway::from_value(given.clone()) {
        Ok(parsed) => parsed,
        Err(e) => {
            diag.error(
                path,
                crate::config::ConfigErrorCode::Invalid,
                format!("settings of type {}", std::any::type_name::<T>()),
                e.to_string(),
            );
            return None;
        }
    };
    let normalised = serde_norway::to_value(&parsed).ok()?;
    report_unknown_keys(&given, &normalised, path, diag);
    Some(normalised)
}

/// Keys of `given` (recursively, in mappings) that `known` lacks.
fn report_unknown_keys(
    given: &YamlValue,
    known: &YamlValue,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) {
    let (YamlValue::Mapping(given), YamlValue::Mapping(known)) = (given, known) else {
        return;
    };
    let names: Vec<&str> = known.keys().filter_map(YamlValue::as_str).collect();
    for (key, value) in given {
        let Some(name) = key.as_str() else { continue };
        match known.get(key) {
            Some(inner) => report_unknown_keys(value, inner, &path.key(name), diag),
            None => {
                let expected = match crate::config::reader::closest(name, &names) {
                    Some(hint) => format!("unknown key; did you mean `{hint}`?"),
                    None => format!("unknown key; known keys: {}", names.join(", ")),
                };
                diag.error(
                    &path.key(name),
                    crate::config::ConfigErrorCode::UnknownKey,
                    expected,
                    format!("`{name}`"),
                );
            }
        }
    }
}

fn stateless(_: &Config) -> NodeState {
    NodeState::Stateless
}

impl NodeFactory {
    /// Declares how the node's config section is validated and normalised.
    pub fn settings(&mut self, settings: SettingsFn) -> &mut Self {
        self.settings = settings;
        self
    }

    /// Declares the node stateful (or not) as a function of the config.
    pub fn state(&mut self, state: StateFn) -> &mut Self {
        self.state = state;
        self
    }

    /// Declares the node's settings (its section `nodes.<name>`) as a type of the program's
    /// own: the section must deserialize into `T` (with serde; fields with defaults may be
    /// left out), keys `T` does not have are refused with a hint, and every problem is
    /// reported at the node's path. The factory reads them with [`BuildContext::settings`].
    ///
    /// ```
    /// #[derive(serde::Deserialize, serde::Serialize, Default)]
    /// #[serde(default)]
    /// struct Rounds { rounds: u32 }
    ///
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry
    ///     .map("hash", |line: &stream_kernel::adapters::Line| line.clone())
    ///     .settings_type::<Rounds>();
    /// ```
    pub fn settings_type<T>(&mut self) -> &mut Self
    where
        T: serde::de::DeserializeOwned + serde::Serialize + 'static,
    {
        self.settings = typed_settings::<T>;
        self
    }

    /// Declares that this node shares the named per-worker store with other nodes; all of them
    /// must be placed in the same group.
    pub fn shares_store(&mut self, store: &'static str) -> &mut Self {
        self.shared_store = Some(store);
        self
    }

    /// Declares how large the node's records can be under a config (a line source: its line
    /// limit), so that a supervised run's rings are checked to hold them before it starts.
    pub fn max_record(&mut self, max_record: MaxRecordFn) -> &mut Self {
        self.max_record = Some(max_record);
        self
    }

    /// Declares that the node writes the sink adapter's file (`adapters.sink`) record by
    /// record through [`crate::files::writer::RecordWriter`]s and reports them in
    /// [`crate::graph::Node::outputs`]: a run whose last node does keeps a run journal beside
    /// that file, and can be resumed.
    pub fn writes_sink_file(&mut self) -> &mut Self {
        self.writes_sink_file = true;
        self
    }

    /// Whether the node writes the sink adapter's file ([`NodeFactory::writes_sink_file`]).
    pub fn is_sink_file_writer(&self) -> bool {
        self.writes_sink_file
    }

    /// The node's largest record's payload under `config`, if it declares one.
    pub fn max_record_bytes(&self, config: &Config) -> Option<u64> {
        self.max_record.and_then(|f| f(config))
    }

    /// Validates the node's config section and returns it normalised.
    pub fn validate_settings(
        &self,
        section: Option<&YamlValue>,
        path: &ConfigPath,
        diag: &mut Diagnostics,
    ) -> Option<YamlValue> {
        (self.settings)(section, path, diag)
    }

    /// The node's statefulness under `config`.
    pub fn state_for(&self, config: &Config) -> NodeState {
        (self.state)(config)
    }

    /// The name of a store the node shares with other nodes of its group (they stay together).
    pub fn shared_store(&self) -> Option<&'static str> {
        self.shared_store
    }

    /// Builds the node.
    pub fn build(&self, ctx: &mut BuildContext<'_>) -> Result<BuiltNode, NodeError> {
        (self.build)(ctx)
    }
}

/// Named node factories.
#[derive(Default)]
pub struct Registry {
    factories: BTreeMap<String, NodeFactory>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, name: &str, factory: NodeFactory) -> &mut NodeFactory {
        self.factories.insert(name.to_string(), factory);
        self.factories
            .get_mut(name)
            .unwrap_or_else(|| unreachable!("inserted just above"))
    }

    /// Registers a transform node.
    pub fn transform<N, F>(&mut self, name: &str, build: F) -> &mut NodeFactory
    where
        N: Node,
        F: Fn(&mut BuildContext<'_>) -> Result<N, NodeError> + Send + Sync + 'static,
    {
        let role = if TypeId::of::<N::Output>() == TypeId::of::<Nothing>() {
            NodeRole::Sink
        } else {
            NodeRole::Transform
        };
        let output = (role == NodeRole::Transform).then(MessageType::of::<N::Output>);
        self.insert(
            name,
            NodeFactory {
                role,
                input: Some(MessageType::of::<N::Input>()),
                output,
                settings: no_settings,
                state: stateless,
                shared_store: None,
                max_record: None,
                writes_sink_file: false,
                build: Arc::new(move |ctx| {
                    build(ctx).map(|node| BuiltNode::Node(Box::new(TypedNode(node))))
                }),
            },
        )
    }

    /// Registers a source.
    pub fn source<S, F>(&mut self, name: &str, build: F) -> &mut NodeFactory
    where
        S: Source,
        F: Fn(&mut BuildContext<'_>) -> Result<S, NodeError> + Send + Sync + 'static,
    {
        self.insert(
            name,
            NodeFactory {
                role: NodeRole::Source,
                input: None,
                output: Some(MessageType::of::<S::Output>()),
                settings: no_settings,
                state: stateless,
                shared_store: None,
                max_record: None,
                writes_sink_file: false,
                build: Arc::new(move |ctx| {
                    build(ctx).map(|source| BuiltNode::Source(Box::new(TypedSource(source))))
                }),
            },
        )
    }

    /// The factory registered as `name`.
    pub fn get(&self, name: &str) -> Option<&NodeFactory> {
        self.factories.get(name)
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }
}
