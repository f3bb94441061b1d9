//! The bridge over NATS JetStream: connection, the run's stream, one thread per bridged ring.
//!
//! The client runs on a small Tokio runtime owned by the bridge; each ring gets a plain thread
//! that blocks on the ring (with the ring's own wait strategy) and on the client (through the
//! runtime's handle), so ring back-pressure and network back-pressure meet in one loop. Every
//! wait is bounded: ring waits by short slices that check the stop flag, publishes by
//! `ack_wait_seconds` (retried with the same message id until `idle_timeout_seconds`), and a
//! subscriber's wait for its upstream by `idle_timeout_seconds`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;

use super::wire::{self, Batch, Fit};
use super::{BridgeCounts, BridgedRing, CrossHostError, Direction, EdgeFailure};
use crate::config::{CrossHost, StreamStorage};
use crate::data::{
    Consumer, EnvelopeHeader, EnvelopeKind, Producer, PushError, Readiness, Segment, StreamCheck,
    WaitStrategy,
};

/// How long one ring or network wait lasts before the stop flag is looked at again.
const SLICE: Duration = Duration::from_millis(50);
/// Least time between two watermark-only messages of an edge.
const WATERMARK_EVERY: Duration = Duration::from_millis(20);

/// The hand-off of one supervisor's bridged rings.
pub struct Bridge {
    runtime: Option<tokio::runtime::Runtime>,
    context: jetstream::Context,
    stream: String,
    url: String,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// What the ring threads report.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    edges: AtomicU64,
    finished: AtomicU64,
    failure: Mutex<Option<EdgeFailure>>,
    /// The run's input fingerprint (set at start on the source's host, else by the first
    /// message received).
    input: Mutex<Option<String>>,
    published_records: AtomicU64,
    published_messages: AtomicU64,
    received_records: AtomicU64,
    received_messages: AtomicU64,
    duplicate_records: AtomicU64,
}

