//! Components for exercising the engine itself — a counting source, a relay
//! that can be told to panic, a recording sink — used by the engine's tests
//! and benchmarks. They are built with the real builder but are not in the
//! registry, so pipelines can't name them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::{EdgeSpec, NodeSpec, PipelineSpec};
use crate::pipeline::channel::Overflow;
use crate::pipeline::component::{parse_config, ComponentDescriptor};
use crate::pipeline::message::{KindSet, MessageKind};
use crate::pipeline::{
    BuildContext, Component, ComponentConfig, ComponentError, Emitter, Envelope, Message,
    Processor, Role, SensorFrame, Source, SourceOutput,
};

pub fn frame(i: u64) -> Message {
    Message::Frame(SensorFrame {
        unit: "uc-01".into(),
        ts: chrono::Utc::now(),
        ucwit: 7.5,
        ucait: 25.0,
        ucwf: 15.0,
        ucaih: 50.0,
        ambt: 22.0,
        uctsp: i as f64,
        ucaot: None,
        ucwot: None,
        ucaf: None,
        quality: None,
    })
}

/// Index carried by `frame(i)`.
pub fn index_of(m: &Message) -> u64 {
    match m {
        Message::Frame(f) => f.uctsp as u64,
        _ => u64::MAX,
    }
}

/// Emits frames 0..limit as fast as downstream takes them, counting what it sent.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CountingSourceConfig {
    #[serde(skip)]
    pub sent: Arc<AtomicU64>,
    #[serde(skip)]
    pub limit: u64,
    /// Send this many frames per `send_batch` call (0 or 1: one `send` each).
    #[serde(skip)]
    pub batch: usize,
}

impl ComponentConfig for CountingSourceConfig {
    fn build(&self, _ctx: &BuildContext) -> Result<Component, ComponentError> {
        Ok(Component::Source(Box::new(CountingSource {
            sent: self.sent.clone(),
            limit: self.limit,
            batch: self.batch,
        })))
    }
}

struct CountingSource {
    sent: Arc<AtomicU64>,
    limit: u64,
    batch: usize,
}

#[async_trait]
impl Source for CountingSource {
    async fn run(
        &mut self,
        out: &mut SourceOutput<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ComponentError> {
        let mut i = self.sent.load(Ordering::SeqCst);
        while i < self.limit && !stop.is_cancelled() {
            if self.batch > 1 {
                let end = (i + self.batch as u64).min(self.limit);
                out.send_batch((i..end).map(|k| Envelope::new(frame(k))).collect())
                    .await;
                i = end;
            } else {
                out.send(frame(i), None).await;
                i += 1;
            }
            self.sent.store(i, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Passes messages on; panics on the frame whose index is in `panic_on`,
/// or on every message when `always_panic`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RelayConfig {
    #[serde(skip)]
    pub panic_on: Vec<u64>,
    #[serde(skip)]
    pub always_panic: bool,
    #[serde(skip)]
    pub builds: Arc<AtomicU64>,
}

impl ComponentConfig for RelayConfig {
    fn build(&self, _ctx: &BuildContext) -> Result<Component, ComponentError> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        Ok(Component::Processor(Box::new(Relay { cfg: self.clone() })))
    }
}

struct Relay {
    cfg: RelayConfig,
}

#[async_trait]
impl Processor for Relay {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        let i = index_of(msg);
        if self.cfg.always_panic || self.cfg.panic_on.contains(&i) {
            panic!("injected panic on message {i}");
        }
        out.forward(msg.clone());
        Ok(())
    }
}

/// Records what it receives; sleeps `delay` per message.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RecordingSinkConfig {
    #[serde(skip)]
    pub delay: Duration,
    /// Keep a copy of every message (off for benchmarks).
    #[serde(skip, default = "yes")]
    pub record: bool,
    #[serde(skip)]
    pub seen: Arc<std::sync::Mutex<Vec<Message>>>,
    #[serde(skip)]
    pub count: Arc<AtomicU64>,
}

fn yes() -> bool {
    true
}

impl Default for RecordingSinkConfig {
    fn default() -> Self {
        RecordingSinkConfig {
            delay: Duration::ZERO,
            record: true,
            seen: Default::default(),
            count: Default::default(),
        }
    }
}

impl ComponentConfig for RecordingSinkConfig {
    fn build(&self, _ctx: &BuildContext) -> Result<Component, ComponentError> {
        Ok(Component::Processor(Box::new(RecordingSink {
            cfg: self.clone(),
        })))
    }
}

struct RecordingSink {
    cfg: RecordingSinkConfig,
}

#[async_trait]
impl Processor for RecordingSink {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        _out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        if !self.cfg.delay.is_zero() {
            tokio::time::sleep(self.cfg.delay).await;
        }
        if self.cfg.record {
            self.cfg.seen.lock().unwrap().push((**msg).clone());
        }
        self.cfg.count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

pub const SOURCE: ComponentDescriptor = ComponentDescriptor {
    type_name: "test_source",
    role: Role::Source,
    accepts: KindSet::EMPTY,
    emits: KindSet::of(&[MessageKind::Frame]),
    summary: "test",
    parse: parse_config::<CountingSourceConfig>,
};

pub const RELAY: ComponentDescriptor = ComponentDescriptor {
    type_name: "test_relay",
    role: Role::Transform,
    accepts: KindSet::of(&MessageKind::ALL),
    emits: KindSet::of(&[MessageKind::Frame]),
    summary: "test",
    parse: parse_config::<RelayConfig>,
};

pub const SINK: ComponentDescriptor = ComponentDescriptor {
    type_name: "test_sink",
    role: Role::Sink,
    accepts: KindSet::of(&MessageKind::ALL),
    emits: KindSet::EMPTY,
    summary: "test",
    parse: parse_config::<RecordingSinkConfig>,
};

pub fn node(
    id: &str,
    d: ComponentDescriptor,
    inputs: &[&str],
    capacity: usize,
    config: Arc<dyn ComponentConfig>,
) -> NodeSpec {
    NodeSpec {
        id: id.into(),
        descriptor: d,
        inputs: inputs
            .iter()
            .map(|f| EdgeSpec {
                from: (*f).into(),
                capacity,
                overflow: Overflow::Block,
                kinds: d.accepts,
            })
            .collect(),
        config,
        line: 0,
    }
}

pub fn spec(nodes: Vec<NodeSpec>, dead_letter: Option<&str>, batch: usize) -> PipelineSpec {
    PipelineSpec {
        name: "test".into(),
        file: "test.yaml".into(),
        base_dir: ".".into(),
        batch_size: batch,
        dead_letter: dead_letter.map(str::to_string),
        embedded_broker: None,
        nodes,
    }
}

/// A component's settings from YAML (panics on a parse error: for tests).
pub fn config_from_yaml<C: serde::de::DeserializeOwned>(yaml: &str) -> C {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// What a component's `validate` reports about its settings.
pub fn config_problems(c: &dyn ComponentConfig) -> Vec<String> {
    let mut p = Vec::new();
    c.validate(&mut p);
    p
}
