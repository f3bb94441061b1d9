//! Resuming a run: what a resumed run brings (the records it replays, the outputs' lengths at
//! that point, the input positions its source must reach) and the check of the input against
//! them while the source reads, so that a resume on another or an edited input is refused
//! before any output changes.
//!
//! The source's position is taken at every [`CHECKPOINT_EVERY`]-th record and at each record
//! a resumed run expects one at; a position that differs from the expected one refuses the run
//! ([`ResumeRefused::InputDiffers`]), naming the records between the last position that
//! matched and the first that did not.

use std::collections::{BTreeMap, VecDeque};

use crate::control::InputMark;
use crate::files::journal::{Checkpoint, digest_text};
use crate::files::lines::InputPosition;
use crate::files::writer::Resume;

/// Records between two input checkpoints (and between two output flushes of the inline
/// runtime, so that every flush is a completed record with a known input position).
pub const CHECKPOINT_EVERY: u64 = 4096;

/// What a resumed run brings to its nodes and its source (empty for a fresh run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumePlan {
    /// Records through this `seq` are replayed: processed again to rebuild state, not
    /// written again (0: a fresh run).
    pub after: u64,
    /// The outputs' lengths at `after`, by `<node>/<what>`, from the run journal (empty when
    /// resuming with `--skip N` and no journal).
    pub output_lengths: BTreeMap<String, u64>,
    /// Input positions the source must reach, by `seq` (from the run journal).
    pub input_positions: Vec<Checkpoint>,
}

impl ResumePlan {
    /// A resume after `after` records, with nothing to check them against.
    pub fn after(after: u64) -> Self {
        Self {
            after,
            ..Self::default()
        }
    }

    /// Where output `key` (`<node>/<what>`) resumes.
    pub fn resume_point(&self, key: &str) -> Resume {
        Resume {
            after: self.after,
            expected_len: self.output_lengths.get(key).copied(),
        }
    }
}

/// A resume that cannot go on: the input is not the one the stopped run read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeRefused {
    /// The input's bytes differ from the stopped run's.
    #[error(
        "the input {input} is not the one the run being resumed read: {matched} (through record {seq} that run read {expected_bytes} bytes, {expected_digest}; this input gives {found_bytes} bytes, {found_digest}); resume with the same input, or rerun from the start"
    )]
    InputDiffers {
        /// The input's name.
        input: String,
        /// What still matched, in words.
        matched: String,
        /// The first checked record that did not match.
        seq: u64,
        /// Bytes the stopped run had consumed through it.
        expected_bytes: u64,
        /// Their digest.
        expected_digest: String,
        /// Bytes this run consumed through it.
        found_bytes: u64,
        /// Their digest.
        found_digest: String,
    },
    /// An output is not the one being resumed (shorter than the replayed records, or their
    /// bytes differ from what the journal recorded).
    #[error("{detail}")]
    OutputDiffers {
        /// The writer's words, naming the output.
        detail: String,
    },
    /// The input ends before the resume point.
    #[error(
        "the input {input} holds {records} records, but the run resumes after record {after}: it is not the input of the run being resumed (or --skip is past its end)"
    )]
    InputTooShort {
        /// The input's name.
        input: String,
        /// Records it holds.
        records: u64,
        /// The resume point.
        after: u64,
    },
}

/// The source's positions as it runs: taken when due, checked against a resumed run's
/// expectations, kept for whoever writes the journal.
#[derive(Debug, Default)]
pub(crate) struct InputTrail {
    expected: VecDeque<Checkpoint>,
    /// The last expected position that matched.
    matched: Option<Checkpoint>,
    /// Positions taken since the last [`InputTrail::drain`].
    taken: Vec<Checkpoint>,
    /// The last position taken.
    pub(crate) last: Option<Checkpoint>,
    /// The source gave a position at least once (so a later `None` means "not exact").
    positioned: bool,
    /// The input's name in refusals.
    input: String,
}

impl InputTrail {
    pub(crate) fn new(expected: &[Checkpoint], input: String) -> Self {
        let mut expected: Vec<Checkpoint> = expected.to_vec();
        expected.sort_by_key(|c| c.seq);
        Self {
            expected: expected.into(),
            input,
            ..Self::default()
        }
    }

    /// Whether the position after record `seq` is to be taken.
    #[inline]
    pub(crate) fn due(&self, seq: u64) -> bool {
        seq.is_multiple_of(CHECKPOINT_EVERY) || self.expected.front().is_some_and(|c| c.seq == seq)
    }

