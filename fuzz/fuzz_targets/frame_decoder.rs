//! Fuzz target: the control frame decoder and every receive check (docs/architecture.md CTRL-08).
//!
//! Each input is a byte stream fed to a supervisor-side and a worker-side checker that know
//! the run's keys. The fuzzer does not: a frame it gets accepted that is not byte for byte one
//! of the signed seeds (`seeds.rs`) is a forgery and aborts the run. Starting from the seeds
//! (`tools/fuzz-frames.sh` writes them), mutations explore the checks past the tag the way an
//! attacker with captured frames would.

#![no_main]

#[path = "../seeds.rs"]
mod seeds;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stream_kernel::control::{EndpointSettings, FrameChecker, KeyDirectory, MasterKey, WorkerKey};

struct Fixture {
    directory: Arc<KeyDirectory>,
    worker: WorkerKey,
    seeds: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let master = MasterKey::from_bytes(seeds::FUZZ_MASTER);
        Fixture {
            directory: Arc::new(KeyDirectory::derive(&master, &seeds::worker_ids())),
            worker: master.derive("group#1"),
            seeds: seeds::seed_frames(),
        }
    })
}

/// Runs one checker over the whole input; every accepted frame must be a seed.
fn check_all(checker: &mut FrameChecker, data: &[u8], seeds: &[Vec<u8>]) {
    let mut reader = data;
    loop {
        let start = data.len() - reader.len();
        let Ok(received) = checker.check(&mut reader) else {
            break;
        };
        let frame = &data[start..data.len() - reader.len()];
        assert!(
            seeds.iter().any(|s| s == frame),
            "forged frame accepted: {received:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // A window wide enough for the fixed-time seeds; mutated issued_at fields still hit it.
    let settings =
        EndpointSettings::new(Duration::from_secs(100 * 365 * 24 * 3600), 64 * 1024, 1024);
    let mut supervisor =
        FrameChecker::for_supervisor(Arc::clone(&f.directory), Arc::clone(&settings));
    check_all(&mut supervisor, data, &f.seeds);
    let mut worker = FrameChecker::for_worker(1, f.worker.clone(), settings);
    check_all(&mut worker, data, &f.seeds);
});
