//! A build without the `cross-host` feature: configs that place groups on hosts are refused
//! at launch with [`CrossHostError::Unavailable`].

use super::{BridgeCounts, BridgedRing, CrossHostError, EdgeFailure};
use crate::config::CrossHost;

/// Never constructed in this build.
pub struct Bridge {
    never: std::convert::Infallible,
}

impl Bridge {
    /// Always [`CrossHostError::Unavailable`].
    pub fn start(
        _settings: &CrossHost,
        _run: &str,
        _host: &str,
        _input: Option<String>,
        _input_bytes: Option<u64>,
        _rings: Vec<BridgedRing>,
    ) -> Result<Self, CrossHostError> {
        Err(CrossHostError::Unavailable)
    }

    /// True once every edge carried its end of stream.
    pub fn finished(&self) -> bool {
        match self.never {}
    }

    /// The first edge failure, if any.
    pub fn failure(&self) -> Option<EdgeFailure> {
        match self.never {}
    }

    /// Records and messages moved so far.
    pub fn counts(&self) -> BridgeCounts {
        match self.never {}
    }

    /// The run's stream name.
    pub fn stream(&self) -> &str {
        match self.never {}
    }

    /// Deletes the run's stream.
    pub fn delete_stream(&self) -> Result<(), CrossHostError> {
        match self.never {}
    }

    /// Stops every edge thread.
    pub fn stop(&mut self) {
        match self.never {}
    }
}
