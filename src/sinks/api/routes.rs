//! The HTTP routes of the `api` node, and the table they are mounted from
//! (which `openapi.rs` also renders, so the document lists exactly what is
//! served).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::openapi;
use super::predict::{parse_request, PredictModel, Rejection};
use super::state::{ApiState, UnitRow, ROW_COLUMNS};
use super::{assets, Endpoint};
use crate::pipeline::message::{Alert, Severity};
use crate::pipeline::PipelineView;

/// What every handler of one `api` node shares.
pub struct Api {
    pub state: Arc<ApiState>,
    pub model: PredictModel,
    pub guard: Guard,
    pub pipeline: String,
    /// The OpenAPI document, rendered once.
    pub openapi: Bytes,
}

/// Authentication and CORS, applied around every route of the node.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    pub token: Option<String>,
    pub cors_origins: Vec<String>,
}

/// Compares without an early exit, so the time taken does not tell an
/// attacker how much of a guessed token was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= (x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

impl Guard {
    fn allowed_origin(&self, req: &ServiceRequest) -> Option<HeaderValue> {
        let origin = req.headers().get(header::ORIGIN)?;
        let o = origin.to_str().ok()?;
        self.cors_origins
            .iter()
            .any(|a| a == "*" || a == o)
            .then(|| origin.clone())
    }

    /// Reads are open; anything that is not a read (`POST /predict` and any
    /// future write) needs the bearer token when one is configured.
    fn authorised(&self, req: &ServiceRequest) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return true;
        }
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .is_some_and(|t| same_secret(t.trim().as_bytes(), token.as_bytes()))
    }

    async fn apply(
        &self,
        req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let origin = self.allowed_origin(&req);
        if req.method() == Method::OPTIONS {
            if let Some(o) = &origin {
                if req
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
                {
                    let res = HttpResponse::NoContent()
                        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone()))
                        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
                        .insert_header((
                            header::ACCESS_CONTROL_ALLOW_HEADERS,
                            "authorization, content-type",
                        ))
                        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                        .insert_header((header::VARY, "Origin"))
                        .finish();
                    return Ok(req.into_response(res));
                }
            }
        }
        let mut res = if self.authorised(&req) {
            next.call(req).await?
        } else {
            let res = HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"twinflow\""))
                .json(json!({"error": "this endpoint needs `Authorization: Bearer <token>`"}));
            req.into_response(res)
        };
        if let Some(o) = origin {
            let h = res.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        Ok(res)
    }
}

/// Mounts every endpoint of the table that this node serves.
pub fn mount(cfg: &mut web::ServiceConfig, api: &web::Data<Api>, max_body: usize, dashboard: bool) {
    for ep in super::ENDPOINTS {
        let Some(add) = ep.mount else { continue };
        if ep.dashboard && !dashboard {
            continue;
        }
        let guard = api.guard.clone();
        let r = add(web::resource(ep.path)
            .app_data(api.clone())
            .app_data(web::PayloadConfig::new(max_body)))
        .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| {
            let guard = guard.clone();
            async move { guard.apply(req, next).await }
        }));
        cfg.service(r);
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message.into() }))
}

/// `POST /predict`.
pub async fn predict(api: web::Data<Api>, body: Bytes) -> HttpResponse {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(Rejection::Syntax(m)) => return error(StatusCode::BAD_REQUEST, m),
        Err(Rejection::Fields(errors)) => {
            return HttpResponse::UnprocessableEntity()
                .json(json!({"error": "invalid input", "fields": errors}))
        }
    };
    match api.model.predict(&req) {
        Ok(answer) => HttpResponse::Ok().json(answer),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

#[derive(Serialize)]
struct UnitSummary<'a> {
    unit: &'a str,
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    frames: u64,
    predictions: u64,
    history_rows: usize,
    frame: Option<&'a crate::pipeline::SensorFrame>,
    prediction: Option<&'a crate::pipeline::Prediction>,
    drift_status: Option<crate::pipeline::message::DriftStatus>,
    active_alerts: usize,
}

/// `GET /api/units`.
pub async fn units(api: web::Data<Api>) -> HttpResponse {
    let s = api.state.read();
    let units: Vec<UnitSummary> = s
        .units
        .iter()
        .map(|(name, u)| UnitSummary {
            unit: name,
            first_seen: u.first_seen,
            last_seen: u.last_seen,
            frames: u.frames,
            predictions: u.predictions,
            history_rows: u.history.len(),
            frame: u.frame.as_ref(),
            prediction: u.prediction.as_ref(),
            drift_status: s.drift_status(name),
            active_alerts: s
                .active_alerts
                .keys()
                .filter(|k| k.1.as_deref() == Some(&**name))
                .count(),
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "units": units }));
    drop(s);
    json_bytes(body)
}

