//! The line source: one record per line of `adapters.source`, `seq` = line number.
//!
//! A file, a FIFO or a device (`kind: file`), or this process's stdin (`kind: stdin`) is read
//! through a [`LineReader`]: lines keep at most `max_line_bytes` bytes, waits for input end when
//! the run stops (and publish what was read meanwhile), and the bytes consumed are digested for
//! the run journal. `kind: generator` asks the program's [`LineGenerator`], when it registered
//! one ([`Registry::generated_line_source`]); its lines are identified by their parameters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Line;
use crate::config::SourceAdapter;
use crate::files::lines::{InputPosition, LineRead, LineReader};
use crate::graph::{Emitter, InputProgress, NodeError, NodeFactory, Pull, Registry, Source};

/// A program's own line generator (`adapters.source.kind: generator`): the same `lines` and
/// `seed` must give the same lines, so that a resumed run reads what the stopped one read.
pub trait LineGenerator: Send {
    /// Writes the next line (without its newline) into `line`, replacing what it held;
    /// `false` when every line was given.
    fn next_line(&mut self, line: &mut Vec<u8>) -> bool;
}

/// Makes a program's generator for `lines` lines from `seed`.
pub type MakeGenerator = fn(lines: u64, seed: u64) -> Box<dyn LineGenerator>;

enum Input {
    Lines(LineReader),
    Generated {
        generator: Box<dyn LineGenerator>,
        bytes: u64,
    },
}

/// Reads `adapters.source` line by line (see the module header).
pub struct LineSource {
    input: Input,
    line: Line,
    bytes_read: Arc<AtomicU64>,
}

impl LineSource {
    /// Opens the adapter: a file is opened here (a missing one fails at start, a FIFO does not
    /// wait for its writer), but nothing is read before the first pull. `generator` serves
    /// `kind: generator`; `bytes_read` counts consumed bytes for progress bars.
    pub fn open(
        adapter: &SourceAdapter,
        generator: Option<MakeGenerator>,
        bytes_read: Arc<AtomicU64>,
    ) -> Result<Self, NodeError> {
        let limit = |max: &u64| usize::try_from(*max).unwrap_or(usize::MAX);
        let input = match adapter {
            SourceAdapter::File {
                path,
                max_line_bytes,
            } => Input::Lines(LineReader::open(path, limit(max_line_bytes)).map_err(|e| {
                NodeError::io(format!("opening input {}", crate::text::path(path)), e)
            })?),
            SourceAdapter::Stdin { max_line_bytes } => Input::Lines(
                LineReader::stdin(limit(max_line_bytes))
                    .map_err(|e| NodeError::io("opening stdin", e))?,
            ),
            SourceAdapter::Generator { lines, seed } => {
                let make = generator.ok_or_else(|| {
                    NodeError::failed(
                        "adapters.source.kind is generator, but this program's line source generates nothing (register it with Registry::generated_line_source)",
                    )
                })?;
                Input::Generated {
                    generator: make(*lines, *seed),
                    bytes: 0,
                }
            }
        };
        Ok(Self {
            input,
            line: Line::default(),
            bytes_read,
        })
    }

    /// Reads the next line into `self.line`; false at the end of the input.
    fn read_next(&mut self, out: &mut Emitter<'_, Line>) -> Result<bool, NodeError> {
        let buf = &mut self.line.bytes;
        let got = match &mut self.input {
            Input::Generated { generator, bytes } => {
                let more = generator.next_line(buf);
                if more {
                    let len = buf.len() as u64 + 1;
                    *bytes += len;
                    self.bytes_read.fetch_add(len, Ordering::Relaxed);
                }
                more
            }
            Input::Lines(reader) => {
                let before = reader.consumed();
                let mut stopped_by = None;
                let read = reader
                    .read_line(buf, &mut || match out.idle() {
                        Ok(()) => true,
                        Err(e) => {
                            stopped_by = Some(e);
                            false
                        }
                    })
                    .map_err(|e| {
                        NodeError::io(
                            format!("reading {}", crate::text::printable(reader.name())),
                            e,
                        )
                    })?;
                self.bytes_read
                    .fetch_add(reader.consumed() - before, Ordering::Relaxed);
                match read {
                    LineRead::Line => true,
                    LineRead::End => false,
                    LineRead::Stopped => return Err(stopped_by.unwrap_or(NodeError::STOPPED)),
                }
            }
        };
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(got)
    }
}

impl Source for LineSource {
    type Output = Line;

    fn pull(&mut self, out: &mut Emitter<'_, Line>) -> Result<Pull, NodeError> {
        if !self.read_next(out)? {
            return Ok(Pull::Exhausted);
        }
        out.emit(&self.line)?;
        Ok(Pull::Emitted)
    }

    fn counters(&self) -> Vec<(String, u64)> {
        vec![("bytes_read".into(), self.bytes_read.load(Ordering::Relaxed))]
    }

    fn position(&mut self) -> Option<InputPosition> {
        match &mut self.input {
            Input::Lines(reader) => reader.position(),
            // Generated input is identified by its parameters: only its length is checked.
            Input::Generated { bytes, .. } => Some(InputPosition {
                bytes: *bytes,
                digest: None,
            }),
        }
    }
}

impl Registry {
    /// Registers a line source named `name`: one [`Line`] per line of `adapters.source`.
    ///
    /// ```
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry.line_source("lines");
    /// assert!(registry.get("lines").is_some());
    /// ```
    pub fn line_source(&mut self, name: &str) -> &mut NodeFactory {
        self.add_line_source(name, None)
    }

    /// [`Registry::line_source`] that also serves `adapters.source.kind: generator`, with the
    /// program's own generator.
    pub fn generated_line_source(&mut self, name: &str, make: MakeGenerator) -> &mut NodeFactory {
        self.add_line_source(name, Some(make))
    }

    fn add_line_source(&mut self, name: &str, make: Option<MakeGenerator>) -> &mut NodeFactory {
        self.source(name, move |ctx| {
            let bytes_read = ctx.services.get_or_insert_with(InputProgress::default).0;
            LineSource::open(&ctx.config.adapters.source, make, bytes_read)
        })
        .max_record(|config| config.adapters.source.max_line_bytes())
    }
}
