//! Whether the largest record a run's source can produce fits its rings, checked before the
//! run starts (and by `validate`), so that no record of an accepted config fails a run for its
//! size, and a resumed run's replay never does either.
//!
//! The source's largest record is what its factory declares
//! ([`crate::graph::NodeFactory::max_record`]; a line source: `adapters.source.max_line_bytes`,
//! the rest of a longer line being discarded), as an rkyv archive in an envelope. Records
//! derived from it (a parsed attempt, a dead letter quoting it) are of the same order, so every
//! ring is checked against it with [`DERIVED_SLACK`] bytes to spare. A source that declares
//! nothing is not checked; a node that makes records much larger than its input must be given
//! rings that hold them, and its run fails naming the node, the record and both sizes if not.

use crate::config::Config;
use crate::config::{ConfigErrorCode, ConfigPath, ConfigReport, reader::Diagnostics};
use crate::graph::Registry;

/// Bytes a record derived from a line may add to it (fields, ids, a dead letter's words).
pub const DERIVED_SLACK: u64 = 512;

/// rkyv's overhead for a line archived as a byte vector: the vector's length and relative
/// pointer, and alignment padding.
const ARCHIVE_OVERHEAD: u64 = 32;

/// The largest envelope (ring record body) a source record of `max_payload` bytes makes.
pub fn largest_envelope(max_payload: u64) -> u64 {
    max_payload
        .saturating_add(DERIVED_SLACK)
        .saturating_add(ARCHIVE_OVERHEAD)
        .saturating_add(crate::data::MAX_ENVELOPE_HEADER as u64)
}

/// The smallest power-of-two `ring_bytes` that holds an envelope of `envelope` bytes.
fn ring_bytes_for(envelope: u64) -> u64 {
    let total = envelope.saturating_add(crate::data::ring::RECORD_HEADER as u64);
    total.saturating_mul(2).next_power_of_two()
}

/// Checks the rings of a `process_supervisor` config against its source's largest record.
pub fn check_ring_room(config: &Config, registry: &Registry) -> Result<(), ConfigReport> {
    if !config.is_process_mode() {
        return Ok(());
    }
    let Some(max_line) = config
        .pipeline
        .nodes
        .first()
        .and_then(|name| registry.get(name))
        .and_then(|factory| factory.max_record_bytes(config))
    else {
        return Ok(());
    };
    let ring_bytes = config.runtime.platform.execution_ipc.ring_bytes;
    let capacity = usize::try_from(ring_bytes).unwrap_or(usize::MAX);
    let room = crate::data::max_record_body(capacity) as u64;
    let envelope = largest_envelope(max_line);
    if envelope <= room {
        return Ok(());
    }
    let fitting_line = room.saturating_sub(envelope - max_line);
    let mut diag = Diagnostics::default();
    diag.error(
        &ConfigPath::parse("runtime.platform.execution_ipc.ring_bytes"),
        ConfigErrorCode::Range,
        format!(
            "rings that hold the source's largest record: a record of up to {max_line} bytes (for a line source, adapters.source.max_line_bytes) travels as an envelope of up to {envelope} bytes, and a ring of {ring_bytes} bytes holds records of at most {room}; set ring_bytes to {} or more, or max_line_bytes to {fitting_line} or less",
            ring_bytes_for(envelope)
        ),
        format!("{ring_bytes}"),
    );
    Err(ConfigReport {
        errors: diag.errors,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{HeapMemory, Producer, init_ring, ring_memory_len};

    /// The check's arithmetic is the ring's: the largest envelope it accepts for a ring is
    /// pushed into a real ring of that size.
    #[test]
    fn the_largest_accepted_envelope_fits_a_real_ring() {
        for ring_bytes in [64 * 1024usize, 4 << 20] {
            let room = crate::data::max_record_body(ring_bytes);
            let memory = HeapMemory::new(ring_memory_len(ring_bytes));
            init_ring(&memory, ring_bytes, 7).unwrap();
            let mut producer =
                Producer::attach(memory, crate::data::WaitStrategy::EFFICIENCY).unwrap();
            assert_eq!(producer.max_body(), room);
            producer
                .push(&vec![0u8; room], std::time::Duration::from_secs(1))
                .unwrap();
            assert!(ring_bytes_for(room as u64) <= ring_bytes as u64);
        }
    }
}
