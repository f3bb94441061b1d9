//! Planning before any process starts: which worker runs which nodes, and every ring between
//! workers of consecutive groups (and the embedding host), created and bound to both ends.

use std::time::Duration;

use super::{PlannedRing, SupervisorError, WorkerPlan};
use crate::config::Config;
use crate::control::RingBinding;
use crate::cross_host::Direction;
use crate::graph::{Graph, NodeRole};
use crate::supervisor::lifecycle::{WorkerRecord, WorkerState};

/// Which end of a ring the embedding host holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostEnd {
    /// The host produces into the ring (submissions to the first group).
    Producer,
    /// The host consumes the ring (terminal outputs of the last group).
    Consumer,
}

/// Creates the run's rings and records each worker end in its plan (binding in the bundle, fd
/// to inherit): one per (worker, worker of the next group) pair, plus, for an embedding host,
/// one from the host into each first-group worker and one from each last-group worker back.
pub(super) fn plan_rings(
    config: &Config,
    graph: &Graph,
    records: &[WorkerRecord],
    plans: &mut [WorkerPlan],
    host_rings: bool,
    host: Option<&str>,
) -> Result<Vec<PlannedRing>, SupervisorError> {
    let here = |worker: usize| runs_here(config, &records[worker].group, host);
    let topology = crate::runtime::topology::Topology::of(config, graph);
    let capacity = config.runtime.platform.execution_ipc.ring_bytes as usize;
    let mut planner = RingPlanner {
        capacity,
        len: crate::data::ring_memory_len(capacity),
        rings: Vec::new(),
    };
    let workers_of = |group: &str| -> Vec<usize> {
        (0..records.len())
            .filter(|i| records[*i].group == group)
            .collect()
    };
    for pair in topology.groups.windows(2) {
        let (from, to) = (&pair[0], &pair[1]);
        for p in workers_of(&from.name) {
            for c in workers_of(&to.name) {
                // A ring with one end on another host has the bridge at that end; a pair
                // wholly elsewhere is that host's business.
                let crossing = match (here(p), here(c)) {
                    (true, true) => None,
                    (true, false) => Some(Direction::Publish),
                    (false, true) => Some(Direction::Subscribe),
                    (false, false) => continue,
                };
                let name = format!("{}->{}", records[p].id, records[c].id);
                let (segment, salt) = planner.create(&name)?;
                let node = to.first as u32;
                if here(p) {
                    planner.bind(plans, p, &segment, false, node, &records[c].id);
                }
                if here(c) {
                    planner.bind(plans, c, &segment, true, node, &records[p].id);
                }
                planner.rings.push(PlannedRing {
                    name,
                    segment,
                    salt,
                    consumer: here(c).then_some(c),
                    host: None,
                    crossing,
                });
            }
        }
    }
    if !host_rings {
        return Ok(planner.rings);
    }
    let last_is_sink = graph.nodes.last().is_some_and(|n| n.role == NodeRole::Sink);
    if let (false, Some(first)) = (graph.has_source(), topology.groups.first()) {
        for c in workers_of(&first.name) {
            let name = format!("host->{}", records[c].id);
            let (segment, salt) = planner.create(&name)?;
            planner.bind(plans, c, &segment, true, first.first as u32, "host");
            planner.rings.push(PlannedRing {
                name,
                segment,
                salt,
                consumer: Some(c),
                host: Some(HostEnd::Producer),
                crossing: None,
            });
        }
    }
    if let (false, Some(last)) = (last_is_sink, topology.groups.last()) {
        for p in workers_of(&last.name) {
            let name = format!("{}->host", records[p].id);
            let (segment, salt) = planner.create(&name)?;
            let target = crate::data::TERMINAL_TARGET;
            planner.bind(plans, p, &segment, false, target, "host");
            planner.rings.push(PlannedRing {
                name,
                segment,
                salt,
                consumer: None,
                host: Some(HostEnd::Consumer),
                crossing: None,
            });
        }
    }
    Ok(planner.rings)
}

/// Whether group `group` runs under this supervisor: every group when the config places none
/// on hosts, else the groups placed on `host`.
pub(super) fn runs_here(config: &Config, group: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return true };
    config
        .process_group(group)
        .is_none_or(|g| g.host.as_deref().is_none_or(|h| h == host))
}