impl Bridge {
    /// Connects to the server (within `connect_timeout_seconds`), makes sure the run's stream
    /// exists with this config's settings, and starts one thread per ring.
    ///
    /// `input` is the fingerprint of the run's input when this host holds the source; other
    /// hosts learn it from their first message and pass it on.
    pub fn start(
        settings: &CrossHost,
        run: &str,
        host: &str,
        input: Option<String>,
        rings: Vec<BridgedRing>,
    ) -> Result<Self, CrossHostError> {
        let url = super::server_url(settings);
        let shown = super::redacted_url(&url);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cross-host")
            .enable_all()
            .build()
            .map_err(|e| CrossHostError::JetStream {
                url: shown.clone(),
                detail: format!("cannot start the client runtime: {e}"),
            })?;
        let client = runtime.block_on(connect(settings, &url, host))?;
        // The context spawns its acknowledgement task on the current runtime.
        let _entered = runtime.enter();
        let context = new_context(&client, settings);
        let stream = super::stream_name(&settings.stream, run);
        let subjects = format!("{}.{run}.>", settings.stream);
        let wanted = stream_config(settings, &stream, &subjects);
        let recreate = wanted.clone();
        let handle = runtime.handle().clone();
        let deadline = Duration::from_secs_f64(settings.connect_timeout_seconds);
        let js_stream = runtime.block_on(async {
            tokio::time::timeout(deadline, ensure_stream(&context, wanted, &shown))
                .await
                .map_err(|_| CrossHostError::JetStream {
                    url: shown.clone(),
                    detail: format!(
                        "no answer about stream {stream} within {:.1} s (is JetStream enabled: nats-server -js?)",
                        deadline.as_secs_f64()
                    ),
                })?
        })?;
        let mut complete = BTreeSet::new();
        if let Some(input) = &input {
            let subjects: Vec<String> = rings
                .iter()
                .filter(|r| r.direction == Direction::Publish)
                .map(|r| super::subject_of(&settings.stream, run, &r.name))
                .collect();
            complete =
                runtime.block_on(check_stream_input(&js_stream, &subjects, input, &stream))?;
        }
        tracing::info!(
            worker_id = "supervisor",
            url = %shown,
            stream = %stream,
            edges = rings.len() as u64,
            "cross-host hand-off through JetStream stream {stream} at {shown}"
        );
        let shared = Arc::new(Shared::default());
        *shared.input.lock() = input;
        shared.edges.store(rings.len() as u64, Ordering::Relaxed);
        let mut threads = Vec::new();
        for ring in rings {
            let subject = super::subject_of(&settings.stream, run, &ring.name);
            let edge = Edge {
                already_complete: complete.contains(&subject),
                subject,
                ring,
                handle: handle.clone(),
                url: url.clone(),
                host: host.to_string(),
                context: Mutex::new(context.clone()),
                stream: js_stream.clone(),
                wanted: recreate.clone(),
                shared: Arc::clone(&shared),
                settings: settings.clone(),
            };
            let name = format!("bridge {}", edge.ring.name);
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || edge.run())
                .map_err(|e| CrossHostError::JetStream {
                    url: shown.clone(),
                    detail: format!("cannot start a bridge thread: {e}"),
                })?;
            threads.push(thread);
        }
        Ok(Self {
            runtime: Some(runtime),
            context,
            stream,
            url: shown,
            shared,
            threads,
        })
    }

    /// True once every edge carried its end of stream (published and acknowledged, or
    /// received and written into its ring).
    pub fn finished(&self) -> bool {
        self.shared.finished.load(Ordering::Relaxed) == self.shared.edges.load(Ordering::Relaxed)
    }

    /// The first edge failure, if any.
    pub fn failure(&self) -> Option<EdgeFailure> {
        self.shared.failure.lock().clone()
    }

    /// Records and messages moved so far.
    pub fn counts(&self) -> BridgeCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BridgeCounts {
            published_records: load(&self.shared.published_records),
            published_messages: load(&self.shared.published_messages),
            received_records: load(&self.shared.received_records),
            received_messages: load(&self.shared.received_messages),
            duplicate_records: load(&self.shared.duplicate_records),
        }
    }

    /// The run's stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Deletes the run's stream (the sink's host, once every edge drained).
    pub fn delete_stream(&self) -> Result<(), CrossHostError> {
        let Some(runtime) = &self.runtime else {
            return Ok(());
        };
        runtime
            .block_on(self.context.delete_stream(&self.stream))
            .map(|_| ())
            .map_err(|e| CrossHostError::JetStream {
                url: self.url.clone(),
                detail: format!("deleting stream {}: {e}", self.stream),
            })
    }

    /// Stops every edge thread (each looks at the flag at least every 50 ms); the client
    /// stays connected until the bridge is dropped (the stream may still be deleted).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A JetStream context whose publishes wait `ack_wait_seconds` for their acknowledgement.
fn new_context(client: &async_nats::Client, settings: &CrossHost) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs_f64(settings.ack_wait_seconds))
        .build(client.clone())
}

async fn connect(
    settings: &CrossHost,
    url: &str,
    host: &str,
) -> Result<async_nats::Client, CrossHostError> {
    let shown = super::redacted_url(url);
    let timeout = Duration::from_secs_f64(settings.connect_timeout_seconds);
    let options = connect_options(settings)
        .await?
        .name(format!("stream-kernel {host}"))
        .connection_timeout(timeout)
        // Reconnect forever once connected: a restarted server is waited for, bounded by the
        // edges' own deadlines.
        .max_reconnects(None)
        // A restarted server is back within a second or two: try often, at most every second.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(1000))
        });
    let connecting = options.connect(url);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(CrossHostError::Unreachable {
            url: shown,
            seconds: timeout.as_secs_f64(),
            detail: "timed out".into(),
        }),
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => {
            let detail = e.to_string();
            if matches!(
                e.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
            ) {
                Err(CrossHostError::Auth { url: shown, detail })
            } else {
                Err(CrossHostError::Unreachable {
                    url: shown,
                    seconds: timeout.as_secs_f64(),
                    detail,
                })
            }
        }
    }
}

