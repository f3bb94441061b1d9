//! The fund-load nodes, in pipeline order after the source (the engine's line source): parse,
//! time keys, idempotency gate, features, policy evaluation, window update, formatting, sink.
//!
//! Each node reads its archived input in place and reuses one owned output value across
//! records (strings keep their capacity), so the steady state allocates nothing per record.

use std::sync::Arc;

use parking_lot::Mutex;

use super::messages::*;
use super::parse::{self, Field};
use super::rules::{self, Candidate, IdCheck, IdRegistry, Limits, WindowStore};
use crate::adapters::SinkFile;
use crate::files::writer::{OutputOpenError, OutputProgress, RecordWriter};
use crate::graph::{BuildContext, Emitter, Node, NodeError, Nothing, Outcome, RecordContext};

fn reason_of(code: u8) -> Result<Reason, NodeError> {
    Reason::from_code(code).ok_or_else(|| NodeError::failed(format!("unknown reason code {code}")))
}

// ---------------------------------------------------------------------------------------------
// parse_load_attempt

/// Parses a line into an attempt; unreadable lines go to the dead-letter adapter; blank lines
/// are skipped and counted. The usual line is decoded in one pass ([`parse::common_attempt`]);
/// other lines in the canonical shape skip the general JSON scan ([`parse::canonical_fields`]);
/// every line is classified by the same rules.
#[derive(Default)]
pub struct ParseLoadAttempt {
    out: LoadAttempt,
    blank_lines: u64,
    dead_lettered: u64,
}

impl ParseLoadAttempt {
    /// Fills `self.out` for a line whose ids are readable strings; returns its reason.
    fn classify(&mut self, fields: &parse::RawFields<'_>, id: &str, customer: &str) -> Reason {
        let out = &mut self.out;
        out.amount_cents = 0;
        out.time_secs = 0;
        out.time_nanos = 0;
        let (Some(id_digits), Some(customer_digits)) =
            (parse::digits_id(id), parse::digits_id(customer))
        else {
            out.id.set(id.trim());
            out.customer_id.set(customer.trim());
            return Reason::InvalidIdFormat;
        };
        out.id.set(id_digits);
        out.customer_id.set(customer_digits);
        let (Some(amount), Some(time)) = (fields.load_amount.as_str(), fields.time.as_str()) else {
            return Reason::InputParseError;
        };
        let Some(cents) = parse::parse_amount_cents(amount) else {
            return Reason::InvalidAmountFormat;
        };
        let Some(instant) = parse::parse_rfc3339(time) else {
            return Reason::InvalidTimestamp;
        };
        out.amount_cents = cents;
        out.time_secs = instant.secs;
        out.time_nanos = instant.nanos;
        Reason::Accepted
    }

    /// Decides one line's fields: an attempt (possibly declined) or a dead letter.
    fn decide(
        &mut self,
        fields: &parse::RawFields<'_>,
        out: &mut Emitter<'_, LoadAttempt>,
    ) -> Result<(), NodeError> {
        let (Field::String(id), Field::String(customer)) = (&fields.id, &fields.customer_id) else {
            self.dead_lettered += 1;
            return out.dead_letter(
                Reason::InputParseError.as_str(),
                "`id` and `customer_id` must both be JSON strings",
            );
        };
        let reason = self.classify(fields, id, customer);
        self.out.reason = reason.code();
        out.emit(&self.out)
    }
}

impl Node for ParseLoadAttempt {
    type Input = RawLine;
    type Output = LoadAttempt;

    fn process(
        &mut self,
        input: &RawLine,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, LoadAttempt>,
    ) -> Result<(), NodeError> {
        let line = input.bytes.as_slice();
        if let Some(attempt) = parse::common_attempt(line) {
            let parsed = &mut self.out;
            parsed.id.set_digits(attempt.id);
            parsed.customer_id.set_digits(attempt.customer_id);
            parsed.amount_cents = attempt.cents;
            parsed.time_secs = attempt.time.secs;
            parsed.time_nanos = attempt.time.nanos;
            parsed.reason = Reason::Accepted.code();
            return out.emit(parsed);
        }
        if let Some(fields) = parse::canonical_fields(line) {
            return self.decide(&fields, out);
        }
        if parse::is_blank(line) {
            self.blank_lines += 1;
            return Ok(());
        }
        match parse::parse_fields(line) {
            Ok(fields) => self.decide(&fields, out),
            Err(e) => {
                self.dead_lettered += 1;
                out.dead_letter(Reason::InputParseError.as_str(), &e.to_string())
            }
        }
    }

