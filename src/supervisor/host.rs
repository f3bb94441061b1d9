//! Embedding: a host program supervises its own pipeline and talks to it through rings.
//!
//! [`Runtime::start`] launches the workers (re-executions of the host's own binary, which calls
//! [`crate::worker_entry`] first thing in `main`), waits for every READY and opens the gate.
//! The host then writes envelopes straight into the first group's inbound ring
//! ([`Runtime::submit`], each with a `reply_to` of its choosing) and reads the last group's
//! terminal outputs from a ring of its own ([`Runtime::recv`]). A supervisor thread keeps
//! watching heartbeats and exits meanwhile; the host is never on the workers' data path.
//!
//! Every submitted record is answered: by its terminal outputs, by a `Dropped` reply when it
//! produced none, or by a `DeadLettered` reply when a node dead-lettered it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::SupervisorError;
use super::run::{HostEnd, RunEnd, RunFailure, SupervisedRun, Supervisor, SupervisorOptions};
use crate::config::Config;
use crate::data::{
    Consumer, EnvelopeHeader, EnvelopeKind, PollError, Producer, PushError, Readiness, Segment,
    StreamCheck, TERMINAL_TARGET, WaitStrategy, push_envelope,
};
use crate::graph::{AlignedBuf, Message, MessageType, PayloadError, Registry};
use crate::runtime::dead_letter::DeadLetterRecord;

/// How long one blocked ring operation waits before the host checks the workers' health.
const SLICE: Duration = Duration::from_millis(50);
/// Replies taken from one ring per poll.
const BATCH: usize = 256;

/// The supervisor thread's instructions.
const WATCH: u8 = 0;
const DRAIN: u8 = 1;
const ABORT: u8 = 2;

/// An embedded run failed or was used wrongly.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The supervisor failed to start or run.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// A worker failed; the run stopped.
    #[error("worker {} (group {}) failed: {}: {}", .0.worker, .0.group, .0.category, .0.detail)]
    WorkerFailed(RunFailure),
    /// The pipeline reads its own input: there is nothing to submit to.
    #[error(
        "the pipeline starts with a source; an embedding host can only submit to a pipeline without one"
    )]
    HasSource,
    /// The submitted value's type is not what the first node reads.
    #[error("`{entry}` reads {expected}, not {submitted}")]
    WrongType {
        /// The first node.
        entry: String,
        /// The type it reads.
        expected: MessageType,
        /// The type submitted.
        submitted: MessageType,
    },
    /// The submit or reply ring failed.
    #[error("ring {ring}: {detail}")]
    Ring {
        /// The ring.
        ring: String,
        /// What failed.
        detail: String,
    },
    /// The supervisor's thread ended without a result.
    #[error("the supervisor thread ended without a result")]
    SupervisorLost,
}

/// What came back for a submitted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyKind {
    /// A terminal output; read it with [`Reply::value`].
    Output,
    /// The record produced no output.
    Dropped,
    /// A node dead-lettered the record (`on_node_error: dead_letter`, or the node's choice).
    DeadLettered {
        /// The node that dead-lettered it.
        node: String,
        /// Its reason code.
        reason: String,
        /// Its message.
        detail: String,
    },
}

/// One answer to a submitted record.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The `seq` [`Runtime::submit`] returned for the record.
    pub seq: u64,
    /// The caller's correlation id, as submitted.
    pub reply_to: u64,
    /// What came back.
    pub kind: ReplyKind,
    /// The trace id every hop of the record carried.
    pub trace_id: [u8; 16],
    /// Cross-group hand-offs the record went through.
    pub route_hop: u16,
    payload: AlignedBuf,
    len: usize,
}

impl Reply {
    /// The terminal output as archived, in place, checked against type `T` (rkyv bytecheck).
    pub fn value<T: Message>(&self) -> Result<&T::Archived, PayloadError> {
        T::access(&self.payload.as_bytes()[..self.len])
    }

    /// The terminal output as a `T` of its own, checked and decoded.
    pub fn decode<T: Message>(&self) -> Result<T, PayloadError> {
        T::decode(&self.payload.as_bytes()[..self.len])
    }
}

