//! The line sink: each record becomes one or more lines of `adapters.sink` (a file, or stdout).
//!
//! [`SinkFile`] is the sink's file with a run's guarantees (see [`crate::files::writer`]): locked
//! for the run, unchanged before the first write, never a torn line, cut back to the completed
//! record when the run fails, resumed at the run journal's length. [`LineSink`] writes records
//! through it with a formatting closure; an application's own sink can hold a [`SinkFile`] too.

use std::marker::PhantomData;

use super::Line;
use crate::config::SinkAdapter;
use crate::files::writer::{OutputProgress, RecordWriter};
use crate::graph::{
    BuildContext, Emitter, Message, Node, NodeError, NodeFactory, Nothing, RecordContext, Registry,
};

/// The sink's output, `adapters.sink`, opened for a run (see the module header).
#[derive(Debug)]
pub struct SinkFile {
    writer: RecordWriter,
}

impl SinkFile {
    /// Opens `adapters.sink` for the node being built: a file is locked (nothing in it changes
    /// before the first write); a resumed run keeps it and replays into it exactly.
    pub fn open(ctx: &BuildContext<'_>) -> Result<Self, NodeError> {
        let resume = ctx.resume_point("output");
        let writer = match &ctx.config.adapters.sink {
            SinkAdapter::File { path } => RecordWriter::open("output", path, resume)
                .map_err(|e| NodeError::failed(e.to_string()))?,
            SinkAdapter::Stdout => RecordWriter::stdout("output").replaying_through(resume.after),
        };
        Ok(Self { writer })
    }

    /// Writes one record of input `seq`: `line` and a newline.
    pub fn write_line(&mut self, seq: u64, line: &[u8]) -> Result<(), NodeError> {
        Ok(self.writer.write_line(seq, line)?)
    }

    /// Writes one record of input `seq` made of `parts` (whole lines, newlines included).
    pub fn write_parts(&mut self, seq: u64, parts: &[&[u8]]) -> Result<(), NodeError> {
        Ok(self.writer.write_parts(seq, parts)?)
    }

    /// [`Node::flush`]: hands what is buffered to the operating system.
    pub fn flush(&mut self) -> Result<(), NodeError> {
        Ok(self.writer.flush()?)
    }

    /// [`Node::truncate_after`]: removes the records after `seq`.
    pub fn truncate_after(&mut self, seq: u64) -> Result<(), NodeError> {
        Ok(self.writer.truncate_after(seq)?)
    }

    /// For [`Node::on_end_of_stream`]: ends the output (a resumed run's replay is checked).
    pub fn finish(&mut self) -> Result<(), NodeError> {
        Ok(self.writer.finish()?)
    }

    /// For [`Node::outputs`]: the output's place for the run journal.
    pub fn progress(&self) -> OutputProgress {
        self.writer.progress()
    }
}

/// Writes each record as lines made by its `format` closure (see [`Registry::line_sink_with`]).
pub struct LineSink<T, F> {
    file: SinkFile,
    format: F,
    text: Vec<u8>,
    /// Records through this `seq` are a resumed run's replay: not counted again.
    resume_after: u64,
    written: u64,
    _input: PhantomData<fn(&T)>,
}

impl<T, F> LineSink<T, F>
where
    T: Message,
    F: FnMut(&T, &mut Vec<u8>) + Send + 'static,
{
    /// The sink of the node being built.
    pub fn open(ctx: &BuildContext<'_>, format: F) -> Result<Self, NodeError> {
        Ok(Self {
            file: SinkFile::open(ctx)?,
            format,
            text: Vec::with_capacity(256),
            resume_after: ctx.resume_after,
            written: 0,
            _input: PhantomData,
        })
    }
}

impl<T, F> Node for LineSink<T, F>
where
    T: Message,
    F: FnMut(&T, &mut Vec<u8>) + Send + 'static,
{
    type Input = T;
    type Output = Nothing;

    fn process(
        &mut self,
        input: &T,
        ctx: &RecordContext<'_>,
        _out: &mut Emitter<'_, Nothing>,
    ) -> Result<(), NodeError> {
        self.text.clear();
        (self.format)(input, &mut self.text);
        if self.text.last() != Some(&b'\n') {
            self.text.push(b'\n');
        }
        if ctx.seq > self.resume_after {
            self.written += 1;
        }
        self.file.write_parts(ctx.seq, &[&self.text])
    }

    fn flush(&mut self) -> Result<(), NodeError> {
        self.file.flush()
    }

    fn truncate_after(&mut self, seq: u64) -> Result<(), NodeError> {
        self.file.truncate_after(seq)
    }

    fn on_end_of_stream(&mut self, _out: &mut Emitter<'_, Nothing>) -> Result<(), NodeError> {
        self.file.finish()
    }

    fn outputs(&self) -> Vec<OutputProgress> {
        vec![self.file.progress()]
    }

    fn counters(&self) -> Vec<(String, u64)> {
        vec![("written".into(), self.written)]
    }
}

impl Registry {
    /// Registers a sink named `name` writing each [`Line`] it receives as one line of
    /// `adapters.sink`, with every guarantee a run's outputs have (see the module header).
    ///
    /// ```
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry.line_source("lines");
    /// registry.line_sink("write");
    /// ```
    pub fn line_sink(&mut self, name: &str) -> &mut NodeFactory {
        self.line_sink_with(name, |line: &Line, text: &mut Vec<u8>| {
            text.extend_from_slice(&line.bytes);
        })
    }

    /// Registers a sink named `name` writing each record of type `T` as the text `format`
    /// puts in its buffer: one line, or several (separated by newlines); a final newline is
    /// added when missing.
    ///
    /// ```
    /// let mut registry = stream_kernel::graph::Registry::new();
    /// registry.line_sink_with("write", |n: &u64, text: &mut Vec<u8>| {
    ///     text.extend_from_slice(n.to_string().as_bytes());
    /// });
    /// ```
    pub fn line_sink_with<T, F>(&mut self, name: &str, format: F) -> &mut NodeFactory
    where
        T: Message,
        F: Fn(&T, &mut Vec<u8>) + Clone + Send + Sync + 'static,
    {
        self.transform(name, move |ctx| LineSink::open(ctx, format.clone()))
            .writes_sink_file()
    }
}
