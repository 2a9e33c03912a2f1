//! `file`: writes every message it receives as one JSON line.
//!
//! Lines are buffered and flushed every `flush_interval_ms` and at shutdown.
//! The file is opened in append mode by default, so a restart (of the
//! component or the process) never truncates what was written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Processor, Role,
};
use crate::pipeline::message::{KindSet, Message, MessageKind};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "file",
    role: Role::Sink,
    accepts: KindSet::of(&MessageKind::ALL),
    emits: KindSet::EMPTY,
    summary: "Writes each message as a JSON line to a file.",
    parse: parse_config::<FileConfig>,
};

fn default_flush_ms() -> u64 {
    1000
}

fn yes() -> bool {
    true
}

/// Settings of a `file` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Path of the JSON-lines file, relative to the working directory.
    /// Parent folders are created.
    pub path: PathBuf,
    /// Append to an existing file (default) or truncate it at start.
    #[serde(default = "yes")]
    pub append: bool,
    /// How often buffered lines are flushed to the file, milliseconds.
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
}

impl ComponentConfig for FileConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if self.path.as_os_str().is_empty() {
            problems.push("path must not be empty".into());
        }
        if self.flush_interval_ms == 0 {
            problems.push("flush_interval_ms must be at least 1".into());
        }
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Component, ComponentError> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                ComponentError::new("io", format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(self.append)
            .write(true)
            .truncate(!self.append)
            .open(&self.path)
            .map_err(|e| {
                ComponentError::new("io", format!("cannot open {}: {e}", self.path.display()))
            })?;
        Ok(Component::Processor(Box::new(FileSink {
            path: self.path.clone(),
            out: BufWriter::with_capacity(64 * 1024, tokio::fs::File::from_std(file)),
            flush_every: Duration::from_millis(self.flush_interval_ms),
            line: Vec::with_capacity(512),
        })))
    }
}

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<tokio::fs::File>,
    flush_every: Duration,
    line: Vec<u8>,
}

impl FileSink {
    fn io(&self, e: std::io::Error) -> ComponentError {
        ComponentError::new("io", format!("writing {}: {e}", self.path.display()))
    }
}

#[async_trait]
impl Processor for FileSink {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        _out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, &**msg)
            .map_err(|e| ComponentError::new("serialize", e.to_string()))?;
        self.line.push(b'\n');
        let r = self.out.write_all(&self.line).await;
        r.map_err(|e| self.io(e))
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.flush_every)
    }

    async fn tick(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        let r = self.out.flush().await;
        r.map_err(|e| self.io(e))
    }

    async fn flush(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        let r = self.out.flush().await;
        r.map_err(|e| self.io(e))?;
        let r = self.out.get_mut().sync_data().await;
        r.map_err(|e| self.io(e))
    }
}
