//! The `api` node over HTTP, against the real binary: two simulated units at
//! 20 Hz → physics → alerter → api (tests/pipelines/api.yaml), and a guarded
//! variant with a token, a CORS origin and a small body limit.

mod common;
#[path = "support/engine.rs"]
mod engine;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use twinflow::model::physics::{self, CoilInputs, PhysicsParams};

use engine::{raw_number, Engine};

const PIPELINE: &str = "tests/pipelines/api.yaml";
const GUARDED: &str = "tests/pipelines/api_guarded.yaml";
const TOKEN: &str = "s3cret-token-for-tests";

fn example() -> Value {
    json!({"UCWIT": 7.5, "UCAIT": 25.0, "UCWF": 15.0, "UCAIH": 50.0, "AMBT": 22.0, "UCTSP": 21.0})
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number in {v}"))
}

/// The server-sent events of `url` until `enough` of them or `within`.
fn read_events(url: &str, enough: usize, within: Duration) -> Vec<(String, Value)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(within + Duration::from_secs(5))
        .build()
        .unwrap();
    let res = client.get(url).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let deadline = Instant::now() + within;
    let mut events = Vec::new();
    let (mut name, mut data) = (String::new(), String::new());
    for line in BufReader::new(res).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data.push_str(d);
        } else if line.is_empty() && !data.is_empty() {
            let v = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("event {name} has bad JSON ({e}): {data}"));
            events.push((std::mem::take(&mut name), v));
            data.clear();
        }
        if events.len() >= enough || Instant::now() > deadline {
            break;
        }
    }
    events
}

#[test]
fn predict_answers_with_the_pipelines_physics_and_lists_every_bad_field() {
    let e = Engine::start(PIPELINE, &[]);
    let (status, text) = e.post_text("/predict", example().to_string());
    assert_eq!(status, 200, "{text}");
    let p: Value = serde_json::from_str(&text).unwrap();
    let s = physics::predict(&PhysicsParams::default(), &CoilInputs::EXAMPLE).unwrap();
    // Bit for bit: the same model, and JSON numbers round-trip exactly.
    assert_eq!(raw_number(&text, "UCAOT"), s.ucaot);
    assert_eq!(raw_number(&text, "UCWOT"), s.ucwot);
    assert_eq!(raw_number(&text, "UCAF"), s.ucaf);
    assert_eq!(raw_number(&text, "Q_thermal"), s.q_total);
    assert_eq!(p["model"], "physics@1");
    assert_eq!(p["unit"], "manual");
    assert_eq!(p["inputs"], example());
    assert!(p["coil"]["regime"].is_string(), "{p}");

    // A unit, a time and a measurement: echoed, and a residual.
    let mut body = example();
    body["unit"] = json!("uc-07");
    body["ts"] = json!("2026-12-04T10:00:00Z");
    body["UCAOT"] = json!(18.0);
    let (status, text) = e.post_text("/predict", body.to_string());
    assert_eq!(status, 200, "{text}");
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(p["unit"], "uc-07");
    assert_eq!(p["ts"], "2026-12-04T10:00:00Z");
    let residual = &text[text.find("\"residual\"").unwrap()..];
    assert_eq!(raw_number(residual, "UCAOT"), 18.0 - s.ucaot);

    let bad = json!({"UCWIT": "NaN", "UCAIT": null, "UCWF": 0, "UCAIH": 150,
                     "AMBT": "warm", "EXTRA": 1});
    let (status, v) = e.post("/predict", bad.to_string());
    assert_eq!(status, 422, "{v}");
    let fields: Vec<(&str, &str)> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["field"].as_str().unwrap(), x["message"].as_str().unwrap()))
        .collect();
    let names: Vec<&str> = fields.iter().map(|x| x.0).collect();
    assert_eq!(
        names,
        ["UCWIT", "UCAIT", "UCWF", "UCAIH", "AMBT", "UCTSP", "EXTRA"],
        "{v}"
    );
    assert!(
        fields[0].1.contains("must be a number, got a string"),
        "{v}"
    );
    assert!(fields[1].1.contains("got null"), "{v}");
    assert!(fields[2].1.contains("out of range"), "{v}");
    assert!(fields[3].1.contains("out of range"), "{v}");
    assert_eq!(fields[5].1, "is required");
    assert!(fields[6].1.contains("not a known field"), "{v}");

    // A temperature below the model's domain, alone.
    let mut cold = example();
    cold["UCWIT"] = json!(-60.0);
    let (status, v) = e.post("/predict", cold.to_string());
    assert_eq!(status, 422);
    assert_eq!(v["fields"].as_array().unwrap().len(), 1, "{v}");

    // Not JSON at all (a bare NaN is not JSON): 400, not 422.
    let (status, v) = e.post("/predict", r#"{"UCWIT": NaN}"#);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not valid JSON"));
    let (status, _) = e.post("/predict", "[1, 2]");
    assert_eq!(status, 422);
}

