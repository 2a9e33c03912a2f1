//! `api`: the HTTP API and the dashboard, on the engine's port.
//!
//! ```yaml
//! - id: api
//!   type: api
//!   inputs: [predict, alerts, drift]   # frames, predictions, drift reports, alerts
//!   predictor: predict                 # whose model answers POST /predict
//!   history_per_unit: 10000
//!   auth_token_env: TWINFLOW_API_TOKEN # POST needs `Authorization: Bearer ...`
//!   cors_origins: []                   # no CORS headers unless listed
//!   max_body_bytes: 65536
//! ```
//!
//! The node is a sink: it keeps, per unit, the latest frame and prediction,
//! a bounded history and the latest drift report, plus the active and
//! recent alerts, and it fans predictions, alerts and drift reports out to
//! server-sent-event clients. Its state lives in the config (an `Arc` made
//! on first use), so the routes, mounted when the server starts, and every
//! build of the node (a restart after a panic) share it.
//!
//! Routes (the table [`ENDPOINTS`] mounts them and documents them in
//! `/openapi.json`): `POST /predict`, `GET /api/units`, `/api/drift`,
//! `/api/alerts`, `/api/pipeline`, `/api/history` (JSON or CSV),
//! `/api/events` (SSE), `/openapi.json`, and the dashboard at `/`.
//!
//! Reads are open to anyone who can reach the port; with a token
//! configured, every other method (POST /predict, and whatever writes come
//! later) needs it. `POST /predict` counts as a write: it changes nothing,
//! but it costs a model evaluation per call, and one rule — "only GET is
//! anonymous" — is easier to reason about than a list.

use std::sync::Arc;

use actix_web::{web, Resource};
use async_trait::async_trait;

use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Envelope, HttpContext, HttpRoutes, Processor, Role,
};
use crate::pipeline::message::{KindSet, Message, MessageKind};

mod assets;
pub mod config;
mod openapi;
mod pipeline;
pub mod predict;
mod routes;
pub mod state;

pub use config::ApiConfig;
pub use state::ApiState;

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "api",
    role: Role::Sink,
    accepts: KindSet::of(&[
        MessageKind::Frame,
        MessageKind::Prediction,
        MessageKind::Drift,
        MessageKind::Alert,
    ]),
    emits: KindSet::EMPTY,
    summary: "HTTP API and dashboard: latest values, history, alerts, drift, live events, \
              POST /predict.",
    parse: parse_config::<ApiConfig>,
};

impl ComponentConfig for ApiConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        self.check(std::path::Path::new("."), problems)
    }

    fn validate_at(&self, base_dir: &std::path::Path, problems: &mut Vec<String>) {
        self.check(base_dir, problems)
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Component, ComponentError> {
        Ok(Component::Processor(Box::new(ApiSink {
            state: self.state(),
        })))
    }

    fn http_routes(&self, ctx: &HttpContext<'_>) -> Option<HttpRoutes> {
        let state = self.state();
        let _ = state.dead_letter.set(ctx.spec.dead_letter.clone());
        let model = predict::PredictModel::resolve(self.predictor.as_deref(), ctx.spec);
        if let predict::PredictModel::Unavailable(why) = &model {
            tracing::warn!(
                component_id = ctx.id,
                "POST /predict will answer 503: {why}"
            );
        }
        // Validation read the token already; reading it again here keeps
        // the config inert. A failure now (the file vanished) must not open
        // the API: an unguessable token stands in.
        let token = match self.auth_token(&ctx.spec.base_dir) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(component_id = ctx.id, "{e}; POST endpoints are refused");
                Some(format!("unavailable-{:x}", rand::random::<u128>()))
            }
        };
        let openapi = routes::render_openapi(ENDPOINTS, token.is_some(), self.max_body_bytes);
        let api = web::Data::new(routes::Api {
            state,
            model,
            guard: routes::Guard {
                token,
                cors_origins: self.cors_origins.clone(),
            },
            pipeline: ctx.spec.name.clone(),
            openapi,
        });
        let (max_body, dashboard) = (self.max_body_bytes, self.dashboard);
        Some(Arc::new(move |cfg: &mut web::ServiceConfig| {
            routes::mount(cfg, &api, max_body, dashboard)
        }))
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// The running node: writes what it receives into the shared state.
pub struct ApiSink {
    state: Arc<ApiState>,
}

