//! Session rules (docs/architecture.md): what each side accepts in which state.
//!
//! Worker side ([`WorkerSession`]): one bootstrap bundle, then READY, then START_WORK; a second
//! bundle is `DuplicateBootstrap` and a START_WORK before READY is `StartBeforeReady` — the
//! worker never starts ingestion without it. Supervisor side ([`SupervisorSessions`]): one
//! bundle per worker, acknowledged with its correlation id; START_WORK only once every required
//! worker is READY. A refused step leaves the state unchanged.

use std::collections::BTreeMap;

use super::messages::MessageKind;

/// A step the session rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A second bootstrap bundle for a worker.
    #[error("worker {worker} already received its bootstrap bundle; a second one is refused")]
    DuplicateBootstrap {
        /// The worker.
        worker: String,
    },
    /// START_WORK before every required worker was READY.
    #[error("START_WORK before every required worker is READY; not ready: {}", missing.join(", "))]
    StartBeforeReady {
        /// The workers not READY.
        missing: Vec<String>,
    },
    /// An ACK's correlation id is not the acknowledged frame's.
    #[error("{kind} acknowledged with correlation id {got}, expected {expected}")]
    WrongCorrelation {
        /// The acknowledged message kind.
        kind: MessageKind,
        /// The correlation id sent.
        expected: u64,
        /// The one acknowledged.
        got: u64,
    },
    /// A message the worker's current phase does not allow.
    #[error("{kind} is not expected from/to worker {worker} while it is {state}")]
    Unexpected {
        /// The worker.
        worker: String,
        /// The message kind.
        kind: MessageKind,
        /// The worker's phase.
        state: &'static str,
    },
    /// A worker the session does not know.
    #[error("unknown worker {worker}")]
    UnknownWorker {
        /// The worker named.
        worker: String,
    },
}

/// Where a worker is in its lifecycle, from its own point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerPhase {
    /// Connected; waiting for the bootstrap bundle.
    AwaitingBootstrap,
    /// Bootstrap bundle received.
    Bootstrapped,
    /// READY sent.
    Ready,
    /// START_WORK received.
    Running,
    /// STOP received.
    Stopping,
}

impl WorkerPhase {
    fn name(self) -> &'static str {
        match self {
            Self::AwaitingBootstrap => "awaiting its bootstrap",
            Self::Bootstrapped => "bootstrapped",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Stopping => "stopping",
        }
    }
}

/// The worker's side of the session.
#[derive(Debug, Clone)]
pub struct WorkerSession {
    worker: String,
    phase: WorkerPhase,
}

impl WorkerSession {
    /// A session of worker `worker` (its id, for errors).
    pub fn new(worker: impl Into<String>) -> Self {
        Self {
            worker: worker.into(),
            phase: WorkerPhase::AwaitingBootstrap,
        }
    }

    /// The worker's phase.
    pub fn phase(&self) -> WorkerPhase {
        self.phase
    }

    /// A bootstrap bundle arrived.
    pub fn on_bootstrap(&mut self) -> Result<(), SessionError> {
        if self.phase != WorkerPhase::AwaitingBootstrap {
            return Err(SessionError::DuplicateBootstrap {
                worker: self.worker.clone(),
            });
        }
        self.phase = WorkerPhase::Bootstrapped;
        Ok(())
    }

    /// Every node started and the rings are attached: the worker may say READY.
    pub fn on_ready(&mut self) -> Result<(), SessionError> {
        if self.phase != WorkerPhase::Bootstrapped {
            return Err(self.unexpected(MessageKind::Ready));
        }
        self.phase = WorkerPhase::Ready;
        Ok(())
    }

