//! The engine's own nodes, for any pipeline: where lines come from and go to, and nodes made
//! of closures.
//!
//! - [`Line`] is the message a line source emits: one input line, its bytes without the
//!   newline.
//! - [`Registry::line_source`](crate::graph::Registry::line_source) reads `adapters.source` (a
//!   file, a FIFO, a device, stdin; a generator when the program provides one) line by line:
//!   bounded lines (`adapters.source.max_line_bytes`), byte progress for progress bars, a digest
//!   of the bytes read for the run journal, waits that a stop interrupts.
//! - [`Registry::line_sink`](crate::graph::Registry::line_sink) writes one or more lines per
//!   record to `adapters.sink` (a file or stdout) with every guarantee a run's outputs have:
//!   locked for the run, never a torn line, cut back to the last completed record when the run
//!   fails, resumed exactly ([`crate::files::writer`]), and kept in the run journal.
//! - [`Registry::map`](crate::graph::Registry::map), `filter`, `flat_map` and `for_each` make a
//!   node of a closure, for the common steps that need no state of their own.
//!
//! Nothing here is specific to an application: the bundled fund-load app's source is a line
//! source, and its sink writes through the same [`SinkFile`] as the line sink.

mod closures;
mod line_sink;
mod line_source;

pub use closures::{Filter, FlatMap, ForEach, Map};
pub use line_sink::{LineSink, SinkFile};
pub use line_source::{LineGenerator, LineSource, MakeGenerator};

/// One line of input: its bytes, without the newline (a trailing carriage return is removed
/// too). Lines are bytes, not text: the source does not require UTF-8.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct Line {
    /// The line's bytes.
    pub bytes: Vec<u8>,
}

impl Line {
    /// A line of `text`.
    pub fn new(text: impl Into<Vec<u8>>) -> Self {
        Self { bytes: text.into() }
    }

    /// The line as text (invalid UTF-8 replaced).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
}