#[async_trait]
impl Processor for ApiSink {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        _out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        self.state.ingest([&**msg]);
        Ok(())
    }

    // One lock per batch rather than per message.
    fn batched(&self) -> bool {
        true
    }

    async fn process_batch(
        &mut self,
        batch: &[Envelope],
        _out: &mut Emitter,
    ) -> Vec<Result<(), ComponentError>> {
        self.state.ingest(batch.iter().map(|e| &*e.msg));
        vec![Ok(()); batch.len()]
    }

    async fn flush(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        // The pipeline is draining: end the event streams so the server's
        // graceful stop does not wait on them.
        self.state.closing.cancel();
        Ok(())
    }
}

/// HTTP method of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

/// A query parameter.
pub struct Param {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON-schema type: `string`, `integer`; `date-time` for times.
    pub kind: &'static str,
    pub values: &'static [&'static str],
}

/// One answer of an endpoint: status, what it means, and its body
/// (media type and schema name; the schema `text` is plain text).
pub struct Answer {
    pub status: u16,
    pub description: &'static str,
    pub body: Option<(&'static str, &'static str)>,
}

/// An endpoint: how it is documented and, unless it belongs to the engine
/// itself (`/health`, ...), how it is mounted.
pub struct Endpoint {
    pub verb: Verb,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
    /// Schema of the JSON request body.
    pub request: Option<&'static str>,
    pub answers: &'static [Answer],
    /// Part of the dashboard (not mounted with `dashboard: false`).
    pub dashboard: bool,
    pub mount: Option<fn(Resource) -> Resource>,
}

const fn json(status: u16, description: &'static str, schema: &'static str) -> Answer {
    Answer {
        status,
        description,
        body: Some(("application/json", schema)),
    }
}

const ERR_400: Answer = json(400, "A query parameter or the body is malformed.", "Error");

