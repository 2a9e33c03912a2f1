//! `/openapi.json`: an OpenAPI 3.1 document rendered from the endpoint
//! table the routes are mounted from, with the message schemas written
//! beside the types' field lists (`INPUT_FEATURES`, ...), so a field added
//! to the contract is one place to change here.
//!
//! Hand-built rather than derived (utoipa): the messages' serde shapes
//! (renamed fields, skipped empties, flattening) would need annotations on
//! every message type, in files other components own.

use serde_json::{json, Map, Value};

use super::state::ROW_COLUMNS;
use super::{Endpoint, Verb};
use crate::pipeline::message::{INPUT_FEATURES, OUTPUT_FEATURES};

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn number(description: &str) -> Value {
    json!({ "type": "number", "description": description })
}

fn nullable_number() -> Value {
    json!({ "type": ["number", "null"] })
}

/// What each input is, in the engine's canonical units, and its range.
fn input_doc(name: &str) -> (&'static str, Value) {
    let (d, min, max, exclusive_min) = match name {
        "UCWIT" => ("Water inlet temperature, °C", -40.0, 80.0, false),
        "UCAIT" => ("Air inlet temperature, °C", -40.0, 80.0, false),
        "UCWF" => ("Water flow, L/min (> 0)", 0.0, f64::INFINITY, true),
        "UCAIH" => (
            "Air inlet relative humidity, % (0 < RH ≤ 100)",
            0.0,
            100.0,
            true,
        ),
        "AMBT" => ("Ambient temperature, °C", -40.0, 80.0, false),
        "UCTSP" => ("Temperature setpoint, °C", -40.0, 80.0, false),
        _ => ("", f64::NEG_INFINITY, f64::INFINITY, false),
    };
    let mut s = Map::new();
    s.insert("type".into(), "number".into());
    s.insert("description".into(), d.into());
    if exclusive_min {
        s.insert("exclusiveMinimum".into(), json!(min));
    } else if min.is_finite() {
        s.insert("minimum".into(), json!(min));
    }
    if max.is_finite() {
        s.insert("maximum".into(), json!(max));
    }
    (d, Value::Object(s))
}

fn output_doc(name: &str) -> &'static str {
    match name {
        "UCAOT" => "Air outlet temperature, °C",
        "UCWOT" => "Water outlet temperature, °C",
        "UCAF" => "Air flow, m³/h",
        "Q_thermal" => "Thermal power taken from the air, kW (positive when cooling)",
        _ => "",
    }
}

fn inputs_object(required: bool) -> Value {
    let mut props = Map::new();
    for f in INPUT_FEATURES {
        props.insert(f.into(), input_doc(f).1);
    }
    let mut o = json!({ "type": "object", "properties": props });
    if required {
        o["required"] = json!(INPUT_FEATURES);
    }
    o
}

fn outputs_object(with_q: bool, nullable: bool) -> Value {
    let mut props = Map::new();
    for f in OUTPUT_FEATURES
        .iter()
        .copied()
        .chain(with_q.then_some("Q_thermal"))
    {
        let mut v = number(output_doc(f));
        if nullable {
            v["type"] = json!(["number", "null"]);
        }
        props.insert(f.into(), v);
    }
    json!({ "type": "object", "properties": props })
}