/// The client's options from the credentials block and the `NATS_*` environment. Secrets are
/// read from files (or the environment) here and go nowhere else.
async fn connect_options(
    settings: &CrossHost,
) -> Result<async_nats::ConnectOptions, CrossHostError> {
    let credentials = &settings.credentials;
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| CrossHostError::Credentials {
                path: path.display().to_string(),
                detail: e.to_string(),
            })
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut options = async_nats::ConnectOptions::new();
    if let Some(path) = &credentials.creds_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|e| CrossHostError::Credentials {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                })?;
    }
    if let Some(token) = credentials
        .token_file
        .as_deref()
        .map(read)
        .transpose()?
        .or_else(|| env("NATS_TOKEN"))
    {
        options = options.token(token);
    }
    let user = credentials.user.clone().or_else(|| env("NATS_USER"));
    if let Some(user) = user {
        let password = match &credentials.password_file {
            Some(path) => read(path)?,
            None => env("NATS_PASSWORD").unwrap_or_default(),
        };
        options = options.user_and_password(user, password);
    }
    if let Some(path) = &credentials.nkey_seed_file {
        options = options.nkey(read(path)?);
    }
    if let Some(ca) = &credentials.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&credentials.tls_cert_file, &credentials.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

fn stream_config(settings: &CrossHost, name: &str, subjects: &str) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        storage: match settings.storage {
            StreamStorage::File => stream::StorageType::File,
            StreamStorage::Memory => stream::StorageType::Memory,
        },
        duplicate_window: Duration::from_secs_f64(settings.dedup_window_seconds),
        ..Default::default()
    }
}

/// The run's stream: created, or found with the same subjects, storage and window.
async fn ensure_stream(
    context: &jetstream::Context,
    wanted: stream::Config,
    url: &str,
) -> Result<stream::Stream, CrossHostError> {
    let name = wanted.name.clone();
    // Two hosts creating the run's stream at once can race inside the server (the loser is
    // told its subjects overlap the winner's): a second look finds the winner's stream.
    let mut attempt = 0;
    let mut found = loop {
        match context.get_or_create_stream(wanted.clone()).await {
            Ok(found) => break found,
            Err(_) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => {
                return Err(CrossHostError::JetStream {
                    url: url.to_string(),
                    detail: format!("stream {name}: {e}"),
                });
            }
        }
    };
    let info = found.info().await.map_err(|e| CrossHostError::JetStream {
        url: url.to_string(),
        detail: format!("stream {name}: {e}"),
    })?;
    let have = &info.config;
    let mut differences = Vec::new();
    if have.subjects != wanted.subjects {
        differences.push(format!(
            "subjects {:?}, this run needs {:?}",
            have.subjects, wanted.subjects
        ));
    }
    if have.storage != wanted.storage {
        differences.push(format!(
            "storage {:?}, this run needs {:?}",
            have.storage, wanted.storage
        ));
    }
    if have.duplicate_window != wanted.duplicate_window {
        differences.push(format!(
            "duplicate window {:?}, this run needs {:?}",
            have.duplicate_window, wanted.duplicate_window
        ));
    }
    if have.retention != wanted.retention {
        differences.push(format!(
            "retention {:?}, this run needs {:?}",
            have.retention, wanted.retention
        ));
    }
    if !differences.is_empty() {
        return Err(CrossHostError::StreamMismatch {
            stream: name,
            detail: differences.join("; "),
        });
    }
    Ok(found)
}