fn json_bytes(body: Result<Vec<u8>, serde_json::Error>) -> HttpResponse {
    match body {
        Ok(b) => HttpResponse::Ok().content_type("application/json").body(b),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/drift`.
pub async fn drift(api: web::Data<Api>) -> HttpResponse {
    let s = api.state.read();
    let reports: Vec<_> = s.drift.values().collect();
    json_bytes(serde_json::to_vec(&json!({ "reports": reports })))
}

/// `GET /api/alerts`.
pub async fn alerts(api: web::Data<Api>) -> HttpResponse {
    let s = api.state.read();
    let mut active: Vec<&Alert> = s.active_alerts.values().collect();
    // Most severe first, then newest.
    active.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.ts.cmp(&a.ts)));
    let mut counts: HashMap<&str, usize> = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ]
    .iter()
    .map(|s| (s.as_str(), 0))
    .collect();
    for a in &active {
        *counts.entry(a.severity.as_str()).or_default() += 1;
    }
    let recent: Vec<&Alert> = s.recent_alerts.iter().collect();
    json_bytes(serde_json::to_vec(
        &json!({ "active": active, "counts": counts, "recent": recent }),
    ))
}

fn parse_time(name: &str, v: Option<&String>) -> Result<Option<DateTime<Utc>>, String> {
    match v.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                format!("{name}: \"{s}\" is not an RFC 3339 time ({e}), e.g. 2026-12-04T10:00:00Z")
            }),
    }
}

/// `GET /api/history?unit=&from=&to=&format=json|csv&max_points=`.
pub async fn history(api: web::Data<Api>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    const KNOWN: [&str; 5] = ["unit", "from", "to", "format", "max_points"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter \"{k}\" (known: {})", KNOWN.join(", ")),
        );
    }
    let (from, to) = match (
        parse_time("from", q.get("from")),
        parse_time("to", q.get("to")),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return error(StatusCode::BAD_REQUEST, "from is after to");
        }
    }
    let max_points = match q.get("max_points").map(|s| s.parse::<usize>()) {
        None => None,
        Some(Ok(n)) if n > 0 => Some(n),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "max_points must be a positive integer",
            )
        }
    };
    let csv = match q.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("format \"{f}\": json or csv"),
            )
        }
    };
    let unit = q.get("unit").map(String::as_str).filter(|u| !u.is_empty());
    if let Some(u) = unit {
        let s = api.state.read();
        if !s.units.contains_key(u) {
            let known: Vec<&str> = s.units.keys().map(|k| &**k).collect();
            return error(
                StatusCode::NOT_FOUND,
                format!("no unit \"{u}\" (known: {})", known.join(", ")),
            );
        }
    }
    let (rows, matched) = api.state.history(unit, from, to, max_points);
    if csv {
        return match history_csv(&rows) {
            Ok(body) => {
                // Unit ids come from the field (an MQTT payload): only safe
                // characters go into a header.
                let safe: String = unit
                    .unwrap_or("all")
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "._-".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let name = format!(
                    "twinflow-{safe}-{}.csv",
                    Utc::now().format("%Y%m%dT%H%M%SZ")
                );
                HttpResponse::Ok()
                    .content_type("text/csv; charset=utf-8")
                    .insert_header((
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ))
                    .body(body)
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    let out: Vec<UnitRow> = rows.iter().map(|(u, r)| UnitRow(u, r)).collect();
    json_bytes(serde_json::to_vec(&json!({
        "unit": unit,
        "from": from,
        "to": to,
        "matched": matched,
        "count": out.len(),
        "columns": ROW_COLUMNS,
        "rows": out,
    })))
}

fn history_csv(rows: &[(Arc<str>, super::state::Row)]) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 160 + 256));
    let header = ["ts", "unit"].into_iter().chain(ROW_COLUMNS);
    w.write_record(header).map_err(|e| e.to_string())?;
    let mut rec: Vec<String> = Vec::with_capacity(ROW_COLUMNS.len() + 2);
    for (unit, r) in rows {
        rec.clear();
        rec.push(r.ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        rec.push(unit.to_string());
        for v in r.values() {
            rec.push(
                v.filter(|x| x.is_finite())
                    .map(|x| x.to_string())
                    .unwrap_or_default(),
            );
        }
        rec.push(r.model.as_deref().unwrap_or("").to_string());
        w.write_record(&rec).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// Decrements the client gauge when a stream ends, however it ends.
struct Client(Arc<ApiState>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /api/events?unit=&types=prediction,alert,drift`.
pub async fn events(api: web::Data<Api>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    const KINDS: [&str; 3] = ["prediction", "alert", "drift"];
    let kinds: Vec<&'static str> = match q.get("types") {
        None => KINDS.to_vec(),
        Some(t) => {
            let mut v = Vec::new();
            for k in t.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                match KINDS.iter().find(|x| **x == k) {
                    Some(x) => v.push(*x),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("types: \"{k}\" is not one of {}", KINDS.join(", ")),
                        )
                    }
                }
            }
            v
        }
    };
    let unit: Option<Arc<str>> = q
        .get("unit")
        .filter(|u| !u.is_empty())
        .map(|u| Arc::from(u.as_str()));
    let state = api.state.clone();
    state.sse_clients.fetch_add(1, Ordering::Relaxed);
    let client = Client(state.clone());
    let rx = state.subscribe();
    let hello = format!(
        "retry: 3000\nevent: hello\ndata: {}\n\n",
        json!({"pipeline": api.pipeline, "ts": Utc::now(), "types": kinds})
    );
    struct Stream {
        rx: tokio::sync::broadcast::Receiver<Arc<super::state::Event>>,
        state: Arc<ApiState>,
        kinds: Vec<&'static str>,
        unit: Option<Arc<str>>,
        hello: Option<Bytes>,
        _client: Client,
    }
    let s = Stream {
        rx,
        state,
        kinds,
        unit,
        hello: Some(Bytes::from(hello)),
        _client: client,
    };
    // A comment line now and then: proxies keep the connection, and a
    // client that went away is noticed when the write fails.
    const KEEPALIVE: Duration = Duration::from_secs(15);
    let stream = futures::stream::unfold(s, |mut s| async move {
        if let Some(h) = s.hello.take() {
            return Some((Ok::<_, actix_web::Error>(h), s));
        }
        loop {
            use tokio::sync::broadcast::error::RecvError;
            let next = tokio::select! {
                _ = s.state.closing.cancelled() => return None,
                r = tokio::time::timeout(KEEPALIVE, s.rx.recv()) => r,
            };
            match next {
                Err(_) => return Some((Ok(Bytes::from_static(b": keepalive\n\n")), s)),
                Ok(Ok(ev)) => {
                    if !s.kinds.contains(&ev.kind) {
                        continue;
                    }
                    if s.unit.is_some() && ev.unit != s.unit {
                        continue;
                    }
                    return Some((Ok(ev.wire.clone()), s));
                }
                // The client fell behind the buffer: it skips what it missed
                // (the pipeline never waits for it) and is told how much.
                Ok(Err(RecvError::Lagged(n))) => {
                    s.state.sse_skipped.fetch_add(n, Ordering::Relaxed);
                    let msg = format!("event: lagged\ndata: {{\"skipped\":{n}}}\n\n");
                    return Some((Ok(Bytes::from(msg)), s));
                }
                Ok(Err(RecvError::Closed)) => return None,
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

/// `GET /api/pipeline`: the graph with live counts, rates and queue depths.
pub async fn pipeline(api: web::Data<Api>, req: HttpRequest) -> HttpResponse {
    let Some(view) = req.app_data::<web::Data<PipelineView>>() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline view is not available on this server",
        );
    };
    json_bytes(serde_json::to_vec(&super::pipeline::pipeline_json(
        &api, view,
    )))
}

/// `GET /openapi.json`.
pub async fn openapi_doc(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(api.openapi.clone())
}

/// `GET /` and the dashboard's assets.
pub async fn dashboard(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    let Some(a) = assets::find(path) else {
        return error(StatusCode::NOT_FOUND, format!("no asset {path}"));
    };
    let etag = a.etag();
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish();
    }
    let mut res = HttpResponse::Ok();
    res.content_type(a.content_type)
        .insert_header((header::ETAG, etag))
        // Revalidate every time: the binary may have been upgraded.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if a.content_type.starts_with("text/html") {
        // Nothing may load from anywhere but this server: the dashboard
        // works on an air-gapped plant network, and a compromised page
        // cannot call out.
        res.insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ));
    }
    res.body(a.body)
}

/// The document, from the endpoint table.
pub fn render_openapi(endpoints: &[Endpoint], auth: bool, max_body: usize) -> Bytes {
    Bytes::from(
        serde_json::to_vec_pretty(&openapi::document(endpoints, auth, max_body))
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
    }
}