fn schemas() -> Value {
    let mut sensor_input = inputs_object(true);
    for f in OUTPUT_FEATURES {
        sensor_input["properties"][f] = json!({
            "type": ["number", "null"],
            "description": format!("Measured {} (optional): gives a residual", output_doc(f)),
        });
    }
    sensor_input["properties"]["unit"] =
        json!({"type": "string", "description": "Unit id for the answer (default `manual`)."});
    sensor_input["properties"]["ts"] =
        json!({"type": "string", "format": "date-time", "description": "Default: now."});
    sensor_input["additionalProperties"] = json!(false);
    sensor_input["example"] = json!({"UCWIT": 7.5, "UCAIT": 25.0, "UCWF": 15.0, "UCAIH": 50.0,
        "AMBT": 22.0, "UCTSP": 21.0});

    let mut frame = inputs_object(true);
    frame["properties"]["unit"] = json!({"type": "string"});
    frame["properties"]["ts"] = json!({"type": "string", "format": "date-time"});
    for f in OUTPUT_FEATURES {
        frame["properties"][f] = number(&format!("Measured {}", output_doc(f)));
    }
    frame["required"] = json!(["unit", "ts"]
        .iter()
        .chain(INPUT_FEATURES.iter())
        .collect::<Vec<_>>());

    let mut prediction = json!({
        "type": "object",
        "required": crate::pipeline::message::PREDICTION_KEYS,
        "properties": {
            "unit": {"type": "string"},
            "ts": {"type": "string", "format": "date-time", "description": "Of the frame it was made from."},
            "model": {"type": "string", "description": "name@version"},
            "inputs": inputs_object(true),
            "measured": outputs_object(false, false),
            "flags": {"type": "array", "items": {"type": "object", "properties": {
                "feature": {"type": "string"}, "value": {"type": "number"},
                "reason": {"enum": ["outside_training_range", "physically_impossible"]},
                "min": {"type": "number"}, "max": {"type": "number"}, "clamped_to": {"type": "number"}}}},
            "residual": outputs_object(true, false),
            "physics_residual": outputs_object(true, false),
        }
    });
    for f in OUTPUT_FEATURES.iter().chain(["Q_thermal"].iter()) {
        prediction["properties"][*f] = number(output_doc(f));
    }

    let mut row = Map::new();
    row.insert(
        "ts".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    row.insert("unit".into(), json!({"type": "string"}));
    for c in ROW_COLUMNS {
        let v = if c == "model" {
            json!({"type": ["string", "null"]})
        } else {
            nullable_number()
        };
        row.insert(c.into(), v);
    }

    let severity = json!({"enum": ["info", "warning", "error", "critical"]});
    let status = json!({"enum": ["STABLE", "WARNING", "CRITICAL"]});
    json!({
        "SensorInput": sensor_input,
        "SensorFrame": frame,
        "Prediction": prediction,
        "PredictAnswer": {
            "allOf": [r("Prediction"), {"type": "object", "properties": {"coil": {
                "type": "object",
                "description": "Physics model only: the coil's state.",
                "properties": {
                    "regime": {"enum": ["dry", "dry_max", "wet"]},
                    "fan_fraction": {"type": "number"},
                    "q_total": number("kW"), "q_sensible": number("kW"), "q_latent": number("kW"),
                    "condensate_kg_h": number("kg/h"),
                    "rh_out": {"type": ["number", "null"]},
                    "t_dew_in": number("Inlet dew point, °C"),
                    "ua": number("kW/K"), "eps": number("Dry-coil effectiveness")
                }}}}]
        },
        "FieldErrors": {
            "type": "object",
            "required": ["error", "fields"],
            "properties": {
                "error": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}
            }
        },
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Units": {"type": "object", "properties": {"units": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "unit": {"type": "string"},
                "first_seen": {"type": ["string", "null"], "format": "date-time"},
                "last_seen": {"type": ["string", "null"], "format": "date-time"},
                "frames": {"type": "integer"}, "predictions": {"type": "integer"},
                "history_rows": {"type": "integer"},
                "frame": {"oneOf": [r("SensorFrame"), {"type": "null"}]},
                "prediction": {"oneOf": [r("Prediction"), {"type": "null"}]},
                "drift_status": {"oneOf": [status.clone(), {"type": "null"}]},
                "active_alerts": {"type": "integer"}
            }}}}},
        "Alert": {
            "type": "object",
            "required": ["code", "message", "severity", "unit", "ts", "details"],
            "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "severity": severity,
                "unit": {"type": ["string", "null"]},
                "ts": {"type": "string", "format": "date-time"},
                "details": {},
                "state": {"enum": ["firing", "resolved"]},
                "key": {"type": "string"}
            }
        },
        "Alerts": {"type": "object", "properties": {
            "active": {"type": "array", "items": r("Alert")},
            "recent": {"type": "array", "items": r("Alert")},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}}
        }},
        "DriftReport": {
            "type": "object",
            "properties": {
                "unit": {"type": "string"},
                "ts": {"type": "string", "format": "date-time"},
                "window_size": {"type": "integer"},
                "summary": {"type": "object", "properties": {
                    "overall_status": status.clone(),
                    "total_features": {"type": "integer"}, "critical": {"type": "integer"},
                    "warning": {"type": "integer"}, "stable": {"type": "integer"},
                    "drift_percentage": {"type": "number"}}},
                "features": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                    "status": status, "psi": nullable_number(), "ks_statistic": nullable_number(),
                    "ks_pvalue": nullable_number(), "wasserstein": nullable_number(),
                    "js": nullable_number(), "mean_change_pct": nullable_number()}}}
            }
        },
        "DriftReports": {"type": "object", "properties": {"reports": {"type": "array", "items": r("DriftReport")}}},
        "HistoryRow": {"type": "object", "properties": row},
        "History": {"type": "object", "properties": {
            "unit": {"type": ["string", "null"]},
            "from": {"type": ["string", "null"], "format": "date-time"},
            "to": {"type": ["string", "null"], "format": "date-time"},
            "matched": {"type": "integer", "description": "Rows in range before thinning."},
            "count": {"type": "integer"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": r("HistoryRow")}
        }},
        "Pipeline": {"type": "object", "properties": {
            "name": {"type": "string"},
            "dead_letter": {"type": ["string", "null"]},
            "failure": {"type": ["string", "null"]},
            "ready": {"type": "boolean"},
            "nodes": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "type": {"type": "string"},
                "kind": {"enum": ["source", "transform", "sink"]},
                "state": {"type": "string"}, "restarts": {"type": "integer"},
                "received": {"type": "integer"}, "sent": {"type": "integer"},
                "errors": {"type": "integer"}, "discarded": {"type": "integer"},
                "dead_letters": {"type": "integer"},
                "rate_in": {"type": ["number", "null"], "description": "messages/s"},
                "rate_out": {"type": ["number", "null"], "description": "messages/s"}}}},
            "edges": {"type": "array", "items": {"type": "object", "properties": {
                "from": {"type": "string"}, "to": {"type": "string"},
                "dead_letter": {"type": "boolean"},
                "depth": {"type": "integer"}, "capacity": {"type": "integer"},
                "discarded": {"type": "integer"},
                "messages": {"type": "integer", "description": "What the sender emitted (dead letters for a dead-letter edge)."},
                "rate": {"type": ["number", "null"], "description": "messages/s"}}}},
            "events": {"type": "object", "description": "GET /api/events", "properties": {
                "clients": {"type": "integer", "description": "Streams open now."},
                "skipped": {"type": "integer", "description": "Events skipped by clients that fell behind."}}}
        }},
        "Health": {"type": "object", "properties": {
            "status": {"enum": ["ok", "degraded", "failing"]},
            "version": {"type": "string"}, "pipeline": {"type": "string"},
            "uptime_seconds": {"type": "number"},
            "components": {"type": "array", "items": {"type": "object"}},
            "failure": {"type": ["string", "null"]}}},
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        "OpenApi": {"type": "object", "description": "An OpenAPI 3.1 document."}
    })
}