/// A running embedded pipeline.
pub struct Runtime {
    ingress: Vec<Producer<Segment>>,
    egress: Vec<Consumer<Segment>>,
    egress_names: Vec<String>,
    egress_ended: Vec<StreamCheck>,
    pending: VecDeque<Reply>,
    next_seq: u64,
    next_ingress: usize,
    entry: (u32, String, MessageType),
    run_id: u64,
    /// Head sampling ratio when tracing is on: submitted records are traced at this rate.
    /// The head sampler when tracing is on (the host's records have no caller context).
    sampler: Option<crate::observability::span::Sampler>,
    arena: rkyv::ser::allocator::Arena,
    watcher: Watcher,
}

/// The supervisor thread and what it shares with the host.
struct Watcher {
    failure: Arc<Mutex<Option<RunFailure>>>,
    /// [`WATCH`] while the host works, then [`DRAIN`] (finish) or [`ABORT`] (dropped).
    finish: Arc<AtomicU8>,
    thread: Option<JoinHandle<SupervisedRun>>,
}

impl Watcher {
    fn failure(&self) -> Option<RunFailure> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn check(&self) -> Result<(), HostError> {
        match self.failure() {
            Some(failure) => Err(HostError::WorkerFailed(failure)),
            None => Ok(()),
        }
    }

    fn join(&mut self, how: u8) -> Result<SupervisedRun, HostError> {
        self.finish.store(how, Ordering::Relaxed);
        self.thread
            .take()
            .ok_or(HostError::SupervisorLost)?
            .join()
            .map_err(|_| HostError::SupervisorLost)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // A runtime dropped without `finish` still stops (and reaps) every worker.
        let _ = self.watcher.join(ABORT);
    }
}

impl Runtime {
    /// Launches the workers of a `process_supervisor` config whose pipeline has no source,
    /// waits until every worker is READY and sends START_WORK.
    pub fn start(
        config: &Config,
        registry: &Registry,
        options: &SupervisorOptions,
    ) -> Result<Self, HostError> {
        let graph =
            crate::graph::Graph::checked(config, registry).map_err(SupervisorError::Config)?;
        if graph.has_source() {
            return Err(HostError::HasSource);
        }
        let entry = graph
            .nodes
            .first()
            .and_then(|n| Some((0, n.name.clone(), n.input?)))
            .ok_or(SupervisorError::EmptyPipeline)?;
        let options = SupervisorOptions {
            host_rings: true,
            ..options.clone()
        };
        let mut supervisor = Supervisor::launch(config, registry, &options)?;
        if let Err(e) = supervisor
            .wait_ready()
            .and_then(|()| supervisor.start_work())
        {
            supervisor.stop_all();
            return Err(e.into());
        }
        let (ingress, egress, egress_names) = attach_host_ends(&supervisor)?;
        let run_id = supervisor.run_id();
        let tracing = &config.runtime.observability.tracing;
        Ok(Self {
            egress_ended: vec![StreamCheck::default(); egress.len()],
            ingress,
            egress,
            egress_names,
            pending: VecDeque::new(),
            next_seq: 1,
            next_ingress: 0,
            entry,
            run_id,
            sampler: tracing
                .enabled
                .then(|| crate::observability::span::Sampler::of(tracing)),
            arena: rkyv::ser::allocator::Arena::new(),
            watcher: watch(supervisor)?,
        })
    }

    /// Submits `value` to the pipeline's first node with the caller's correlation id; returns
    /// the record's `seq`. Waits while the entry ring is full (collecting replies meanwhile, so
    /// a host that submits much before reading cannot deadlock the pipeline); a worker failure
    /// ends the wait with [`HostError::WorkerFailed`] (hung workers are caught by their
    /// heartbeat deadline).
    pub fn submit<M: Message>(&mut self, reply_to: u64, value: &M) -> Result<u64, HostError> {
        let submitted = MessageType::of::<M>();
        if submitted != self.entry.2 {
            return Err(HostError::WrongType {
                entry: self.entry.1.clone(),
                expected: self.entry.2,
                submitted,
            });
        }
        let seq = self.next_seq;
        let mut header = EnvelopeHeader::data(seq, self.entry.0);
        header.reply_to = reply_to;
        let trace_id = crate::observability::ids::trace_id_for(self.run_id, seq);
        let sampled = self.sampler.is_some_and(|s| s.decide(None, &trace_id));
        header.trace_flags = u8::from(sampled);
        // Unsampled: no trace context on the wire; every receiver derives the same id.
        if sampled {
            header.trace_id = trace_id;
        }
        // Round robin over the first group's workers (all of them run the entry node).
        let ring = self.next_ingress % self.ingress.len().max(1);
        self.next_ingress = self.next_ingress.wrapping_add(1);
        loop {
            let Some(producer) = self.ingress.get_mut(ring) else {
                return Err(HostError::Ring {
                    ring: "host->entry".into(),
                    detail: "no ring into the first group".into(),
                });
            };
            let arena = &mut self.arena;
            let pushed = push_envelope(
                producer,
                &header,
                |slot| crate::graph::encode_into(value, slot, arena).ok(),
                Duration::ZERO,
            );
            match pushed {
                Ok(_) => {
                    producer.flush();
                    self.next_seq += 1;
                    return Ok(seq);
                }
                Err(PushError::TimedOut) => {
                    self.watcher.check()?;
                    self.collect(SLICE)?;
                }
                Err(e) => {
                    return Err(HostError::Ring {
                        ring: format!("host->{}", self.entry.1),
                        detail: e.to_string(),
                    });
                }
            }
        }
    }

