//! Small nodes for supervisor and process tests: a ticking source, a recording sink, and nodes
//! that misbehave on purpose (slow or failing `on_start`, a node that never finishes).

#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use serde_norway::Value;
use stream_kernel::apps::fund_load::messages::RawLine;
use stream_kernel::config::reader::{self as r, Diagnostics, Section};
use stream_kernel::config::{ConfigPath, SinkAdapter};
use stream_kernel::graph::{
    Emitter, Node, NodeError, NodeState, Nothing, PartitionKey, Pull, RecordContext, Registry,
    Source,
};

/// One tick.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Tick {
    pub n: u64,
}

/// Emits `records` ticks, `delay_us` apart.
pub struct Ticker {
    records: u64,
    delay: Duration,
    next: u64,
}

impl Source for Ticker {
    type Output = Tick;
    fn pull(&mut self, out: &mut Emitter<'_, Tick>) -> Result<Pull, NodeError> {
        if self.next >= self.records {
            return Ok(Pull::Exhausted);
        }
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        self.next += 1;
        out.emit(&Tick { n: self.next })?;
        Ok(Pull::Emitted)
    }
    fn counters(&self) -> Vec<(String, u64)> {
        vec![("emitted".into(), self.next)]
    }
}

/// Passes ticks on.
pub struct Pass;

impl Node for Pass {
    type Input = Tick;
    type Output = Tick;
    fn process(
        &mut self,
        input: &Tick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        out.emit(&Tick { n: input.n })
    }
}

/// Stateful, partitioned by a "hot" key: every tick whose `n` is not a multiple of `spread`
/// has key 0, the rest key `n` (so one worker of a partitioned group gets almost everything;
/// `spread: 0` puts every tick on key 0 and leaves the other workers idle). Emits
/// `n * 1_000_000 + (ticks seen so far for the key)`: a key split across workers or seen out of
/// order changes the output.
pub struct KeyedCount {
    spread: u64,
    counts: std::collections::HashMap<u64, u64>,
}

/// The partition key of a tick for [`KeyedCount`] (spread read from the config).
pub fn hot_key(n: u64, spread: u64) -> u64 {
    if spread != 0 && n.is_multiple_of(spread) {
        n
    } else {
        0
    }
}

/// The `spread` every `keyed_count` of this process uses (its state fn has no settings).
pub static KEYED_SPREAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);

impl Node for KeyedCount {
    type Input = Tick;
    type Output = Tick;
    fn process(
        &mut self,
        input: &Tick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        let n = input.n;
        let count = self.counts.entry(hot_key(n, self.spread)).or_insert(0);
        *count += 1;
        out.emit(&Tick {
            n: n * 1_000_000 + *count,
        })
    }
}

/// `on_start` never returns (the worker never says READY).
pub struct Hang;

impl Node for Hang {
    type Input = Tick;
    type Output = Tick;
    fn on_start(&mut self) -> Result<(), NodeError> {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    fn process(
        &mut self,
        input: &Tick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        out.emit(&Tick { n: input.n })
    }
}

/// `on_start` fails with a recognisable message.
pub struct FailStart;

pub const FAIL_START_MESSAGE: &str = "the widget calibration file is missing";

impl Node for FailStart {
    type Input = Tick;
    type Output = Tick;
    fn on_start(&mut self) -> Result<(), NodeError> {
        Err(NodeError::failed(FAIL_START_MESSAGE))
    }
    fn process(
        &mut self,
        input: &Tick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        out.emit(&Tick { n: input.n })
    }
}

/// Takes a minute per record: a worker running it cannot honour STOP in time.
pub struct Stuck;

impl Node for Stuck {
    type Input = Tick;
    type Output = Tick;
    fn process(
        &mut self,
        input: &Tick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        std::thread::sleep(Duration::from_secs(60));
        out.emit(&Tick { n: input.n })
    }
}

/// Writes each tick's number as a line to the sink adapter's file.
pub struct Record {
    out: std::io::BufWriter<std::fs::File>,
}

impl Node for Record {
    type Input = Tick;
    type Output = Nothing;
    fn process(
        &mut self,
        input: &Tick,
        _ctx: &RecordContext<'_>,
        _out: &mut Emitter<'_, Nothing>,
    ) -> Result<(), NodeError> {
        writeln!(self.out, "{}", input.n).map_err(|e| NodeError::io("writing ticks", e))
    }
    fn on_end_of_stream(&mut self, _out: &mut Emitter<'_, Nothing>) -> Result<(), NodeError> {
        self.out
            .flush()
            .map_err(|e| NodeError::io("flushing ticks", e))
    }
    fn flush(&mut self) -> Result<(), NodeError> {
        self.out
            .flush()
            .map_err(|e| NodeError::io("flushing ticks", e))
    }
}

fn ticker_settings(
    section: Option<&Value>,
    path: &ConfigPath,
    diag: &mut Diagnostics,
) -> Option<Value> {
    let mut s = match section {
        Some(v) => Section::open(v, path.clone(), diag)?,
        None => Section::empty(path.clone(), diag),
    };
    let records = s.field("records", 10, r::unsigned);
    let delay_us = s.field("delay_us", 0, r::unsigned);
    drop(s);
    serde_norway::to_value(serde_json_like(records, delay_us)).ok()
}

fn serde_json_like(records: u64, delay_us: u64) -> std::collections::BTreeMap<String, u64> {
    [
        ("records".to_string(), records),
        ("delay_us".to_string(), delay_us),
    ]
    .into()
}

fn setting(value: &Value, key: &str, default: u64) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(default)
}