    fn counters(&self) -> Vec<(String, u64)> {
        vec![
            ("blank_lines".into(), self.blank_lines),
            ("dead_lettered".into(), self.dead_lettered),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// compute_time_keys

/// Adds the UTC day, the week (for the configured week start) and the Monday flag.
pub struct ComputeTimeKeys {
    week_start: u8,
    out: Attempt,
}

impl ComputeTimeKeys {
    /// The node with the week starting on `week_start` (0 = Monday .. 6 = Sunday).
    pub fn new(week_start: u8) -> Self {
        Self {
            week_start,
            out: Attempt::default(),
        }
    }
}

impl Node for ComputeTimeKeys {
    type Input = LoadAttempt;
    type Output = Attempt;

    fn process(
        &mut self,
        input: &LoadAttempt,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Attempt>,
    ) -> Result<(), NodeError> {
        let a = &mut self.out;
        a.id.clone_from(&input.id);
        a.customer_id.clone_from(&input.customer_id);
        a.amount_cents = input.amount_cents;
        a.time_secs = input.time_secs;
        a.time_nanos = input.time_nanos;
        a.reason = input.reason;
        a.effective_cents = a.amount_cents;
        a.prime_gated = false;
        let valid = reason_of(input.reason)? == Reason::Accepted;
        let keys = valid.then(|| rules::calendar_keys(a.time_secs, self.week_start));
        a.day = keys.map_or(0, |k| k.day);
        a.week = keys.map_or(0, |k| k.week);
        a.is_monday = keys.is_some_and(|k| k.is_monday);
        out.emit(&self.out)
    }
}

// ---------------------------------------------------------------------------------------------
// idempotency_gate

/// Declines every repeat of an id: a replay when customer, amount and instant equal the
/// canonical attempt's, else a conflict. Owns the seen-id registry.
#[derive(Default)]
pub struct IdempotencyGate {
    seen: IdRegistry,
    out: Attempt,
}

impl Node for IdempotencyGate {
    type Input = Attempt;
    type Output = Attempt;

    fn process(
        &mut self,
        input: &Attempt,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Attempt>,
    ) -> Result<(), NodeError> {
        if reason_of(input.reason)? != Reason::Accepted {
            return out.emit(input);
        }
        let verdict = self.seen.check(&IdCheck {
            id: &input.id,
            customer_id: &input.customer_id,
            amount_cents: input.amount_cents,
            time_secs: input.time_secs,
            time_nanos: input.time_nanos,
        });
        if verdict == Reason::Accepted {
            // The canonical attempt passes on unchanged.
            return out.emit(input);
        }
        self.out.clone_from(input);
        self.out.reason = verdict.code();
        out.emit(&self.out)
    }
}

// ---------------------------------------------------------------------------------------------
// compute_features

/// Applies the Monday multiplier and marks prime ids when the prime gate is on.
pub struct ComputeFeatures {
    monday_multiplier_e4: Option<u64>,
    prime_gate: bool,
    out: Attempt,
}

impl ComputeFeatures {
    /// The node with the Monday multiplier (in ten-thousandths; `None`: off) and the prime gate.
    pub fn new(monday_multiplier_e4: Option<u64>, prime_gate: bool) -> Self {
        Self {
            monday_multiplier_e4,
            prime_gate,
            out: Attempt::default(),
        }
    }
}

impl Node for ComputeFeatures {
    type Input = Attempt;
    type Output = Attempt;

    fn process(
        &mut self,
        input: &Attempt,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Attempt>,
    ) -> Result<(), NodeError> {
        if reason_of(input.reason)? != Reason::Accepted {
            return out.emit(input);
        }
        let effective = match self.monday_multiplier_e4 {
            Some(m) if input.is_monday => rules::apply_multiplier(input.amount_cents, m),
            _ => input.amount_cents,
        };
        let prime_gated = self.prime_gate && rules::is_prime_id(&input.id);
        if effective == input.effective_cents && prime_gated == input.prime_gated {
            return out.emit(input);
        }
        self.out.clone_from(input);
        self.out.effective_cents = effective;
        self.out.prime_gated = prime_gated;
        out.emit(&self.out)
    }
}

// ---------------------------------------------------------------------------------------------
// evaluate_policies / update_windows (one shared window store per worker)

/// The per-worker window store shared by `evaluate_policies` and `update_windows`.
pub type SharedWindows = Arc<Mutex<WindowStore>>;

/// Decides each canonical attempt against the velocity limits (first failing check wins).
pub struct EvaluatePolicies {
    limits: Limits,
    windows: SharedWindows,
    out: Decision,
}

impl EvaluatePolicies {
    /// The node with its limits and the group's window store.
    pub fn new(limits: Limits, windows: SharedWindows) -> Self {
        Self {
            limits,
            windows,
            out: Decision::default(),
        }
    }
}

fn candidate_of(d: &Decision) -> Candidate<'_> {
    Candidate {
        customer_id: &d.customer_id,
        day: d.day,
        week: d.week,
        effective_cents: d.effective_cents,
        prime_gated: d.prime_gated,
    }
}

impl Node for EvaluatePolicies {
    type Input = Attempt;
    type Output = Decision;

    fn process(
        &mut self,
        input: &Attempt,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Decision>,
    ) -> Result<(), NodeError> {
        let d = &mut self.out;
        d.id.clone_from(&input.id);
        d.customer_id.clone_from(&input.customer_id);
        d.effective_cents = input.effective_cents;
        d.day = input.day;
        d.week = input.week;
        d.prime_gated = input.prime_gated;
        let prior = reason_of(input.reason)?;
        let reason = if prior == Reason::Accepted {
            self.windows.lock().evaluate(&self.limits, &candidate_of(d))
        } else {
            prior
        };
        d.reason = reason.code();
        d.accepted = reason == Reason::Accepted;
        out.emit(&self.out)
    }
}

/// Commits canonical attempts to the windows (declined ones count as attempts only).
pub struct UpdateWindows {
    windows: SharedWindows,
}

impl UpdateWindows {
    /// The node with the group's window store.
    pub fn new(windows: SharedWindows) -> Self {
        Self { windows }
    }
}

/// True for decisions that committed to the windows: valid, non-duplicate attempts.
fn is_canonical(reason: Reason) -> bool {
    !reason.is_input_error()
        && !matches!(
            reason,
            Reason::IdDuplicateReplay | Reason::IdDuplicateConflict
        )
}

impl Node for UpdateWindows {
    type Input = Decision;
    type Output = Decision;

    fn process(
        &mut self,
        input: &Decision,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, Decision>,
    ) -> Result<(), NodeError> {
        if is_canonical(reason_of(input.reason)?) {
            self.windows
                .lock()
                .commit(&candidate_of(input), input.accepted);
        }
        // The decision passes on unchanged.
        out.emit(input)
    }
}

// ---------------------------------------------------------------------------------------------
// format_output

/// Renders `{"id":"..","customer_id":"..","accepted":true}`.
pub struct FormatOutput {
    with_audit: bool,
    out: OutputLine,
}

impl FormatOutput {
    /// The node, filling in the audit fields when an audit adapter is configured.
    pub fn new(with_audit: bool) -> Self {
        Self {
            with_audit,
            out: OutputLine::default(),
        }
    }
}

impl Node for FormatOutput {
    type Input = Decision;
    type Output = OutputLine;

    fn process(
        &mut self,
        input: &Decision,
        _ctx: &RecordContext<'_>,
        out: &mut Emitter<'_, OutputLine>,
    ) -> Result<(), NodeError> {
        let o = &mut self.out;
        o.text.clear();
        o.text.extend_from_slice(b"{\"id\":");
        push_json_id(&mut o.text, &input.id);
        o.text.extend_from_slice(b",\"customer_id\":");
        push_json_id(&mut o.text, &input.customer_id);
        o.text.extend_from_slice(if input.accepted {
            b",\"accepted\":true}"
        } else {
            b",\"accepted\":false}"
        });
        o.accepted = input.accepted;
        o.reason = input.reason;
        o.effective_cents = input.effective_cents;
        if self.with_audit {
            o.audit_id.clone_from(&input.id);
            o.audit_customer_id.clone_from(&input.customer_id);
        }
        out.emit(&self.out)
    }
}

/// Appends an id as a JSON string (digits need no escaping; text ids are escaped).
fn push_json_id(out: &mut Vec<u8>, id: &DigitText) {
    if id.is_short() {
        out.push(b'"');
        id.write_to(out);
        out.push(b'"');
    } else {
        parse::push_json_string(out, id.text());
    }
}

// ---------------------------------------------------------------------------------------------
// sink

/// Writes output lines (and audit lines when configured) and counts decisions by reason.
///
/// The output is the engine's [`SinkFile`] and the audit a [`RecordWriter`]: locked for the
/// run, never left with a torn line, rolled back to a record boundary when the run fails, and
/// resumed exactly (see [`crate::files::writer`]).
pub struct LineSink {
    output: SinkFile,
    audit: Option<RecordWriter>,
    /// A resumed run replays the records through this `seq`: their lines are already written
    /// (the writers only measure them) and they are not counted again.
    resume_after: u64,
    accepted: u64,
    declined: DeclineCounts,
    audit_line: Vec<u8>,
}

impl LineSink {
    /// Opens the sink's outputs for the node being built (nothing in them changes before the
    /// first record is written). A resumed run keeps their content, writes nothing for the
    /// records it replays, and cuts each back to exactly those records before the first new
    /// one.
    pub fn open(ctx: &BuildContext<'_>) -> Result<Self, NodeError> {
        let output = SinkFile::open(ctx)?;
        let audit = ctx
            .config
            .adapters
            .audit
            .as_ref()
            .map(|a| RecordWriter::open("audit", a.path(), ctx.resume_point("audit")))
            .transpose()
            .map_err(|e: OutputOpenError| NodeError::failed(e.to_string()))?;
        Ok(Self {
            output,
            audit,
            resume_after: ctx.resume_after,
            accepted: 0,
            declined: DeclineCounts::default(),
            audit_line: Vec::with_capacity(256),
        })
    }

    fn write_audit(
        &mut self,
        seq: u64,
        input: &OutputLine,
        reason: Reason,
    ) -> Result<(), NodeError> {
        let Some(writer) = &mut self.audit else {
            return Ok(());
        };
        let line = &mut self.audit_line;
        line.clear();
        let cents = input.effective_cents;
        line.extend_from_slice(format!("{{\"line\":{seq},\"id\":").as_bytes());
        push_json_id(line, &input.audit_id);
        line.extend_from_slice(b",\"customer_id\":");
        push_json_id(line, &input.audit_customer_id);
        line.extend_from_slice(
            format!(
                ",\"accepted\":{},\"reason\":\"{}\",\"effective_amount\":\"{}.{:02}\"}}",
                input.accepted,
                reason.as_str(),
                cents / 100,
                cents % 100
            )
            .as_bytes(),
        );
        Ok(writer.write_line(seq, line)?)
    }

    fn flush_all(&mut self) -> Result<(), NodeError> {
        self.output.flush()?;
        if let Some(writer) = &mut self.audit {
            writer.flush()?;
        }
        Ok(())
    }
}

impl Node for LineSink {
    type Input = OutputLine;
    type Output = Nothing;

    fn process(
        &mut self,
        input: &OutputLine,
        ctx: &RecordContext<'_>,
        _out: &mut Emitter<'_, Nothing>,
    ) -> Result<(), NodeError> {
        let reason = reason_of(input.reason)?;
        if ctx.seq <= self.resume_after {
            // Replayed: already counted and written by the stopped run.
        } else if input.accepted {
            self.accepted += 1;
        } else {
            self.declined.add(reason);
        }
        self.output.write_line(ctx.seq, input.text.as_slice())?;
        self.write_audit(ctx.seq, input, reason)
    }

    fn flush(&mut self) -> Result<(), NodeError> {
        self.flush_all()
    }

    fn truncate_after(&mut self, seq: u64) -> Result<(), NodeError> {
        self.output.truncate_after(seq)?;
        if let Some(writer) = &mut self.audit {
            writer.truncate_after(seq)?;
        }
        Ok(())
    }

    fn on_end_of_stream(&mut self, _out: &mut Emitter<'_, Nothing>) -> Result<(), NodeError> {
        self.output.finish()?;
        if let Some(writer) = &mut self.audit {
            writer.finish()?;
        }
        Ok(())
    }

    fn outputs(&self) -> Vec<OutputProgress> {
        let mut outputs = vec![self.output.progress()];
        outputs.extend(self.audit.as_ref().map(RecordWriter::progress));
        outputs
    }

    fn outcomes(&self) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::new("accepted", self.accepted)];
        for (reason, count) in self.declined.iter() {
            outcomes.push(Outcome::with_reason("declined", reason.as_str(), count));
        }
        outcomes
    }
}
