//! One owner per run id and host: a host claims `<run>.<host>` in a key-value bucket of the
//! server before it touches the run's stream, refreshes the claim while it runs, and deletes
//! it at its end. A second host started under the same run id and host name is refused at
//! start, naming the owner.
//!
//! The bucket's entries expire [`CLAIM_TTL`] after their last refresh, so the claim of a
//! host that died without its end (`kill -9`, a lost machine) goes away on its own; a claim
//! left by a process of this machine that no longer exists is taken over at once.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use super::CrossHostError;
use crate::config::{CrossHost, StreamStorage};

/// How long a claim outlives its last refresh.
pub(super) const CLAIM_TTL: Duration = Duration::from_secs(15);
/// How often a running owner refreshes its claim.
const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// A held claim: refreshed by a task of the bridge's runtime, deleted on [`Claim::release`].
pub(super) struct Claim {
    store: kv::Store,
    key: String,
    refresher: tokio::task::JoinHandle<()>,
}

impl Claim {
    /// Claims `<run>.<host>`, or says who holds it. A bucket that cannot answer yet (on a
    /// cluster, its replicas are still electing their first leader) is asked again until
    /// `retry_until`.
    pub(super) async fn take(
        context: &jetstream::Context,
        settings: &CrossHost,
        who: (&str, &str),
        url: &str,
        retry_until: std::time::Instant,
    ) -> Result<Self, CrossHostError> {
        let (run, host) = who;
        let key = format!("{}.{}", key_part(run), key_part(host));
        let me = Bytes::from(describe_self());
        let store = loop {
            match claim_once(context, settings, &key, me.clone(), who, url).await {
                Ok(store) => break store,
                Err(error @ CrossHostError::Owned { .. }) => return Err(error),
                Err(error) if std::time::Instant::now() >= retry_until => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let refresher = tokio::spawn({
            let (store, key) = (store.clone(), key.clone());
            async move {
                loop {
                    tokio::time::sleep(REFRESH_EVERY).await;
                    // A refresh that fails is retried at the next tick; the claim outlives
                    // several missed ones.
                    let _ = store.put(&key, me.clone()).await;
                }
            }
        });
        Ok(Self {
            store,
            key,
            refresher,
        })
    }

    /// Stops refreshing and deletes the claim (at most a second: a server that is gone lets
    /// the claim expire instead).
    pub(super) async fn release(self) {
        self.refresher.abort();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.store.delete(&self.key)).await;
    }
}

/// One attempt at the claim: the bucket, then the key (taken over from a gone local owner).
async fn claim_once(
    context: &jetstream::Context,
    settings: &CrossHost,
    key: &str,
    me: Bytes,
    (run, host): (&str, &str),
    url: &str,
) -> Result<kv::Store, CrossHostError> {
    let store = bucket(context, settings, url).await?;
    match store.create(key, me.clone()).await {
        Ok(_) => Ok(store),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            take_over_if_dead(&store, key, me, (run, host), url).await?;
            Ok(store)
        }
        Err(e) => Err(CrossHostError::JetStream {
            url: url.to_string(),
            detail: format!("claiming run {run} for host {host}: {e}"),
        }),
    }
}

/// The claims bucket of `settings.stream`, created with the run stream's storage and replicas.
async fn bucket(
    context: &jetstream::Context,
    settings: &CrossHost,
    url: &str,
) -> Result<kv::Store, CrossHostError> {
    let name = format!("{}_owners", key_part(&settings.stream).replace('.', "_"));
    if let Ok(store) = context.get_key_value(&name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.clone(),
        description: "stream-kernel: the host that runs each run id and host name".into(),
        history: 1,
        max_age: CLAIM_TTL,
        storage: match settings.storage {
            StreamStorage::File => jetstream::stream::StorageType::File,
            StreamStorage::Memory => jetstream::stream::StorageType::Memory,
        },
        num_replicas: settings.replicas as usize,
        ..Default::default()
    };
    match context.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another host created it in between.
        Err(first) => context
            .get_key_value(&name)
            .await
            .map_err(|_| CrossHostError::JetStream {
                url: url.to_string(),
                detail: format!("creating the claims bucket {name}: {first}"),
            }),
    }
}

/// The claim exists: taken over when its owner was a process of this machine that is gone,
/// else refused naming the owner.
async fn take_over_if_dead(
    store: &kv::Store,
    key: &str,
    me: Bytes,
    (run, host): (&str, &str),
    url: &str,
) -> Result<(), CrossHostError> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| CrossHostError::JetStream {
            url: url.to_string(),
            detail: format!("reading the claim of run {run} for host {host}: {e}"),
        })?
        .filter(|e| e.operation == kv::Operation::Put);
    let Some(entry) = entry else {
        // Deleted or expired in between: claim it as new.
        return store
            .create(key, me)
            .await
            .map(|_| ())
            .map_err(|_| owned(run, host, "another host (it claimed the run just now)"));
    };
    let owner = String::from_utf8_lossy(&entry.value).into_owned();
    if owner_is_gone(&owner) {
        tracing::warn!(worker_id = "supervisor", run, host, owner = %owner, "taking over the claim of a process of this machine that no longer runs");
        return store
            .update(key, me, entry.revision)
            .await
            .map(|_| ())
            .map_err(|_| owned(run, host, &owner));
    }
    Err(owned(run, host, &owner))
}

fn owned(run: &str, host: &str, owner: &str) -> CrossHostError {
    CrossHostError::Owned {
        run: run.to_string(),
        host: host.to_string(),
        owner: crate::text::printable(owner).into_owned(),
        expires_s: CLAIM_TTL.as_secs(),
    }
}

/// `machine=<name> pid=<pid>`: who holds a claim.
fn describe_self() -> String {
    format!("machine={} pid={}", machine_name(), std::process::id())
}

/// The claim names a process of this machine that no longer exists.
fn owner_is_gone(owner: &str) -> bool {
    let field = |name: &str| {
        owner
            .split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(machine), Some(pid)) = (field("machine"), field("pid")) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    machine == machine_name() && pid != 0 && !process_runs(pid)
}

/// Process `pid` of this machine exists and has not exited (a zombie waiting to be reaped
/// has ended: its claim is free).
fn process_runs(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last `)` (a name may hold parentheses).
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

fn machine_name() -> String {
    crate::observability::export::host_name()
}

/// `text` as one key token: characters a key may not hold become `_`.
fn key_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_of_a_gone_process_of_this_machine_is_recognised() {
        let here = machine_name();
        assert!(!owner_is_gone(&describe_self()));
        // Pids are below 2^22 on Linux.
        assert!(owner_is_gone(&format!("machine={here} pid=99999999")));
        assert!(!owner_is_gone("machine=elsewhere pid=99999999"));
        assert!(!owner_is_gone("garbage"));
    }

    #[test]
    fn key_parts_hold_only_key_characters() {
        assert_eq!(key_part("run 1.a/b"), "run_1_a_b");
        assert_eq!(key_part("up-stream_2"), "up-stream_2");
    }
}
