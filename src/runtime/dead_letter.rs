//! The dead-letter adapter: records that could not be processed, one JSON object per line:
//! `{"line":12,"node":"parse_load_attempt","reason":"INPUT_PARSE_ERROR","detail":"..."}`.
//!
//! `line` is the record's `seq`. Without a configured adapter the records are still counted
//! and the count is reported, so nothing disappears silently.

use crate::config::FileAdapter;
use crate::files::writer::{OutputProgress, RecordWriter, Resume};
use crate::graph::NodeError;

/// The dead-letter adapter of one process: one JSON line per record that could not be processed.
pub struct DeadLetters {
    out: Option<RecordWriter>,
    count: u64,
    line: Vec<u8>,
    /// Records through this `seq` are replayed by a resumed run: already in the file.
    resume_after: u64,
}

impl DeadLetters {
    /// The key of the dead-letter file among a run's outputs (run journal).
    pub const KEY: &'static str = "dead_letter";

    /// Opens the adapter's file (locked for the run; nothing in it changes before the first
    /// write). A run resumed at `resume` keeps its content and does not write the dead
    /// letters of the records it replays.
    pub fn open(adapter: Option<&FileAdapter>, resume: Resume) -> Result<Self, NodeError> {
        let out = adapter
            .map(|adapter| RecordWriter::open("dead-letter file", adapter.path(), resume))
            .transpose()
            .map_err(|e| NodeError::failed(e.to_string()))?;
        Ok(Self {
            out,
            count: 0,
            line: Vec::with_capacity(256),
            resume_after: resume.after,
        })
    }

    /// The file's place for the run journal (`None` without a file).
    pub fn progress(&self) -> Option<OutputProgress> {
        self.out.as_ref().map(RecordWriter::progress)
    }

    /// Writes one dead letter.
    pub fn write(
        &mut self,
        seq: u64,
        node: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), NodeError> {
        // Replayed records were dead-lettered (and written) by the stopped run: the writer
        // only measures them.
        if seq > self.resume_after {
            self.count += 1;
        }
        let Some(writer) = &mut self.out else {
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
        line.push(b'}');
        Ok(writer.write_line(seq, line)?)
    }

    /// Hands what is buffered to the operating system.
    pub fn flush(&mut self) -> Result<(), NodeError> {
        if let Some(writer) = &mut self.out {
            writer.flush()?;
        }
        Ok(())
    }

    /// Ends the file at the end of the input (see [`RecordWriter::finish`]).
    pub fn finish(&mut self) -> Result<(), NodeError> {
        if let Some(writer) = &mut self.out {
            writer.finish()?;
        }
        Ok(())
    }

    /// Removes the dead letters of records after `seq` (a failed run, see
    /// [`RecordWriter::truncate_after`]).
    pub fn truncate_after(&mut self, seq: u64) -> Result<(), NodeError> {
        if let Some(writer) = &mut self.out {
            writer.truncate_after(seq)?;
        }
        Ok(())
    }

    /// Records dead-lettered so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Where dead letters go, for the summary.
    pub fn destination(&self) -> Option<&std::path::Path> {
        self.out.as_ref().map(|w| std::path::Path::new(w.name()))
    }
}

/// A dead letter travelling to the worker that holds the sink (and the dead-letter adapter),
/// as the payload of a dead-letter envelope.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeadLetterRecord {
    /// The node that dead-lettered the record.
    pub node: String,
    /// The reason code.
    pub reason: String,
    /// The message.
    pub detail: String,
}
