//! Data plane: shared-memory segments, SPSC rings of variable-length records, the wait
//! strategy that parks idle ends, and the envelope header every cross-process record carries.
//!
//! Owns everything that touches ring memory. It must not know nodes, configs or processes:
//! the runtime decides what goes into a ring and the supervisor decides who maps it.

pub mod envelope;
pub mod memory;
pub mod ring;
pub mod segment;
pub mod wait;

pub use envelope::{
    ENVELOPE_HEADER, EnvelopeError, EnvelopeHeader, EnvelopeKind, MAX_ENVELOPE_HEADER, StreamCheck,
    StreamError, TERMINAL_TARGET, TRACE_CONTEXT, push_envelope,
};
pub use memory::{HeapMemory, RingMemory};
pub use ring::{
    Consumer, PollError, Producer, PushError, Readiness, RecordRef, RingCorrupted, RingInitError,
    init_ring, max_record_body, max_record_total, read_counts, read_depth, read_progress,
    ring_memory_len,
};
pub use segment::{Segment, SegmentCreateError, SegmentOpenError, clear_cloexec};
pub use wait::WaitStrategy;
