//! Components and helpers for engine tests: built with the real builder,
//! declared here rather than in the product's registry.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use twinflow::config::{EdgeSpec, NodeSpec, PipelineSpec};
use twinflow::pipeline::channel::Overflow;
use twinflow::pipeline::component::{parse_config, ComponentDescriptor};
use twinflow::pipeline::message::{KindSet, MessageKind};
use twinflow::pipeline::{
    BuildContext, Component, ComponentConfig, ComponentError, Emitter, Message, Processor, Role,
    SensorFrame, Source, SourceOutput,
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
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CountingSourceConfig {
    #[serde(skip)]
    pub sent: Arc<AtomicU64>,
    #[serde(skip)]
    pub limit: u64,
}

impl ComponentConfig for CountingSourceConfig {
    fn build(&self, _ctx: &BuildContext) -> Result<Component, ComponentError> {
        Ok(Component::Source(Box::new(CountingSource {
            sent: self.sent.clone(),
            limit: self.limit,
        })))
    }
}

struct CountingSource {
    sent: Arc<AtomicU64>,
    limit: u64,
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
            out.send(frame(i), None).await;
            i += 1;
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
        Ok(Component::Processor(Box::new(Relay {
            cfg: self.clone(),
        })))
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
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RecordingSinkConfig {
    #[serde(skip)]
    pub delay: Duration,
    #[serde(skip)]
    pub seen: Arc<std::sync::Mutex<Vec<Message>>>,
    #[serde(skip)]
    pub count: Arc<AtomicU64>,
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
        self.cfg.seen.lock().unwrap().push((**msg).clone());
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
        nodes,
    }
}

/// Engine settings for tests: any free port, fast restarts.
pub fn settings() -> twinflow::config::Settings {
    twinflow::config::Settings {
        http_addr: "127.0.0.1:0".into(),
        restart_backoff_initial_ms: 5,
        restart_backoff_max_ms: 50,
        workers: 2,
        ..Default::default()
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Value of the first sample of `metric` whose labels contain every `label`.
pub fn metric_value(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
