//! The config contract as a JSON Schema (`stream-kernel schema`), for editor completion and
//! for checking configs outside the engine.
//!
//! Generated from the same model `validate --print` prints, then shaped to what the reader
//! accepts: every key has a default except `version`, `scenario.name`, a group's `name` and an
//! exporter's `kind`, so only those are required; unknown keys are errors, so every object
//! with known keys allows no others; choices list every accepted spelling (aliases included).
//! The schema checks shape, not the cross-field rules (placement, partitioning): `validate`
//! remains the authority.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value;

use super::model::{
    BridgeSettings, Config, JsonlSettings, LogExporter, OtlpSettings, TraceExporter,
};

/// Keys a config must give (everything else has a default).
const REQUIRED: [&str; 4] = ["version", "scenario", "name", "kind"];

/// The JSON Schema of a config file.
pub fn config_schema() -> Value {
    let mut schema = schemars::schema_for!(Config).to_value();
    shape(&mut schema);
    if let Some(root) = schema.as_object_mut() {
        root.insert(
            "title".into(),
            Value::String("stream-kernel config (version 1)".into()),
        );
    }
    schema
}

/// Keeps only the keys without defaults required, and forbids unknown keys.
fn shape(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(required)) = map.get_mut("required") {
                required.retain(|k| k.as_str().is_some_and(|k| REQUIRED.contains(&k)));
            }
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(shape);
        }
        Value::Array(items) => items.iter_mut().for_each(shape),
        _ => {}
    }
}

/// `{kind: KIND}` with no settings, or `{kind: KIND, settings: SETTINGS}`.
fn tagged(kind: &str, settings: Option<Schema>) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert("kind".into(), serde_json::json!({ "const": kind }));
    properties.insert(
        "settings".into(),
        settings.map_or_else(
            || serde_json::json!({ "type": "object", "additionalProperties": false }),
            Schema::to_value,
        ),
    );
    serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": ["kind"],
        "additionalProperties": false
    })
}

impl JsonSchema for TraceExporter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TraceExporter".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let variants = [
            tagged("jsonl", Some(generator.subschema_for::<JsonlSettings>())),
            tagged("stdout", None),
            tagged("otel_otlp", Some(generator.subschema_for::<OtlpSettings>())),
            tagged(
                "opentracing_bridge",
                Some(generator.subschema_for::<BridgeSettings>()),
            ),
        ];
        json_schema!({ "oneOf": variants })
    }
}

impl JsonSchema for LogExporter {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LogExporter".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let path = json_schema!({
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "additionalProperties": false
        });
        let variants = [
            tagged("stderr", None),
            tagged("stdout", None),
            tagged("jsonl", Some(path)),
            tagged(
                "otel_logs_otlp",
                Some(generator.subschema_for::<OtlpSettings>()),
            ),
        ];
        json_schema!({ "oneOf": variants })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_requires_little_and_forbids_unknown_keys() {
        let schema = config_schema();
        let root_required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(root_required, ["version", "scenario"]);
        assert_eq!(schema["additionalProperties"], false);
        let text = schema.to_string();
        assert!(
            text.contains("\"otel_otlp\"") && text.contains("\"sync\""),
            "aliases listed"
        );
    }
}
