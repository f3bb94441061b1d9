//! The k-way merge of a worker fed by several rings (the previous group runs several
//! workers): records are taken in `seq` order, the smallest head once every other ring's head
//! is past it or its watermark says nothing at or below it will come.

use std::time::{Duration, Instant};

use super::control::Shared;
use super::failure::{WorkerFailure, ring_failure, stream_failure};
use crate::data::{Consumer, EnvelopeHeader, EnvelopeKind, Segment, StreamCheck};

/// The next step of a k-way merge.
pub(super) enum MergePick {
    /// Take the head of this ring: it is the smallest `seq` anywhere.
    Take(usize),
    /// This ring may still send something smaller than the smallest head: wait for it.
    Wait(usize),
    /// No ring has a record: the next one may come on any of them.
    Idle,
    /// Every ring ended.
    Ended,
}

/// The header of a ring's head record, if one is committed.
pub(super) fn head_of(
    ring: &mut Consumer<Segment>,
) -> Result<Option<EnvelopeHeader>, WorkerFailure> {
    let Some(body) = ring.peek().map_err(ring_failure)? else {
        return Ok(None);
    };
    let (header, _) = EnvelopeHeader::read(body)
        .map_err(|e| WorkerFailure::ring(format!("inbound envelope: {e}")))?;
    Ok(Some(header))
}

/// Chooses the next record of a k-way merge by `seq` (ties: the lower ring). End-of-stream
/// markers are checked and consumed here and end their ring. Equal `seq`s on two rings only
/// happen when a node upstream emits several values for one record (fan-out) and they went to
/// different workers: their order is then by ring, not by emission (no bundled node does
/// that). `heads` caches each ring's head `seq` (a committed record does not change until it
/// is taken; the caller clears a ring's entry when it takes its head), so each pick looks only
/// at the rings whose head is not known yet.
pub(super) fn merge_pick(
    rings: &mut [Consumer<Segment>],
    streams: &mut [StreamCheck],
    heads: &mut [Option<u64>],
) -> Result<MergePick, WorkerFailure> {
    let mut marks = vec![u64::MAX; rings.len()];
    for (r, ring) in rings.iter_mut().enumerate() {
        if streams[r].ended() || heads[r].is_some() {
            continue;
        }
        // Watermark before head: a watermark read first covers every record committed
        // before it, so a ring found empty afterwards has nothing at or below it.
        marks[r] = ring.watermark();
        match head_of(ring)? {
            Some(header) if header.kind == EnvelopeKind::EndOfStream => {
                streams[r].admit(&header).map_err(stream_failure)?;
                ring.advance().map_err(ring_failure)?;
            }
            head => heads[r] = head.map(|h| h.seq),
        }
    }
    let Some((smallest, seq)) = heads
        .iter()
        .enumerate()
        .filter_map(|(r, head)| head.map(|seq| (r, seq)))
        .min_by_key(|(r, seq)| (*seq, *r))
    else {
        return Ok(if streams.iter().all(StreamCheck::ended) {
            MergePick::Ended
        } else {
            MergePick::Idle
        });
    };
    let holding_back = (0..rings.len())
        .find(|&o| o != smallest && !streams[o].ended() && heads[o].is_none() && marks[o] < seq);
    Ok(match holding_back {
        Some(o) => MergePick::Wait(o),
        None => MergePick::Take(smallest),
    })
}

/// Every inbound record at or below the returned `seq` has been taken: for each ring still
/// open, its head's `seq - 1`, or its watermark when it is empty.
pub(super) fn inbound_done_through(
    rings: &mut [Consumer<Segment>],
    streams: &[StreamCheck],
) -> Result<u64, WorkerFailure> {
    let mut through = u64::MAX;
    for (r, ring) in rings.iter_mut().enumerate() {
        if streams[r].ended() {
            continue;
        }
        let mark = ring.watermark();
        let done = match head_of(ring)? {
            Some(header) => header.seq.saturating_sub(1),
            None => mark,
        };
        through = through.min(done);
    }
    Ok(if through == u64::MAX { 0 } else { through })
}

/// Waits at most `slice` on one inbound ring for a record or a moved watermark. A ring found
/// closed before its end-of-stream record arrived was cut short: a failure, never an end.
pub(super) fn wait_on_ring(
    ring: &mut Consumer<Segment>,
    stream: &StreamCheck,
    slice: Duration,
    shared: &Shared,
) -> Result<(), WorkerFailure> {
    let waiting = Instant::now();
    // A moved watermark wakes us too: it must travel on even when no record comes this way
    // (a skewed partition), or a merge downstream would wait for it.
    let mark = ring.watermark();
    let woke = ring.wait_for_watermark(slice, mark);
    shared.add_idle(waiting.elapsed());
    match woke.map_err(ring_failure)? {
        crate::data::Readiness::Closed => stream.closed().map_err(stream_failure),
        _ => Ok(()),
    }
}
