//! One bridged ring's thread: a publisher drains its ring into the edge's subject, a
//! subscriber fills its ring from the subject; both with bounded waits and the stop flag.

use super::*;

/// One bridged ring and what it needs.
pub(super) struct Edge {
    pub(super) ring: BridgedRing,
    pub(super) subject: String,
    /// The subject already ends with this edge's end of stream: the ring is read and
    /// checked, nothing is published again (the sink host may be deleting the stream as
    /// this host re-reads its input).
    pub(super) already_complete: bool,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) url: String,
    pub(super) host: String,
    /// Replaced by a fresh one when acknowledgements stop arriving (after a reconnect the
    /// old one may never see them again).
    pub(super) context: Mutex<jetstream::Context>,
    pub(super) stream: stream::Stream,
    /// The stream's settings, to create it again when the server lost it.
    pub(super) wanted: stream::Config,
    pub(super) shared: Arc<Shared>,
    pub(super) settings: CrossHost,
}

/// Why an edge stopped before its end.
pub(super) enum EdgeStop {
    /// The run asked it to stop.
    Asked,
    /// It failed: what failed.
    Failed(String),
    /// The server refused to store more (its store or the account's limits are full): a
    /// rerun fails the same way until the limits change.
    Refused(String),
}

pub(super) type EdgeResult = Result<(), EdgeStop>;

impl From<String> for EdgeStop {
    fn from(detail: String) -> Self {
        Self::Failed(detail)
    }
}

