//! # stream-kernel
//!
//! A dataflow engine that runs a pipeline of typed nodes inline in one process or across
//! supervised worker processes on one host. Inside a process a value goes to the next node by
//! reference (no queue, no copy, no serialization); between processes it is encoded once, as an
//! rkyv archive, straight into a shared-memory ring, and validated in place on the other side.
//! The same node code runs in every placement, and the inline profile is the byte-for-byte
//! parity reference for the multiprocess one.
//!
//! Planes, one module each, layered downwards: [`config`] (the YAML contract), [`graph`] (node
//! API, registry, typed graph), [`data`] (memfd segments, rings, envelopes) and [`control`]
//! (the HMAC-signed control channel), [`observability`] (logs, spans, exporters), [`runtime`]
//! (the local pipeline, the inline runtime, workers), [`supervisor`] (lifecycle, health,
//! embedding), [`cross_host`] (edges between hosts, through NATS JetStream); [`apps`] holds the bundled fund-load workload.
//!
//! Embedding: a host program is the supervisor of its worker processes (re-executions of its
//! own binary), submits values to the pipeline's first node with its own correlation ids, and
//! receives what the last node emits:
//!
//! ```no_run
//! use std::time::Duration;
//! use stream_kernel::apps::fund_load::{self, messages::RawLine};
//! use stream_kernel::supervisor::SupervisorOptions;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // First thing: a worker spawned from this binary becomes a worker and never returns.
//!     stream_kernel::worker_entry(fund_load::registry);
//!     let registry = fund_load::registry();
//!     let yaml = std::fs::read_to_string("configs/fund_load_embedded_4proc.yml")?;
//!     let config = stream_kernel::config::load_str(&yaml, &registry)?.config;
//!     let mut runtime = stream_kernel::Runtime::start(&config, &registry, &SupervisorOptions::default())?;
//!     let line = br#"{"id":"1","customer_id":"1","load_amount":"$1.00","time":"2000-01-03T00:00:00Z"}"#;
//!     runtime.submit(7, &RawLine { bytes: line.to_vec() })?;
//!     while let Some(reply) = runtime.recv(Duration::from_secs(5))? {
//!         println!("reply to {}: {:?}", reply.reply_to, reply.kind);
//!     }
//!     let (_rest, run) = runtime.finish()?;
//!     println!("{} workers", run.summary.workers.len());
//!     Ok(())
//! }
//! ```
//!
//! Running a config inline instead:
//!
//! ```no_run
//! let registry = stream_kernel::apps::fund_load::registry();
//! let loaded = stream_kernel::config::load_file("configs/fund_load_baseline_inline.yml".as_ref(), &registry)
//!     .expect("valid config");
//! let summary = stream_kernel::runtime::run_inline(&loaded.config, &registry, &Default::default())
//!     .expect("run");
//! println!("{} records", summary.records_in);
//! ```

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod apps;
pub mod calendar;
pub mod config;
pub mod control;
pub mod cross_host;
pub mod data;
pub mod files;
pub mod graph;
pub mod json;
pub mod observability;
pub mod runtime;
pub mod supervisor;
pub mod text;

pub use runtime::worker_entry;
pub use supervisor::Runtime;