fn operation(ep: &Endpoint, auth: bool, max_body: usize) -> Value {
    let mut op = json!({
        "tags": [ep.tag],
        "summary": ep.summary,
        "description": ep.description,
        "operationId": operation_id(ep),
    });
    if !ep.params.is_empty() {
        let params: Vec<Value> = ep
            .params
            .iter()
            .map(|p| {
                let mut schema = match p.kind {
                    "date-time" => json!({"type": "string", "format": "date-time"}),
                    k => json!({ "type": k }),
                };
                if !p.values.is_empty() {
                    schema["enum"] = json!(p.values);
                }
                json!({"name": p.name, "in": "query", "required": false,
                       "description": p.description, "schema": schema})
            })
            .collect();
        op["parameters"] = json!(params);
    }
    if ep.path.contains("{file}") {
        op["parameters"] = json!([{"name": "file", "in": "path", "required": true,
                                   "schema": {"type": "string"}}]);
    }
    if let Some(schema) = ep.request {
        op["requestBody"] = json!({
            "required": true,
            "description": format!("At most {max_body} bytes."),
            "content": {"application/json": {"schema": r(schema)}}
        });
    }
    let mut responses = Map::new();
    for a in ep.answers {
        let entry = responses
            .entry(a.status.to_string())
            .or_insert_with(|| json!({"description": a.description}));
        if let Some((media, schema)) = a.body {
            let s = if schema == "text" {
                json!({"type": "string"})
            } else {
                r(schema)
            };
            if entry.get("content").is_none() {
                entry["content"] = json!({});
            } else {
                // Two bodies for one status (JSON or CSV): both descriptions.
                let d = format!(
                    "{} {}",
                    entry["description"].as_str().unwrap_or(""),
                    a.description
                );
                entry["description"] = json!(d);
            }
            entry["content"][media] = json!({ "schema": s });
        }
    }
    op["responses"] = Value::Object(responses);
    if auth && ep.verb != Verb::Get {
        op["security"] = json!([{"bearerAuth": []}]);
    }
    op
}