impl Edge {
    pub(super) fn run(self) {
        // The client's types spawn tasks when dropped: they must find the runtime.
        let _entered = self.handle.enter();
        // A panic in the client must fail the edge, not leave it silently unfinished.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match self.ring.direction {
                Direction::Publish => self.publish(),
                Direction::Subscribe => self.subscribe(),
            }))
            .unwrap_or_else(|_| Err(EdgeStop::Failed("the NATS client panicked".to_string())));
        match outcome {
            Ok(()) => {
                self.shared.finished.fetch_add(1, Ordering::Relaxed);
            }
            Err(EdgeStop::Asked) => {}
            Err(EdgeStop::Failed(detail)) => self.record_failure(detail, false),
            Err(EdgeStop::Refused(detail)) => self.record_failure(detail, true),
        }
    }

    /// The first failure of any edge is the bridge's.
    fn record_failure(&self, detail: String, refused: bool) {
        let mut slot = self.shared.failure.lock();
        if slot.is_none() {
            *slot = Some(EdgeFailure {
                worker: self.ring.worker.clone(),
                detail: format!(
                    "edge {} (subject {}): {detail}",
                    self.ring.name, self.subject
                ),
                refused,
            });
        }
    }

    pub(super) fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// With memory storage a server restart loses the stream with every record it had
    /// acknowledged (a publisher that finds it gone creates it afresh): the run's stream must
    /// still be the one this host started with, or its records cannot be confirmed stored.
    fn confirm_stored(&self) -> EdgeResult {
        if self.settings.storage != StreamStorage::Memory {
            return Ok(());
        }
        let started = self.stream.cached_info().created;
        let context = self.context.lock().clone();
        let now = self.handle.block_on(async {
            let mut stream = context.get_stream(&self.wanted.name).await.ok()?;
            Some(stream.info().await.ok()?.created)
        });
        // Gone is the sink host's delete at its end (it had every record); a loss with no
        // publish after it shows there as a gap, and that host fails.
        if now.is_none_or(|created| created == started) {
            return Ok(());
        }
        Err(EdgeStop::Failed(format!(
            "stream {} (memory storage) is not the one this host published into: the server lost it with the records it had acknowledged; rerun both hosts (file storage or replicas keep records across a server restart)",
            self.wanted.name
        )))
    }

    pub(super) fn segment(&self) -> Result<Segment, String> {
        self.ring
            .segment
            .try_clone()
            .map_err(|e| format!("cannot map the ring: {e}"))
    }

    /// Reads the ring and publishes its records in batches until its end of stream is
    /// acknowledged by the server.
    pub(super) fn publish(&self) -> EdgeResult {
        let mut ring = Consumer::attach(self.segment()?, WaitStrategy::BALANCED)
            .map_err(|e| EdgeStop::Failed(e.to_string()))?;
        if self.already_complete {
            return self.drain_published(&mut ring);
        }
        let per_message = self.settings.records_per_message as usize;
        let mut out = Outbox::new(self);
        let mut batch = Batch::default();
        let mut traceparent: Option<String> = None;
        let mut check = StreamCheck::default();
        let mut next_index = 0u64;
        let mut mark_sent = 0u64;
        loop {
            if self.stopped() {
                return Err(EdgeStop::Asked);
            }
            // The watermark is read before the records: every record it covers was committed
            // before it, so once the ring is drained below, the watermark holds for them all.
            let mark = ring.watermark();
            let room = per_message - batch.count() as usize;
            let taken = ring
                .poll(room, |record| {
                    let (header, _) =
                        EnvelopeHeader::read(record.body).map_err(|e| e.to_string())?;
                    check.admit(&header).map_err(|e| e.to_string())?;
                    if traceparent.is_none() && header.carries_trace() {
                        traceparent = Some(traceparent_of(&header));
                    }
                    batch.push(record.body);
                    Ok::<(), String>(())
                })
                .map_err(|e| EdgeStop::Failed(format!("reading the ring: {e:?}")))?;
            let drained = taken < room;
            if check.ended()
                || batch.count() as usize == per_message
                || (drained && !batch.is_empty())
            {
                let first = next_index;
                next_index += u64::from(batch.count());
                let watermark = (drained && mark > mark_sent).then_some(mark);
                mark_sent = mark_sent.max(watermark.unwrap_or(0));
                out.send(
                    first,
                    &mut batch,
                    watermark,
                    traceparent.take(),
                    check.ended(),
                )?;
            } else if drained && mark > mark_sent && out.idle_for() >= WATERMARK_EVERY {
                out.send(next_index, &mut batch, Some(mark), None, false)?;
                mark_sent = mark;
            }
            if check.ended() {
                out.settle_all()?;
                return self.confirm_stored();
            }
            out.settle_ready()?;
            if drained {
                wait_for_ring(&mut ring, &check, mark_sent)?;
            }
        }
    }

    /// Reads the ring to its end of stream and drops its records: they are in the subject
    /// already (counted as duplicates skipped).
    pub(super) fn drain_published(&self, ring: &mut Consumer<Segment>) -> EdgeResult {
        let mut check = StreamCheck::default();
        loop {
            if self.stopped() {
                return Err(EdgeStop::Asked);
            }
            let taken = ring
                .poll(1024, |record| {
                    let (header, _) =
                        EnvelopeHeader::read(record.body).map_err(|e| e.to_string())?;
                    check.admit(&header).map_err(|e| e.to_string())
                })
                .map_err(|e| EdgeStop::Failed(format!("reading the ring: {e:?}")))?;
            self.shared
                .duplicate_records
                .fetch_add(taken as u64, Ordering::Relaxed);
            if check.ended() {
                return Ok(());
            }
            if taken == 0 {
                wait_for_ring(ring, &check, u64::MAX)?;
            }
        }
    }

    /// Reads the subject from its first message and writes each record not yet taken into
    /// the ring, in index order, until the end of stream.
    pub(super) fn subscribe(&self) -> EdgeResult {
        let mut ring = Producer::attach(self.segment()?, WaitStrategy::BALANCED)
            .map_err(|e| EdgeStop::Failed(e.to_string()))?;
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.subject.clone(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let idle_limit = Duration::from_secs_f64(self.settings.idle_timeout_seconds);
        let mut messages = self.first_read(&config, idle_limit)?;
        let resubscribe_after = Duration::from_secs_f64(self.settings.ack_wait_seconds);
        let mut inbox = Inbox::default();
        let mut last_message = Instant::now();
        let mut last_subscribe = Instant::now();
        let mut stream_sequence = 0u64;
        loop {
            if self.stopped() {
                return Err(EdgeStop::Asked);
            }
            let next = self
                .handle
                .block_on(async { tokio::time::timeout(SLICE, messages.next()).await });
            let message = match next {
                Err(_) => {
                    // Silence: after a reconnect the consumer may never deliver again, so it
                    // is created afresh after the last message taken (a few wasted creations
                    // when the upstream is merely slow).
                    if last_subscribe.elapsed() > resubscribe_after
                        && last_message.elapsed() > resubscribe_after
                    {
                        last_subscribe = Instant::now();
                        self.reconnect();
                        if let Ok(fresh) = self.read_from(config.clone(), stream_sequence) {
                            messages = fresh;
                        }
                    }
                    if last_message.elapsed() > idle_limit {
                        return Err(EdgeStop::Failed(format!(
                            "no message from the upstream host for {:.0} s (idle_timeout_seconds): rerun this host's supervisor once the upstream host's supervisor and the NATS server run (it replays the stream from its start)",
                            idle_limit.as_secs_f64()
                        )));
                    }
                    continue;
                }
                Ok(None) => {
                    return Err(EdgeStop::Failed(
                        "the subject's consumer ended: rerun this host's supervisor (it replays the stream from its start)".into(),
                    ));
                }
                Ok(Some(Err(e))) => {
                    // The ordered consumer recreates itself after gaps and reconnects;
                    // anything it cannot recover from shows up as silence, bounded above.
                    tracing::warn!(worker_id = "supervisor", subject = %self.subject, "JetStream: {e}");
                    continue;
                }
                Ok(Some(Ok(message))) => message,
            };
            last_message = Instant::now();
            if let Ok(info) = message.info() {
                stream_sequence = info.stream_sequence;
            }
            self.shared
                .received_messages
                .fetch_add(1, Ordering::Relaxed);
            let headers = message.headers.as_ref();
            let header = |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
            let first = wire::number(header(wire::FIRST), wire::FIRST)
                .map_err(|e| EdgeStop::Failed(e.to_string()))?;
            let count = wire::number(header(wire::COUNT), wire::COUNT)
                .map_err(|e| EdgeStop::Failed(e.to_string()))?;
            let watermark = header(wire::WATERMARK).and_then(|v| v.parse::<u64>().ok());
            self.check_input(header(wire::INPUT))
                .map_err(EdgeStop::Failed)?;
            inbox
                .hold(
                    Held {
                        first,
                        count,
                        watermark,
                        payload: message.payload.clone(),
                    },
                    self.settings.max_in_flight as usize * 4,
                )
                .map_err(EdgeStop::Failed)?;
            while let Some(held) = inbox.next_ready() {
                self.deliver(&mut ring, &mut inbox, held)?;
                if inbox.check.ended() {
                    ring.flush();
                    return Ok(());
                }
            }
            ring.flush();
        }
    }

    /// The subject's consumer from its first message, retried on a fresh connection (the
    /// server may be restarting) until `idle_limit`.
    pub(super) fn first_read(
        &self,
        config: &consumer::pull::OrderedConfig,
        idle_limit: Duration,
    ) -> Result<consumer::pull::Ordered, EdgeStop> {
        let started = Instant::now();
        loop {
            match self.read_from(config.clone(), 0) {
                Ok(messages) => return Ok(messages),
                Err(e) if started.elapsed() > idle_limit => {
                    return Err(EdgeStop::Failed(format!(
                        "cannot read the subject for {:.0} s: {e}; rerun this host's supervisor once the NATS server runs (it replays the stream from its start)",
                        idle_limit.as_secs_f64()
                    )));
                }
                Err(e) => {
                    tracing::warn!(worker_id = "supervisor", subject = %self.subject, "cannot read the subject yet ({e}); retrying");
                    if self.stopped() {
                        return Err(EdgeStop::Asked);
                    }
                    std::thread::sleep(SLICE);
                    self.reconnect();
                }
            }
        }
    }

    /// A connection of the edge's own, replacing the shared one: after a server restart the
    /// shared client reconnects, yet acknowledgements and deliveries on it may never resume.
    pub(super) fn reconnect(&self) {
        let fresh = self
            .handle
            .block_on(connect(&self.settings, &self.url, &self.host));
        match fresh {
            Ok(client) => *self.context.lock() = new_context(&client, &self.settings),
            Err(e) => {
                tracing::warn!(worker_id = "supervisor", subject = %self.subject, "reconnecting: {e}")
            }
        }
    }

    /// An ordered consumer of the edge's subject from the message after stream sequence
    /// `after` (0: from the first).
    pub(super) fn read_from(
        &self,
        mut config: consumer::pull::OrderedConfig,
        after: u64,
    ) -> Result<consumer::pull::Ordered, async_nats::Error> {
        if after > 0 {
            config.deliver_policy = consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            };
        }
        let context = self.context.lock().clone();
        let name = self.stream.cached_info().config.name.clone();
        let limit = Duration::from_secs_f64(self.settings.ack_wait_seconds);
        self.handle.block_on(async {
            tokio::time::timeout(limit, async {
                let stream = context.get_stream(name).await?;
                let consumer = stream.create_consumer(config).await?;
                consumer.messages().await.map_err(async_nats::Error::from)
            })
            .await
            .map_err(async_nats::Error::from)?
        })
    }

    /// Every message must come from a run on the same input as the first one (a stream left
    /// by a failed run on another input is refused, never mixed in).
    pub(super) fn check_input(&self, input: Option<&str>) -> Result<(), String> {
        let Some(input) = input else {
            return Err(format!("a message without its {} header", wire::INPUT));
        };
        let mut known = self.shared.input.lock();
        match known.as_deref() {
            None => {
                *known = Some(input.to_string());
                Ok(())
            }
            Some(same) if same == input => Ok(()),
            Some(other) => Err(format!(
                "the stream holds records of another input (fingerprint {input}, this run's is {other}): a failed earlier run left it; delete the stream or choose another --run-id, and rerun every host"
            )),
        }
    }

    /// Writes the new records of one message into the ring, and its watermark.
    pub(super) fn deliver(
        &self,
        ring: &mut Producer<Segment>,
        inbox: &mut Inbox,
        held: Held,
    ) -> EdgeResult {
        let records = wire::records(&held.payload, held.count)
            .map_err(|e| EdgeStop::Failed(e.to_string()))?;
        if let Fit::Take { skip } = wire::fit(held.first, held.count, inbox.expected) {
            self.shared
                .duplicate_records
                .fetch_add(skip as u64, Ordering::Relaxed);
            for body in &records[skip..] {
                let (header, _) =
                    EnvelopeHeader::read(body).map_err(|e| EdgeStop::Failed(e.to_string()))?;
                inbox
                    .check
                    .admit(&header)
                    .map_err(|e| EdgeStop::Failed(e.to_string()))?;
                self.push(ring, body)?;
                if header.kind == EnvelopeKind::EndOfStream {
                    break;
                }
            }
            inbox.expected = held.first + held.count;
            self.shared
                .received_records
                .fetch_add((records.len() - skip) as u64, Ordering::Relaxed);
        } else {
            self.shared
                .duplicate_records
                .fetch_add(records.len() as u64, Ordering::Relaxed);
        }
        if let Some(mark) = held.watermark
            && held.first + held.count <= inbox.expected
            && mark > inbox.watermark
        {
            inbox.watermark = mark;
            ring.publish_watermark(mark);
        }
        Ok(())
    }

    /// One record into the ring, waiting for space in slices (the worker reading it is
    /// watched by the supervisor; a stop ends the wait).
    pub(super) fn push(&self, ring: &mut Producer<Segment>, body: &[u8]) -> EdgeResult {
        loop {
            match ring.push(body, SLICE) {
                Ok(()) => return Ok(()),
                Err(PushError::TimedOut) if !self.stopped() => continue,
                Err(PushError::TimedOut) => return Err(EdgeStop::Asked),
                Err(e) => return Err(EdgeStop::Failed(format!("writing the ring: {e}"))),
            }
        }
    }
}

/// The W3C `traceparent` of an envelope that carries a trace context.
pub(super) fn traceparent_of(header: &EnvelopeHeader) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "00-{}-{}-{:02x}",
        hex(&header.trace_id),
        hex(&header.parent_span_id),
        header.trace_flags & 1
    )
}

/// Waits a slice for records or a watermark above `mark`; a ring closed before its end of
/// stream fails the edge.
pub(super) fn wait_for_ring(
    ring: &mut Consumer<Segment>,
    check: &StreamCheck,
    mark: u64,
) -> EdgeResult {
    match ring.wait_for_watermark(SLICE, mark) {
        Ok(Readiness::Closed) if !check.ended() => {
            Err(EdgeStop::Failed(check.closed().err().map_or_else(
                || "ring closed".to_string(),
                |e| e.to_string(),
            )))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(EdgeStop::Failed(e.to_string())),
    }
}
