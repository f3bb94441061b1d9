//! Output files of a run (the sink's output, dead letters, audit): record-exact writing.
//!
//! A [`RecordWriter`] writes records — one or more whole lines each, tagged with the `seq` of
//! the input record they belong to — through a buffer into a file or stdout. It promises:
//!
//! - **One writer per file.** A file is locked (`flock`, exclusive) while the run writes it: a
//!   second run, or a second output of the same run, naming the same file is refused with
//!   [`OutputOpenError::Locked`] before anything is written.
//! - **Nothing changed before the first write.** Opening locks the file and checks it, but a
//!   file is emptied (or, when resumed, cut back) only when the run first writes or flushes
//!   it: a run refused at start — another output locked or unopenable, another worker failing
//!   to start — leaves every existing file as it was.
//! - **Nothing torn.** When a write fails (disk full, `EFBIG`, an I/O error, a closed pipe),
//!   the file is cut back to its last complete record and the error says through which `seq`
//!   every record is written ([`OutputError::written_through`]). So the range a failed run
//!   reports as completed is exactly what the file holds.
//! - **Roll back.** [`RecordWriter::truncate_after`] cuts a file back to the records through a
//!   `seq`, so that when one output of a run fails, the others end at the same record.
//! - **Resume.** Opened with a [`Resume`] point (a resumed run, `--resume` or `--skip N`), a
//!   file keeps its content. The writer writes nothing for the records it replays but counts
//!   the bytes they take; at the first record after the resume point it cuts the file back to
//!   exactly those bytes, so records a killed run wrote past its last completed point (and a
//!   torn last line) are written once, not twice. A file shorter than those bytes, or than the
//!   length the run journal recorded, is not the output being resumed: refused.
//!
//! "Written" means handed to the operating system (`write(2)` returned); nothing is fsynced.
//! Stdout cannot be cut back: a failed write to stdout may leave a torn last line there, and
//! the reported range still counts only complete records.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes buffered before a write to the operating system.
pub const DEFAULT_BUFFER: usize = 1 << 18;

/// Opening an output failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputOpenError {
    /// The file could not be opened.
    #[error("cannot open {what} {path}: {source}")]
    Open {
        /// Which output (`output file`, `dead-letter file`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A resumed output is shorter than the run journal recorded: it is not the output of the
    /// run being resumed (or was cut since).
    #[error(
        "{what} {path} holds {len} bytes, but the run journal recorded {expected}: it is not the output of the run being resumed; rerun from the start"
    )]
    Shorter {
        /// Which output.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length the journal recorded.
        expected: u64,
    },
    /// Another writer holds the file's lock.
    #[error(
        "{what} {path} is being written by another run (or named twice in this one): it is locked; choose another path or wait for that run to end"
    )]
    Locked {
        /// Which output.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// Writing an output failed; everything through `written_through` is in the output, nothing
/// after it is.
#[derive(Debug, thiserror::Error)]
#[error("writing {what} {name}: {source} (complete through seq {written_through})")]
pub struct OutputError {
    /// A resumed output is not the one being resumed (nothing was written to it): the run is
    /// refused rather than failed.
    pub refused: bool,
    /// Which output.
    pub what: &'static str,
    /// The file (or `stdout`).
    pub name: String,
    /// The system's error.
    #[source]
    pub source: io::Error,
    /// Every record with a `seq` at or below this is completely written; none above it is.
    pub written_through: u64,
}

impl OutputError {
    /// The output is stdout and its reader closed it (`EPIPE`): a consumer such as `head` had
    /// enough. Like a Unix filter, the run ends quietly; the journal and the summary still say
    /// through which record the output is complete.
    pub fn reader_gone(&self) -> bool {
        self.name == "stdout" && self.source.kind() == io::ErrorKind::BrokenPipe
    }
}

enum Target {
    File(File),
    Stdout(io::Stdout),
}

impl Target {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::File(file) => file.write(bytes),
            Self::Stdout(out) => {
                let mut out = out.lock();
                let written = out.write(bytes)?;
                out.flush()?;
                Ok(written)
            }
        }
    }
}

/// Where a resumed run picks an output up: records through `after` are already in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resume {
    /// The records through this `seq` are replayed, not written (0: a fresh run).
    pub after: u64,
    /// The output's length at `after`, as the run journal recorded it (`None`: no journal,
    /// the replay's own measure decides).
    pub expected_len: Option<u64>,
}