    /// The next reply, waiting at most `timeout`; `None` when none arrived in time.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Reply>, HostError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(reply) = self.pending.pop_front() {
                return Ok(Some(reply));
            }
            self.watcher.check()?;
            let now = Instant::now();
            if now >= deadline || self.egress_ended.iter().all(StreamCheck::ended) {
                return Ok(None);
            }
            self.collect((deadline - now).min(SLICE))?;
        }
    }

    /// Ends the input: end of stream into the pipeline, every remaining reply collected, the
    /// workers drained and stopped. Returns the replies not yet received and the run report.
    pub fn finish(mut self) -> Result<(Vec<Reply>, SupervisedRun), HostError> {
        for producer in &mut self.ingress {
            let header =
                EnvelopeHeader::end_of_stream(self.next_seq.saturating_sub(1), producer.records());
            loop {
                match push_envelope(producer, &header, |_| Some(0), SLICE) {
                    Ok(_) => break,
                    Err(PushError::TimedOut) => {
                        self.watcher.check()?;
                        collect_into(
                            self.run_id,
                            &mut self.egress,
                            &self.egress_names,
                            &mut self.egress_ended,
                            &mut self.pending,
                            Duration::ZERO,
                        )?;
                    }
                    Err(e) => {
                        return Err(HostError::Ring {
                            ring: "host->entry".into(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
            producer.flush();
        }
        while !self.egress_ended.iter().all(StreamCheck::ended) {
            self.watcher.check()?;
            self.collect(SLICE)?;
        }
        let run = self.watcher.join(DRAIN)?;
        if let RunEnd::Failed(failure) = &run.end {
            return Err(HostError::WorkerFailed(failure.clone()));
        }
        Ok((self.pending.drain(..).collect(), run))
    }

    /// Records submitted so far.
    pub fn records_submitted(&self) -> u64 {
        self.next_seq - 1
    }

    /// Moves every reply waiting in the egress rings to `pending`, waiting up to `timeout`
    /// for the first when there is none.
    fn collect(&mut self, timeout: Duration) -> Result<(), HostError> {
        collect_into(
            self.run_id,
            &mut self.egress,
            &self.egress_names,
            &mut self.egress_ended,
            &mut self.pending,
            timeout,
        )
    }
}

fn collect_into(
    run_id: u64,
    egress: &mut [Consumer<Segment>],
    names: &[String],
    ended: &mut [StreamCheck],
    pending: &mut VecDeque<Reply>,
    timeout: Duration,
) -> Result<(), HostError> {
    let mut any = false;
    for (i, consumer) in egress.iter_mut().enumerate() {
        if ended[i].ended() {
            continue;
        }
        let stream = &mut ended[i];
        let polled = consumer.poll(BATCH, |record| {
            if let Some(reply) = decode_reply(record.body, stream, run_id)? {
                pending.push_back(reply);
            }
            Ok::<(), String>(())
        });
        let ring_error = |detail: String| HostError::Ring {
            ring: names[i].clone(),
            detail,
        };
        match polled {
            Ok(n) => any |= n > 0,
            Err(PollError::Corrupted(e)) => return Err(ring_error(e.to_string())),
            Err(PollError::Handler(e)) => return Err(ring_error(e)),
        }
    }
    if any || timeout.is_zero() {
        return Ok(());
    }
    if let Some((i, consumer)) = egress
        .iter_mut()
        .enumerate()
        .find(|(i, _)| !ended[*i].ended())
    {
        match consumer.wait(timeout) {
            Ok(Readiness::Closed) => {
                ended[i].closed().map_err(|e| HostError::Ring {
                    ring: names[i].clone(),
                    detail: e.to_string(),
                })?;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(HostError::Ring {
                    ring: names[i].clone(),
                    detail: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// One envelope from the last group, checked against its ring's stream; `None` for its end
/// of stream.
fn decode_reply(
    body: &[u8],
    stream: &mut StreamCheck,
    run_id: u64,
) -> Result<Option<Reply>, String> {
    let (header, payload) = EnvelopeHeader::read(body).map_err(|e| e.to_string())?;
    stream.admit(&header).map_err(|e| e.to_string())?;
    let kind = match header.kind {
        EnvelopeKind::EndOfStream => return Ok(None),
        EnvelopeKind::Data if header.target == TERMINAL_TARGET => ReplyKind::Output,
        EnvelopeKind::Data => {
            return Err(format!(
                "seq {} targets node {}, which runs in no worker",
                header.seq, header.target
            ));
        }
        EnvelopeKind::DropMarker => ReplyKind::Dropped,
        EnvelopeKind::DeadLetter => {
            let record =
                <DeadLetterRecord as Message>::access(payload).map_err(|e| e.to_string())?;
            ReplyKind::DeadLettered {
                node: record.node.to_string(),
                reason: record.reason.to_string(),
                detail: record.detail.to_string(),
            }
        }
    };
    let mut copy = AlignedBuf::with_capacity(payload.len());
    copy.as_mut_bytes()[..payload.len()].copy_from_slice(payload);
    Ok(Some(Reply {
        seq: header.seq,
        reply_to: header.reply_to,
        kind,
        // Sent without a trace context: the run's own id for this `seq`.
        trace_id: if header.trace_id == [0; 16] {
            crate::observability::ids::trace_id_for(run_id, header.seq)
        } else {
            header.trace_id
        },
        route_hop: header.route_hop,
        payload: copy,
        len: payload.len(),
    }))
}

type HostEnds = (Vec<Producer<Segment>>, Vec<Consumer<Segment>>, Vec<String>);

/// Maps the host's ends of its rings (a second mapping of each segment).
fn attach_host_ends(supervisor: &Supervisor) -> Result<HostEnds, HostError> {
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    let mut names = Vec::new();
    for (name, end, segment) in supervisor.host_rings() {
        let ring_error = |detail: String| HostError::Ring {
            ring: name.to_string(),
            detail,
        };
        let segment = segment.try_clone().map_err(|e| ring_error(e.to_string()))?;
        match end {
            HostEnd::Producer => ingress.push(
                Producer::attach(segment, WaitStrategy::BALANCED)
                    .map_err(|e| ring_error(e.to_string()))?,
            ),
            HostEnd::Consumer => {
                egress.push(
                    Consumer::attach(segment, WaitStrategy::BALANCED)
                        .map_err(|e| ring_error(e.to_string()))?,
                );
                names.push(name.to_string());
            }
        }
    }
    Ok((ingress, egress, names))
}

/// Moves the supervisor to a thread that watches the workers until the host finishes, then
/// waits for the last group to drain, stops everyone and reports.
fn watch(mut supervisor: Supervisor) -> Result<Watcher, SupervisorError> {
    let failure = Arc::new(Mutex::new(None));
    let finish = Arc::new(AtomicU8::new(WATCH));
    let (thread_failure, thread_finish) = (Arc::clone(&failure), Arc::clone(&finish));
    // A thread that cannot start drops the supervisor with it, which stops every worker.
    let thread = super::monitor::spawn_named("sk-watch", move || {
        while thread_finish.load(Ordering::Relaxed) == WATCH {
            supervisor.pump(SLICE);
            if let (Some(found), Ok(mut slot)) = (supervisor.failure(), thread_failure.lock())
                && slot.is_none()
            {
                *slot = Some(found.clone());
            }
        }
        let end = match supervisor.failure() {
            Some(failure) => RunEnd::Failed(failure.clone()),
            None if thread_finish.load(Ordering::Relaxed) == DRAIN => supervisor.wait_drained(),
            None => RunEnd::Interrupted(None),
        };
        super::run::finish_run(supervisor, end)
    })
    .map_err(SupervisorError::Thread)?;
    Ok(Watcher {
        failure,
        finish,
        thread: Some(thread),
    })
}
