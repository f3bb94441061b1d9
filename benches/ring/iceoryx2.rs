//! iceoryx2 0.10, ipc publish-subscribe of `[u8]` slices, driven as its docs recommend for
//! zero-copy: the service's payload alignment is set (`payload_alignment`) so an archive can be
//! used where it lies; the sender loans an uninitialised sample of the envelope's size and
//! encodes into it; the receiver validates the sample in place (no copy); both sides busy-poll
//! (its lowest-latency mode).

use std::mem::MaybeUninit;
use std::process::Child;
use std::time::Duration;

use iceoryx2::prelude::*;
use rkyv::ser::allocator::Arena;
use stream_kernel::data::EnvelopeKind;

use crate::common::{
    BenchPayload, EXIT, Link, check_envelope, encode_message_uninit, envelope_len, marker_uninit,
    payload_of, spawn_child,
};

type IcePublisher = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
type IceSubscriber = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>;

struct IceLink {
    _node: Node<ipc::Service>,
    publisher: IcePublisher,
    subscriber: IceSubscriber,
    arena: Arena,
    payload: BenchPayload,
    /// Every data envelope of this run has this length: the size of each loan.
    len: usize,
}

fn ice_endpoints(
    node: &Node<ipc::Service>,
    out: &str,
    inp: &str,
    max_len: usize,
) -> (IcePublisher, IceSubscriber) {
    let service = |name: &str| {
        node.service_builder(&name.try_into().expect("service name"))
            .publish_subscribe::<[u8]>()
            .payload_alignment(Alignment::ALIGN_16)
            .enable_safe_overflow(false)
            .subscriber_max_buffer_size(512)
            .history_size(0)
            .open_or_create()
            .expect("service")
    };
    let publisher = service(out)
        .publisher_builder()
        .initial_max_slice_len(max_len)
        .max_loaned_samples(4)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("publisher");
    let subscriber = service(inp)
        .subscriber_builder()
        .buffer_size(512)
        .create()
        .expect("subscriber");
    (publisher, subscriber)
}

/// Loans a sample of `len` bytes, lets `fill` write all of it, and sends it.
fn send_filled(
    publisher: &IcePublisher,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> usize,
) {
    let mut sample = publisher.loan_slice_uninit(len).expect("loan");
    let written = fill(sample.payload_mut());
    assert_eq!(written, len, "the whole loan is written");
    // SAFETY: `fill` wrote every one of the `len` bytes (checked just above).
    let sample = unsafe { sample.assume_init() };
    sample.send().expect("send");
}

impl Link for IceLink {
    fn send(&mut self, seq: u64) {
        let (arena, payload) = (&mut self.arena, &self.payload);
        send_filled(&self.publisher, self.len, |out| {
            encode_message_uninit(out, arena, seq, payload)
        });
    }
    fn send_marker(&mut self, target: u32) {
        send_filled(
            &self.publisher,
            stream_kernel::data::ENVELOPE_HEADER,
            |out| marker_uninit(out, target),
        );
    }
    fn recv(&mut self) -> EnvelopeKind {
        loop {
            if let Some(sample) = self.subscriber.receive().expect("receive") {
                return check_envelope(sample.payload()).0;
            }
            std::hint::spin_loop();
        }
    }
}

pub fn iceoryx2_peer(size: usize, echo: bool) -> (Box<dyn Link>, Child) {
    let base = format!("sk-bench-{}-{}-{}", std::process::id(), size, echo);
    let node = NodeBuilder::new().create::<ipc::Service>().expect("node");
    let payload = payload_of(size);
    let len = envelope_len(&payload);
    let (publisher, subscriber) =
        ice_endpoints(&node, &format!("{base}-req"), &format!("{base}-rep"), len);
    let child = spawn_child("iceoryx2", &format!("{base},{len},{echo}"), &[]);
    // Wait until the child's subscriber is connected.
    while service_subscribers(&node, &base) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let link = IceLink {
        _node: node,
        publisher,
        subscriber,
        arena: Arena::new(),
        payload,
        len,
    };
    (Box::new(link), child)
}

fn service_subscribers(node: &Node<ipc::Service>, base: &str) -> usize {
    node.service_builder(&format!("{base}-req").as_str().try_into().expect("name"))
        .publish_subscribe::<[u8]>()
        .payload_alignment(Alignment::ALIGN_16)
        .open()
        .map(|s| s.dynamic_config().number_of_subscribers())
        .unwrap_or(0)
}

pub fn child_iceoryx2(arg: &str) {
    let parts: Vec<&str> = arg.split(',').collect();
    let (base, max_len, echo) = (parts[0], parts[1].parse().expect("len"), parts[2] == "true");
    let node = NodeBuilder::new().create::<ipc::Service>().expect("node");
    let (publisher, subscriber) = ice_endpoints(
        &node,
        &format!("{base}-rep"),
        &format!("{base}-req"),
        max_len,
    );
    loop {
        let Some(sample) = subscriber.receive().expect("receive") else {
            std::hint::spin_loop();
            continue;
        };
        let body = sample.payload();
        let (kind, target) = check_envelope(body);
        if kind == EnvelopeKind::EndOfStream && target == EXIT {
            return;
        }
        if echo || kind == EnvelopeKind::EndOfStream {
            send_filled(&publisher, body.len(), |out| {
                out.write_copy_of_slice(body);
                body.len()
            });
        }
    }
}