impl Resume {
    /// A fresh run: nothing to keep.
    pub const FRESH: Self = Self {
        after: 0,
        expected_len: None,
    };

    /// Resuming after `after`, without a recorded length.
    pub fn after(after: u64) -> Self {
        Self {
            after,
            expected_len: None,
        }
    }
}

/// An output's place, as the run journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputProgress {
    /// Which output of its node (`output`, `audit`, `dead-letter file`).
    pub what: &'static str,
    /// Where it goes (a path, or `stdout`).
    pub name: String,
    /// Bytes its records take so far ([`RecordWriter::len`]).
    pub bytes: u64,
    /// Stdout cannot be cut back: a resume cannot use it.
    pub is_stdout: bool,
}

/// What opening deferred to the first write (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    Nothing,
    /// A fresh run's output: emptied.
    Empty,
    /// An appended output's torn last line: cut back to this length.
    CutTo(u64),
}

/// One record's place in the output.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Offset of the record's first byte (file offset; for stdout, bytes since the start).
    start: u64,
    seq: u64,
}

/// A record-exact output (see the module header).
pub struct RecordWriter {
    target: Target,
    what: &'static str,
    name: String,
    buf: Vec<u8>,
    capacity: usize,
    /// Length of what was handed to the operating system (the file's length).
    flushed_len: u64,
    /// Every record written since the explicit flush before the last one, in order. Records
    /// before that are final: a failure never rolls back past the last explicit flush that
    /// every output of the run completed.
    marks: VecDeque<Mark>,
    /// The highest `seq` as of the last explicit flush.
    flushed_seq: Option<u64>,
    /// The highest `seq` ever written (0: none).
    last_seq: u64,
    /// After a failed write nothing more is accepted.
    failed: Option<u64>,
    /// A resumed run's replay: records through `through` are already in the file, and take
    /// `len` bytes.
    replay: Option<Replay>,
    /// What opening left for the first write.
    deferred: Deferred,
}

/// See [`RecordWriter::replaying_through`].
#[derive(Debug, Clone, Copy)]
struct Replay {
    through: u64,
    len: u64,
    /// The length the run journal recorded for the records through `through`.
    expected: Option<u64>,
}

impl std::fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("what", &self.what)
            .field("name", &self.name)
            .field("flushed_len", &self.flushed_len)
            .finish()
    }
}