    /// Records the source's position after record `seq` (`None`: the source cannot say; it
    /// is recorded as unchecked), and checks it when a resumed run expects one here.
    pub(crate) fn record(
        &mut self,
        seq: u64,
        position: Option<InputPosition>,
    ) -> Result<(), ResumeRefused> {
        self.positioned |= position.is_some();
        let position = position.unwrap_or(InputPosition {
            bytes: 0,
            digest: None,
        });
        let found = Checkpoint::at(seq, position);
        while self.expected.front().is_some_and(|c| c.seq < seq) {
            self.expected.pop_front();
        }
        if let Some(expected) = self.expected.front().copied()
            && expected.seq == seq
        {
            self.expected.pop_front();
            let checkable = expected.digest.is_some() || expected.bytes > 0;
            if checkable && (expected.bytes != found.bytes || expected.digest != found.digest) {
                return Err(self.differs(expected, found));
            }
            self.matched = Some(expected);
        }
        self.taken.push(found);
        self.last = Some(found);
        Ok(())
    }

    /// The last position of a source that stopped or ended after record `seq`: not recorded
    /// when a source that gives positions cannot give this one exactly (a read stopped in the
    /// middle of a line).
    pub(crate) fn record_last(
        &mut self,
        seq: u64,
        position: Option<InputPosition>,
    ) -> Result<(), ResumeRefused> {
        if (position.is_none() && self.positioned) || self.last.is_some_and(|l| l.seq >= seq) {
            return Ok(());
        }
        self.record(seq, position)
    }

    fn differs(&self, expected: Checkpoint, found: Checkpoint) -> ResumeRefused {
        let matched = match self.matched {
            Some(m) => format!(
                "records 1 to {} ({} bytes) are the same, records {} to {} are not",
                m.seq,
                m.bytes,
                m.seq + 1,
                expected.seq
            ),
            None => format!("records 1 to {} are not the same", expected.seq),
        };
        let text = |d: Option<u128>| d.map_or_else(|| "no digest".to_string(), digest_text);
        ResumeRefused::InputDiffers {
            input: self.input.clone(),
            matched,
            seq: expected.seq,
            expected_bytes: expected.bytes,
            expected_digest: text(expected.digest),
            found_bytes: found.bytes,
            found_digest: text(found.digest),
        }
    }

    /// The input's name.
    pub(crate) fn input(&self) -> &str {
        &self.input
    }

    /// The positions taken since the last call.
    pub(crate) fn drain(&mut self) -> Vec<Checkpoint> {
        std::mem::take(&mut self.taken)
    }

    /// The position taken after record `seq`, if the last one taken is that one.
    pub(crate) fn at(&self, seq: u64) -> Option<Checkpoint> {
        self.last.filter(|l| l.seq == seq)
    }
}

/// A failure that is a resume refusal: an output that is not the one being resumed.
pub(crate) fn refusal_of(error: &crate::graph::NodeError) -> Option<ResumeRefused> {
    match error {
        crate::graph::NodeError::Output(e) if e.refused => Some(ResumeRefused::OutputDiffers {
            detail: e.to_string(),
        }),
        _ => None,
    }
}

/// An input checkpoint as the control plane carries it.
pub(crate) fn mark_of(checkpoint: Checkpoint) -> InputMark {
    InputMark {
        seq: checkpoint.seq,
        bytes: checkpoint.bytes,
        digest: checkpoint.digest,
    }
}

/// An input mark from the control plane as a checkpoint.
pub(crate) fn checkpoint_of(mark: &InputMark) -> Checkpoint {
    Checkpoint {
        seq: mark.seq,
        bytes: mark.bytes,
        digest: mark.digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, bytes: u64, digest: u128) -> Checkpoint {
        Checkpoint {
            seq,
            bytes,
            digest: Some(digest),
        }
    }

    fn position(bytes: u64, digest: u128) -> Option<InputPosition> {
        Some(InputPosition {
            bytes,
            digest: Some(digest),
        })
    }

    /// A resumed input that matches passes; one that differs names the span where it does.
    #[test]
    fn a_different_input_is_refused_naming_where_it_differs() {
        let expected = [at(4096, 100, 1), at(8192, 200, 2)];
        let mut trail = InputTrail::new(&expected, "in".into());
        assert!(trail.due(4096));
        trail.record(4096, position(100, 1)).unwrap();
        let refused = trail.record(8192, position(200, 3)).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("records 1 to 4096 (100 bytes) are the same"),
            "{text}"
        );
        assert!(text.contains("records 4097 to 8192 are not"), "{text}");
    }

    #[test]
    fn a_source_without_positions_is_not_checked() {
        let mut trail = InputTrail::new(
            &[Checkpoint {
                seq: 10,
                bytes: 0,
                digest: None,
            }],
            "in".into(),
        );
        assert!(trail.due(10));
        trail.record(10, None).unwrap();
    }
}
