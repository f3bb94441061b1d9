//! Where a worker's values go when they leave its local pipeline: the next group's rings
//! (routed by partition key or round robin over its workers, with watermarks and end-of-stream
//! markers), or, in the worker where records end, the dead-letter file.

use crate::observability::ids::trace_id_for;
use std::collections::HashMap;
use std::time::Duration;

use super::control::Shared;
use crate::data::{EnvelopeHeader, EnvelopeKind, Producer, PushError, Segment, push_envelope};
use crate::graph::{NodeError, PartitionKey, RecordContext, Value};
use crate::runtime::dead_letter::{DeadLetterRecord, DeadLetters};
use crate::runtime::pipeline::Egress;

/// How long one blocked push waits before checking whether the run is stopping.
pub(super) const PUSH_SLICE: Duration = Duration::from_millis(100);

/// The ring (of `rings`, one per worker of the next group) that a partition hash maps to.
/// The hash is mixed first: key hashes of ids are not uniform in their low bits.
pub(super) fn partition_ring(hash: u64, rings: usize) -> usize {
    let mut z = hash ^ (hash >> 31);
    z = z.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((z ^ (z >> 29)) % rings.max(1) as u64) as usize
}

/// Where a worker's values go when they leave its local chain: the next group's ring, or,
/// in the worker that holds the sink, the dead-letter adapter.
pub(super) struct WorkerEgress<'s> {
    pub(super) outbound: Vec<Producer<Segment>>,
    pub(super) group_index: u16,
    /// The run's id: a record's trace id is derived from it and `seq` unless a caller's trace
    /// context says otherwise.
    pub(super) run_id: u64,
    pub(super) dead_letters: Option<DeadLetters>,
    pub(super) arena: rkyv::ser::allocator::Arena,
    /// Values sent on for the record being processed (0 after it: a drop).
    pub(super) forwarded: u64,
    pub(super) sent: u64,
    pub(super) shared: &'s Shared,
    pub(super) ring_error: Option<String>,
    /// How values pick one of several outbound rings (one per worker of the next group).
    pub(super) routing: OutboundRouting,
    /// Watermark bookkeeping for the outbound rings.
    pub(super) marks: Watermarks,
}

/// Ring choice when the next group has several workers: by the target node's partition key
/// (same key, same worker, always) or round robin for stateless targets. Ring `k` leads to
/// worker `k + 1` of the next group in every producer, so a key maps to one worker run-wide.
#[derive(Default)]
pub(super) struct OutboundRouting {
    /// Partition keys of the next group's partitioned nodes, by graph index.
    pub(super) keys: HashMap<usize, PartitionKey>,
    pub(super) next: usize,
}

impl OutboundRouting {
    pub(super) fn round_robin(&mut self, rings: usize) -> usize {
        let ring = self.next % rings.max(1);
        self.next = self.next.wrapping_add(1);
        ring
    }
}

/// The watermark a worker publishes on each outbound ring: every record with `seq` at or
/// below it is fully processed and its outputs are written. Records are processed in `seq`
/// order (a merge feeds any worker with several inbound rings), so sending `seq` proves every
/// earlier record done; upstream watermarks prove it for records that sent nothing here.
#[derive(Default)]
pub(super) struct Watermarks {
    /// Highest `seq` seen in an outgoing envelope.
    pub(super) current: u64,
    /// Every record below `current` is done.
    pub(super) done_through: u64,
    /// What the inbound rings prove done (records never routed to this worker included).
    pub(super) upstream: u64,
    pub(super) published: u64,
}

impl Watermarks {
    pub(super) fn observe(&mut self, seq: u64) {
        if seq > self.current {
            self.done_through = self.done_through.max(seq - 1);
            self.current = seq;
        }
    }

    /// The watermark to publish now, if it moved.
    pub(super) fn due(&mut self) -> Option<u64> {
        let mark = self.done_through.max(self.upstream);
        (mark > self.published).then(|| {
            self.published = mark;
            mark
        })
    }
}

