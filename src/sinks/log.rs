//! `log`: writes messages to the engine's log (one line each, or every
//! `every`-th), for watching a pipeline before any protocol sink exists.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Processor, Role,
};
use crate::pipeline::message::{KindSet, Message, MessageKind};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "log",
    role: Role::Sink,
    accepts: KindSet::of(&MessageKind::ALL),
    emits: KindSet::EMPTY,
    summary: "Logs messages (all, or every n-th) at a chosen level.",
    parse: parse_config::<LogConfig>,
};

/// Log level of a `log` sink's lines.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
}

fn one() -> u64 {
    1
}

/// Settings of a `log` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Level of the lines: debug, info (default) or warn.
    #[serde(default)]
    pub level: Level,
    /// Log only every n-th message (1 = all).
    #[serde(default = "one")]
    pub every: u64,
}

impl ComponentConfig for LogConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.every == 0 {
            problems.push("every must be at least 1".into());
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        Ok(Component::Processor(Box::new(LogSink {
            id: ctx.id.clone(),
            level: self.level,
            every: self.every,
            seen: 0,
        })))
    }
}

pub struct LogSink {
    id: Arc<str>,
    level: Level,
    every: u64,
    seen: u64,
}

#[async_trait]
impl Processor for LogSink {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        _out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        self.seen += 1;
        if (self.seen - 1) % self.every != 0 {
            return Ok(());
        }
        let json = serde_json::to_string(&**msg).unwrap_or_default();
        let kind = msg.kind().name();
        match self.level {
            Level::Debug => tracing::debug!(component_id = %self.id, kind, "{json}"),
            Level::Info => tracing::info!(component_id = %self.id, kind, "{json}"),
            Level::Warn => tracing::warn!(component_id = %self.id, kind, "{json}"),
        }
        Ok(())
    }
}
