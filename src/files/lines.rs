//! Reading an input line by line, for sources: lines of bounded length, the bytes consumed and
//! a streaming digest of them (what the run journal checks a resumed input against), and waits
//! for input that a stopping run can interrupt.
//!
//! A [`LineReader`] reads a regular file, a FIFO, a pipe, a terminal or a character device,
//! named by a path or as this process's stdin. It promises:
//!
//! - **No wait without a deadline.** On anything but a regular file it polls before each
//!   read; while nothing is ready it calls the caller's `idle` hook every [`IDLE_POLL`] (the
//!   runtime publishes pending output there and answers whether to go on waiting), so a stop
//!   is acted on within that time whatever the input does: an idle pipe, a FIFO whose writer
//!   never comes (it is opened without waiting for one), `/dev/zero`'s endless line.
//! - **Bounded lines.** A line keeps at most `max_line` bytes; the rest of a longer line is
//!   consumed and discarded ([`LineReader::last_was_cut`] says so), so one hostile line cannot
//!   exhaust memory. Lines end at `\n`, which is not part of the line; a last line without
//!   one still counts.
//! - **An exact position.** [`LineReader::position`] gives the bytes consumed through the last
//!   complete line and an xxh3-128 digest of exactly those bytes, computed while reading (in
//!   large slices, not per line). A read interrupted in the middle of a line has no exact
//!   position any more: `position` then says `None`.

use std::fs::File;
use std::io::{self, Read};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use xxhash_rust::xxh3::Xxh3;

/// How long one wait for input lasts before the reader asks its caller again whether to go
/// on waiting.
pub const IDLE_POLL: Duration = Duration::from_millis(50);

/// Bytes read from the input at a time.
const BUFFER: usize = 1 << 20;

/// Where a reader is in its input: what the run journal records for a completed record, and
/// what a resumed run's input must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputPosition {
    /// Bytes consumed from the start of the input through the last complete record.
    pub bytes: u64,
    /// xxh3-128 of exactly those bytes (`None` for an input that is not read as bytes, such
    /// as a generator, whose parameters identify it).
    pub digest: Option<u128>,
}

/// What [`LineReader::read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// A line (possibly the last one, without a newline).
    Line,
    /// The input is exhausted.
    End,
    /// The `idle` hook said to stop waiting: the run is stopping.
    Stopped,
}

enum Handle {
    File(File),
    /// This process's stdin, borrowed: fd 0 is not closed when the reader goes.
    Stdin(ManuallyDrop<File>),
}

impl Handle {
    fn file(&self) -> &File {
        match self {
            Self::File(file) => file,
            Self::Stdin(file) => file,
        }
    }
}

