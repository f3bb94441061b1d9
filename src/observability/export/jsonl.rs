//! `jsonl` and `stdout` span exporters: one compact JSON object per span, keys in a fixed
//! order, so a run with fixed ids writes the same bytes every time.

use std::io::Write;
use std::sync::Arc;

use super::{ExportError, ExportSetupError, RunResource, SpanExporter};
use crate::config::JsonlSettings;
use crate::json::push_string;
use crate::observability::span::{SpanRecord, hex};

pub struct JsonlExporter {
    destination: String,
    out: Box<dyn Write + Send>,
    file: Option<std::fs::File>,
    flush_every_n: u64,
    fsync: bool,
    since_flush: u64,
    scenario: String,
    line: Vec<u8>,
}

impl JsonlExporter {
    pub fn file(
        settings: &JsonlSettings,
        resource: &RunResource,
    ) -> Result<Self, ExportSetupError> {
        let file = std::fs::File::create(&settings.path).map_err(|e| ExportSetupError {
            kind: "jsonl",
            message: format!("{}: {e}", settings.path.display()),
        })?;
        let handle = file.try_clone().map_err(|e| ExportSetupError {
            kind: "jsonl",
            message: e.to_string(),
        })?;
        Ok(Self {
            destination: settings.path.display().to_string(),
            out: Box::new(std::io::BufWriter::new(file)),
            file: Some(handle),
            flush_every_n: settings.flush_every_n.max(1),
            fsync: settings.fsync,
            since_flush: 0,
            scenario: resource.scenario.clone(),
            line: Vec::with_capacity(512),
        })
    }

    pub fn stdout(resource: &RunResource) -> Self {
        Self {
            destination: "stdout".to_string(),
            out: Box::new(std::io::stdout()),
            file: None,
            flush_every_n: 1,
            fsync: false,
            since_flush: 0,
            scenario: resource.scenario.clone(),
            line: Vec::with_capacity(512),
        }
    }
}

/// Appends `span` as one JSON line.
pub fn write_span(out: &mut Vec<u8>, span: &SpanRecord, scenario: &str) {
    out.extend_from_slice(b"{\"trace_id\":\"");
    out.extend_from_slice(hex(&span.trace_id).as_bytes());
    out.extend_from_slice(
        format!(
            "\",\"span_id\":\"{:016x}\",\"parent_span_id\":",
            span.span_id
        )
        .as_bytes(),
    );
    if span.parent_span_id == 0 {
        out.extend_from_slice(b"null");
    } else {
        out.extend_from_slice(format!("\"{:016x}\"", span.parent_span_id).as_bytes());
    }
    out.extend_from_slice(b",\"name\":");
    push_string(out, &span.name);
    out.extend_from_slice(format!(",\"seq\":{},\"process_group\":", span.seq).as_bytes());
    push_string(out, &span.process_group);
    out.extend_from_slice(b",\"handoff_from\":");
    match &span.handoff_from {
        Some(group) => push_string(out, group),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(format!(",\"route_hop\":{},\"worker_id\":", span.route_hop).as_bytes());
    push_string(out, &span.worker_id);
    out.extend_from_slice(format!(",\"pid\":{},\"scenario\":", span.pid).as_bytes());
    push_string(out, scenario);
    out.extend_from_slice(b",\"status\":");
    push_string(out, span.status());
    out.extend_from_slice(b",\"error\":");
    match &span.error {
        Some(message) => push_string(out, message),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(
        format!(
            ",\"start_unix_ns\":{},\"end_unix_ns\":{}}}\n",
            span.start_unix_ns, span.end_unix_ns
        )
        .as_bytes(),
    );
}

impl SpanExporter for JsonlExporter {
    fn destination(&self) -> String {
        self.destination.clone()
    }

    fn export(&mut self, batch: &[Arc<SpanRecord>]) -> Result<(), ExportError> {
        for span in batch {
            self.line.clear();
            write_span(&mut self.line, span, &self.scenario);
            self.out
                .write_all(&self.line)
                .map_err(|e| ExportError(e.to_string()))?;
            self.since_flush += 1;
            if self.since_flush >= self.flush_every_n {
                self.since_flush = 0;
                self.out.flush().map_err(|e| ExportError(e.to_string()))?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.out.flush().map_err(|e| ExportError(e.to_string()))?;
        if let (true, Some(file)) = (self.fsync, &self.file) {
            file.sync_all().map_err(|e| ExportError(e.to_string()))?;
        }
        Ok(())
    }
}
