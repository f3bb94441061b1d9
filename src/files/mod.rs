//! The files a run reads and writes, below every plane: the bounded, interruptible line
//! reader with its input digest ([`lines`]), the record-exact output writer ([`writer`]) and
//! the run journal that says which prefix of a run is complete ([`journal`]).
//!
//! Nothing here knows configs, nodes or processes: the runtimes decide what to read and
//! write and when a prefix is complete; these types make each of those steps exact.

pub mod journal;
pub mod lines;
pub mod writer;

pub use journal::{Journal, JournalError};
pub use lines::{InputPosition, LineRead, LineReader};
pub use writer::{OutputError, OutputOpenError, RecordWriter};