fn operation_id(ep: &Endpoint) -> String {
    let verb = match ep.verb {
        Verb::Get => "get",
        Verb::Post => "post",
    };
    let mut id = String::from(verb);
    let mut upper = true;
    for ch in ep.path.chars() {
        if ch.is_ascii_alphanumeric() {
            if upper {
                id.push(ch.to_ascii_uppercase());
            } else {
                id.push(ch);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if ep.path == "/" {
        id.push_str("Dashboard");
    }
    id
}

/// The whole document.
pub fn document(endpoints: &[Endpoint], auth: bool, max_body: usize) -> Value {
    let mut paths = Map::new();
    for ep in endpoints {
        let verb = match ep.verb {
            Verb::Get => "get",
            Verb::Post => "post",
        };
        let item = paths
            .entry(ep.path.to_string())
            .or_insert_with(|| json!({}));
        item[verb] = operation(ep, auth, max_body);
    }
    let mut components = json!({ "schemas": schemas() });
    if auth {
        components["securitySchemes"] = json!({"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "The token of the api node's `auth_token_env` or `auth_token_file`."
        }});
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "twinflow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The live side of an HVAC digital twin: latest values, history, \
                            alerts, drift, live events and predictions of its unit coolers.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "tags": [
            {"name": "model", "description": "Ask the pipeline's model."},
            {"name": "plant", "description": "What the pipeline has seen."},
            {"name": "engine", "description": "The engine itself."},
            {"name": "dashboard", "description": "The web page."}
        ],
        "paths": paths,
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(s)) = m.get("$ref") {
                    out.push(s.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_endpoint_is_there() {
        let doc = document(super::super::ENDPOINTS, true, 65536);
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} is dangling"
            );
        }
        for ep in super::super::ENDPOINTS {
            assert!(doc["paths"].get(ep.path).is_some(), "{} missing", ep.path);
        }
        assert_eq!(
            doc["paths"]["/predict"]["post"]["security"][0]["bearerAuth"],
            json!([])
        );
        assert_eq!(
            doc["paths"]["/predict"]["post"]["operationId"],
            "postPredict"
        );
    }
}
