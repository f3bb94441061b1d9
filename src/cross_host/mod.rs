//! Hand-off between hosts: the edges of a chain whose two ends run on different hosts.
//!
//! Groups placed on hosts (`process_groups[].host`) run under one supervisor per host
//! (`stream-kernel run --host NAME`). Each supervisor plans the whole chain's rings but creates
//! and spawns only its own: a ring whose consumer runs on another host is read by a
//! **publisher** in this supervisor, which packs its records into JetStream messages on the
//! edge's subject; a ring whose producer runs elsewhere is fed by a **subscriber**, which reads
//! the subject from its start. The workers cannot tell: they see a ring, the same envelopes
//! (trace context included), the same end of stream and watermarks.
//!
//! Exactly once (see the README's "Across hosts"): every edge's records are numbered in the
//! order its upstream worker wrote them, which is deterministic for a given input. A message
//! carries its records' indices; a subscriber takes each index once, so a restarted upstream
//! host that re-reads its input republishes nothing that counts twice (and the server drops
//! exact retries by `Nats-Msg-Id`). A restarted downstream host replays the retained stream
//! from its first message, rebuilding its stateful nodes deterministically, and rewrites its
//! outputs from the start: the final output is the inline run's, byte for byte. The stream
//! lives until the host that holds the chain's sink has drained every edge; it then deletes
//! it, so the next run of the same config starts fresh, while a run that failed leaves it for
//! the restarted host to resume from.
//!
//! Rooms: `wire` (message format, pure), `nats` (connection, stream, the bridge's threads;
//! built with the `cross-host` feature).

use sha2::Digest;

use crate::config::Config;

pub mod wire;

#[cfg(feature = "cross-host")]
mod nats;
#[cfg(feature = "cross-host")]
pub use nats::Bridge;

#[cfg(not(feature = "cross-host"))]
mod unavailable;
#[cfg(not(feature = "cross-host"))]
pub use unavailable::Bridge;

/// Setting up the hand-off failed.
#[derive(Debug, thiserror::Error)]
pub enum CrossHostError {
    /// The server did not answer within the connect timeout.
    #[error(
        "cannot reach NATS at {url} within {seconds:.1} s: {detail} (is nats-server -js running? set cross_host.url or NATS_URL)"
    )]
    Unreachable {
        /// The server URL(s).
        url: String,
        /// Seconds waited.
        seconds: f64,
        /// The client's error.
        detail: String,
    },
    /// The server refused the credentials.
    #[error("NATS at {url} refused the credentials: {detail}")]
    Auth {
        /// The server URL(s).
        url: String,
        /// The server's answer.
        detail: String,
    },
    /// The TLS handshake with the server failed (a certificate the CA file does not vouch for,
    /// a server name that does not match, a client certificate the server refused).
    #[error(
        "TLS with NATS at {url} failed: {detail} (files: {files}); check that the CA file signed the server's certificate and that the URL's host is a name in it"
    )]
    Tls {
        /// The server URL(s).
        url: String,
        /// The TLS library's error.
        detail: String,
        /// The TLS files of `cross_host.credentials` in use.
        files: String,
    },
    /// A credential file could not be read.
    #[error("cannot read the NATS credential file {path}: {detail}")]
    Credentials {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The run's stream exists with settings the run cannot use.
    #[error(
        "stream {stream} exists with other settings ({detail}); delete it (`nats stream rm {stream}`) or set another cross_host.stream"
    )]
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// What differs.
        detail: String,
    },
    /// A JetStream request failed.
    #[error("JetStream at {url}: {detail}")]
    JetStream {
        /// The server URL(s).
        url: String,
        /// What failed.
        detail: String,
    },
    /// Another process runs this run id under this host name (see the claims bucket in
    /// docs/across-hosts.md).
    #[error(
        "run {run} on host {host} is already being run by {owner}; wait for it to end, or if it is gone, its claim expires within {expires_s} s (or use another --run-id)"
    )]
    Owned {
        /// The run id.
        run: String,
        /// The host name (`--host`).
        host: String,
        /// Who holds the claim (`machine=... pid=...`).
        owner: String,
        /// Seconds a claim outlives its owner's last refresh.
        expires_s: u64,
    },
    /// The account's JetStream limits leave less room than the run's stream needs.
    #[error(
        "the NATS account at {url} has room for {available} bytes of {storage} storage, and the run's stream needs about {needed} bytes (1.5x the {input} input bytes, times {replicas} replicas): raise the account's JetStream limits ({limit}) or free space, then rerun"
    )]
    NoRoom {
        /// The server URL(s).
        url: String,
        /// `file` or `memory`.
        storage: &'static str,
        /// Bytes the account may still store.
        available: u64,
        /// Bytes the stream is expected to need.
        needed: u64,
        /// The input's size.
        input: u64,
        /// The stream's replicas.
        replicas: u32,
        /// The limit's name in the account's config.
        limit: &'static str,
    },
    /// The config places groups on hosts in a way this run cannot serve.
    #[error("{0}")]
    Placement(String),
    /// This build has no cross-host transport.
    #[error("this build has no cross-host transport (build with the `cross-host` feature)")]
    Unavailable,
}

