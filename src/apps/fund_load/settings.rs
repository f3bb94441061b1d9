//! Fund-load node sections (`nodes.<name>`): read strictly, printed with defaults filled.
//!
//! Each settings type reads its section through the config plane's strict reader, so node
//! sections report errors with the same dotted paths and codes as the rest of the contract.
//! Money and multipliers are YAML numbers converted exactly: limits must have at most two
//! decimals (cents), the multiplier at most four.

use serde::Serialize;
use serde_norway::Value;

use super::rules::Limits;
use crate::config::reader::{self as r, Diagnostics, Section};
use crate::config::{Config, ConfigErrorCode, ConfigPath};
use crate::config_choice;

config_choice! {
    /// First day of a calendar week.
    pub enum WeekStart { Mon = "MON", Tue = "TUE", Wed = "WED", Thu = "THU", Fri = "FRI", Sat = "SAT", Sun = "SUN" }
}

impl WeekStart {
    /// 0 = Monday .. 6 = Sunday.
    pub fn index(self) -> u8 {
        self as u8
    }
}

/// `nodes.compute_time_keys`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeKeySettings {
    /// First day of the week for the weekly limit (`mon` .. `sun`).
    pub week_start: WeekStart,
}

/// `nodes.compute_features`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureSettings {
    /// `monday_multiplier`: Monday loads count more against the limits.
    pub monday_multiplier: MondayMultiplier,
    /// `prime_gate`: limits on loads with a prime `id`.
    pub prime_gate: PrimeGate,
}

/// `nodes.compute_features.monday_multiplier`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MondayMultiplier {
    /// Apply the multiplier.
    pub enabled: bool,
    /// The factor a Monday load's amount counts with.
    pub multiplier: f64,
}

/// `nodes.compute_features.prime_gate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrimeGate {
    /// Apply the prime-id limits.
    pub enabled: bool,
}

/// `nodes.evaluate_policies`: amounts in currency units (two decimals at most).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySettings {
    /// Attempts per customer per day.
    pub daily_attempt_limit: u64,
    /// Amount per customer per day, in currency units.
    pub daily_amount_limit: f64,
    /// Amount per customer per week, in currency units.
    pub weekly_amount_limit: f64,
    /// The largest amount of a load with a prime id, in currency units.
    pub prime_amount_cap: f64,
    /// Loads with a prime id per day, across all customers.
    pub prime_daily_global_limit: u64,
}

/// Reads a section with a fresh diagnostics sink (used on already-validated sections).
fn reread<T>(value: &Value, read: fn(Section<'_, '_>) -> T) -> T {
    let mut diag = Diagnostics::default();
    let section = Section::open(value, ConfigPath::root(), &mut diag)
        .unwrap_or_else(|| unreachable!("validated sections are mappings"));
    read(section)
}

fn open<'v, 'd>(
    section: Option<&'v Value>,
    path: &ConfigPath,
    diag: &'d mut Diagnostics,
) -> Option<Section<'v, 'd>> {
    match section {
        Some(value) => Section::open(value, path.clone(), diag),
        None => Some(Section::empty(path.clone(), diag)),
    }
}

fn to_value<T: Serialize>(settings: &T) -> Option<Value> {
    serde_norway::to_value(settings).ok()
}

impl TimeKeySettings {
    fn read(mut s: Section<'_, '_>) -> Self {
        Self {
            week_start: s.field("week_start", WeekStart::Mon, r::choice),
        }
    }

    /// Validates the node's section and returns it normalised.
    pub fn validate(
        section: Option<&Value>,
        path: &ConfigPath,
        diag: &mut Diagnostics,
    ) -> Option<Value> {
        open(section, path, diag)
            .map(Self::read)
            .and_then(|s| to_value(&s))
    }

    /// The settings of a section [`Self::validate`] normalised.
    pub fn from_value(value: &Value) -> Self {
        reread(value, Self::read)
    }
}

impl FeatureSettings {
    fn read(mut s: Section<'_, '_>) -> Self {
        let monday_multiplier = s
            .section("monday_multiplier")
            .map(|mut m| {
                let enabled = m.field("enabled", false, r::boolean);
                let path = m.path_of("multiplier");
                let multiplier = m.field("multiplier", 2.0, r::number);
                if multiplier_e4(multiplier).is_none() {
                    m.diag().error(
                        &path,
                        ConfigErrorCode::Range,
                        "expected a number in (0, 1000] with at most four decimals",
                        format!("{multiplier}"),
                    );
                }
                MondayMultiplier {
                    enabled,
                    multiplier,
                }
            })
            .unwrap_or(MondayMultiplier {
                enabled: false,
                multiplier: 2.0,
            });
        let prime_gate = s
            .section("prime_gate")
            .map(|mut p| PrimeGate {
                enabled: p.field("enabled", false, r::boolean),
            })
            .unwrap_or(PrimeGate { enabled: false });
        Self {
            monday_multiplier,
            prime_gate,
        }
    }