/// Envelopes between watermark publications on the source's worker (others publish per batch).
pub(super) const WATERMARK_EVERY: u64 = 256;

impl WorkerEgress<'_> {
    pub(super) fn header_for(
        &self,
        ctx: &RecordContext<'_>,
        target: u32,
        kind: EnvelopeKind,
        route_hop: u16,
    ) -> EnvelopeHeader {
        // An unsampled record whose trace id is the run's own for its `seq` travels without a
        // trace context: the receiver derives the same id (see `data_loop::run_local`).
        let derivable = !ctx.sampled && ctx.trace_id == trace_id_for(self.run_id, ctx.seq);
        EnvelopeHeader {
            seq: ctx.seq,
            trace_id: if derivable { [0; 16] } else { ctx.trace_id },
            parent_span_id: ctx.parent_span.to_be_bytes(),
            reply_to: ctx.reply_to,
            target,
            source_group: self.group_index,
            route_hop,
            trace_flags: u8::from(ctx.sampled),
            born_unix_ns: ctx.born_ns,
            kind,
        }
    }

    /// Writes one envelope into the outbound ring, waiting out backpressure unless the run is
    /// being aborted.
    pub(super) fn push(
        &mut self,
        ring: usize,
        header: &EnvelopeHeader,
        encode: &mut dyn FnMut(&mut [u8], &mut rkyv::ser::allocator::Arena) -> Option<usize>,
    ) -> Result<(), NodeError> {
        self.marks.observe(header.seq);
        if self.sent.is_multiple_of(WATERMARK_EVERY) {
            self.publish_watermark();
        }
        let Some(producer) = self.outbound.get_mut(ring) else {
            return Err(NodeError::failed(format!(
                "node {} is in another group and this worker has no ring to it",
                header.target
            )));
        };
        let arena = &mut self.arena;
        let stalled_before = producer.stalled();
        loop {
            let pushed = push_envelope(producer, header, |slot| encode(slot, arena), PUSH_SLICE);
            let stalled = producer.stalled();
            if stalled != stalled_before {
                self.shared.add_idle(stalled - stalled_before);
            }
            match pushed {
                Ok(_) => {
                    self.forwarded += 1;
                    self.sent += 1;
                    return Ok(());
                }
                Err(PushError::TimedOut)
                    if self.shared.stopping() && !self.shared.drain_on_stop() =>
                {
                    return Err(NodeError::STOPPED);
                }
                Err(PushError::TimedOut) => {}
                Err(PushError::TooLarge { len, max }) => {
                    return Err(NodeError::failed(format!(
                        "an envelope of more than {len} bytes does not fit the ring (max {max})"
                    )));
                }
                Err(PushError::Corrupted(e)) => {
                    self.ring_error = Some(e.to_string());
                    return Err(NodeError::failed(format!("outbound ring corrupted: {e}")));
                }
            }
        }
    }

    /// Forwards an envelope received from upstream, one hop further.
    pub(super) fn forward_raw(
        &mut self,
        header: &EnvelopeHeader,
        payload: &[u8],
    ) -> Result<(), NodeError> {
        let mut header = *header;
        header.route_hop = header.route_hop.saturating_add(1);
        header.source_group = self.group_index;
        let ring = self.routing.round_robin(self.outbound.len());
        self.push(ring, &header, &mut |slot, _| {
            slot.get_mut(..payload.len())?.copy_from_slice(payload);
            Some(payload.len())
        })
    }

    /// An end-of-stream marker after record `of.seq` (on every outbound ring) or a drop marker
    /// for record `of` (on one); a drop marker keeps the record's `reply_to`, so an embedding
    /// host learns that its request produced nothing, and its birth time, so that its latency
    /// is counted where records end.
    pub(super) fn marker(
        &mut self,
        kind: EnvelopeKind,
        of: &EnvelopeHeader,
    ) -> Result<(), NodeError> {
        let seq = of.seq;
        let mut header = EnvelopeHeader::data(seq, 0);
        header.kind = kind;
        header.reply_to = of.reply_to;
        header.born_unix_ns = of.born_unix_ns;
        header.source_group = self.group_index;
        if kind == EnvelopeKind::EndOfStream {
            for ring in 0..self.outbound.len() {
                // Each ring's end counts that ring's records, so its consumer can prove it
                // read them all.
                let records = self.outbound[ring].records();
                let end = EnvelopeHeader {
                    source_group: self.group_index,
                    ..EnvelopeHeader::end_of_stream(seq, records)
                };
                self.push(ring, &end, &mut |_, _| Some(0))?;
            }
            return Ok(());
        }
        let ring = self.routing.round_robin(self.outbound.len());
        self.push(ring, &header, &mut |_, _| Some(0))
    }

    /// Publishes the watermark on every outbound ring when it moved (which also publishes the
    /// rings' tails and wakes parked consumers).
    pub(super) fn publish_watermark(&mut self) {
        if let Some(mark) = self.marks.due() {
            for producer in &mut self.outbound {
                producer.publish_watermark(mark);
            }
        }
    }

    pub(super) fn flush(&mut self) {
        self.publish_watermark();
        for producer in &mut self.outbound {
            producer.flush();
        }
    }

    /// The ring for a value for node `target`: by the target's partition key when it has
    /// one, else round robin.
    pub(super) fn ring_for(&mut self, target: usize, value: Value<'_>) -> usize {
        let rings = self.outbound.len();
        if rings <= 1 {
            return 0;
        }
        match self
            .routing
            .keys
            .get(&target)
            .and_then(|key| key.key_of(value))
        {
            Some(hash) => partition_ring(hash, rings),
            None => self.routing.round_robin(rings),
        }
    }
}