/// Which way a bridged ring's records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A local worker produces into the ring; the bridge publishes its records.
    Publish,
    /// The bridge feeds the ring from the subject; a local worker consumes it.
    Subscribe,
}

/// One ring with its remote end handled by the bridge.
pub struct BridgedRing {
    /// The ring's name, `producer->consumer` (worker ids).
    pub name: String,
    /// The local worker at the ring's other end (named in failures).
    pub worker: String,
    /// Which way its records go.
    pub direction: Direction,
    /// The bridge's own mapping of the ring.
    pub segment: crate::data::Segment,
}

/// What a finished or failed edge reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeFailure {
    /// The local worker at the edge's ring.
    pub worker: String,
    /// What failed.
    pub detail: String,
    /// The server refused to store more (its store or the account's JetStream limits are
    /// full): rerunning fails the same way until the limits change.
    pub refused: bool,
}

/// Records and messages moved by the bridge, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeCounts {
    /// Ring records published to the stream.
    pub published_records: u64,
    /// JetStream messages published.
    pub published_messages: u64,
    /// Ring records received from the stream.
    pub received_records: u64,
    /// JetStream messages received.
    pub received_messages: u64,
    /// Records received that an earlier message (or an earlier run of the upstream) had
    /// already delivered, skipped.
    pub duplicate_records: u64,
}