/// What `POST /predict` answers for the inputs of predictions the pipeline
/// made: the same numbers, so it is the same model.
fn predict_reproduces_live_predictions(e: &Engine, model: &str) {
    let units = e.wait_json(
        "/api/units",
        "a live prediction",
        Duration::from_secs(30),
        |v| v["units"][0]["prediction"].is_object(),
    );
    let live = &units["units"][0]["prediction"];
    assert_eq!(live["model"], model);
    // The live prediction's own text, for exact numbers.
    let unit = live["unit"].as_str().unwrap();
    let ts = live["ts"].as_str().unwrap();
    let history = e
        .get(&format!("/api/history?unit={unit}&from={ts}&to={ts}"))
        .text()
        .unwrap();
    let (status, text) = e.post_text("/predict", live["inputs"].to_string());
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["model"], model);
    for (k, col) in [
        ("UCAOT", "UCAOT_predicted"),
        ("UCWOT", "UCWOT_predicted"),
        ("UCAF", "UCAF_predicted"),
        ("Q_thermal", "Q_thermal_predicted"),
    ] {
        assert_eq!(
            raw_number(&text, k),
            raw_number(&history, col),
            "{k}: POST /predict {text} vs the pipeline's {history}"
        );
    }
}

#[test]
fn predict_uses_the_pipelines_model_physics_or_ml() {
    let e = Engine::start(PIPELINE, &[]);
    predict_reproduces_live_predictions(&e, "physics@1");
    drop(e);
    let e = Engine::start("tests/pipelines/api_model.yaml", &[]);
    let label = e.wait_json(
        "/api/units",
        "a live prediction",
        Duration::from_secs(30),
        |v| v["units"][0]["prediction"].is_object(),
    )["units"][0]["prediction"]["model"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(label, "physics@1");
    predict_reproduces_live_predictions(&e, &label);
    // An ML model has no coil state to show.
    let (_, v) = e.post("/predict", example().to_string());
    assert!(v.get("coil").is_none(), "{v}");
}

#[test]
fn units_and_history_in_json_and_csv() {
    let e = Engine::start(PIPELINE, &[]);
    let units = e.wait_json(
        "/api/units",
        "both units with history",
        Duration::from_secs(30),
        |v| {
            let u = v["units"].as_array().unwrap();
            u.len() == 2
                && u.iter()
                    .all(|x| x["history_rows"].as_u64().unwrap_or(0) >= 40)
        },
    );
    let u0 = &units["units"][0];
    assert_eq!(u0["unit"], "uc-01");
    assert_eq!(units["units"][1]["unit"], "uc-02");
    assert!(u0["frame"]["UCWIT"].is_number(), "{u0}");
    assert_eq!(u0["prediction"]["unit"], "uc-01");
    assert_eq!(u0["prediction"]["model"], "physics@1");

    // Every row of uc-01 so far, then a window strictly inside them.
    let all = e.json("/api/history?unit=uc-01");
    let rows = all["rows"].as_array().unwrap();
    assert!(rows.len() >= 40);
    assert!(rows.iter().all(|r| r["unit"] == "uc-01"));
    let ts: Vec<&str> = rows.iter().map(|r| r["ts"].as_str().unwrap()).collect();
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(
        ts.windows(2).all(|w| parse(w[0]) <= parse(w[1])),
        "rows in time order"
    );
    // The frame and its prediction make one row: both halves are there.
    let complete = rows
        .iter()
        .filter(|r| r["UCAOT_predicted"].is_number() && r["UCAOT_measured"].is_number())
        .count();
    assert!(
        complete * 10 >= rows.len() * 9,
        "{complete} of {} rows complete",
        rows.len()
    );
    let (from, to) = (ts[10], ts[29]);
    let q = format!("unit=uc-01&from={from}&to={to}");
    let window = e.json(&format!("/api/history?{q}"));
    let got = window["rows"].as_array().unwrap();
    assert_eq!(got.len(), 20, "rows 10..=29 of {}", rows.len());
    assert_eq!(window["matched"], 20);
    assert!(got
        .iter()
        .all(|r| parse(r["ts"].as_str().unwrap()) >= parse(from)
            && parse(r["ts"].as_str().unwrap()) <= parse(to)));

    // The same range as CSV: a header and the same rows.
    let r = e.get(&format!("/api/history?{q}&format=csv"));
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let text = r.text().unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("ts,unit,UCWIT,UCAIT,UCWF,UCAIH,AMBT,UCTSP,UCAOT_measured"),
        "{header}"
    );
    let data: Vec<&str> = lines.collect();
    assert_eq!(data.len(), 20);
    assert!(data[0].contains(",uc-01,"), "{}", data[0]);
    let first_ucwit: f64 = data[0].split(',').nth(2).unwrap().parse().unwrap();
    assert_eq!(first_ucwit, f(&got[0], "UCWIT"));

    // Both units, thinned for a chart.
    let thin = e.json("/api/history?max_points=10");
    assert!(thin["rows"].as_array().unwrap().len() <= 10);
    assert!(thin["matched"].as_u64().unwrap() >= 80);

    for (q, status) in [
        ("unit=uc-99", 404),
        ("from=yesterday", 400),
        (&format!("from={to}&to={from}"), 400),
        ("format=xml", 400),
        ("max_points=0", 400),
        ("limit=5", 400),
    ] {
        let r = e.get(&format!("/api/history?{q}"));
        assert_eq!(r.status().as_u16(), status, "{q}");
        let v: Value = r.json().unwrap();
        assert!(v["error"].is_string(), "{q}: {v}");
    }
}

