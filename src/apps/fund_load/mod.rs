//! Fund-load adjudication: accept or decline each attempt to load money onto an account under
//! velocity limits (docs/fund-load.md). The reference workload, the CLI's default job and the
//! end-to-end benchmark.
//!
//! Nine nodes in pipeline order: `source`, `parse_load_attempt`, `compute_time_keys`,
//! `idempotency_gate` (stateful, key `id`), `compute_features`, `evaluate_policies` and
//! `update_windows` (stateful, sharing one window store: key `customer_id` in baseline, global
//! when the prime gate is on), `format_output`, `sink`.
//!
//! ```
//! let registry = stream_kernel::apps::fund_load::registry();
//! assert!(registry.get("evaluate_policies").is_some());
//! ```

pub mod generator;
pub mod messages;
pub mod nodes;
pub mod parse;
pub mod rules;
pub mod settings;

use crate::config::Config;
use crate::graph::{NodeState, PartitionKey, Registry};
use messages::{Attempt, Decision};
use nodes::*;
use rules::id_hash;
use settings::{FeatureSettings, PolicySettings, TimeKeySettings};

/// The store shared by `evaluate_policies` and `update_windows` (placement rule).
pub const WINDOW_STORE: &str = "window_store";

/// Windows are per customer unless the global prime gate is on: then one day counter spans all
/// customers and the policy nodes hold global state.
fn windows_state<T: crate::graph::Message>(config: &Config, key: fn(&T) -> u64) -> NodeState {
    if FeatureSettings::from_config(config).prime_gate.enabled {
        NodeState::Global
    } else {
        NodeState::Partitioned(PartitionKey::new::<T>("customer_id", key))
    }
}

/// A registry holding the nine fund-load nodes.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry);
    registry
}

/// Adds the fund-load nodes to an existing registry.
pub fn register(registry: &mut Registry) {
    registry.generated_line_source("source", generator::make);
    registry.transform("parse_load_attempt", |_| Ok(ParseLoadAttempt::default()));
    registry
        .transform("compute_time_keys", |ctx| {
            let settings = TimeKeySettings::from_value(ctx.settings);
            Ok(ComputeTimeKeys::new(settings.week_start.index()))
        })
        .settings(TimeKeySettings::validate);
    registry
        .transform("idempotency_gate", |_| Ok(IdempotencyGate::default()))
        .state(|_| NodeState::Partitioned(PartitionKey::new::<Attempt>("id", |a| id_hash(&a.id))));
    registry
        .transform("compute_features", |ctx| {
            let settings = FeatureSettings::from_value(ctx.settings);
            Ok(ComputeFeatures::new(
                settings.monday_multiplier_e4(),
                settings.prime_gate.enabled,
            ))
        })
        .settings(FeatureSettings::validate);
    registry
        .transform("evaluate_policies", |ctx| {
            let limits = PolicySettings::from_value(ctx.settings).limits();
            let windows = ctx.services.get_or_insert_with(SharedWindows::default);
            Ok(EvaluatePolicies::new(limits, windows))
        })
        .settings(PolicySettings::validate)
        .state(|config| windows_state::<Attempt>(config, |a| id_hash(&a.customer_id)))
        .shares_store(WINDOW_STORE);
    registry
        .transform("update_windows", |ctx| {
            let windows = ctx.services.get_or_insert_with(SharedWindows::default);
            Ok(UpdateWindows::new(windows))
        })
        .state(|config| windows_state::<Decision>(config, |d| id_hash(&d.customer_id)))
        .shares_store(WINDOW_STORE);
    registry.transform("format_output", |ctx| {
        Ok(FormatOutput::new(ctx.config.adapters.audit.is_some()))
    });
    registry
        .transform("sink", |ctx| LineSink::open(ctx))
        .writes_sink_file();
}