/// Every endpoint the API serves or documents.
pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        verb: Verb::Post,
        path: "/predict",
        tag: "model",
        summary: "Predict the outlet conditions for given inputs",
        description: "Runs the pipeline's own model (the `predictor` node named by the api \
                      node) on the six inputs. Every bad field is reported at once. Needs the \
                      bearer token when one is configured.",
        params: &[],
        request: Some("SensorInput"),
        answers: &[
            json(
                200,
                "The prediction (the contract's Prediction, plus `coil` for the physics model).",
                "PredictAnswer",
            ),
            json(400, "The body is not JSON.", "Error"),
            json(
                401,
                "A token is configured and the request lacks it.",
                "Error",
            ),
            Answer {
                status: 413,
                description: "The body is larger than `max_body_bytes`.",
                body: None,
            },
            json(
                422,
                "Some fields are missing, not numbers, or out of range: one error per field.",
                "FieldErrors",
            ),
            json(503, "No usable predictor in this pipeline.", "Error"),
        ],
        dashboard: false,
        mount: Some(|r| r.route(web::post().to(routes::predict))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/units",
        tag: "plant",
        summary: "Latest frame and prediction per unit",
        description: "Every unit the api node has seen, with its latest sensor frame, latest \
                      prediction, drift status and number of active alerts.",
        params: &[],
        request: None,
        answers: &[json(200, "The units.", "Units")],
        dashboard: false,
        mount: Some(|r| r.route(web::get().to(routes::units))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/drift",
        tag: "plant",
        summary: "Latest drift report per unit",
        description: "PSI, KS, Wasserstein and Jensen-Shannon per feature, from the drift monitor.",
        params: &[],
        request: None,
        answers: &[json(200, "The latest report of each unit.", "DriftReports")],
        dashboard: false,
        mount: Some(|r| r.route(web::get().to(routes::drift))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/alerts",
        tag: "plant",
        summary: "Active and recent alerts",
        description: "Active alerts (keyed by code, unit and key; a `resolved` alert leaves the \
                      set), most severe first, and the most recent announcements, newest first.",
        params: &[],
        request: None,
        answers: &[json(200, "The alerts.", "Alerts")],
        dashboard: false,
        mount: Some(|r| r.route(web::get().to(routes::alerts))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/pipeline",
        tag: "engine",
        summary: "The pipeline graph with live counts, rates and queue depths",
        description: "Nodes with their state, restarts, message counters and rates (over the \
                      last seconds); edges with their live depth, capacity, discarded messages \
                      and the messages their sender emitted.",
        params: &[],
        request: None,
        answers: &[json(200, "The graph.", "Pipeline")],
        dashboard: false,
        mount: Some(|r| r.route(web::get().to(routes::pipeline))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/history",
        tag: "plant",
        summary: "History of inputs, measurements and predictions",
        description: "Rows from the bounded in-memory history (`history_per_unit` per unit), \
                      ordered by time; `format=csv` for a CSV file with the same columns.",
        params: &[
            Param {
                name: "unit",
                description: "Unit id; all units when absent.",
                kind: "string",
                values: &[],
            },
            Param {
                name: "from",
                description: "Earliest timestamp, RFC 3339 (inclusive).",
                kind: "date-time",
                values: &[],
            },
            Param {
                name: "to",
                description: "Latest timestamp, RFC 3339 (inclusive).",
                kind: "date-time",
                values: &[],
            },
            Param {
                name: "format",
                description: "`json` (default) or `csv`.",
                kind: "string",
                values: &["json", "csv"],
            },
            Param {
                name: "max_points",
                description: "Thin the rows evenly to at most this many (charts).",
                kind: "integer",
                values: &[],
            },
        ],
        request: None,
        answers: &[
            json(200, "The rows.", "History"),
            Answer {
                status: 200,
                description: "CSV with `format=csv`.",
                body: Some(("text/csv", "text")),
            },
            ERR_400,
            json(404, "No such unit.", "Error"),
        ],
        dashboard: false,
        mount: Some(|r| r.route(web::get().to(routes::history))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/events",
        tag: "plant",
        summary: "Live predictions, alerts and drift reports (server-sent events)",
        description: "A `text/event-stream`: a `hello` event, then `prediction`, `alert` and \
                      `drift` events whose data is the message's JSON. A client that falls \
                      behind skips ahead and gets a `lagged` event with the number skipped; \
                      the pipeline never waits for a client.",
        params: &[
            Param {
                name: "unit",
                description: "Only events about this unit.",
                kind: "string",
                values: &[],
            },
            Param {
                name: "types",
                description: "Comma-separated event types (default all).",
                kind: "string",
                values: &[],
            },
        ],
        request: None,
        answers: &[
            Answer {
                status: 200,
                description: "The event stream.",
                body: Some(("text/event-stream", "text")),
            },
            ERR_400,
        ],
        dashboard: false,
        mount: Some(|r| r.route(web::get().to(routes::events))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/openapi.json",
        tag: "engine",
        summary: "This document",
        description: "OpenAPI 3.1, rendered from the table the routes are mounted from.",
        params: &[],
        request: None,
        answers: &[json(200, "The document.", "OpenApi")],
        dashboard: false,
        mount: Some(|r| r.route(web::get().to(routes::openapi_doc))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/",
        tag: "dashboard",
        summary: "The dashboard",
        description: "A single page, every asset embedded in the binary.",
        params: &[],
        request: None,
        answers: &[Answer {
            status: 200,
            description: "HTML.",
            body: Some(("text/html", "text")),
        }],
        dashboard: true,
        mount: Some(|r| r.route(web::get().to(routes::dashboard))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/assets/{file}",
        tag: "dashboard",
        summary: "The dashboard's script, style sheet and icon",
        description: "Served from the binary, with an ETag.",
        params: &[],
        request: None,
        answers: &[
            Answer {
                status: 200,
                description: "The file.",
                body: None,
            },
            Answer {
                status: 304,
                description: "Unchanged (If-None-Match).",
                body: None,
            },
            json(404, "No such asset.", "Error"),
        ],
        dashboard: true,
        mount: Some(|r| r.route(web::get().to(routes::dashboard))),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/health",
        tag: "engine",
        summary: "Health of the engine and of each component",
        description: "Served by the engine.",
        params: &[],
        request: None,
        answers: &[
            json(200, "ok or degraded.", "Health"),
            json(503, "failing.", "Health"),
        ],
        dashboard: false,
        mount: None,
    },
    Endpoint {
        verb: Verb::Get,
        path: "/ready",
        tag: "engine",
        summary: "Whether every component has started",
        description: "Served by the engine.",
        params: &[],
        request: None,
        answers: &[
            json(200, "Ready.", "Ready"),
            json(503, "Not ready, or failed.", "Ready"),
        ],
        dashboard: false,
        mount: None,
    },
    Endpoint {
        verb: Verb::Get,
        path: "/metrics",
        tag: "engine",
        summary: "Prometheus metrics",
        description: "Served by the engine, in the Prometheus text format.",
        params: &[],
        request: None,
        answers: &[Answer {
            status: 200,
            description: "The metrics.",
            body: Some(("text/plain", "text")),
        }],
        dashboard: false,
        mount: None,
    },
];
