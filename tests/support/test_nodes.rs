//! Small nodes for supervisor and process tests: a ticking source, a recording sink, and nodes
//! that misbehave on purpose (slow or failing `on_start`, a node that never finishes).

#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use serde_norway::Value;
use stream_kernel::config::reader::{self as r, Diagnostics, Section};
use stream_kernel::config::{ConfigPath, SinkAdapter};
use stream_kernel::graph::{
    Emitter, Node, NodeError, Nothing, Pull, RecordContext, Registry, Source,
};

/// One tick.
#[derive(Debug, Clone, rkyv::Archive, rkyv::Serialize)]
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
        input: &ArchivedTick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        out.emit(&Tick {
            n: input.n.to_native(),
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
        input: &ArchivedTick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        out.emit(&Tick {
            n: input.n.to_native(),
        })
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
        input: &ArchivedTick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        out.emit(&Tick {
            n: input.n.to_native(),
        })
    }
}

/// Takes a minute per record: a worker running it cannot honour STOP in time.
pub struct Stuck;

impl Node for Stuck {
    type Input = Tick;
    type Output = Tick;
    fn process(
        &mut self,
        input: &ArchivedTick,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Tick>,
    ) -> Result<(), NodeError> {
        std::thread::sleep(Duration::from_secs(60));
        out.emit(&Tick {
            n: input.n.to_native(),
        })
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
        input: &ArchivedTick,
        _ctx: &RecordContext<'_>,
        _out: &mut Emitter<'_, Nothing>,
    ) -> Result<(), NodeError> {
        writeln!(self.out, "{}", input.n.to_native()).map_err(|e| NodeError::io("writing ticks", e))
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
    registry.transform("hang", |_| Ok(Hang));
    registry.transform("fail_start", |_| Ok(FailStart));
    registry.transform("stuck", |_| Ok(Stuck));
    registry.transform("record", |ctx| {
        let path = match &ctx.config.adapters.sink {
            SinkAdapter::File { path } => path.clone(),
            SinkAdapter::Stdout => return Err(NodeError::failed("record needs a file sink")),
        };
        let file = std::fs::File::create(&path)
            .map_err(|e| NodeError::io(format!("creating {}", path.display()), e))?;
        Ok(Record {
            out: std::io::BufWriter::new(file),
        })
    });
    registry
}