/// A bounded line reader with a digest and interruptible waits (see the module header).
pub struct LineReader {
    handle: Handle,
    /// Not a regular file: poll before reading, so that waits have deadlines.
    pollable: bool,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`; `buf[hashed..start]` are consumed, not yet hashed.
    start: usize,
    end: usize,
    hashed: usize,
    hasher: Option<Box<Xxh3>>,
    consumed: u64,
    max_line: usize,
    cut: bool,
    /// A read stopped in the middle of a line: the consumed bytes end inside a record.
    torn: bool,
    name: String,
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader")
            .field("name", &self.name)
            .field("consumed", &self.consumed)
            .finish()
    }
}

impl LineReader {
    /// Opens `path` for reading lines of at most `max_line` bytes. A FIFO is opened without
    /// waiting for its writer; a directory is refused.
    pub fn open(path: &Path, max_line: usize) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        // Opened without waiting for a FIFO's writer; reads block (with polls before them).
        nix::fcntl::fcntl(
            &file,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        )
        .map_err(io::Error::from)?;
        Self::new(Handle::File(file), path.display().to_string(), max_line)
    }

    /// Reads this process's stdin.
    pub fn stdin(max_line: usize) -> io::Result<Self> {
        // SAFETY: fd 0 stays open for the life of the process unless something closes it; the
        // `ManuallyDrop` makes sure this reader never does. A closed fd 0 fails the fstat below.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        Self::new(Handle::Stdin(file), "stdin".to_string(), max_line)
    }

    fn new(handle: Handle, name: String, max_line: usize) -> io::Result<Self> {
        let kind = handle.file().metadata()?.file_type();
        if kind.is_dir() {
            return Err(io::Error::other(format!(
                "{name} is a directory, not an input"
            )));
        }
        let pollable = kind.is_fifo() || kind.is_char_device() || kind.is_socket();
        Ok(Self {
            handle,
            pollable,
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            hashed: 0,
            hasher: Some(Box::new(Xxh3::new())),
            consumed: 0,
            max_line: max_line.max(1),
            cut: false,
            torn: false,
            name,
        })
    }

    /// The input's name in messages (its path, or `stdin`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether the last line was longer than the limit (its rest was discarded).
    pub fn last_was_cut(&self) -> bool {
        self.cut
    }

    /// Reads the next line into `line` (without its `\n`). `idle` is called when no input is
    /// ready, then every [`IDLE_POLL`] while none is, and while an over-long line is being
    /// discarded; returning `false` ends the read with [`LineRead::Stopped`].
    pub fn read_line(
        &mut self,
        line: &mut Vec<u8>,
        idle: &mut dyn FnMut() -> bool,
    ) -> io::Result<LineRead> {
        line.clear();
        self.cut = false;
        let mut started = false;
        loop {
            if self.start == self.end {
                match self.fill(idle)? {
                    Some(0) => {
                        return Ok(if started {
                            LineRead::Line
                        } else {
                            LineRead::End
                        });
                    }
                    Some(_) => {}
                    None => {
                        self.torn |= started;
                        return Ok(LineRead::Stopped);
                    }
                }
            }
            let available = &self.buf[self.start..self.end];
            let (chunk, used, done) = match memchr::memchr(b'\n', available) {
                Some(at) => (&available[..at], at + 1, true),
                None => (available, available.len(), false),
            };
            let room = self.max_line.saturating_sub(line.len());
            self.cut |= chunk.len() > room;
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.start += used;
            self.consumed += used as u64;
            started = true;
            if done {
                return Ok(LineRead::Line);
            }
            // An endless line (`/dev/zero`) must not keep a stopping run waiting for its end.
            if self.cut && !idle() {
                self.torn = true;
                return Ok(LineRead::Stopped);
            }
        }
    }

    /// Bytes consumed through the last complete line and their digest; `None` after a read
    /// that stopped in the middle of a line.
    pub fn position(&mut self) -> Option<InputPosition> {
        if self.torn {
            return None;
        }
        self.hash_consumed();
        Some(InputPosition {
            bytes: self.consumed,
            digest: self.hasher.as_ref().map(|h| h.digest128()),
        })
    }

    fn hash_consumed(&mut self) {
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&self.buf[self.hashed..self.start]);
        }
        self.hashed = self.start;
    }

    /// Refills the (fully consumed) buffer: `Some(bytes read)`, 0 at the end of the input, or
    /// `None` when `idle` said to stop waiting.
    fn fill(&mut self, idle: &mut dyn FnMut() -> bool) -> io::Result<Option<usize>> {
        self.hash_consumed();
        (self.start, self.end, self.hashed) = (0, 0, 0);
        if self.pollable {
            let mut wait = Duration::ZERO;
            while !self.ready(wait)? {
                if !idle() {
                    return Ok(None);
                }
                wait = IDLE_POLL;
            }
        }
        loop {
            match self.handle.file().read(&mut self.buf) {
                Ok(n) => {
                    self.end = n;
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a read would not block, waiting at most `wait`. A signal ends the wait early
    /// (as "not ready"), so the caller looks at its stop flag at once.
    fn ready(&self, wait: Duration) -> io::Result<bool> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let fd: BorrowedFd<'_> = self.handle.file().as_fd();
        debug_assert!(fd.as_raw_fd() >= 0);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let millis = wait.as_millis().min(i32::MAX as u128) as i32;
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(reader: &mut LineReader) -> Vec<String> {
        let mut out = Vec::new();
        let mut line = Vec::new();
        while reader.read_line(&mut line, &mut || true).unwrap() == LineRead::Line {
            out.push(String::from_utf8_lossy(&line).into_owned());
        }
        out
    }

    #[test]
    fn lines_are_split_bounded_and_the_last_needs_no_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "a\nbbbbbbbb\n\nlast").unwrap();
        let mut reader = LineReader::open(&path, 4).unwrap();
        assert_eq!(lines_of(&mut reader), ["a", "bbbb", "", "last"]);
        assert_eq!(reader.consumed(), 16);
    }

    /// The digest at a position is the digest of exactly the bytes consumed through it.
    #[test]
    fn the_position_digests_exactly_the_consumed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let mut reader = LineReader::open(&path, 100).unwrap();
        let mut line = Vec::new();
        reader.read_line(&mut line, &mut || true).unwrap();
        reader.read_line(&mut line, &mut || true).unwrap();
        let at_two = reader.position().unwrap();
        assert_eq!(at_two.bytes, 8);
        assert_eq!(
            at_two.digest,
            Some(xxhash_rust::xxh3::xxh3_128(b"one\ntwo\n"))
        );
        reader.read_line(&mut line, &mut || true).unwrap();
        assert_eq!(
            reader.position().unwrap().digest,
            Some(xxhash_rust::xxh3::xxh3_128(b"one\ntwo\nthree\n"))
        );
    }

    /// A FIFO without a writer neither blocks the open nor the stop.
    #[test]
    fn a_fifo_without_a_writer_is_left_when_told_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut reader = LineReader::open(&path, 100).unwrap();
        let mut calls = 0;
        let started = std::time::Instant::now();
        let read = reader
            .read_line(&mut Vec::new(), &mut || {
                calls += 1;
                calls < 3
            })
            .unwrap();
        assert_eq!(read, LineRead::Stopped);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(reader.position().is_some(), "stopped between lines");
    }

    /// An endless line (a character device of zeros) lets a stop through and has no exact
    /// position afterwards.
    #[test]
    fn an_endless_line_lets_a_stop_through() {
        let mut reader = LineReader::open(Path::new("/dev/zero"), 1024).unwrap();
        let read = reader.read_line(&mut Vec::new(), &mut || false).unwrap();
        assert_eq!(read, LineRead::Stopped);
        assert!(reader.last_was_cut());
        assert_eq!(reader.position(), None);
    }

    #[test]
    fn lines_written_to_a_fifo_arrive_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut reader = LineReader::open(&path, 100).unwrap();
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let mut fifo = std::fs::OpenOptions::new()
                .write(true)
                .open(writer_path)
                .unwrap();
            fifo.write_all(b"x\ny\n").unwrap();
        });
        assert_eq!(lines_of(&mut reader), ["x", "y"]);
        writer.join().unwrap();
    }

    #[test]
    fn a_directory_is_not_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let error = LineReader::open(dir.path(), 10).unwrap_err();
        assert!(error.to_string().contains("is a directory"), "{error}");
    }
}
