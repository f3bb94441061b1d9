//! The local pipeline's outputs at batch boundaries and at the end: flushed to the operating
//! system together, finished at the end of the input, and after a failure cut back to one
//! record that every output holds completely.

use super::{Egress, LocalPipeline, NodeFailure};
use crate::graph::NodeError;

impl LocalPipeline {
    /// Hands every output of this process to the operating system: the local nodes' buffers,
    /// the dead-letter file, the batch of the outbound rings.
    pub fn flush_outputs(&mut self, egress: &mut dyn Egress) -> Result<(), Box<NodeFailure>> {
        self.publish_stats();
        let output_failure = |node: &str, error: NodeError| {
            Box::new(NodeFailure {
                seq: error.written_through().map_or(0, |w| w + 1),
                node: node.to_string(),
                error,
                trace: None,
            })
        };
        for stage in &mut self.stages {
            stage
                .node
                .flush()
                .map_err(|e| output_failure(&stage.name, e))?;
        }
        if let Some(dead_letters) = egress.dead_letter_file() {
            dead_letters
                .flush()
                .map_err(|e| output_failure("dead_letter", e))?;
        }
        egress.publish();
        self.outputs_written();
        Ok(())
    }

    /// The end of the input: the dead-letter file ends its replay (a resumed run) and every
    /// local output is flushed.
    pub fn finish_outputs(&mut self, egress: &mut dyn Egress) -> Result<(), Box<NodeFailure>> {
        if let Some(dead_letters) = egress.dead_letter_file()
            && let Err(error) = dead_letters.finish()
        {
            return Err(Box::new(NodeFailure {
                seq: error.written_through().map_or(0, |w| w + 1),
                node: "dead_letter".to_string(),
                error,
                trace: None,
            }));
        }
        self.flush_outputs(egress)
    }

    /// After a failure: cuts every local output back to the records through the returned
    /// `seq` (at most `completed`; less when an output could not be written that far) and
    /// hands over what is left. What the outputs hold is then exactly what the run reports.
    pub fn settle_outputs(&mut self, egress: &mut dyn Egress, completed: u64) -> u64 {
        let mut through = completed;
        // No flush first: a flush would make the last batch final and move the window a
        // failure may roll back (see `RecordWriter::flush`); `truncate_after` writes out what
        // it keeps.
        // An output that cannot write out what it keeps lowers the point for all of them:
        // repeat until every output ends at the same record.
        loop {
            let before = through;
            for stage in &mut self.stages {
                let cut = stage.node.truncate_after(through);
                lower_to_written(&mut through, cut, &stage.name);
            }
            if let Some(dead_letters) = egress.dead_letter_file() {
                let cut = dead_letters.truncate_after(through);
                lower_to_written(&mut through, cut, "dead_letter");
            }
            if through == before {
                return through;
            }
        }
    }
}

/// An output that failed while a failed run settles its outputs: what it could write bounds
/// the completed range; the failure itself was already reported, this one is logged.
fn lower_to_written(through: &mut u64, result: Result<(), NodeError>, node: &str) {
    if let Err(error) = result {
        if let Some(written) = error.written_through() {
            *through = (*through).min(written);
        }
        tracing::error!(node, "{error}");
    }
}