    /// Validates the node's section and returns it normalised.
    pub fn validate(
        section: Option<&Value>,
        path: &ConfigPath,
        diag: &mut Diagnostics,
    ) -> Option<Value> {
        open(section, path, diag)
            .map(Self::read)
            .and_then(|s| to_value(&s))
    }

    /// The settings of a section [`Self::validate`] normalised.
    pub fn from_value(value: &Value) -> Self {
        reread(value, Self::read)
    }

    /// The features settings of a whole config (defaults when the node has no section).
    pub fn from_config(config: &Config) -> Self {
        match config.nodes.get("compute_features") {
            Some(value) => Self::from_value(value),
            None => reread(&Value::Null, Self::read),
        }
    }

    /// The multiplier in ten-thousandths, when the Monday multiplier is on.
    pub fn monday_multiplier_e4(&self) -> Option<u64> {
        if self.monday_multiplier.enabled {
            multiplier_e4(self.monday_multiplier.multiplier)
        } else {
            None
        }
    }
}

/// A multiplier as an exact integer number of ten-thousandths.
fn multiplier_e4(multiplier: f64) -> Option<u64> {
    let scaled = multiplier * 10_000.0;
    let rounded = scaled.round();
    let exact = (scaled - rounded).abs() < 1e-6;
    (multiplier > 0.0 && multiplier <= 1000.0 && exact).then_some(rounded as u64)
}

/// An amount as exact integer cents.
pub fn amount_cents(amount: f64) -> Option<u64> {
    let scaled = amount * 100.0;
    let rounded = scaled.round();
    let exact = (scaled - rounded).abs() < 1e-6;
    ((0.0..1e13).contains(&amount) && exact).then_some(rounded as u64)
}

fn money_field(s: &mut Section<'_, '_>, key: &'static str, default: f64) -> f64 {
    let path = s.path_of(key);
    let value = s.field(key, default, r::number);
    if amount_cents(value).is_none() {
        s.diag().error(
            &path,
            ConfigErrorCode::Range,
            "expected an amount >= 0 with at most two decimals",
            format!("{value}"),
        );
        return default;
    }
    value
}

fn count_field(s: &mut Section<'_, '_>, key: &'static str, default: u64) -> u64 {
    let path = s.path_of(key);
    s.opt(key, r::integer)
        .and_then(|v| r::in_range(v, 0, i128::from(u32::MAX), &path, s.diag()))
        .map_or(default, |v| v as u64)
}

impl PolicySettings {
    fn read(mut s: Section<'_, '_>) -> Self {
        Self {
            daily_attempt_limit: count_field(&mut s, "daily_attempt_limit", 3),
            daily_amount_limit: money_field(&mut s, "daily_amount_limit", 5000.0),
            weekly_amount_limit: money_field(&mut s, "weekly_amount_limit", 20000.0),
            prime_amount_cap: money_field(&mut s, "prime_amount_cap", 9999.0),
            prime_daily_global_limit: count_field(&mut s, "prime_daily_global_limit", 1),
        }
    }

    /// Validates the node's section and returns it normalised.
    pub fn validate(
        section: Option<&Value>,
        path: &ConfigPath,
        diag: &mut Diagnostics,
    ) -> Option<Value> {
        open(section, path, diag)
            .map(Self::read)
            .and_then(|s| to_value(&s))
    }

    /// The settings of a section [`Self::validate`] normalised.
    pub fn from_value(value: &Value) -> Self {
        reread(value, Self::read)
    }

    /// The limits in cents.
    pub fn limits(&self) -> Limits {
        let cents = |v: f64| amount_cents(v).unwrap_or(0);
        Limits {
            daily_attempts: self.daily_attempt_limit as u32,
            daily_amount_cents: cents(self.daily_amount_limit),
            weekly_amount_cents: cents(self.weekly_amount_limit),
            prime_amount_cap_cents: cents(self.prime_amount_cap),
            prime_daily_global_limit: self.prime_daily_global_limit as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_must_be_whole_cents() {
        assert_eq!(amount_cents(5000.0), Some(500_000));
        assert_eq!(amount_cents(5000.01), Some(500_001));
        assert_eq!(amount_cents(0.001), None);
        assert_eq!(amount_cents(-1.0), None);
    }

    #[test]
    fn policy_section_reports_paths() {
        let value: Value = serde_norway::from_str(
            "{daily_amount_limit: '5000', weekly_amount_limit: 1.005, bogus: 1}",
        )
        .unwrap();
        let mut diag = Diagnostics::default();
        PolicySettings::validate(
            Some(&value),
            &ConfigPath::parse("nodes.evaluate_policies"),
            &mut diag,
        );
        let paths: Vec<String> = diag.errors.iter().map(|e| e.path.to_string()).collect();
        assert!(paths.contains(&"nodes.evaluate_policies.daily_amount_limit".to_string()));
        assert!(paths.contains(&"nodes.evaluate_policies.weekly_amount_limit".to_string()));
        assert!(paths.contains(&"nodes.evaluate_policies.bogus".to_string()));
    }
}
