//! `engine_events`: the engine's own events as messages — today
//! COMPONENT_RESTARTED, raised by the supervisor whenever it rebuilds a
//! component — so an `alerter` can announce them like any other event.

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Role, Source, SourceOutput,
};
use crate::pipeline::message::{Alert, KindSet, Message, MessageKind};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "engine_events",
    role: Role::Source,
    accepts: KindSet::EMPTY,
    emits: KindSet::of(&[MessageKind::Alert]),
    summary: "The engine's own events (COMPONENT_RESTARTED) as alerts-to-be.",
    parse: parse_config::<EngineEventsConfig>,
};

/// Settings of an `engine_events` node (none yet).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineEventsConfig {}

impl ComponentConfig for EngineEventsConfig {
    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        Ok(Component::Source(Box::new(EngineEventsSource {
            rx: ctx.events.subscribe(),
            metrics: ctx.component_metrics.clone(),
        })))
    }
}

struct EngineEventsSource {
    rx: tokio::sync::broadcast::Receiver<Alert>,
    metrics: crate::metrics::ComponentMetrics,
}

#[async_trait]
impl Source for EngineEventsSource {
    async fn run(
        &mut self,
        out: &mut SourceOutput<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ComponentError> {
        loop {
            let ev = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                ev = self.rx.recv() => ev,
            };
            match ev {
                Ok(a) => {
                    self.metrics.received.inc();
                    out.send(Message::Alert(a), None).await;
                }
                Err(RecvError::Lagged(n)) => {
                    self.metrics.discarded.inc_by(n);
                    tracing::warn!(skipped = n, "engine events came faster than they were read");
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}