impl Egress for WorkerEgress<'_> {
    fn dead_letter_file(&mut self) -> Option<&mut DeadLetters> {
        self.dead_letters.as_mut()
    }

    /// The source waits for input: what it emitted goes downstream now (the batch and the
    /// watermarks are published, a parked consumer is woken).
    fn publish(&mut self) {
        self.flush();
    }

    fn envelopes_sent(&self) -> u64 {
        self.sent
    }

    fn forward(
        &mut self,
        target: usize,
        ctx: &RecordContext<'_>,
        value: Value<'_>,
    ) -> Result<(), NodeError> {
        let header = self.header_for(
            ctx,
            target as u32,
            EnvelopeKind::Data,
            ctx.route_hop.saturating_add(1),
        );
        let ring = self.ring_for(target, value);
        self.push(ring, &header, &mut |slot, arena| {
            value.encode(slot, arena).ok()
        })
    }

    /// A terminal output goes back to the embedding host when this worker has a ring to it
    /// (the last group of an embedded run); a batch run has no reader and discards it, as the
    /// inline runtime does without an output callback.
    fn terminal(
        &mut self,
        _from: usize,
        ctx: &RecordContext<'_>,
        value: Value<'_>,
    ) -> Result<(), NodeError> {
        if self.outbound.is_empty() {
            return Ok(());
        }
        let header = self.header_for(
            ctx,
            crate::data::TERMINAL_TARGET,
            EnvelopeKind::Data,
            ctx.route_hop,
        );
        self.push(0, &header, &mut |slot, arena| {
            value.encode(slot, arena).ok()
        })
    }

    fn dead_letter(
        &mut self,
        ctx: &RecordContext<'_>,
        node: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), NodeError> {
        if let Some(dead_letters) = &mut self.dead_letters {
            return dead_letters.write(ctx.seq, node, reason, detail);
        }
        let record = DeadLetterRecord {
            node: node.to_string(),
            reason: reason.to_string(),
            detail: detail.to_string(),
        };
        let header = self.header_for(
            ctx,
            0,
            EnvelopeKind::DeadLetter,
            ctx.route_hop.saturating_add(1),
        );
        let ring = self.routing.round_robin(self.outbound.len());
        self.push(ring, &header, &mut |slot, arena| {
            crate::graph::encode_into(&record, slot, arena).ok()
        })
    }
}