    /// START_WORK arrived: accepted only once this worker is READY.
    pub fn on_start_work(&mut self) -> Result<(), SessionError> {
        match self.phase {
            WorkerPhase::Ready => {
                self.phase = WorkerPhase::Running;
                Ok(())
            }
            WorkerPhase::AwaitingBootstrap | WorkerPhase::Bootstrapped => {
                Err(SessionError::StartBeforeReady {
                    missing: vec![self.worker.clone()],
                })
            }
            WorkerPhase::Running | WorkerPhase::Stopping => {
                Err(self.unexpected(MessageKind::StartWork))
            }
        }
    }

    /// STOP arrived (accepted in every phase).
    pub fn on_stop(&mut self) {
        self.phase = WorkerPhase::Stopping;
    }

    /// Whether ingestion may run.
    pub fn may_ingest(&self) -> bool {
        self.phase == WorkerPhase::Running
    }

    fn unexpected(&self, kind: MessageKind) -> SessionError {
        SessionError::Unexpected {
            worker: self.worker.clone(),
            kind,
            state: self.phase.name(),
        }
    }
}

/// Where a worker is, from the supervisor's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorPhase {
    /// Spawned; no HELLO yet.
    AwaitingHello,
    /// HELLO verified.
    Connected,
    /// Bootstrap bundle sent, its ACK awaited.
    BootstrapSent {
        /// Correlation id of the bundle's frame.
        correlation: u64,
    },
    /// Bootstrap bundle acknowledged.
    BootstrapLoaded,
    /// READY received.
    Ready,
    /// START_WORK sent.
    Running,
}

impl SupervisorPhase {
    fn name(self) -> &'static str {
        match self {
            Self::AwaitingHello => "awaiting HELLO",
            Self::Connected => "connected",
            Self::BootstrapSent { .. } => "bootstrapping",
            Self::BootstrapLoaded => "bootstrap loaded",
            Self::Ready => "ready",
            Self::Running => "running",
        }
    }
}

/// The supervisor's side of every worker's session.
#[derive(Debug, Clone, Default)]
pub struct SupervisorSessions {
    workers: BTreeMap<String, SupervisorPhase>,
}

impl SupervisorSessions {
    /// Sessions for these worker ids, each awaiting its HELLO.
    pub fn new(workers: impl IntoIterator<Item = String>) -> Self {
        Self {
            workers: workers
                .into_iter()
                .map(|w| (w, SupervisorPhase::AwaitingHello))
                .collect(),
        }
    }

    /// The worker's phase, if it is known.
    pub fn phase(&self, worker: &str) -> Option<SupervisorPhase> {
        self.workers.get(worker).copied()
    }

    fn entry(&mut self, worker: &str) -> Result<&mut SupervisorPhase, SessionError> {
        self.workers
            .get_mut(worker)
            .ok_or_else(|| SessionError::UnknownWorker {
                worker: worker.to_string(),
            })
    }

    fn unexpected(worker: &str, kind: MessageKind, phase: SupervisorPhase) -> SessionError {
        SessionError::Unexpected {
            worker: worker.to_string(),
            kind,
            state: phase.name(),
        }
    }

    /// HELLO authenticated for `worker`.
    pub fn on_hello(&mut self, worker: &str) -> Result<(), SessionError> {
        let phase = self.entry(worker)?;
        if *phase != SupervisorPhase::AwaitingHello {
            return Err(Self::unexpected(worker, MessageKind::Hello, *phase));
        }
        *phase = SupervisorPhase::Connected;
        Ok(())
    }

    /// About to send `worker` its bundle with `correlation`: refused if it already got one.
    pub fn send_bootstrap(&mut self, worker: &str, correlation: u64) -> Result<(), SessionError> {
        let phase = self.entry(worker)?;
        match *phase {
            SupervisorPhase::Connected => {
                *phase = SupervisorPhase::BootstrapSent { correlation };
                Ok(())
            }
            SupervisorPhase::AwaitingHello => Err(Self::unexpected(
                worker,
                MessageKind::BootstrapBundle,
                *phase,
            )),
            _ => Err(SessionError::DuplicateBootstrap {
                worker: worker.to_string(),
            }),
        }
    }

