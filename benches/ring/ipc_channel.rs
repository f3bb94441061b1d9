//! ipc-channel (servo): byte messages over its Linux backend. It hands received bytes back as
//! a `Vec<u8>` (1-aligned), so the receiver aligns them for rkyv, as a user must.

use std::process::Child;

use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender};
use rkyv::ser::allocator::Arena;
use stream_kernel::data::EnvelopeKind;
use stream_kernel::graph::AlignedBuf;

use crate::common::{
    BenchPayload, EXIT, Link, check_envelope, copy_aligned, encode_message, marker, payload_of,
    spawn_child,
};

type Handshake = (IpcBytesSender, IpcBytesReceiver);

struct IpcChannelLink {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
    buf: AlignedBuf,
    rbuf: AlignedBuf,
    arena: Arena,
    payload: BenchPayload,
}

impl Link for IpcChannelLink {
    fn send(&mut self, seq: u64) {
        let len = encode_message(&mut self.buf, &mut self.arena, seq, &self.payload);
        self.tx.send(&self.buf.as_bytes()[..len]).expect("send");
    }
    fn send_marker(&mut self, target: u32) {
        let len = marker(&mut self.buf, target);
        self.tx.send(&self.buf.as_bytes()[..len]).expect("send");
    }
    fn recv(&mut self) -> EnvelopeKind {
        let bytes = self.rx.recv().expect("recv");
        let len = copy_aligned(&mut self.rbuf, &bytes);
        check_envelope(&self.rbuf.as_bytes()[..len]).0
    }
}

pub fn ipc_channel_peer(size: usize, echo: bool) -> (Box<dyn Link>, Child) {
    let (server, name) = ipc_channel::ipc::IpcOneShotServer::<Handshake>::new().expect("server");
    let child = spawn_child("ipc-channel", &format!("{name},{echo}"), &[]);
    let (_, (tx, rx)) = server.accept().expect("accept");
    let link = IpcChannelLink {
        tx,
        rx,
        buf: AlignedBuf::with_capacity(128 * 1024),
        rbuf: AlignedBuf::with_capacity(128 * 1024),
        arena: Arena::new(),
        payload: payload_of(size),
    };
    (Box::new(link), child)
}

pub fn child_ipc_channel(arg: &str) {
    let (name, echo) = arg.rsplit_once(',').expect("arg");
    let (request_tx, request_rx) = ipc_channel::ipc::bytes_channel().expect("channel");
    let (reply_tx, reply_rx) = ipc_channel::ipc::bytes_channel().expect("channel");
    let bootstrap =
        ipc_channel::ipc::IpcSender::<Handshake>::connect(name.to_string()).expect("connect");
    bootstrap.send((request_tx, reply_rx)).expect("handshake");
    let mut buf = AlignedBuf::with_capacity(128 * 1024);
    while let Ok(bytes) = request_rx.recv() {
        let len = copy_aligned(&mut buf, &bytes);
        let (kind, target) = check_envelope(&buf.as_bytes()[..len]);
        if kind == EnvelopeKind::EndOfStream && target == EXIT {
            return;
        }
        if echo == "true" || kind == EnvelopeKind::EndOfStream {
            reply_tx.send(&bytes).expect("echo");
        }
    }
}