/// The workers this supervisor spawns (its host's), numbered afresh from 1 in spawn order;
/// the rings' consumer indices follow them.
pub(super) fn keep_local(
    records: Vec<WorkerRecord>,
    plans: Vec<WorkerPlan>,
    rings: &mut [PlannedRing],
    local: &dyn Fn(&str) -> bool,
) -> (Vec<WorkerRecord>, Vec<WorkerPlan>) {
    let mut kept = 0;
    let renumbered: Vec<Option<usize>> = records
        .iter()
        .map(|r| {
            local(&r.group).then(|| {
                kept += 1;
                kept - 1
            })
        })
        .collect();
    for ring in rings.iter_mut() {
        ring.consumer = ring.consumer.and_then(|c| renumbered[c]);
    }
    let (records, plans): (Vec<_>, Vec<_>) = records
        .into_iter()
        .zip(plans)
        .filter(|(record, _)| local(&record.group))
        .unzip();
    let records = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| WorkerRecord {
            number: i as u32 + 1,
            ..record
        })
        .collect();
    (records, plans)
}

/// Creates ring segments of one size and binds their ends to workers.
struct RingPlanner {
    capacity: usize,
    len: usize,
    rings: Vec<PlannedRing>,
}

impl RingPlanner {
    /// A fresh ring and the salt it was initialised with.
    fn create(&self, name: &str) -> Result<(crate::data::Segment, u64), SupervisorError> {
        let failed = |detail: String| SupervisorError::Ring {
            ring: name.to_string(),
            detail,
        };
        let segment =
            crate::data::Segment::create(name, self.len).map_err(|e| failed(e.to_string()))?;
        let mut salt = [0u8; 8];
        getrandom::fill(&mut salt).map_err(|e| failed(format!("no random salt: {e}")))?;
        let salt = u64::from_le_bytes(salt);
        crate::data::init_ring(&segment, self.capacity, salt).map_err(|e| failed(e.to_string()))?;
        Ok((segment, salt))
    }

    /// Records one end of `segment` in worker `worker`'s plan.
    fn bind(
        &self,
        plans: &mut [WorkerPlan],
        worker: usize,
        segment: &crate::data::Segment,
        inbound: bool,
        node: u32,
        peer: &str,
    ) {
        let fd = segment.inheritable_fd();
        plans[worker].rings.push(RingBinding {
            fd,
            len: self.len as u64,
            inbound,
            node,
            peer: peer.to_string(),
        });
        plans[worker].inherit.push(fd);
    }
}

/// Workers in spawn order (groups in config order, workers by index) with their plans.
pub(super) fn plan_workers(config: &Config, graph: &Graph) -> (Vec<WorkerRecord>, Vec<WorkerPlan>) {
    let mut records = Vec::new();
    let mut plans = Vec::new();
    let topology = crate::runtime::topology::Topology::of(config, graph);
    let last_group = topology.groups.last().map(|g| g.name.clone());
    for group in &config.runtime.platform.process_groups {
        let holds = |role: NodeRole| {
            graph
                .nodes
                .iter()
                .any(|n| n.role == role && group.nodes.contains(&n.name))
        };
        for index in 1..=group.workers {
            records.push(WorkerRecord {
                id: format!("{}#{index}", group.name),
                group: group.name.clone(),
                index,
                number: records.len() as u32 + 1,
                pid: None,
                state: WorkerState::Starting,
                spawned_at: None,
                last_heartbeat: None,
                counters: Default::default(),
                exit: None,
                failure: None,
                stop_mode: None,
                ends_chain: last_group.as_deref() == Some(group.name.as_str()),
                holds_source: holds(NodeRole::Source),
                drained: false,
                connected: false,
                pending_exit: None,
            });
            plans.push(WorkerPlan {
                nodes: graph
                    .nodes
                    .iter()
                    .filter(|n| group.nodes.contains(&n.name))
                    .map(|n| n.name.clone())
                    .collect(),
                heartbeat: Duration::from_secs_f64(group.heartbeat_seconds),
                start_timeout: Duration::from_secs_f64(group.start_timeout_seconds),
                stop_timeout: Duration::from_secs_f64(group.stop_timeout_seconds),
                cpus: group.cpus.clone(),
                rings: Vec::new(),
                inherit: Vec::new(),
                // The source runs in this worker, so the input on stdin must reach it.
                stdin: holds(NodeRole::Source)
                    && matches!(
                        config.adapters.source,
                        crate::config::SourceAdapter::Stdin { .. }
                    ),
            });
        }
    }
    (records, plans)
}
