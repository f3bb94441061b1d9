//! The legitimate frames of the fuzz run: signed with a fixed master key and a fixed
//! `issued_at`, so the fuzz target can tell a genuine frame from a forgery byte for byte.

use stream_kernel::control::frame::{Direction, FrameHeader, PROTOCOL_VERSION, encode_frame};
use stream_kernel::control::{
    BootstrapBundle, ControlMessage, DrainReport, FailureCategory, InputMark, MasterKey, NodeCount,
    NodeFinal, OutputMark, StopMode,
};
use stream_kernel::graph::Outcome;

/// A fixed master key, so the seeds stay valid across runs.
pub const FUZZ_MASTER: [u8; 32] = *b"stream-kernel fuzz master key 32";
/// 2026-01-01T00:00:00Z.
pub const ISSUED_AT_MS: u64 = 1_767_225_600_000;

pub fn worker_ids() -> Vec<String> {
    vec!["group#1".to_string(), "group#2".to_string()]
}

fn frame(
    master: &MasterKey,
    worker: u32,
    direction: Direction,
    seq: u64,
    message: &ControlMessage,
) -> Vec<u8> {
    let key = master.derive(&worker_ids()[worker as usize - 1]);
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(message).expect("encodable");
    let header = FrameHeader {
        version: PROTOCOL_VERSION,
        kind: message.kind() as u8,
        direction: direction as u8,
        worker,
        correlation: seq * 7,
        issued_at_ms: ISSUED_AT_MS,
        nonce: [seq as u8 ^ (worker as u8) << 4; 16],
        seq,
    };
    let mut out = Vec::new();
    encode_frame(&key, &header, &body, &mut out);
    out
}

/// Every seed frame: a worker's opening sequence and the supervisor's replies.
pub fn seed_frames() -> Vec<Vec<u8>> {
    let master = MasterKey::from_bytes(FUZZ_MASTER);
    let up = Direction::ToSupervisor;
    let down = Direction::ToWorker;
    vec![
        frame(
            &master,
            1,
            up,
            1,
            &ControlMessage::Hello {
                worker_id: "group#1".into(),
                pid: 41,
            },
        ),
        frame(
            &master,
            1,
            up,
            2,
            &ControlMessage::Ack {
                kind: 2,
                correlation: 7,
            },
        ),
        frame(
            &master,
            1,
            up,
            3,
            &ControlMessage::Ready {
                worker_id: "group#1".into(),
            },
        ),
        frame(
            &master,
            1,
            up,
            4,
            &ControlMessage::Heartbeat {
                worker_id: "group#1".into(),
                counters: Default::default(),
            },
        ),
        frame(
            &master,
            1,
            up,
            5,
            &ControlMessage::Drained {
                last_seq: 99,
                records: 99,
                report: DrainReport {
                    nodes: vec![NodeFinal {
                        count: NodeCount {
                            node: "sink".into(),
                            records_in: 99,
                            records_out: 99,
                            errors: 0,
                            counters: vec![("bytes_read".into(), 4_096)],
                            outcomes: vec![Outcome::with_reason("declined", "LIMIT", 1)],
                        },
                        group: "group".into(),
                        ..NodeFinal::default()
                    }],
                    elapsed_ns: 1_000,
                    ..DrainReport::default()
                },
                input_marks: vec![InputMark {
                    seq: 99,
                    bytes: 4_096,
                    digest: Some(7),
                }],
                output_mark: Some(OutputMark {
                    seq: 99,
                    outputs: Vec::new(),
                }),
            },
        ),
        frame(
            &master,
            1,
            up,
            6,
            &ControlMessage::Failed {
                category: FailureCategory::NodeError,
                message: "x".into(),
            },
        ),
        frame(
            &master,
            2,
            up,
            1,
            &ControlMessage::Hello {
                worker_id: "group#2".into(),
                pid: 42,
            },
        ),
        frame(
            &master,
            1,
            down,
            1,
            &ControlMessage::BootstrapBundle(BootstrapBundle {
                group: "group".into(),
                worker_index: 1,
                workers: 2,
                config_yaml: "version: 1\n".into(),
                node_names: vec!["source".into()],
                rings: Vec::new(),
                telemetry: None,
                run_id: 1,
                skip: 0,
                resume_lengths: Vec::new(),
                resume_positions: Vec::new(),
                correlation: 7,
            }),
        ),
        frame(
            &master,
            1,
            down,
            2,
            &ControlMessage::StartWork {
                required: worker_ids(),
            },
        ),
        frame(
            &master,
            1,
            down,
            3,
            &ControlMessage::Stop {
                mode: StopMode::Graceful,
                deadline_ms: 5,
            },
        ),
    ]
}
