//! Graph plane: the node API, the node registry, and the typed pipeline graph.
//!
//! Owns what a node is ([`Node`], [`Source`]), how nodes are named and built ([`Registry`]),
//! and how `pipeline.nodes` becomes a type-checked chain ([`Graph`]). It must not know where a
//! node runs: placement, rings and processes belong to `runtime`, `data` and `supervisor`.

mod build;
mod message;
mod node;
mod registry;
mod validate;

pub use build::{Graph, GraphNode};
pub use message::{
    AlignedBuf, EncodeError, MAX_SCRATCH_BYTES, MESSAGE_ALIGN, Message, MessageDeserializer,
    MessageType, PayloadError, SlotSerializer, Value, encode_growing, encode_into,
    encode_into_uninit,
};
pub use node::{
    EmitTarget, Emitter, ErasedNode, ErasedSource, Halt, InputPosition, Node, NodeError, Nothing,
    Outcome, OutputPort, OutputProgress, Pull, RecordContext, Source,
};
pub use registry::{
    BuildContext, BuiltNode, InputProgress, MaxRecordFn, NodeFactory, NodeRole, NodeState,
    PartitionKey, Placement, Registry, Services, SettingsFn, StateFn,
};
