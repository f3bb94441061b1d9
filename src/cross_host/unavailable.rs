//! A build without the `cross-host` feature: configs that place groups on hosts are refused
//! at launch with [`CrossHostError::Unavailable`].

use super::{BridgeCounts, BridgedRing, CrossHostError, EdgeFailure};
use crate::config::CrossHost;

/// Never constructed in this build.
pub struct Bridge {
    never: std::convert::Infallible,
}

impl Bridge {
    pub fn start(
        _settings: &CrossHost,
        _run: &str,
        _host: &str,
        _input: Option<String>,
        _rings: Vec<BridgedRing>,
    ) -> Result<Self, CrossHostError> {
        Err(CrossHostError::Unavailable)
    }

    pub fn finished(&self) -> bool {
        match self.never {}
    }

    pub fn failure(&self) -> Option<EdgeFailure> {
        match self.never {}
    }

    pub fn counts(&self) -> BridgeCounts {
        match self.never {}
    }

    pub fn stream(&self) -> &str {
        match self.never {}
    }

    pub fn delete_stream(&self) -> Result<(), CrossHostError> {
        match self.never {}
    }

    pub fn stop(&mut self) {
        match self.never {}
    }
}