/// The run's identity across hosts: every host of a run must agree on it, so by default it
/// is a digest of what they share (scenario, pipeline, platform); `--run-id` overrides it.
pub fn run_key(config: &Config) -> String {
    let shared = (
        &config.scenario,
        &config.pipeline,
        &config.runtime.platform.process_groups,
        &config.runtime.platform.cross_host,
    );
    let text = serde_norway::to_string(&shared).unwrap_or_default();
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the run reads, as a short digest carried by every message: a subscriber refuses
/// records of another input (a stream left by a failed run whose input has since changed
/// would otherwise mix old records into a new run, and an upstream restarted on an edited
/// input would splice two inputs). A file is identified by the xxh3-128 digest of all its
/// bytes (one streaming read before the run: any edit, anywhere, of any size changes it);
/// generated input by its parameters; stdin cannot be read twice, so every run on stdin is a
/// new input. `skip` is part of it.
pub fn input_fingerprint(config: &Config, skip: u64) -> String {
    use crate::config::SourceAdapter;
    let mut hasher = sha2::Sha256::new();
    hasher.update(skip.to_le_bytes());
    match &config.adapters.source {
        SourceAdapter::File { path, .. } => {
            hasher.update(b"file");
            match digest_file(path) {
                Ok((len, digest)) => {
                    hasher.update(len.to_le_bytes());
                    hasher.update(digest.to_le_bytes());
                }
                Err(e) => hasher.update(e.to_string().as_bytes()),
            }
        }
        SourceAdapter::Generator { lines, seed } => {
            hasher.update(b"generator");
            hasher.update(lines.to_le_bytes());
            hasher.update(seed.to_le_bytes());
        }
        SourceAdapter::Stdin { .. } => {
            let mut nonce = [0u8; 16];
            let _ = getrandom::fill(&mut nonce);
            hasher.update(b"stdin");
            hasher.update(nonce);
        }
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The length of the file at `path` and the xxh3-128 digest of its bytes (the same digest the
/// run journal records of the bytes a source read).
pub fn digest_file(path: &std::path::Path) -> std::io::Result<(u64, u128)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok((len, hasher.digest128())),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

/// Whether `id` can name a run (it becomes part of a stream name and subjects).
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The JetStream stream of a run.
pub fn stream_name(prefix: &str, run: &str) -> String {
    format!("{prefix}_{run}")
}

/// The subject of the ring `ring` (`producer->consumer`) in a run: one per edge and partition.
pub fn subject_of(prefix: &str, run: &str, ring: &str) -> String {
    let token = |part: &str| -> String {
        part.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let (producer, consumer) = ring.split_once("->").unwrap_or((ring, ""));
    format!("{prefix}.{run}.{}.{}", token(producer), token(consumer))
}

/// The hosts a config places groups on, in config order (empty: everything is local).
pub fn hosts_of(config: &Config) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for group in &config.runtime.platform.process_groups {
        if let Some(host) = &group.host
            && !hosts.contains(host)
        {
            hosts.push(host.clone());
        }
    }
    hosts
}

/// Checks the `--host` a supervisor was given against the config's placement.
pub fn check_host(config: &Config, host: Option<&str>) -> Result<(), CrossHostError> {
    let hosts = hosts_of(config);
    match (host, hosts.is_empty()) {
        (None, true) => Ok(()),
        (Some(host), true) => Err(CrossHostError::Placement(format!(
            "--host {host}: this config places no group on a host (set process_groups[].host)"
        ))),
        (None, false) => Err(CrossHostError::Placement(format!(
            "this config places groups on hosts {}: run one supervisor per host with --host NAME",
            hosts.join(", ")
        ))),
        (Some(host), false) if !hosts.iter().any(|h| h == host) => {
            Err(CrossHostError::Placement(format!(
                "--host {host}: no group is placed on it (hosts: {})",
                hosts.join(", ")
            )))
        }
        (Some(_), false) => Ok(()),
    }
}

/// The server URL: the config's, else `NATS_URL`, else the local default.
pub fn server_url(settings: &crate::config::CrossHost) -> String {
    settings
        .url
        .clone()
        .or_else(|| std::env::var("NATS_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_string())
}

/// A URL fit for logs: user information (`user:password@`) removed.
pub fn redacted_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}{}", &one[..scheme + 3], &one[at + 1..])
            }
            (None, Some(at)) => one[at + 1..].to_string(),
            _ => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_token_per_worker() {
        assert_eq!(
            subject_of("sk", "ab12", "features#1->policy#2"),
            "sk.ab12.features_1.policy_2"
        );
        assert_eq!(subject_of("sk", "r", "a.b c->d*"), "sk.r.a_b_c.d_");
    }

    #[test]
    fn urls_lose_their_user_information_in_logs() {
        assert_eq!(
            redacted_url("nats://alice:secret@10.0.0.1:4222,nats://h:4222"),
            "nats://10.0.0.1:4222,nats://h:4222"
        );
        assert_eq!(redacted_url("tok@host:4222"), "host:4222");
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(valid_run_id("run-7_a"));
        assert!(!valid_run_id("a.b"));
        assert!(!valid_run_id(""));
    }
}