#[test]
fn events_stream_predictions_and_alerts_and_filter_by_unit() {
    let e = Engine::start(PIPELINE, &[]);
    let events = read_events(&e.url("/api/events"), 60, Duration::from_secs(30));
    assert_eq!(events[0].0, "hello", "the stream starts with a hello");
    let predictions: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "prediction")
        .map(|(_, v)| v)
        .collect();
    assert!(
        predictions.len() >= 40,
        "{} predictions in {:?}",
        predictions.len(),
        events.len()
    );
    for p in &predictions {
        assert!(
            p["UCAOT"].is_number() && p["inputs"]["UCWIT"].is_number(),
            "{p}"
        );
    }
    let units: std::collections::BTreeSet<&str> = predictions
        .iter()
        .map(|p| p["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units.len(), 2, "{units:?}");

    // The alerter's rule fires for each unit as it starts; a new stream may
    // have missed those, so the alert list is checked instead (below), and
    // here only that alert events, when they come, are alerts.
    for (_, a) in events.iter().filter(|(n, _)| n == "alert") {
        assert_eq!(a["code"], "THRESHOLD", "{a}");
    }

    let only = read_events(
        &e.url("/api/events?unit=uc-02&types=prediction"),
        21,
        Duration::from_secs(30),
    );
    assert!(only.len() >= 21, "{} events", only.len());
    assert!(only[1..]
        .iter()
        .all(|(n, v)| n == "prediction" && v["unit"] == "uc-02"));
    let r = e.get("/api/events?types=frames");
    assert_eq!(r.status(), 400);
}

#[test]
fn alerts_drift_and_the_live_pipeline() {
    let e = Engine::start(PIPELINE, &[]);
    let alerts = e.wait_json(
        "/api/alerts",
        "an active alert per unit",
        Duration::from_secs(30),
        |v| v["active"].as_array().unwrap().len() == 2,
    );
    for a in alerts["active"].as_array().unwrap() {
        assert_eq!(a["code"], "THRESHOLD");
        assert_eq!(a["key"], "supply_air_above_zero");
        assert_eq!(a["state"], "firing");
    }
    assert_eq!(alerts["counts"]["info"], 2);
    assert!(alerts["recent"].as_array().unwrap().len() >= 2);

    // No drift monitor in this pipeline: an empty list, not an error.
    assert_eq!(e.json("/api/drift"), json!({"reports": []}));

    let first = e.json("/api/pipeline");
    assert_eq!(first["name"], "api-test");
    let ids: Vec<&str> = first["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["plant", "predict", "alerts", "api"]);
    let edges: Vec<(String, String)> = first["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["from"].as_str().unwrap().into(),
                x["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (a, b) in [
        ("plant", "predict"),
        ("predict", "alerts"),
        ("plant", "api"),
        ("predict", "api"),
        ("alerts", "api"),
    ] {
        assert!(
            edges.contains(&(a.into(), b.into())),
            "{a} -> {b} missing: {edges:?}"
        );
    }
    // Rates need two samples some time apart; the counters keep growing.
    let later = e.wait_json(
        "/api/pipeline",
        "node rates",
        Duration::from_secs(30),
        |v| v["nodes"][0]["rate_out"].as_f64().is_some_and(|r| r > 5.0),
    );
    let plant = &later["nodes"][0];
    assert_eq!(plant["state"], "running");
    assert!(plant["sent"].as_u64() > first["nodes"][0]["sent"].as_u64());
    // Two units at 20 Hz: about 40 frames/s, give or take a loaded machine.
    let rate = plant["rate_out"].as_f64().unwrap();
    assert!((10.0..=80.0).contains(&rate), "plant rate {rate}");
    for edge in later["edges"].as_array().unwrap() {
        assert!(edge["depth"].as_u64().unwrap() <= edge["capacity"].as_u64().unwrap());
        assert_eq!(edge["dead_letter"], false);
    }
    let api = &later["nodes"][3];
    assert!(api["received"].as_u64().unwrap() > 0);
    assert_eq!(later["events"]["clients"], 0, "no event stream is open");
}

#[test]
fn openapi_documents_exactly_what_is_served() {
    let e = Engine::start(PIPELINE, &[]);
    let doc = e.json("/openapi.json");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/predict",
        "/api/units",
        "/api/drift",
        "/api/alerts",
        "/api/pipeline",
        "/api/history",
        "/api/events",
        "/openapi.json",
        "/",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    // Every documented GET without parameters answers 200 here.
    for (path, item) in paths {
        if item.get("get").is_some() && !path.contains('{') && path != "/api/events" {
            let r = e.get(path);
            assert_eq!(r.status(), 200, "GET {path}");
        }
    }
    let text = serde_json::to_string(&doc).unwrap();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    assert!(doc["paths"]["/predict"]["post"].get("security").is_none());
    let req = &doc["components"]["schemas"]["SensorInput"];
    assert_eq!(
        req["required"],
        json!(["UCWIT", "UCAIT", "UCWF", "UCAIH", "AMBT", "UCTSP"])
    );
}

#[test]
fn dashboard_is_served_from_the_binary_with_a_strict_policy() {
    let e = Engine::start(PIPELINE, &[]);
    let r = e.get("/");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let html = r.text().unwrap();
    assert!(html.contains("/assets/app.js") && html.contains("/assets/app.css"));
    for (path, ty) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let r = e.get(path);
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{path}"
        );
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let again = e
            .client()
            .get(e.url(path))
            .header("if-none-match", &etag)
            .send()
            .unwrap();
        assert_eq!(again.status(), 304, "{path} with its ETag");
    }
    assert_eq!(e.get("/assets/nope.js").status(), 404);

    // CORS is off by default: no header for a foreign origin, no preflight.
    let r = e
        .client()
        .get(e.url("/api/units"))
        .header("origin", "http://elsewhere.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = e
        .client()
        .request(reqwest::Method::OPTIONS, e.url("/predict"))
        .header("origin", "http://elsewhere.example")
        .header("access-control-request-method", "POST")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert_ne!(r.status(), 204);
}

#[test]
fn bodies_over_the_limit_are_refused() {
    let e = Engine::start(PIPELINE, &[]);
    // The default limit is 64 KiB: padding a valid body up to just under it
    // is fine, just over it is 413.
    let body = example().to_string();
    let under = format!("{body}{}", " ".repeat(64 * 1024 - body.len() - 1));
    let (status, v) = e.post("/predict", under);
    assert_eq!(status, 200, "{v}");
    let over = format!("{body}{}", " ".repeat(64 * 1024 - body.len() + 1));
    let (status, _) = e.post("/predict", over);
    assert_eq!(status, 413);
}

#[test]
fn a_token_guards_posts_and_a_listed_origin_gets_cors() {
    let e = Engine::start(GUARDED, &[("TWINFLOW_TEST_API_TOKEN", TOKEN)]);
    let post = |auth: Option<&str>, body: String| {
        let mut r = e
            .client()
            .post(e.url("/predict"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send().unwrap()
    };
    let r = post(None, example().to_string());
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(
        post(Some("Bearer wrong"), example().to_string()).status(),
        401
    );
    assert_eq!(
        post(Some(TOKEN), example().to_string()).status(),
        401,
        "needs the Bearer scheme"
    );
    let r = post(Some(&format!("Bearer {TOKEN}")), example().to_string());
    assert_eq!(r.status(), 200);
    // Unauthenticated bodies are not even read: 401 before 413.
    assert_eq!(post(None, " ".repeat(4096)).status(), 401);
    assert_eq!(
        post(Some(&format!("Bearer {TOKEN}")), " ".repeat(2048)).status(),
        413
    );

    // Reads stay open.
    assert_eq!(e.get("/api/units").status(), 200);
    assert_eq!(e.get("/").status(), 200);
    let doc = e.json("/openapi.json");
    assert_eq!(
        doc["paths"]["/predict"]["post"]["security"],
        json!([{"bearerAuth": []}])
    );

    // The listed origin gets CORS headers and a preflight; others do not.
    let origin = "http://scada.example:8080";
    let r = e
        .client()
        .get(e.url("/api/units"))
        .header("origin", origin)
        .send()
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], origin);
    let r = e
        .client()
        .request(reqwest::Method::OPTIONS, e.url("/predict"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], origin);
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    let r = e
        .client()
        .get(e.url("/api/units"))
        .header("origin", "http://evil.example")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn shutdown_is_not_held_up_by_an_open_event_stream() {
    let e = Engine::start(PIPELINE, &[]);
    let url = e.url("/api/events");
    let reader = std::thread::spawn(move || {
        // Reads until the server ends the stream.
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(45))
            .build()
            .unwrap();
        let res = client.get(url).send().unwrap();
        BufReader::new(res).lines().map_while(Result::ok).count()
    });
    // Wait until the stream is live and predictions are flowing.
    e.wait_json("/api/units", "predictions", Duration::from_secs(30), |v| {
        v["units"].as_array().unwrap().len() == 2
    });
    let t = Instant::now();
    assert_eq!(e.stop(Duration::from_secs(20)), 0, "clean exit");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );
    let lines = reader.join().unwrap();
    assert!(lines > 0);
}
