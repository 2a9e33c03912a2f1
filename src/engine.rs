//! Runs a pipeline with its HTTP server until it ends or is told to stop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{PipelineSpec, Settings};
use crate::metrics::Metrics;
use crate::pipeline::{self, Outcome, PipelineView};
use crate::server;

/// The engine failed to start or to stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    EmbeddedBroker(String),
    #[error("pipeline \"{pipeline}\" failed: {reason}")]
    Failed { pipeline: String, reason: String },
    #[error("graceful shutdown of pipeline \"{pipeline}\" took longer than {secs} s")]
    ShutdownTimeout { pipeline: String, secs: f64 },
}

/// A running engine: a pipeline plus its HTTP server.
pub struct Engine {
    pipeline: pipeline::RunningPipeline,
    server: server::Server,
    settings: Settings,
}

impl Engine {
    /// Starts the pipeline and the HTTP server. Must run inside an actix
    /// `System` (`actix_rt::System` or `#[actix_rt::test]`).
    pub fn start(spec: &PipelineSpec, settings: Settings) -> Result<Engine, EngineError> {
        if let Some(b) = &spec.embedded_broker {
            b.start().map_err(EngineError::EmbeddedBroker)?;
        }
        let metrics = Metrics::new();
        let routes: Vec<_> = spec
            .nodes
            .iter()
            .filter_map(|n| {
                n.config
                    .http_routes(&crate::pipeline::component::HttpContext {
                        id: &n.id,
                        spec,
                        metrics: &metrics,
                    })
            })
            .collect();
        let pipeline = pipeline::start(spec, &settings, metrics);
        let server =
            server::start(&settings.http_addr, pipeline.view(), routes).map_err(|source| {
                pipeline.shutdown();
                EngineError::Listen {
                    addr: settings.http_addr.clone(),
                    source,
                }
            })?;
        tracing::info!(pipeline = %spec.name, "listening on http://{}", server.addr);
        Ok(Engine {
            pipeline,
            server,
            settings,
        })
    }

    /// The address the HTTP server is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn view(&self) -> Arc<PipelineView> {
        self.pipeline.view()
    }

    /// A token that stops the pipeline gracefully when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.pipeline.stop_token()
    }

    /// Runs until the pipeline ends by itself or `shutdown` is cancelled,
    /// then drains, flushes and stops the server.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let Engine {
            pipeline,
            server,
            settings,
        } = self;
        let name = pipeline.view().name.clone();
        let stop = pipeline.stop_token();
        let wait = pipeline.wait();
        tokio::pin!(wait);
        // Ordering: a signal only asks the sources to stop; the pipeline then
        // drains on its own and `wait` resolves when the sinks have flushed.
        let outcome = tokio::select! {
            o = &mut wait => o,
            _ = shutdown.cancelled() => {
                tracing::info!(pipeline = %name, "shutting down: stopping sources, draining channels");
                stop.cancel();
                match tokio::time::timeout(settings.shutdown_timeout(), &mut wait).await {
                    Ok(o) => o,
                    Err(_) => {
                        server.handle.stop(false).await;
                        return Err(EngineError::ShutdownTimeout {
                            pipeline: name,
                            secs: settings.shutdown_timeout_secs,
                        });
                    }
                }
            }
        };
        server.handle.stop(true).await;
        let _ = server.task.await;
        match outcome {
            Outcome::Completed => {
                tracing::info!(pipeline = %name, "pipeline stopped cleanly");
                Ok(())
            }
            Outcome::Failed(reason) => Err(EngineError::Failed {
                pipeline: name,
                reason,
            }),
        }
    }
}

/// Starts `spec` and runs it until `shutdown` or until it ends.
pub async fn run(
    spec: &PipelineSpec,
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<(), EngineError> {
    Engine::start(spec, settings)?.run_until(shutdown).await
}