    /// `worker` acknowledged `kind` with `correlation`.
    pub fn on_ack(
        &mut self,
        worker: &str,
        kind: MessageKind,
        correlation: u64,
    ) -> Result<(), SessionError> {
        let phase = self.entry(worker)?;
        match (*phase, kind) {
            (
                SupervisorPhase::BootstrapSent {
                    correlation: expected,
                },
                MessageKind::BootstrapBundle,
            ) => {
                if expected != correlation {
                    return Err(SessionError::WrongCorrelation {
                        kind,
                        expected,
                        got: correlation,
                    });
                }
                *phase = SupervisorPhase::BootstrapLoaded;
                Ok(())
            }
            (SupervisorPhase::Ready | SupervisorPhase::Running, MessageKind::StartWork) => {
                *phase = SupervisorPhase::Running;
                Ok(())
            }
            (_, MessageKind::Stop) => Ok(()),
            (other, _) => Err(Self::unexpected(worker, MessageKind::Ack, other)),
        }
    }

    /// `worker` said READY.
    pub fn on_ready(&mut self, worker: &str) -> Result<(), SessionError> {
        let phase = self.entry(worker)?;
        if *phase != SupervisorPhase::BootstrapLoaded {
            return Err(Self::unexpected(worker, MessageKind::Ready, *phase));
        }
        *phase = SupervisorPhase::Ready;
        Ok(())
    }

    /// The workers still not READY (or beyond).
    pub fn not_ready(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|(_, phase)| {
                !matches!(phase, SupervisorPhase::Ready | SupervisorPhase::Running)
            })
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// START_WORK may go out only when every worker is READY; returns the required list.
    pub fn start_work(&self) -> Result<Vec<String>, SessionError> {
        let missing = self.not_ready();
        if !missing.is_empty() {
            return Err(SessionError::StartBeforeReady { missing });
        }
        Ok(self.workers.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_refuses_a_second_bundle_and_an_early_start() {
        let mut session = WorkerSession::new("a#1");
        assert_eq!(
            session.on_start_work(),
            Err(SessionError::StartBeforeReady {
                missing: vec!["a#1".into()]
            })
        );
        session.on_bootstrap().unwrap();
        assert_eq!(
            session.on_bootstrap(),
            Err(SessionError::DuplicateBootstrap {
                worker: "a#1".into()
            })
        );
        assert_eq!(session.phase(), WorkerPhase::Bootstrapped);
        assert!(!session.may_ingest());
        session.on_ready().unwrap();
        session.on_start_work().unwrap();
        assert!(session.may_ingest());
    }

    #[test]
    fn supervisor_starts_work_only_when_all_are_ready() {
        let mut sessions = SupervisorSessions::new(["a#1".to_string(), "b#1".to_string()]);
        for w in ["a#1", "b#1"] {
            sessions.on_hello(w).unwrap();
            sessions.send_bootstrap(w, 10).unwrap();
        }
        assert!(matches!(
            sessions.send_bootstrap("a#1", 11),
            Err(SessionError::DuplicateBootstrap { .. })
        ));
        assert!(matches!(
            sessions.on_ack("a#1", MessageKind::BootstrapBundle, 99),
            Err(SessionError::WrongCorrelation { .. })
        ));
        sessions
            .on_ack("a#1", MessageKind::BootstrapBundle, 10)
            .unwrap();
        sessions.on_ready("a#1").unwrap();
        assert_eq!(
            sessions.start_work(),
            Err(SessionError::StartBeforeReady {
                missing: vec!["b#1".into()]
            })
        );
        sessions
            .on_ack("b#1", MessageKind::BootstrapBundle, 10)
            .unwrap();
        sessions.on_ready("b#1").unwrap();
        assert_eq!(sessions.start_work().unwrap().len(), 2);
    }
}
