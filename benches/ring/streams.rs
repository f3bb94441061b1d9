//! Byte-stream peers: a Unix stream socket and a pipe, length-prefixed frames. The buffered
//! rows stream through 256 KiB writers (many messages per system call, flushed per batch);
//! the per-message row writes every message with its own system call (request/response use).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::process::Child;

use rkyv::ser::allocator::Arena;
use stream_kernel::data::EnvelopeKind;
use stream_kernel::graph::AlignedBuf;

use crate::common::{
    BenchPayload, EXIT, Link, check_envelope, encode_message, marker, payload_of, spawn_child,
};

struct StreamLink<W: Write, R: Read> {
    tx: W,
    rx: R,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
}

fn write_frame(w: &mut impl Write, bytes: &[u8]) {
    w.write_all(&(bytes.len() as u32).to_le_bytes())
        .expect("write");
    w.write_all(bytes).expect("write");
}

fn read_frame<'b>(r: &mut impl Read, buf: &'b mut AlignedBuf) -> Option<&'b [u8]> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let len = u32::from_le_bytes(len) as usize;
    buf.grow_to(len);
    let bytes = &mut buf.as_mut_bytes()[..len];
    r.read_exact(bytes).ok()?;
    Some(bytes)
}

impl<W: Write, R: Read> Link for StreamLink<W, R> {
    fn send(&mut self, seq: u64) {
        let len = encode_message(&mut self.buf, &mut self.arena, seq, &self.payload);
        write_frame(&mut self.tx, &self.buf.as_bytes()[..len]);
    }
    fn flush(&mut self) {
        self.tx.flush().expect("flush");
    }
    fn send_marker(&mut self, target: u32) {
        let len = marker(&mut self.buf, target);
        write_frame(&mut self.tx, &self.buf.as_bytes()[..len]);
        self.tx.flush().expect("flush");
    }
    fn recv(&mut self) -> EnvelopeKind {
        check_envelope(read_frame(&mut self.rx, &mut self.rbuf).expect("frame")).0
    }
}

fn stream_echo(mut rx: impl Read, mut tx: impl Write, echo: bool) {
    let mut buf = AlignedBuf::with_capacity(128 * 1024);
    while let Some(frame) = read_frame(&mut rx, &mut buf) {
        let (kind, target) = check_envelope(frame);
        if kind == EnvelopeKind::EndOfStream && target == EXIT {
            return;
        }
        if echo || kind == EnvelopeKind::EndOfStream {
            write_frame(&mut tx, frame);
            tx.flush().expect("flush");
        }
    }
}

/// A Unix stream socket; `buffered` streams through a 256 KiB writer, otherwise every message
/// is its own `write`.
pub fn unix_socket(size: usize, echo: bool, buffered: bool) -> (Box<dyn Link>, Child) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let fd = theirs.as_raw_fd();
    let child = spawn_child("unix", &format!("{fd},{echo}"), &[fd]);
    drop(theirs);
    let capacity = if buffered { 256 * 1024 } else { 0 };
    let tx = std::io::BufWriter::with_capacity(capacity, ours.try_clone().expect("clone"));
    let link = StreamLink {
        tx,
        rx: std::io::BufReader::with_capacity(256 * 1024, ours),
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
    };
    (Box::new(link), child)
}

pub fn child_unix(arg: &str) {
    let (fd, echo) = arg.split_once(',').expect("arg");
    // SAFETY: the parent passed this socket fd to this child alone.
    let socket = unsafe { UnixStream::from_raw_fd(fd.parse().expect("fd")) };
    let rx = std::io::BufReader::with_capacity(256 * 1024, socket.try_clone().expect("clone"));
    stream_echo(
        rx,
        std::io::BufWriter::with_capacity(256 * 1024, socket),
        echo == "true",
    );
}

fn pipe_pair() -> (std::fs::File, std::fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // Bigger pipe buffers for the 64 KiB case (the default is 64 KiB).
    // SAFETY: F_SETPIPE_SZ on a pipe fd we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    (std::fs::File::from(r), std::fs::File::from(w))
}

pub fn pipe_peer(size: usize, echo: bool) -> (Box<dyn Link>, Child) {
    let (request_r, request_w) = pipe_pair();
    let (reply_r, reply_w) = pipe_pair();
    let (cr, cw) = (request_r.as_raw_fd(), reply_w.as_raw_fd());
    let child = spawn_child("pipe", &format!("{cr},{cw},{echo}"), &[cr, cw]);
    drop((request_r, reply_w));
    let link = StreamLink {
        tx: std::io::BufWriter::with_capacity(256 * 1024, request_w),
        rx: std::io::BufReader::with_capacity(256 * 1024, reply_r),
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
    };
    (Box::new(link), child)
}

pub fn child_pipe(arg: &str) {
    let parts: Vec<&str> = arg.split(',').collect();
    // SAFETY: the parent passed these pipe fds to this child alone.
    let (rx, tx) = unsafe {
        (
            std::fs::File::from_raw_fd(parts[0].parse().expect("fd")),
            std::fs::File::from_raw_fd(parts[1].parse().expect("fd")),
        )
    };
    stream_echo(
        std::io::BufReader::with_capacity(256 * 1024, rx),
        std::io::BufWriter::with_capacity(256 * 1024, tx),
        parts[2] == "true",
    );
}