/// The registry of test nodes.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}

/// Fund-load's nodes and the test nodes together.
pub fn with_fund_load() -> Registry {
    let mut registry = stream_kernel::apps::fund_load::registry();
    register(&mut registry);
    registry
}

/// Adds the test nodes to `registry` (which may hold an application's nodes already).
pub fn register(registry: &mut Registry) {
    registry
        .source("ticker", |ctx| {
            Ok(Ticker {
                records: setting(ctx.settings, "records", 10),
                delay: Duration::from_micros(setting(ctx.settings, "delay_us", 0)),
                next: 0,
            })
        })
        .settings(ticker_settings);
    registry.transform("pass", |_| Ok(Pass));
    registry
        .transform("keyed_count", |ctx| {
            Ok(KeyedCount {
                spread: setting(ctx.settings, "spread", 100),
                counts: Default::default(),
            })
        })
        .settings(any_settings)
        .state(|config| {
            let spread = config
                .nodes
                .get("keyed_count")
                .and_then(|s| s.get("spread"))
                .and_then(Value::as_u64)
                .unwrap_or(100);
            KEYED_SPREAD.store(spread, std::sync::atomic::Ordering::Relaxed);
            NodeState::Partitioned(PartitionKey::new::<Tick>("hot_key", |t| {
                hot_key(t.n, KEYED_SPREAD.load(std::sync::atomic::Ordering::Relaxed))
            }))
        });
    registry.transform("hang", |_| Ok(Hang));
    registry.transform("fail_start", |_| Ok(FailStart));
    registry.transform("stuck", |_| Ok(Stuck));
    registry.transform("record", |ctx| {
        Ok(Record {
            out: std::io::BufWriter::new(create_sink_file(ctx.config)?),
        })
    });
    registry
        .transform("probe_start", |_| Ok(ProbeStart))
        .settings(any_settings);
    for name in ["probe_a", "probe_b", "probe_c", "probe_d"] {
        registry
            .transform(name, |_| Ok(ProbeHop))
            .settings(any_settings);
    }
    registry.transform("probe_sink", |ctx| {
        Ok(ProbeSink {
            out: std::io::BufWriter::new(create_sink_file(ctx.config)?),
        })
    });
    registry
        .transform("fail_on", |ctx| {
            Ok(FailOn {
                seq: setting(ctx.settings, "seq", 0),
                panic: ctx.settings.get("panic").and_then(Value::as_bool) == Some(true),
            })
        })
        .settings(any_settings);
    registry
        .transform("router", |ctx| {
            let target = ctx
                .settings
                .get("target")
                .and_then(Value::as_str)
                .unwrap_or("record")
                .to_string();
            Ok(Router { target })
        })
        .settings(any_settings);
    registry
        .transform("hold_lines", |ctx| {
            Ok(HoldLines {
                hold: Duration::from_millis(setting(ctx.settings, "hold_ms", 0)),
            })
        })
        .settings(any_settings);
}

fn create_sink_file(config: &stream_kernel::config::Config) -> Result<std::fs::File, NodeError> {
    let path = match &config.adapters.sink {
        SinkAdapter::File { path } => path.clone(),
        SinkAdapter::Stdout => return Err(NodeError::failed("this test sink needs a file")),
    };
    std::fs::File::create(&path)
        .map_err(|e| NodeError::io(format!("creating {}", path.display()), e))
}

/// Test nodes take any settings and read what they know.
fn any_settings(
    section: Option<&Value>,
    _path: &ConfigPath,
    _diag: &mut Diagnostics,
) -> Option<Value> {
    section.cloned()
}

