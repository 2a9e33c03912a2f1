//! The engine's HTTP server (actix-web): `/health`, `/ready`, `/metrics`.
//! The API actor adds its routes to this same port in a later stage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;

use crate::pipeline::runner::NodeState;
use crate::pipeline::PipelineView;

struct State {
    view: Arc<PipelineView>,
    started: Instant,
}

async fn health(s: web::Data<State>) -> HttpResponse {
    let comps: Vec<_> = s
        .view
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": &*n.id,
                "type": n.type_name,
                "kind": n.role.as_str(),
                "state": n.status.state().as_str(),
                "restarts": n.status.restarts(),
            })
        })
        .collect();
    let failure = s.view.failure();
    let any_failed = s
        .view
        .nodes
        .iter()
        .any(|n| n.status.state() == NodeState::Failed);
    let degraded = s
        .view
        .nodes
        .iter()
        .any(|n| n.status.state() == NodeState::Restarting);
    let status = if failure.is_some() || any_failed {
        "failing"
    } else if degraded {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "pipeline": s.view.name,
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
        "components": comps,
        "failure": failure,
    });
    if status == "failing" {
        HttpResponse::ServiceUnavailable().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

async fn ready(s: web::Data<State>) -> HttpResponse {
    let ready = s.view.is_ready() && s.view.failure().is_none();
    let body = json!({ "ready": ready });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(s: web::Data<State>) -> HttpResponse {
    s.view.update_gauges();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(s.view.metrics.render())
}

/// A started HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` and serves the engine's routes plus those of the pipeline's
/// components (the API). Must run inside an actix `System`.
pub fn start(
    addr: &str,
    view: Arc<PipelineView>,
    routes: Vec<crate::pipeline::component::HttpRoutes>,
) -> std::io::Result<Server> {
    // Shared with the components' routes too (the API's pipeline view).
    let view_data = web::Data::from(view.clone());
    let state = web::Data::new(State {
        view,
        started: Instant::now(),
    });
    let server = HttpServer::new(move || {
        let routes = routes.clone();
        App::new()
            .app_data(state.clone())
            .app_data(view_data.clone())
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics))
            .configure(move |cfg| {
                for r in &routes {
                    r(cfg);
                }
            })
    })
    // The engine handles signals itself (graceful pipeline drain first).
    .disable_signals()
    .workers(1)
    .shutdown_timeout(2)
    .bind(addr)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("the HTTP server bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    Ok(Server {
        addr: bound,
        handle,
        task,
    })
}
