//! # stream-kernel
//!
//! A dataflow engine that runs a pipeline of typed nodes — inline in one process, across
//! supervised worker processes on one host, or across hosts — with the same output bytes in
//! every placement. Inside a process a value goes to the next node by reference (no queue, no
//! copy, no serialization); between processes it is encoded once, as an rkyv archive, straight
//! into a shared-memory ring, and validated in place on the other side. Every record is
//! accounted for, and a run journal lets any stopped run resume exactly.
//!
//! A first pipeline: read lines, count each line's words, write `count<TAB>line`. The program
//! gets the engine's command line (`run`, `validate`, ...) over its own nodes; a config places
//! them inline or in process groups (see the README and the guide in `docs/`):
//!
//! ```no_run
//! use stream_kernel::prelude::*;
//!
//! // A message: a type that can travel between nodes (and processes).
//! stream_kernel::message! {
//!     pub struct Counted {
//!         pub words: u32,
//!         pub text: String,
//!     }
//! }
//!
//! /// Your nodes, by name: the same registry in your program and in every worker it starts.
//! fn registry() -> Registry {
//!     let mut registry = Registry::new();
//!     registry.line_source("read"); // one `Line` per line of `adapters.source`
//!     registry.map("count", |line: &Line| Counted {
//!         words: line.text().split_whitespace().count() as u32,
//!         text: line.text().into_owned(),
//!     });
//!     // One output line per record, written record-exactly to `adapters.sink`.
//!     registry.line_sink_with("write", |c: &Counted, out: &mut Vec<u8>| {
//!         out.extend_from_slice(format!("{}\t{}", c.words, c.text).as_bytes());
//!     });
//!     registry
//! }
//!
//! # #[cfg(feature = "cli")]
//! fn main() -> std::process::ExitCode {
//!     stream_kernel::cli::main(registry)
//! }
//! # #[cfg(not(feature = "cli"))]
//! # fn main() {}
//! ```
//!
//! The same pipeline declared and run in code, inline:
//!
//! ```no_run
//! # use stream_kernel::prelude::*;
//! # fn registry() -> Registry { let mut r = Registry::new(); r.line_source("read"); r.line_sink("write"); r }
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // First thing: a process started as a worker of this program becomes one here.
//!     stream_kernel::worker_entry(registry);
//!     let config = PipelineBuilder::new("copy")
//!         .nodes(["read", "write"])
//!         .input_file("input.txt")
//!         .output_file("output.txt")
//!         .build(&registry())?
//!         .config;
//!     let summary = run_inline(&config, &registry(), &Default::default())?;
//!     println!("{} records", summary.records_in);
//!     Ok(())
//! }
//! ```
//!
//! [`prelude`] holds what a node author or an embedding program uses; start there.
//!
//! Planes, one module each, layered downwards: [`config`] (the YAML contract and the in-code
//! builder), [`graph`] (node API, registry, typed graph) with [`adapters`] (the engine's own
//! nodes: line source and sink, closures), [`data`] (memfd segments, rings, envelopes) and
//! [`control`] (the HMAC-signed control channel), [`observability`] (logs, spans, exporters),
//! [`runtime`] (the local pipeline, the inline runtime, workers, the run journal),
//! [`supervisor`] (lifecycle, health, embedding: [`Runtime`]), [`cross_host`] (edges between
//! hosts, through NATS JetStream); [`files`] below them all (the line reader, record-exact
//! writers, the journal's format). `cli` (feature `cli`) is the command line for any registry;
//! `apps` (feature `fund-load`) holds the bundled reference workload.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod adapters;
#[cfg(feature = "fund-load")]
pub mod apps;
pub(crate) mod calendar;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
// The control channel's frames, keys and sessions: public for the frame fuzzers and the
// protocol tests, not for pipelines (hidden from the API docs; no stability promised).
#[doc(hidden)]
pub mod control;
pub mod cross_host;
pub mod data;
pub mod files;
pub mod graph;
pub mod json;
pub mod observability;
pub mod prelude;
pub mod runtime;
pub mod supervisor;
pub(crate) mod text;

/// The rkyv this crate encodes messages with, for [`message!`] and for programs that derive
/// its traits themselves (`#[rkyv(crate = stream_kernel::rkyv)]`).
pub use rkyv;
pub use runtime::worker_entry;
/// The serde this crate reads settings with (`#[serde(crate = "stream_kernel::serde")]`).
pub use serde;
/// The YAML values node sections are handed over as.
pub use serde_norway;
pub use supervisor::Runtime;