/// The host that reads the input checks that what the stream already holds (left by an
/// earlier, failed run under the same run id) came from the same input: a restarted host may
/// resume a stream, never mix two inputs in one. Returns the subjects that already end with
/// their end of stream (an earlier run of this host published everything on them).
async fn check_stream_input(
    stream: &stream::Stream,
    subjects: &[String],
    input: &str,
    name: &str,
) -> Result<BTreeSet<String>, CrossHostError> {
    let mut complete = BTreeSet::new();
    for subject in subjects {
        let found = match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => message,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => continue,
            Err(e) => {
                return Err(CrossHostError::JetStream {
                    url: String::new(),
                    detail: format!("reading the last message of {subject}: {e}"),
                });
            }
        };
        let theirs = found
            .headers
            .get(wire::INPUT)
            .map(|v| v.as_str().to_string());
        if theirs.as_deref() != Some(input) {
            return Err(CrossHostError::StreamMismatch {
                stream: name.to_string(),
                detail: format!(
                    "it holds records of another input (fingerprint {}, this run reads {input}): an earlier run under this run id failed; choose another --run-id",
                    theirs.as_deref().unwrap_or("none")
                ),
            });
        }
        if found.headers.get(wire::END).is_some() {
            complete.insert(subject.clone());
        }
    }
    Ok(complete)
}

/// One bridged ring and what it needs.
struct Edge {
    ring: BridgedRing,
    subject: String,
    /// The subject already ends with this edge's end of stream: the ring is read and
    /// checked, nothing is published again (the sink host may be deleting the stream as
    /// this host re-reads its input).
    already_complete: bool,
    handle: tokio::runtime::Handle,
    url: String,
    host: String,
    /// Replaced by a fresh one when acknowledgements stop arriving (after a reconnect the
    /// old one may never see them again).
    context: Mutex<jetstream::Context>,
    stream: stream::Stream,
    /// The stream's settings, to create it again when the server lost it.
    wanted: stream::Config,
    shared: Arc<Shared>,
    settings: CrossHost,
}

/// An edge stopped before its end: why (`None`: asked to stop).
type EdgeResult = Result<(), Option<String>>;