impl RecordWriter {
    /// Opens `path` for a run, locked: a fresh run's output is emptied at its first write, a
    /// resumed one ([`Resume::after`] > 0) keeps its content and is cut back to the replayed
    /// records at the first record after them. `what` names the output in messages
    /// (`output`, `dead-letter file`, `audit`).
    pub fn open(what: &'static str, path: &Path, resume: Resume) -> Result<Self, OutputOpenError> {
        let open_error = |source| OutputOpenError::Open {
            what,
            path: path.to_path_buf(),
            source,
        };
        // Not truncated on open: a file another run is writing must be left alone, and a run
        // refused at start must leave it as it was.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(open_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OutputOpenError::Locked {
                    what,
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(open_error(e)),
        }
        let kept = if resume.after > 0 {
            file.metadata().map_err(open_error)?.len()
        } else {
            0
        };
        if let Some(expected) = resume.expected_len
            && kept < expected
        {
            return Err(OutputOpenError::Shorter {
                what,
                path: path.to_path_buf(),
                len: kept,
                expected,
            });
        }
        file.seek(SeekFrom::Start(kept)).map_err(open_error)?;
        let mut writer = Self::new(Target::File(file), what, path.display().to_string(), kept);
        writer.deferred = if resume.after > 0 {
            Deferred::Nothing
        } else {
            Deferred::Empty
        };
        Ok(writer.replaying(resume))
    }

    /// [`RecordWriter::open`] for a fresh run (`append: false`) or one resumed without a
    /// journal after the records its writer is told of with [`RecordWriter::replaying_through`].
    pub fn create(what: &'static str, path: &Path, append: bool) -> Result<Self, OutputOpenError> {
        if !append {
            return Self::open(what, path, Resume::FRESH);
        }
        // Resumed without a known point: records are appended after the last complete line
        // (a torn last line is cut at the first write).
        let mut writer = Self::open(what, path, Resume::after(u64::MAX))?;
        writer.replay = None;
        let Target::File(file) = &mut writer.target else {
            return Ok(writer);
        };
        let keep = last_line_end(file).map_err(|source| OutputOpenError::Open {
            what,
            path: path.to_path_buf(),
            source,
        })?;
        if keep < writer.flushed_len {
            writer.flushed_len = keep;
            writer.deferred = Deferred::CutTo(keep);
        }
        Ok(writer)
    }

    /// Writes to this process's stdout.
    pub fn stdout(what: &'static str) -> Self {
        Self::new(Target::Stdout(io::stdout()), what, "stdout".to_string(), 0)
    }

    fn new(target: Target, what: &'static str, name: String, len: u64) -> Self {
        Self {
            target,
            what,
            name,
            buf: Vec::with_capacity(DEFAULT_BUFFER),
            capacity: DEFAULT_BUFFER,
            flushed_len: len,
            marks: VecDeque::new(),
            flushed_seq: None,
            last_seq: 0,
            failed: None,
            replay: None,
            deferred: Deferred::Nothing,
        }
    }

    /// A resumed run replays the records through `seq` (already in the output): their writes
    /// only count bytes; the first record after `seq` first cuts the output back to exactly
    /// the replayed records (0: a fresh run, nothing replayed).
    pub fn replaying_through(self, seq: u64) -> Self {
        self.replaying(Resume::after(seq))
    }

    fn replaying(mut self, resume: Resume) -> Self {
        self.replay = (resume.after > 0).then_some(Replay {
            through: resume.after,
            len: 0,
            expected: resume.expected_len,
        });
        self
    }

    /// Ends the replay before record `seq` is written: the output keeps exactly the replayed
    /// records' bytes. An output shorter than them is not the stopped run's output.
    fn end_replay(&mut self, seq: u64) -> Result<(), OutputError> {
        let Some(replay) = self.replay.take() else {
            return Ok(());
        };
        let Target::File(_) = self.target else {
            return Ok(());
        };
        if let Some(expected) = replay.expected
            && expected != replay.len
        {
            let message = format!(
                "replaying records 1 to {} gave {} bytes, but the run journal recorded {expected}: the pipeline writes other bytes now (another config or program); rerun from the start",
                replay.through, replay.len
            );
            self.failed = Some(0);
            return Err(self.refusal(message));
        }
        if self.flushed_len < replay.len {
            let message = format!(
                "it holds {} bytes, but the records through seq {} take {}: it is not the output of the run being resumed",
                self.flushed_len, replay.through, replay.len
            );
            self.failed = Some(0);
            return Err(self.refusal(message));
        }
        if self.flushed_len > replay.len {
            let extra = self.flushed_len - replay.len;
            tracing::info!(
                output = %self.name,
                "resumed before seq {seq}: removed {extra} bytes of records the stopped run wrote after the progress it reported"
            );
            if let Err(e) = self.cut_file(replay.len) {
                self.failed = Some(0);
                return Err(self.error(e, 0));
            }
        }
        Ok(())
    }

    /// Sets how many bytes are buffered before a write (tests use small buffers).
    pub fn with_buffer(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Where this output goes (a path, or `stdout`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of complete records handed to the operating system so far.
    pub fn written_len(&self) -> u64 {
        self.flushed_len
    }

    /// What `open` named this output (`output`, `dead-letter file`, ...).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Bytes the records written so far take, buffered ones included (during a resumed run's
    /// replay: the bytes the replayed records take). Once flushed, the output holds exactly
    /// this many bytes of them.
    pub fn len(&self) -> u64 {
        match &self.replay {
            Some(replay) => replay.len,
            None => self.flushed_len + self.buf.len() as u64,
        }
    }

    /// This output's place for the run journal.
    pub fn progress(&self) -> OutputProgress {
        OutputProgress {
            what: self.what,
            name: self.name.clone(),
            bytes: self.len(),
            is_stdout: matches!(self.target, Target::Stdout(_)),
        }
    }

    /// Whether no record's bytes are written or buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes one record of input `seq`: `line` and a newline.
    pub fn write_line(&mut self, seq: u64, line: &[u8]) -> Result<(), OutputError> {
        self.write_parts(seq, &[line, b"\n"])
    }

    /// Writes one record of input `seq` made of `parts` (whole lines, newlines included).
    pub fn write_parts(&mut self, seq: u64, parts: &[&[u8]]) -> Result<(), OutputError> {
        if let Some(through) = self.failed {
            return Err(self.error(io::Error::other("an earlier write failed"), through));
        }
        if let Some(replay) = &mut self.replay {
            if seq <= replay.through {
                replay.len += parts.iter().map(|p| p.len() as u64).sum::<u64>();
                return Ok(());
            }
            self.end_replay(seq)?;
        }
        debug_assert!(seq >= self.last_seq, "records are written in seq order");
        self.marks.push_back(Mark {
            start: self.flushed_len + self.buf.len() as u64,
            seq,
        });
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.last_seq = self.last_seq.max(seq);
        if self.buf.len() >= self.capacity {
            self.write_out()?;
        }
        Ok(())
    }

    /// Hands everything buffered to the operating system. Call at batch boundaries, on every
    /// output of the run at the same boundary: a later failure never rolls back records that
    /// were written before the flush preceding this one.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.write_out()?;
        if let Some(previous) = self.flushed_seq {
            while self.marks.front().is_some_and(|m| m.seq <= previous) {
                self.marks.pop_front();
            }
        }
        self.flushed_seq = Some(self.last_seq);
        Ok(())
    }

    /// Ends the output at the end of the input: a resumed run whose input ended within the
    /// replayed records still checks the output against them (and cuts what a killed run wrote
    /// past them); then everything is flushed.
    pub fn finish(&mut self) -> Result<(), OutputError> {
        if let Some(replay) = self.replay {
            self.end_replay(replay.through.saturating_add(1))?;
        }
        self.flush()
    }

    /// Removes every record with a `seq` above `seq` (buffered or already written), then
    /// writes what is left. Only records since the explicit flush before the last one can be
    /// removed (see [`RecordWriter::flush`]).
    pub fn truncate_after(&mut self, seq: u64) -> Result<(), OutputError> {
        if let Some(cut) = self.marks.iter().find(|m| m.seq > seq).map(|m| m.start) {
            while self.marks.back().is_some_and(|m| m.seq > seq) {
                self.marks.pop_back();
            }
            self.last_seq = self.last_seq.min(seq);
            self.failed = self.failed.map(|through| through.min(seq));
            if cut >= self.flushed_len {
                self.buf.truncate((cut - self.flushed_len) as usize);
            } else {
                self.buf.clear();
                if let Err(e) = self.cut_file(cut) {
                    return Err(self.error(e, seq.min(self.written_through_now())));
                }
            }
        }
        if self.failed.is_some() {
            // A failed writer holds nothing buffered.
            return Ok(());
        }
        self.write_out()
    }

    /// Applies what opening deferred (a fresh output is emptied) before the first write.
    fn apply_deferred(&mut self) -> Result<(), OutputError> {
        let len = match self.deferred {
            Deferred::Nothing => return Ok(()),
            Deferred::Empty => 0,
            Deferred::CutTo(len) => len,
        };
        self.deferred = Deferred::Nothing;
        if let Err(e) = self.cut_file(len) {
            self.failed = Some(0);
            return Err(self.error(e, 0));
        }
        Ok(())
    }

    /// Writes the buffer; on failure cuts the output back to its last complete record.
    fn write_out(&mut self) -> Result<(), OutputError> {
        self.apply_deferred()?;
        let mut done = 0;
        while done < self.buf.len() {
            match self.target.write(&self.buf[done..]) {
                Ok(0) => {
                    return Err(self.fail_after(
                        done,
                        io::Error::new(io::ErrorKind::WriteZero, "the output accepted no bytes"),
                    ));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail_after(done, e)),
            }
        }
        self.flushed_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// `done` bytes of the buffer reached the output before `error`: keep the complete
    /// records among them, cut the rest, and report through which `seq` all is written.
    fn fail_after(&mut self, done: usize, error: io::Error) -> OutputError {
        let reached = self.flushed_len + done as u64;
        // The first record that did not reach the output completely: its end is the start of
        // the next record, or the end of the buffer.
        let buffered_end = self.flushed_len + self.buf.len() as u64;
        let ends = self
            .marks
            .iter()
            .skip(1)
            .map(|m| m.start)
            .chain(std::iter::once(buffered_end));
        let first_torn = self
            .marks
            .iter()
            .zip(ends)
            .find(|(_, end)| *end > reached)
            .map(|(mark, _)| *mark);
        let through = match first_torn {
            Some(mark) => mark.seq.saturating_sub(1),
            None => self.last_seq,
        };
        // Records of `seq`s above `through` go; so do earlier parts of a torn `seq`.
        let cut = self
            .marks
            .iter()
            .find(|m| m.seq > through)
            .map_or(reached, |m| m.start.min(reached));
        let cut_result = self.cut_file(cut);
        self.buf.clear();
        while self.marks.back().is_some_and(|m| m.seq > through) {
            self.marks.pop_back();
        }
        self.failed = Some(through);
        let error = match cut_result {
            Ok(()) => error,
            Err(cut_error) => io::Error::new(
                error.kind(),
                format!("{error}; cutting back the torn record also failed: {cut_error}"),
            ),
        };
        self.error(error, through)
    }

    /// Sets the output's length to `len` (a record boundary). Stdout cannot be cut.
    fn cut_file(&mut self, len: u64) -> io::Result<()> {
        match &mut self.target {
            Target::File(file) => {
                file.set_len(len)?;
                file.seek(SeekFrom::Start(len))?;
                self.flushed_len = len;
                Ok(())
            }
            Target::Stdout(_) => {
                self.flushed_len = self.flushed_len.max(len);
                Ok(())
            }
        }
    }

    fn written_through_now(&self) -> u64 {
        self.failed.unwrap_or(self.last_seq)
    }

    fn refusal(&self, message: String) -> OutputError {
        OutputError {
            refused: true,
            ..self.error(io::Error::other(message), 0)
        }
    }

    fn error(&self, source: io::Error, written_through: u64) -> OutputError {
        OutputError {
            refused: false,
            what: self.what,
            name: self.name.clone(),
            source,
            written_through,
        }
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        // Whatever is buffered is complete records: hand it over (errors were or will be
        // reported by an explicit flush; a failed writer has nothing buffered). A writer that
        // never received a record leaves its file as it found it.
        if self.failed.is_none() && !self.buf.is_empty() {
            let _ = self.write_out();
        }
    }
}

/// The length of a file through its last newline (a killed run may have left a torn last
/// line after it). Reads only.
fn last_line_end(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let piece = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(piece)?;
        if let Some(at) = memchr::memrchr(b'\n', piece) {
            file.seek(SeekFrom::Start(len))?;
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    file.seek(SeekFrom::Start(len))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_second_writer_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let _first = RecordWriter::create("output", &path, false).unwrap();
        let second = RecordWriter::create("output", &path, false);
        assert!(matches!(second, Err(OutputOpenError::Locked { .. })));
    }

    #[test]
    fn truncate_after_cuts_buffered_and_written_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let mut w = RecordWriter::create("output", &path, false)
            .unwrap()
            .with_buffer(8);
        for seq in 1..=5 {
            w.write_line(seq, format!("r{seq}").as_bytes()).unwrap();
        }
        w.flush().unwrap();
        for seq in 6..=9 {
            w.write_line(seq, format!("r{seq}").as_bytes()).unwrap();
        }
        w.truncate_after(7).unwrap();
        drop(w);
        assert_eq!(read(&path), "r1\nr2\nr3\nr4\nr5\nr6\nr7\n");
    }

    #[test]
    fn resume_keeps_content_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "a\nb\ntor").unwrap();
        let mut w = RecordWriter::create("output", &path, true).unwrap();
        w.write_line(3, b"c").unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(read(&path), "a\nb\nc\n");
    }

    /// A killed run wrote records 1-4 but reported 2: replaying through 2 measures records 1-2,
    /// and record 3 first cuts the file back to them, so 3 and 4 are written once.
    #[test]
    fn a_replay_cuts_records_past_it_before_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "one\ntwo\nthree\nfour\n").unwrap();
        let mut w = RecordWriter::create("output", &path, true)
            .unwrap()
            .replaying_through(2);
        w.write_line(1, b"one").unwrap();
        w.write_line(2, b"two").unwrap();
        w.flush().unwrap();
        assert_eq!(
            read(&path),
            "one\ntwo\nthree\nfour\n",
            "nothing cut mid-replay"
        );
        w.write_line(3, b"three").unwrap();
        w.write_line(4, b"four").unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(read(&path), "one\ntwo\nthree\nfour\n");
    }

    /// A file shorter than the replayed records is not the stopped run's output: refused.
    #[test]
    fn a_replay_longer_than_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "one\n").unwrap();
        let mut w = RecordWriter::create("output", &path, true)
            .unwrap()
            .replaying_through(2);
        w.write_line(1, b"one").unwrap();
        w.write_line(2, b"two").unwrap();
        let error = w.write_line(3, b"three").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not the output of the run being resumed")
        );
        assert_eq!(error.written_through, 0);
        drop(w);
        assert_eq!(read(&path), "one\n", "nothing appended");
    }
}
