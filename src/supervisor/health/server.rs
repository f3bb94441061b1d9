//! The health server: `/livez` (`/healthz`), `/readyz` and `/metrics` answered from a thread
//! of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::metrics::MetricsFormat;
use super::{HealthError, HealthState};
use crate::supervisor::http;

/// The running health server.
pub struct HealthServer {
    server: http::HttpServer,
}

impl HealthServer {
    /// Serves the endpoints of `state` on `bind` from a thread of its own.
    pub fn start(bind: &str, state: Arc<HealthState>) -> Result<Self, HealthError> {
        let server = http::HttpServer::start(bind, "sk-health", move |request| {
            let accept = request
                .headers
                .iter()
                .find(|(name, _)| name == "accept")
                .map_or("", |(_, value)| value.as_str());
            let (status, body, content_type) = respond(&request.path, accept, &state);
            http::Response {
                status,
                content_type,
                body,
            }
        })
        .map_err(|e| HealthError {
            bind: bind.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Self { server })
    }

    /// The address the server listens on (the port picked when `bind` asked for 0).
    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }
}

/// Answers one request; the query string is ignored (`/readyz?verbose` is `/readyz`), and
/// `/healthz` is `/livez` under the name many probes default to.
fn respond(url: &str, accept: &str, state: &HealthState) -> (u16, String, &'static str) {
    let text = "text/plain; charset=utf-8";
    let path = url.split(['?', '#']).next().unwrap_or(url);
    match path {
        "/livez" | "/healthz" if state.alive.load(Ordering::Relaxed) => (200, "ok\n".into(), text),
        "/livez" | "/healthz" => (503, "supervisor loop not running\n".into(), text),
        "/readyz" => {
            let ready =
                state.gate_open.load(Ordering::Relaxed) && !state.stopping.load(Ordering::Relaxed);
            if ready {
                (200, "ready\n".into(), text)
            } else if state.stopping.load(Ordering::Relaxed) {
                (503, "stopping\n".into(), text)
            } else {
                (503, "not ready\n".into(), text)
            }
        }
        "/metrics" => {
            let mut view = state.metrics.lock().map(|m| m.clone()).unwrap_or_default();
            view.read_processes();
            let format = MetricsFormat::negotiate(accept);
            (200, format.render(&view), format.content_type())
        }
        _ => (404, "not found\n".into(), text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/healthz` answers like `/livez`, and a query string does not change the route.
    #[test]
    fn healthz_alias_and_query_strings() {
        let state = HealthState::default();
        state.alive.store(true, Ordering::Relaxed);
        assert_eq!(respond("/healthz", "", &state).0, 200);
        assert_eq!(respond("/livez?verbose", "", &state).0, 200);
        assert_eq!(respond("/readyz?verbose=1", "", &state).0, 503);
        state.gate_open.store(true, Ordering::Relaxed);
        assert_eq!(respond("/readyz?verbose", "", &state).0, 200);
        assert_eq!(respond("/metrics?x=1", "", &state).0, 200);
        assert_eq!(respond("/nope", "", &state).0, 404);
    }
}
