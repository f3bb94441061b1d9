//! A publisher's messages in flight (retried with the same message id until acknowledged)
//! and a subscriber's messages held until the record before them arrived.

use super::*;

/// A publisher's messages not yet acknowledged, oldest first.
pub(super) struct Outbox<'e> {
    pub(super) edge: &'e Edge,
    pub(super) pending: VecDeque<InFlight>,
    pub(super) last_send: Instant,
}

pub(super) struct InFlight {
    pub(super) headers: HeaderMap,
    pub(super) payload: Bytes,
    pub(super) records: u64,
    pub(super) ack: Option<jetstream::context::PublishAckFuture>,
    /// When this message was first published (retries give up `idle_timeout_seconds` later).
    pub(super) since: Instant,
}

impl<'e> Outbox<'e> {
    pub(super) fn new(edge: &'e Edge) -> Self {
        Self {
            edge,
            pending: VecDeque::new(),
            last_send: Instant::now(),
        }
    }

    pub(super) fn idle_for(&self) -> Duration {
        self.last_send.elapsed()
    }

    /// Publishes the batch (empty: a watermark-only message) as records `first..`.
    pub(super) fn send(
        &mut self,
        first: u64,
        batch: &mut Batch,
        watermark: Option<u64>,
        traceparent: Option<String>,
        ends: bool,
    ) -> EdgeResult {
        let input = self.edge.shared.input.lock().clone();
        if input.is_none() && batch.is_empty() {
            // A host between two others learns the input from its first message; a watermark
            // before that has nothing to say yet.
            return Ok(());
        }
        let (payload, count) = batch.take();
        let mut headers = HeaderMap::new();
        if count > 0 {
            headers.insert(
                "Nats-Msg-Id",
                wire::message_id(&self.edge.subject, first, count),
            );
        }
        if let Some(input) = input {
            headers.insert(wire::INPUT, input);
        }
        headers.insert(wire::FIRST, first.to_string());
        headers.insert(wire::COUNT, count.to_string());
        if let Some(mark) = watermark {
            headers.insert(wire::WATERMARK, mark.to_string());
        }
        if let Some(parent) = traceparent {
            headers.insert(wire::TRACEPARENT, parent);
        }
        if ends {
            headers.insert(wire::END, "1");
        }
        let mut message = InFlight {
            headers,
            payload: Bytes::from(payload),
            records: u64::from(count),
            ack: None,
            since: Instant::now(),
        };
        self.publish(&mut message)?;
        self.pending.push_back(message);
        self.last_send = Instant::now();
        while self.pending.len() >= self.edge.settings.max_in_flight as usize {
            self.settle_front()?;
        }
        Ok(())
    }

    pub(super) fn publish(&self, message: &mut InFlight) -> EdgeResult {
        let edge = self.edge;
        let context = edge.context.lock().clone();
        let sent = edge.handle.block_on(context.publish_with_headers(
            edge.subject.clone(),
            message.headers.clone(),
            message.payload.clone(),
        ));
        message.ack = sent.ok();
        Ok(())
    }

