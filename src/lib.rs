//! # stream-kernel
//!
//! A dataflow engine that runs a pipeline of typed nodes either inline in one process or across
//! supervised worker processes on one host. Nodes read their input as zero-copy rkyv archives;
//! the same node code runs in every placement, and the inline profile is the byte-for-byte
//! parity reference for the multiprocess one.
//!
//! Planes (one module each): [`config`] (the YAML contract), [`graph`] (node API, registry,
//! typed graph), [`runtime`] (executors), and [`apps`] (the bundled fund-load workload).
//!
//! ```no_run
//! let registry = stream_kernel::apps::fund_load::registry();
//! let loaded = stream_kernel::config::load_file("configs/fund_load_baseline_inline.yml".as_ref(), &registry)
//!     .expect("valid config");
//! let summary = stream_kernel::runtime::run_inline(&loaded.config, &registry, &Default::default())
//!     .expect("run");
//! println!("{} records", summary.records_in);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod apps;
pub mod calendar;
pub mod config;
pub mod control;
pub mod data;
pub mod graph;
pub mod json;
pub mod observability;
pub mod output;
pub mod runtime;
pub mod supervisor;

pub use runtime::worker_entry;
pub use supervisor::Runtime;
