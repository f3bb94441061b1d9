//! The dead-letter adapter: records that could not be processed, one JSON object per line:
//! `{"line":12,"node":"parse_load_attempt","reason":"INPUT_PARSE_ERROR","detail":"..."}`.
//!
//! `line` is the record's `seq`. Without a configured adapter the records are still counted
//! and the count is reported, so nothing disappears silently.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use crate::config::FileAdapter;
use crate::graph::NodeError;

pub struct DeadLetters {
    out: Option<(BufWriter<File>, PathBuf)>,
    count: u64,
    line: Vec<u8>,
}

impl DeadLetters {
    pub fn open(adapter: Option<&FileAdapter>) -> Result<Self, NodeError> {
        let out = match adapter {
            Some(adapter) => {
                let path = adapter.path().to_path_buf();
                let file = File::create(&path).map_err(|e| {
                    NodeError::io(format!("creating dead-letter file {}", path.display()), e)
                })?;
                Some((BufWriter::with_capacity(1 << 16, file), path))
            }
            None => None,
        };
        Ok(Self {
            out,
            count: 0,
            line: Vec::with_capacity(256),
        })
    }

    /// Writes one dead letter.
    pub fn write(
        &mut self,
        seq: u64,
        node: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), NodeError> {
        self.count += 1;
        let Some((writer, path)) = &mut self.out else {
            return Ok(());
        };
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(format!("{{\"line\":{seq},\"node\":").as_bytes());
        crate::json::push_string(line, node);
        line.extend_from_slice(b",\"reason\":");
        crate::json::push_string(line, reason);
        line.extend_from_slice(b",\"detail\":");
        crate::json::push_string(line, detail);
        line.extend_from_slice(b"}\n");
        writer
            .write_all(line)
            .map_err(|e| NodeError::io(format!("writing dead-letter file {}", path.display()), e))
    }

    pub fn flush(&mut self) -> Result<(), NodeError> {
        if let Some((writer, path)) = &mut self.out {
            writer.flush().map_err(|e| {
                NodeError::io(format!("flushing dead-letter file {}", path.display()), e)
            })?;
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Where dead letters go, for the summary.
    pub fn destination(&self) -> Option<&std::path::Path> {
        self.out.as_ref().map(|(_, p)| p.as_path())
    }
}

/// A dead letter travelling to the worker that holds the sink (and the dead-letter adapter),
/// as the payload of a dead-letter envelope.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize)]
pub struct DeadLetterRecord {
    pub node: String,
    pub reason: String,
    pub detail: String,
}