    /// Waits for the oldest message's acknowledgement, republishing it (same id: the server
    /// keeps one copy) until `idle_timeout_seconds` after its first publish.
    pub(super) fn settle_front(&mut self) -> EdgeResult {
        let Some(mut message) = self.pending.pop_front() else {
            return Ok(());
        };
        let limit = Duration::from_secs_f64(self.edge.settings.idle_timeout_seconds);
        loop {
            if self.edge.stopped() {
                return Err(EdgeStop::Asked);
            }
            if let Some(ack) = message.ack.take() {
                match self.edge.handle.block_on(ack.into_future()) {
                    Ok(_) => {
                        self.edge
                            .shared
                            .published_records
                            .fetch_add(message.records, Ordering::Relaxed);
                        self.edge
                            .shared
                            .published_messages
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) if message.since.elapsed() > limit => {
                        return Err(EdgeStop::Failed(format!(
                            "JetStream did not acknowledge a message for {:.0} s: {e}; rerun this host's supervisor once the server is back (its output restarts cleanly)",
                            limit.as_secs_f64()
                        )));
                    }
                    // A full store does not empty itself: retrying for the idle timeout would
                    // only delay the same failure, and a plain rerun hits the same limit.
                    Err(e) if is_out_of_storage(&e) => {
                        let room = *self.edge.shared.room.lock();
                        return Err(EdgeStop::Refused(format!(
                            "JetStream cannot store more of stream {} ({e}): the server's or the account's storage limit is reached; {}. Free space or raise the limit (max_file_store, max_memory_store, the account's JetStream limits), delete the stream, then rerun both hosts",
                            self.edge.wanted.name,
                            room.describe(self.edge.settings.replicas)
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(worker_id = "supervisor", subject = %self.edge.subject, "publish not acknowledged ({e}); retrying");
                        let acknowledged =
                            self.edge.shared.published_records.load(Ordering::Relaxed);
                        if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound
                            && self.edge.settings.storage == StreamStorage::Memory
                            && acknowledged > 0
                        {
                            // The server lost the stream and the records it had acknowledged:
                            // nothing can bring them back from this host.
                            return Err(EdgeStop::Failed(format!(
                                "the server lost stream {} (memory storage) with the {acknowledged} records it had acknowledged; rerun both hosts (file storage or replicas keep records across a server restart)",
                                self.edge.wanted.name
                            )));
                        }
                        if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                            // A server that lost the stream (memory storage restarted, or a
                            // server still starting): create it again. A subscriber finds any
                            // records lost with it as a gap and fails; it never skips them.
                            let edge = self.edge;
                            let context = edge.context.lock().clone();
                            let _ = edge
                                .handle
                                .block_on(context.get_or_create_stream(edge.wanted.clone()));
                        } else if is_store_failure(&e) {
                            // The stream exists but its storage is gone: the sink host of a
                            // finished run deleted it while this host, restarted, created it
                            // again, and the server removed the new stream's files. Nothing
                            // in it can be read: create it afresh and publish again.
                            self.recreate_stream();
                            self.republish_pending()?;
                        } else {
                            // Every acknowledgement still awaited belongs to the old
                            // connection: publish them all again (same ids) on the new one,
                            // rather than letting each time out in turn.
                            self.edge.reconnect();
                            self.republish_pending()?;
                        }
                    }
                }
            } else if message.since.elapsed() > limit {
                return Err(EdgeStop::Failed(format!(
                    "cannot publish to JetStream for {:.0} s; rerun this host's supervisor once the server is back",
                    limit.as_secs_f64()
                )));
            }
            std::thread::sleep(SLICE);
            self.publish(&mut message)?;
        }
    }

    /// Deletes the run's broken stream and creates it again (see [`is_store_failure`]).
    fn recreate_stream(&self) {
        let edge = self.edge;
        let context = edge.context.lock().clone();
        tracing::warn!(worker_id = "supervisor", stream = %edge.wanted.name, "the server cannot store into stream {}: creating it again", edge.wanted.name);
        let _ = edge.handle.block_on(async {
            let _ = context.delete_stream(&edge.wanted.name).await;
            context.get_or_create_stream(edge.wanted.clone()).await
        });
    }

    pub(super) fn republish_pending(&mut self) -> EdgeResult {
        let mut pending = std::mem::take(&mut self.pending);
        for message in &mut pending {
            self.publish(message)?;
        }
        self.pending = pending;
        Ok(())
    }

    /// Settles the oldest messages whose acknowledgement already arrived... approximated by
    /// keeping at most half the window in flight while the ring is busy.
    pub(super) fn settle_ready(&mut self) -> EdgeResult {
        while self.pending.len() > (self.edge.settings.max_in_flight as usize / 2).max(1) {
            self.settle_front()?;
        }
        Ok(())
    }

    /// Waits for every message's acknowledgement.
    pub(super) fn settle_all(&mut self) -> EdgeResult {
        while !self.pending.is_empty() {
            self.settle_front()?;
        }
        Ok(())
    }
}

/// A received message not yet delivered.
pub(super) struct Held {
    pub(super) first: u64,
    pub(super) count: u64,
    pub(super) watermark: Option<u64>,
    pub(super) payload: Bytes,
}

/// A subscriber's state: the next record index it needs, messages that arrived ahead of it,
/// and the stream check of what it wrote into the ring.
#[derive(Default)]
pub(super) struct Inbox {
    pub(super) expected: u64,
    pub(super) watermark: u64,
    pub(super) early: BTreeMap<u64, Held>,
    pub(super) ready: VecDeque<Held>,
    pub(super) check: StreamCheck,
}

impl Inbox {
    /// Files a message: ready when it starts at or before the next needed record, held when
    /// it starts later (a retried publish can land after its successors).
    pub(super) fn hold(&mut self, held: Held, limit: usize) -> Result<(), String> {
        if held.first <= self.expected {
            self.ready.push_back(held);
            return Ok(());
        }
        if self.early.len() >= limit {
            return Err(format!(
                "{} messages arrived ahead of record {} that never came: the stream has a gap; delete the stream and rerun both hosts",
                self.early.len(),
                self.expected
            ));
        }
        self.early.insert(held.first, held);
        Ok(())
    }

    /// The next message to deliver: one that arrived in order, else a held one the last
    /// delivery made current.
    pub(super) fn next_ready(&mut self) -> Option<Held> {
        if let Some(held) = self.ready.pop_front() {
            return Some(held);
        }
        let (&first, _) = self.early.first_key_value()?;
        if first <= self.expected {
            return self.early.remove(&first);
        }
        None
    }
}

/// A publish the server refused for lack of storage: its own store is full, or the account's
/// JetStream limits are reached (JetStream errors 10023, 10047, 10028, 10002).
fn is_out_of_storage(error: &jetstream::context::PublishError) -> bool {
    let code = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code);
    code.is_some_and(|code| {
        [
            jetstream::ErrorCode::INSUFFICIENT_RESOURCES,
            jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED,
            jetstream::ErrorCode::MEMORY_RESOURCES_EXCEEDED,
            jetstream::ErrorCode::ACCOUNT_RESOURCES_EXCEEDED,
        ]
        .contains(&code)
    })
}

/// A publish the server refused because the stream's storage failed (JetStream error 10077,
/// "error creating msg block file"): the stream's files are gone under it.
fn is_store_failure(error: &jetstream::context::PublishError) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|e| e.error_code() == jetstream::ErrorCode::STREAM_STORE_FAILED)
}
