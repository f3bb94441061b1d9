//! What a node author or an embedding program reaches for, in one import:
//! `use stream_kernel::prelude::*;`.
//!
//! Writing nodes: [`Registry`] (name them), [`Node`] and [`Source`] (write them), [`Emitter`],
//! [`RecordContext`], [`NodeError`], [`Outcome`], [`BuildContext`] and [`NodeState`] (settings
//! and per-partition state), [`PartitionKey`], [`Message`] with the [`message!`](crate::message)
//! macro, and the engine's line adapters' record, [`Line`]. Running them: [`PipelineBuilder`]
//! and [`Config`], [`run_inline`] with [`RunOptions`] and its [`RunSummary`], [`run_supervised`]
//! with [`SupervisorOptions`] and its [`RunEnd`], the long-lived [`Runtime`] for in-host
//! fan-out, and [`worker_entry`], the first call of every program that starts workers.
//!
//! Everything else in the crate is reached through its plane's module (`data`, `control`,
//! `observability`, ...): the pieces those planes are built from, public for benches and
//! tools, which a pipeline does not need.

pub use crate::adapters::Line;
pub use crate::config::{Config, PipelineBuilder};
pub use crate::graph::{
    BuildContext, Emitter, Message, Node, NodeError, NodeState, Outcome, PartitionKey, Pull,
    RecordContext, Registry, Source,
};
pub use crate::message;
pub use crate::runtime::{RunOptions, RunSummary, run_inline, worker_entry};
pub use crate::supervisor::{RunEnd, Runtime, SupervisorOptions, run_supervised};