/// One node's view of a record, as a probe saw it.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Hop {
    pub pid: u32,
    pub group: String,
    pub handoff_from: String,
    pub route_hop: u16,
    pub seq: u64,
    pub trace_id: [u8; 16],
}

/// A tick with the hops it went through.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Probe {
    pub n: u64,
    pub hops: Vec<Hop>,
}

fn hop_here(ctx: &RecordContext<'_>) -> Hop {
    Hop {
        pid: std::process::id(),
        group: ctx.process_group.to_string(),
        handoff_from: ctx.handoff_from.unwrap_or("").to_string(),
        route_hop: ctx.route_hop,
        seq: ctx.seq,
        trace_id: ctx.trace_id,
    }
}

fn hops_of(probe: &Probe) -> Vec<Hop> {
    probe.hops.clone()
}

/// Turns a tick into a probe carrying its first hop.
pub struct ProbeStart;

impl Node for ProbeStart {
    type Input = Tick;
    type Output = Probe;
    fn process(
        &mut self,
        input: &Tick,
        ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Probe>,
    ) -> Result<(), NodeError> {
        out.emit(&Probe {
            n: input.n,
            hops: vec![hop_here(ctx)],
        })
    }
}

/// Adds its hop to the probe.
pub struct ProbeHop;

impl Node for ProbeHop {
    type Input = Probe;
    type Output = Probe;
    fn process(
        &mut self,
        input: &Probe,
        ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Probe>,
    ) -> Result<(), NodeError> {
        let mut hops = hops_of(input);
        hops.push(hop_here(ctx));
        out.emit(&Probe { n: input.n, hops })
    }
}

/// Writes each probe as one line: `n` then `pid,group,handoff_from,route_hop,seq,trace` per
/// hop (including its own), separated by `;`.
pub struct ProbeSink {
    out: std::io::BufWriter<std::fs::File>,
}

pub fn format_hop(h: &Hop) -> String {
    let trace: String = h.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{},{},{},{},{},{}",
        h.pid, h.group, h.handoff_from, h.route_hop, h.seq, trace
    )
}

impl Node for ProbeSink {
    type Input = Probe;
    type Output = Nothing;
    fn process(
        &mut self,
        input: &Probe,
        ctx: &RecordContext<'_>,
        _out: &mut Emitter<'_, Nothing>,
    ) -> Result<(), NodeError> {
        let mut hops = hops_of(input);
        hops.push(hop_here(ctx));
        let hops: Vec<String> = hops.iter().map(format_hop).collect();
        writeln!(self.out, "{}\t{}", input.n, hops.join(";"))
            .map_err(|e| NodeError::io("writing probes", e))
    }
    fn flush(&mut self) -> Result<(), NodeError> {
        self.out
            .flush()
            .map_err(|e| NodeError::io("flushing probes", e))
    }
    fn on_end_of_stream(&mut self, _out: &mut Emitter<'_, Nothing>) -> Result<(), NodeError> {
        self.flush()
    }
}

/// Passes ticks on, except record `seq`: an error there (or a panic with `panic: true`).
pub struct FailOn {
    seq: u64,
    panic: bool,
}

pub const FAIL_ON_MESSAGE: &str = "tick rejected on purpose";

impl Node for FailOn {
    type Input = Tick;
    type Output = Tick;
    fn process(
        &mut self,
        input: &Tick,
        ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        if ctx.seq == self.seq {
            if self.panic {
                panic!("{FAIL_ON_MESSAGE}");
            }
            return Err(NodeError::failed(FAIL_ON_MESSAGE));
        }
        out.emit(&Tick { n: input.n })
    }
}

/// Sends every tick to the node named by its `target` setting (an explicit target).
pub struct Router {
    target: String,
}

impl Node for Router {
    type Input = Tick;
    type Output = Tick;
    fn process(
        &mut self,
        input: &Tick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        out.emit_to(&self.target, &Tick { n: input.n })
    }
}

/// Passes fund-load input lines on; its `on_start` takes `hold_ms` (a worker held back from
/// READY).
pub struct HoldLines {
    hold: Duration,
}

impl Node for HoldLines {
    type Input = RawLine;
    type Output = RawLine;
    fn on_start(&mut self) -> Result<(), NodeError> {
        std::thread::sleep(self.hold);
        Ok(())
    }
    fn process(
        &mut self,
        input: &RawLine,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, RawLine>,
    ) -> Result<(), NodeError> {
        out.emit(input)
    }
}
