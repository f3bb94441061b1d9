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

mod edge;
mod owner;
mod queue;

use edge::{Edge, EdgeResult, EdgeStop};
use queue::{Held, Inbox, Outbox};

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
    /// This host's claim on the run id (released at the end).
    claim: Option<owner::Claim>,
    /// What a fresh connection needs (the end-of-run delete retries on one).
    settings: CrossHost,
    server_url: String,
    host: String,
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
    /// The input's size and the account's room, for a refused publish's message.
    room: Mutex<Room>,
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
        input_bytes: Option<u64>,
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
        // One process per run id and host: claimed before the stream is touched.
        // Each asks again until 90% of the connect timeout, then says why.
        let retry_until = || Instant::now() + deadline.mul_f64(0.9);
        let claim = runtime.block_on(within(
            deadline,
            &shown,
            "the run's claims bucket".to_string(),
            owner::Claim::take(&context, settings, (run, host), &shown, retry_until()),
        ))?;
        let room = runtime.block_on(check_room(&context, settings, input_bytes, &shown))?;
        let js_stream = runtime.block_on(within(
            deadline,
            &shown,
            format!("stream {stream} (is JetStream enabled: nats-server -js?)"),
            ensure_stream(&context, wanted, &shown, retry_until()),
        ))?;
        let mut complete = BTreeSet::new();
        if let Some(input) = &input {
            let subjects: Vec<String> = rings
                .iter()
                .filter(|r| r.direction == Direction::Publish)
                .map(|r| super::subject_of(&settings.stream, run, &r.name))
                .collect();
            let look = StreamLook {
                stream: &js_stream,
                name: &stream,
                url: &shown,
                deadline: Instant::now() + deadline,
            };
            complete = runtime.block_on(check_stream_input(&look, &subjects, input))?;
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
        *shared.room.lock() = Room {
            input_bytes,
            available: room,
        };
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
            claim: Some(claim),
            settings: settings.clone(),
            server_url: url,
            host: host.to_string(),
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
        let first = match deleted(runtime.block_on(self.context.delete_stream(&self.stream))) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // The connection may be the broken part (a partition healed, a server restarted):
        // retry on fresh ones until the connect timeout.
        tracing::warn!(worker_id = "supervisor", stream = %self.stream, "deleting the run's stream failed ({first}); retrying on a fresh connection");
        let deadline =
            Instant::now() + Duration::from_secs_f64(self.settings.connect_timeout_seconds);
        let mut last = first;
        while Instant::now() < deadline {
            let attempt = runtime.block_on(async {
                let client = connect(&self.settings, &self.server_url, &self.host).await?;
                let context = new_context(&client, &self.settings);
                deleted(context.delete_stream(&self.stream).await).map_err(|detail| {
                    CrossHostError::JetStream {
                        url: self.url.clone(),
                        detail,
                    }
                })
            });
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(CrossHostError::JetStream {
            url: self.url.clone(),
            detail: format!(
                "deleting stream {} failed, also on fresh connections: {last}; it expires after cross_host.max_age_seconds, or delete it by hand (`nats stream rm {}`)",
                self.stream, self.stream
            ),
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
        if let (Some(runtime), Some(claim)) = (&self.runtime, self.claim.take()) {
            runtime.block_on(claim.release());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// What the run's stream may need and have: the input's size (on the source's host) and the
/// bytes the account may still store (when it reports limits).
#[derive(Debug, Clone, Copy, Default)]
struct Room {
    input_bytes: Option<u64>,
    available: Option<u64>,
}

impl Room {
    /// `needs about N bytes for an input of M; the account has room for K` (what is known).
    fn describe(&self, replicas: u32) -> String {
        let mut said = match self.input_bytes {
            Some(input) => format!(
                "the stream needs about {} bytes for the {input}-byte input",
                needed_for(input, replicas)
            ),
            None => "the stream needs about 1.5x the input".to_string(),
        };
        match self.available {
            Some(room) => said.push_str(&format!(
                "; the account had room for {room} bytes at the start"
            )),
            None => said.push_str(
                "; the server's own store limit (max_file_store / max_memory_store) is not visible to clients",
            ),
        }
        said
    }
}

/// Bytes a stream holding an input of `input` bytes takes, replicas counted (its records are
/// re-encoded with their envelopes: about 1.5x the input, measured on fund-load lines).
fn needed_for(input: u64, replicas: u32) -> u64 {
    input.saturating_mul(3) / 2 * u64::from(replicas.max(1))
}

/// Where the account reports JetStream limits for the stream's storage: the room left, and
/// on the source's host a refusal when the input would not fit. `None`: no limit reported.
async fn check_room(
    context: &jetstream::Context,
    settings: &CrossHost,
    input_bytes: Option<u64>,
    url: &str,
) -> Result<Option<u64>, CrossHostError> {
    let Ok(account) = context.query_account().await else {
        // An account without JetStream information says nothing about room: the stream's
        // creation says the rest.
        return Ok(None);
    };
    let limits = &account.limits;
    let (limit, used, per_stream, storage, limit_name) = match settings.storage {
        StreamStorage::File => (
            limits.max_storage,
            account.storage,
            limits.storage_max_stream_bytes,
            "file",
            "max_file",
        ),
        StreamStorage::Memory => (
            limits.max_memory,
            account.memory,
            limits.memory_max_stream_bytes,
            "memory",
            "max_mem",
        ),
    };
    // Negative limits are "no limit".
    let Some(limit) = limit.and_then(|l| u64::try_from(l).ok()) else {
        return Ok(None);
    };
    let mut available = limit.saturating_sub(used);
    if let Some(cap) = per_stream
        .and_then(|c| u64::try_from(c).ok())
        .filter(|&c| c > 0)
    {
        available = available.min(cap);
    }
    if let Some(input) = input_bytes {
        let needed = needed_for(input, settings.replicas);
        if needed > available {
            return Err(CrossHostError::NoRoom {
                url: url.to_string(),
                storage,
                available,
                needed,
                input,
                replicas: settings.replicas.max(1),
                limit: limit_name,
            });
        }
    }
    Ok(Some(available))
}

/// `answer`, or a failure saying that `what` gave none within `deadline`.
async fn within<T>(
    deadline: Duration,
    url: &str,
    what: String,
    answer: impl std::future::Future<Output = Result<T, CrossHostError>>,
) -> Result<T, CrossHostError> {
    tokio::time::timeout(deadline, answer)
        .await
        .map_err(|_| CrossHostError::JetStream {
            url: url.to_string(),
            detail: format!(
                "no answer about {what} within {:.1} s",
                deadline.as_secs_f64()
            ),
        })?
}

/// A delete's answer: done, also when the stream was gone already (what the delete was for).
fn deleted(
    answer: Result<jetstream::stream::DeleteStatus, jetstream::context::DeleteStreamError>,
) -> Result<(), String> {
    match answer {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
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
    // Several seed servers (comma separated): the client tries them and follows the cluster.
    let servers: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
        .map(|one| one.parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| CrossHostError::Unreachable {
            url: shown.clone(),
            seconds: 0.0,
            detail: format!("not a server address: {e}"),
        })?;
    let connecting = options.connect(servers);
    let tls_files = tls_files(settings);
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) if !tls_files.is_empty() => Err(CrossHostError::Tls {
            url: shown,
            detail: format!(
                "no session within {:.1} s: the server did not answer, or the client kept retrying a TLS handshake that fails",
                timeout.as_secs_f64()
            ),
            files: tls_files,
        }),
        Err(_) => Err(CrossHostError::Unreachable {
            url: shown,
            seconds: timeout.as_secs_f64(),
            detail: "timed out".into(),
        }),
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) if e.kind() == async_nats::ConnectErrorKind::Tls => {
            let detail = std::error::Error::source(&e)
                .map_or_else(|| e.to_string(), |source| format!("{e}: {source}"));
            Err(CrossHostError::Tls {
                url: shown,
                detail,
                files: tls_files,
            })
        }
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

/// The TLS files of the credentials block, for an error message (`none` when TLS is only what
/// a `tls://` URL asks for).
fn tls_files(settings: &CrossHost) -> String {
    let credentials = &settings.credentials;
    let files: Vec<String> = [
        ("tls_ca_file", &credentials.tls_ca_file),
        ("tls_cert_file", &credentials.tls_cert_file),
        ("tls_key_file", &credentials.tls_key_file),
    ]
    .into_iter()
    .filter_map(|(key, path)| Some(format!("{key} {}", path.as_ref()?.display())))
    .collect();
    files.join(", ")
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
        num_replicas: settings.replicas as usize,
        max_age: Duration::from_secs_f64(settings.max_age_seconds.max(0.0)),
        ..Default::default()
    }
}

/// The server found too few JetStream servers for the stream's replicas (JetStream error
/// 10005): a cluster still forming, or with servers down.
fn is_placement(error: &impl std::fmt::Display) -> bool {
    let text = error.to_string();
    text.contains("error code 10005") || text.contains("no suitable peers for placement")
}

/// The run's stream: created, or found with the same subjects, storage and window. A cluster
/// that cannot place its replicas yet (servers still starting or joining) is asked again until
/// `placed_by`.
async fn ensure_stream(
    context: &jetstream::Context,
    wanted: stream::Config,
    url: &str,
    placed_by: std::time::Instant,
) -> Result<stream::Stream, CrossHostError> {
    let name = wanted.name.clone();
    // Two hosts creating the run's stream at once can race inside the server (the loser is
    // told its subjects overlap the winner's): a second look finds the winner's stream.
    let mut attempt = 0;
    let mut found = loop {
        match context.get_or_create_stream(wanted.clone()).await {
            Ok(found) => break found,
            Err(e) if is_placement(&e) && std::time::Instant::now() < placed_by => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) if is_placement(&e) => {
                return Err(CrossHostError::JetStream {
                    url: url.to_string(),
                    detail: format!(
                        "stream {name}: the cluster cannot place {} replicas ({e}): start its servers with JetStream, or lower cross_host.replicas to the servers it has",
                        wanted.num_replicas
                    ),
                });
            }
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
    let differs = |what: &str, have: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        let (have, want) = (format!("{have:?}"), format!("{want:?}"));
        (have != want).then(|| format!("{what} {have}, this run needs {want}"))
    };
    let differences: Vec<String> = [
        differs("subjects", &have.subjects, &wanted.subjects),
        differs("storage", &have.storage, &wanted.storage),
        differs(
            "duplicate window",
            &have.duplicate_window,
            &wanted.duplicate_window,
        ),
        differs("retention", &have.retention, &wanted.retention),
        differs("replicas", &have.num_replicas, &wanted.num_replicas),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !differences.is_empty() {
        return Err(CrossHostError::StreamMismatch {
            stream: name,
            detail: differences.join("; "),
        });
    }
    Ok(found)
}

/// The run's stream, looked at before the first publish, within the connect deadline.
struct StreamLook<'a> {
    stream: &'a stream::Stream,
    name: &'a str,
    url: &'a str,
    deadline: Instant,
}

impl StreamLook<'_> {
    /// The last message on `subject` (`None`: there is none). A request that times out is
    /// asked again until the deadline: a replicated stream just created answers only once its
    /// replicas have elected a leader.
    async fn last_message(
        &self,
        subject: &str,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, CrossHostError> {
        let mut pause = Duration::from_millis(50);
        loop {
            match self.stream.get_last_raw_message_by_subject(subject).await {
                Ok(message) => return Ok(Some(message)),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(None);
                }
                Err(e) if Instant::now() + pause < self.deadline => {
                    tracing::debug!(
                        worker_id = "supervisor",
                        "stream {}: {e}; asking again",
                        self.name
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    return Err(CrossHostError::JetStream {
                        url: self.url.to_string(),
                        detail: format!("reading the last message of {subject}: {e}"),
                    });
                }
            }
        }
    }
}

/// The host that reads the input checks that what the stream already holds (left by an
/// earlier, failed run under the same run id) came from the same input: a restarted host may
/// resume a stream, never mix two inputs in one. Returns the subjects that already end with
/// their end of stream (an earlier run of this host published everything on them).
async fn check_stream_input(
    look: &StreamLook<'_>,
    subjects: &[String],
    input: &str,
) -> Result<BTreeSet<String>, CrossHostError> {
    let name = look.name;
    let mut complete = BTreeSet::new();
    for subject in subjects {
        let Some(found) = look.last_message(subject).await? else {
            continue;
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