impl Edge {
    fn run(self) {
        // The client's types spawn tasks when dropped: they must find the runtime.
        let _entered = self.handle.enter();
        // A panic in the client must fail the edge, not leave it silently unfinished.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match self.ring.direction {
                Direction::Publish => self.publish(),
                Direction::Subscribe => self.subscribe(),
            }))
            .unwrap_or_else(|_| Err(Some("the NATS client panicked".to_string())));
        match outcome {
            Ok(()) => {
                self.shared.finished.fetch_add(1, Ordering::Relaxed);
            }
            Err(Some(detail)) => {
                let mut slot = self.shared.failure.lock();
                if slot.is_none() {
                    *slot = Some(EdgeFailure {
                        worker: self.ring.worker.clone(),
                        detail: format!(
                            "edge {} (subject {}): {detail}",
                            self.ring.name, self.subject
                        ),
                    });
                }
            }
            Err(None) => {}
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    fn segment(&self) -> Result<Segment, String> {
        self.ring
            .segment
            .try_clone()
            .map_err(|e| format!("cannot map the ring: {e}"))
    }

    /// Reads the ring and publishes its records in batches until its end of stream is
    /// acknowledged by the server.
    fn publish(&self) -> EdgeResult {
        let mut ring = Consumer::attach(self.segment()?, WaitStrategy::BALANCED)
            .map_err(|e| Some(e.to_string()))?;
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
                return Err(None);
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
                .map_err(|e| Some(format!("reading the ring: {e:?}")))?;
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
                return out.settle_all();
            }
            out.settle_ready()?;
            if drained {
                wait_for_ring(&mut ring, &check, mark_sent)?;
            }
        }
    }

    /// Reads the ring to its end of stream and drops its records: they are in the subject
    /// already (counted as duplicates skipped).
    fn drain_published(&self, ring: &mut Consumer<Segment>) -> EdgeResult {
        let mut check = StreamCheck::default();
        loop {
            if self.stopped() {
                return Err(None);
            }
            let taken = ring
                .poll(1024, |record| {
                    let (header, _) =
                        EnvelopeHeader::read(record.body).map_err(|e| e.to_string())?;
                    check.admit(&header).map_err(|e| e.to_string())
                })
                .map_err(|e| Some(format!("reading the ring: {e:?}")))?;
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
    fn subscribe(&self) -> EdgeResult {
        let mut ring = Producer::attach(self.segment()?, WaitStrategy::BALANCED)
            .map_err(|e| Some(e.to_string()))?;
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
                return Err(None);
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
                        return Err(Some(format!(
                            "no message from the upstream host for {:.0} s (idle_timeout_seconds): rerun this host's supervisor once the upstream host's supervisor and the NATS server run (it replays the stream from its start)",
                            idle_limit.as_secs_f64()
                        )));
                    }
                    continue;
                }
                Ok(None) => {
                    return Err(Some(
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
            let first =
                wire::number(header(wire::FIRST), wire::FIRST).map_err(|e| Some(e.to_string()))?;
            let count =
                wire::number(header(wire::COUNT), wire::COUNT).map_err(|e| Some(e.to_string()))?;
            let watermark = header(wire::WATERMARK).and_then(|v| v.parse::<u64>().ok());
            self.check_input(header(wire::INPUT)).map_err(Some)?;
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
                .map_err(Some)?;
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
    fn first_read(
        &self,
        config: &consumer::pull::OrderedConfig,
        idle_limit: Duration,
    ) -> Result<consumer::pull::Ordered, Option<String>> {
        let started = Instant::now();
        loop {
            match self.read_from(config.clone(), 0) {
                Ok(messages) => return Ok(messages),
                Err(e) if started.elapsed() > idle_limit => {
                    return Err(Some(format!(
                        "cannot read the subject for {:.0} s: {e}; rerun this host's supervisor once the NATS server runs (it replays the stream from its start)",
                        idle_limit.as_secs_f64()
                    )));
                }
                Err(e) => {
                    tracing::warn!(worker_id = "supervisor", subject = %self.subject, "cannot read the subject yet ({e}); retrying");
                    if self.stopped() {
                        return Err(None);
                    }
                    std::thread::sleep(SLICE);
                    self.reconnect();
                }
            }
        }
    }

    /// A connection of the edge's own, replacing the shared one: after a server restart the
    /// shared client reconnects, yet acknowledgements and deliveries on it may never resume.
    fn reconnect(&self) {
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
    fn read_from(
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
    fn check_input(&self, input: Option<&str>) -> Result<(), String> {
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
    fn deliver(&self, ring: &mut Producer<Segment>, inbox: &mut Inbox, held: Held) -> EdgeResult {
        let records = wire::records(&held.payload, held.count).map_err(|e| Some(e.to_string()))?;
        if let Fit::Take { skip } = wire::fit(held.first, held.count, inbox.expected) {
            self.shared
                .duplicate_records
                .fetch_add(skip as u64, Ordering::Relaxed);
            for body in &records[skip..] {
                let (header, _) = EnvelopeHeader::read(body).map_err(|e| Some(e.to_string()))?;
                inbox
                    .check
                    .admit(&header)
                    .map_err(|e| Some(e.to_string()))?;
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
    fn push(&self, ring: &mut Producer<Segment>, body: &[u8]) -> EdgeResult {
        loop {
            match ring.push(body, SLICE) {
                Ok(()) => return Ok(()),
                Err(PushError::TimedOut) if !self.stopped() => continue,
                Err(PushError::TimedOut) => return Err(None),
                Err(e) => return Err(Some(format!("writing the ring: {e}"))),
            }
        }
    }
}

/// The W3C `traceparent` of an envelope that carries a trace context.
fn traceparent_of(header: &EnvelopeHeader) -> String {
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
fn wait_for_ring(ring: &mut Consumer<Segment>, check: &StreamCheck, mark: u64) -> EdgeResult {
    match ring.wait_for_watermark(SLICE, mark) {
        Ok(Readiness::Closed) if !check.ended() => {
            Err(Some(check.closed().err().map_or_else(
                || "ring closed".to_string(),
                |e| e.to_string(),
            )))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(Some(e.to_string())),
    }
}

/// A publisher's messages not yet acknowledged, oldest first.
struct Outbox<'e> {
    edge: &'e Edge,
    pending: VecDeque<InFlight>,
    last_send: Instant,
}

struct InFlight {
    headers: HeaderMap,
    payload: Bytes,
    records: u64,
    ack: Option<jetstream::context::PublishAckFuture>,
    /// When this message was first published (retries give up `idle_timeout_seconds` later).
    since: Instant,
}

impl<'e> Outbox<'e> {
    fn new(edge: &'e Edge) -> Self {
        Self {
            edge,
            pending: VecDeque::new(),
            last_send: Instant::now(),
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_send.elapsed()
    }

    /// Publishes the batch (empty: a watermark-only message) as records `first..`.
    fn send(
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

    fn publish(&self, message: &mut InFlight) -> EdgeResult {
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
    fn settle_front(&mut self) -> EdgeResult {
        let Some(mut message) = self.pending.pop_front() else {
            return Ok(());
        };
        let limit = Duration::from_secs_f64(self.edge.settings.idle_timeout_seconds);
        loop {
            if self.edge.stopped() {
                return Err(None);
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
                        return Err(Some(format!(
                            "JetStream did not acknowledge a message for {:.0} s: {e}; rerun this host's supervisor once the server is back (its output restarts cleanly)",
                            limit.as_secs_f64()
                        )));
                    }
                    Err(e) => {
                        tracing::warn!(worker_id = "supervisor", subject = %self.edge.subject, "publish not acknowledged ({e}); retrying");
                        if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound {
                            // A server that lost the stream (memory storage restarted, or a
                            // server still starting): create it again. A subscriber finds any
                            // records lost with it as a gap and fails; it never skips them.
                            let edge = self.edge;
                            let context = edge.context.lock().clone();
                            let _ = edge
                                .handle
                                .block_on(context.get_or_create_stream(edge.wanted.clone()));
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
                return Err(Some(format!(
                    "cannot publish to JetStream for {:.0} s; rerun this host's supervisor once the server is back",
                    limit.as_secs_f64()
                )));
            }
            std::thread::sleep(SLICE);
            self.publish(&mut message)?;
        }
    }

    fn republish_pending(&mut self) -> EdgeResult {
        let mut pending = std::mem::take(&mut self.pending);
        for message in &mut pending {
            self.publish(message)?;
        }
        self.pending = pending;
        Ok(())
    }

    /// Settles the oldest messages whose acknowledgement already arrived... approximated by
    /// keeping at most half the window in flight while the ring is busy.
    fn settle_ready(&mut self) -> EdgeResult {
        while self.pending.len() > (self.edge.settings.max_in_flight as usize / 2).max(1) {
            self.settle_front()?;
        }
        Ok(())
    }

    /// Waits for every message's acknowledgement.
    fn settle_all(&mut self) -> EdgeResult {
        while !self.pending.is_empty() {
            self.settle_front()?;
        }
        Ok(())
    }
}

/// A received message not yet delivered.
struct Held {
    first: u64,
    count: u64,
    watermark: Option<u64>,
    payload: Bytes,
}

/// A subscriber's state: the next record index it needs, messages that arrived ahead of it,
/// and the stream check of what it wrote into the ring.
#[derive(Default)]
struct Inbox {
    expected: u64,
    watermark: u64,
    early: BTreeMap<u64, Held>,
    ready: VecDeque<Held>,
    check: StreamCheck,
}

impl Inbox {
    /// Files a message: ready when it starts at or before the next needed record, held when
    /// it starts later (a retried publish can land after its successors).
    fn hold(&mut self, held: Held, limit: usize) -> Result<(), String> {
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
    fn next_ready(&mut self) -> Option<Held> {
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
