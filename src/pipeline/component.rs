//! What a component is: its config, its runtime traits and what the engine
//! hands it.
//!
//! A component file holds `XConfig` (inert, serde, `deny_unknown_fields`) and
//! the runtime `X`. The config's [`ComponentConfig::build`] turns it into a
//! running [`Component`]; the supervisor calls it again to restart. A
//! component does its domain work only: the engine's runner counts events,
//! times processing, catches panics, routes errors to the dead-letter path and
//! applies backpressure.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::channel::{Closed, EdgeSender};
use super::message::{DeadLetter, KindSet, Message};
use crate::metrics::{ComponentMetrics, Metrics};

/// Where a component sits in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Produces messages from outside (sensors, a simulator); has no inputs.
    Source,
    /// Consumes and emits messages.
    Transform,
    /// Consumes messages and delivers them outside; emits nothing downstream.
    Sink,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

/// Released when every consumer of a message (and of everything made from
/// it) has finished with it. Sources that must acknowledge their input (MQTT
/// at QoS ≥ 1) put their acknowledgement in the `Drop` of the value they wrap
/// here.
pub type AckToken = Arc<dyn Any + Send + Sync>;

/// A message on an edge. The message is shared (fan-out copies the `Arc`),
/// and the acknowledgement token rides along with everything derived from it.
#[derive(Clone)]
pub struct Envelope {
    pub msg: Arc<Message>,
    pub ack: Option<AckToken>,
}

impl Envelope {
    pub fn new(msg: Message) -> Self {
        Envelope {
            msg: Arc::new(msg),
            ack: None,
        }
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("msg", &self.msg)
            .field("acked", &self.ack.is_some())
            .finish()
    }
}

/// A component's failure on one message or operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    /// Short machine-readable reason (a metric label): `nan_input`,
    /// `out_of_range`, `io`, ...
    pub reason: &'static str,
    /// What was wrong, for a person.
    pub message: String,
}

impl ComponentError {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        ComponentError {
            reason,
            message: message.into(),
        }
    }
}

/// Collects what a transform emits while it processes one message. The
/// runner sends the batch downstream afterwards, applying backpressure, and
/// attaches the input's acknowledgement token to each output.
#[derive(Default)]
pub struct Emitter {
    pub(crate) out: Vec<Envelope>,
    pub(crate) dead: Vec<(DeadLetter, Option<AckToken>)>,
    pub(crate) current_ack: Option<AckToken>,
}

impl Emitter {
    /// Emits a new message downstream.
    pub fn emit(&mut self, msg: Message) {
        self.out.push(Envelope {
            msg: Arc::new(msg),
            ack: self.current_ack.clone(),
        });
    }

    /// Passes an existing message on without copying it.
    pub fn forward(&mut self, msg: Arc<Message>) {
        self.out.push(Envelope {
            msg,
            ack: self.current_ack.clone(),
        });
    }

    /// The acknowledgement token of the message being processed. A sink
    /// that finishes with a message later than `process` returns (an MQTT
    /// publish awaiting the broker's PUBACK) keeps it until then.
    pub fn ack_token(&self) -> Option<AckToken> {
        self.current_ack.clone()
    }

    /// Routes something this component could not process to the pipeline's
    /// dead-letter node, without failing the message that caused it.
    pub fn dead_letter(&mut self, dl: DeadLetter) {
        self.dead.push((dl, self.current_ack.clone()));
    }

    /// What has been emitted and not yet delivered, in order: for tests and
    /// benchmarks that drive a processor without a runner.
    pub fn emitted(&self) -> impl Iterator<Item = &Message> {
        self.out.iter().map(|e| &*e.msg)
    }

    /// In [`Processor::process_batch`]: what is emitted from here on is
    /// made from `env`, and carries its acknowledgement token.
    pub fn begin(&mut self, env: &Envelope) {
        self.current_ack = env.ack.clone();
    }
}

/// What a source sends through: sending waits while the downstream edges are
/// full, so a fast source is slowed to the pace of its consumers.
pub struct SourceOutput<'a> {
    pub(crate) output: &'a mut Output,
}

impl SourceOutput<'_> {
    /// Sends one message (with an optional acknowledgement token).
    pub async fn send(&mut self, msg: Message, ack: Option<AckToken>) {
        self.output
            .send_one(Envelope {
                msg: Arc::new(msg),
                ack,
            })
            .await;
    }

    /// Sends a batch of messages in order.
    pub async fn send_batch(&mut self, batch: Vec<Envelope>) {
        self.output.send(batch).await;
    }

    /// Routes a payload the source could not turn into a message.
    pub async fn dead_letter(&mut self, dl: DeadLetter, ack: Option<AckToken>) {
        self.output.dead_letter(dl, ack).await;
    }

    /// True when no downstream edge is left to receive anything.
    pub fn is_closed(&self) -> bool {
        self.output.all_closed()
    }
}

/// A running source.
#[async_trait]
pub trait Source: Send {
    /// Produces messages until `stop` is cancelled (then returns `Ok`), or
    /// until a failure it cannot handle (then returns `Err`, and the
    /// supervisor rebuilds it with backoff).
    async fn run(
        &mut self,
        out: &mut SourceOutput<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ComponentError>;
}

/// A running transform or sink.
#[async_trait]
pub trait Processor: Send {
    /// Handles one message. An `Err` is counted, logged with the component
    /// id and the message goes to the dead-letter path; the stream goes on.
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError>;

    /// Whether the runner should hand this processor whole batches through
    /// [`Processor::process_batch`]. Off by default: per-message calls let
    /// the runner pin a panic on the message that caused it.
    fn batched(&self) -> bool {
        false
    }

    /// Handles the messages the runner took from the inbox together, in
    /// order (a model evaluates them in one call). Returns one result per
    /// message; an `Err` dead-letters that message only. Before emitting
    /// anything made from `batch[i]` the processor calls
    /// [`Emitter::begin`]`(&batch[i])`, so outputs keep their input's
    /// acknowledgement token.
    async fn process_batch(
        &mut self,
        batch: &[Envelope],
        out: &mut Emitter,
    ) -> Vec<Result<(), ComponentError>> {
        let mut results = Vec::with_capacity(batch.len());
        for env in batch {
            out.begin(env);
            results.push(self.process(&env.msg, out).await);
        }
        out.current_ack = None;
        results
    }

    /// How often [`Processor::tick`] runs, if at all (time windows, stale
    /// checks, periodic flushes).
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    async fn tick(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Called once when every input has ended (graceful shutdown): flush
    /// buffers, write what is pending.
    async fn flush(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// A built component.
pub enum Component {
    Source(Box<dyn Source>),
    Processor(Box<dyn Processor>),
}

/// What the builder gives a component when it builds (or rebuilds) it.
#[derive(Clone)]
pub struct BuildContext {
    /// The node id from the pipeline YAML.
    pub id: Arc<str>,
    /// The pipeline's metrics registry, for domain metrics.
    pub metrics: Arc<Metrics>,
    /// This component's standard metrics (already labelled).
    pub component_metrics: ComponentMetrics,
    /// Directory of the pipeline file, for resolving relative paths.
    pub base_dir: std::path::PathBuf,
    /// The engine's own events (component restarts), for `engine_events`.
    pub events: EngineEvents,
}

/// Events the engine itself raises (COMPONENT_RESTARTED), broadcast to any
/// `engine_events` source. Bounded: a source that falls behind loses the
/// oldest events (and counts them) rather than holding up the supervisor.
#[derive(Clone)]
pub struct EngineEvents(tokio::sync::broadcast::Sender<super::message::Alert>);

impl Default for EngineEvents {
    fn default() -> Self {
        EngineEvents(tokio::sync::broadcast::channel(256).0)
    }
}

impl EngineEvents {
    pub fn publish(&self, a: super::message::Alert) {
        // No subscriber is fine: nobody asked for engine events.
        let _ = self.0.send(a);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<super::message::Alert> {
        self.0.subscribe()
    }
}

impl BuildContext {
    /// Resolves a path from the pipeline file relative to that file's folder.
    pub fn resolve_path(&self, p: &std::path::Path) -> std::path::PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Routes a component serves on the engine's HTTP port, mounted when the
/// server starts (before the component itself is built). State shared
/// between the routes and the running component lives in the config (an
/// `Arc` created when the config is parsed), so a restarted component keeps
/// serving through the same routes.
pub type HttpRoutes = Arc<dyn Fn(&mut actix_web::web::ServiceConfig) + Send + Sync>;

/// What [`ComponentConfig::http_routes`] can see: the whole validated
/// pipeline, to find the nodes it serves (the API finds its predictor).
pub struct HttpContext<'a> {
    pub id: &'a str,
    pub spec: &'a crate::config::PipelineSpec,
    pub metrics: &'a Arc<Metrics>,
}

/// The typed settings of one node, parsed from its YAML.
pub trait ComponentConfig: fmt::Debug + Send + Sync + 'static {
    /// Value checks that serde cannot express (positive intervals, ranges,
    /// files). Every problem is pushed; none stops the others.
    fn validate(&self, _problems: &mut Vec<String>) {}

    /// [`ComponentConfig::validate`] for a config read from a pipeline file
    /// in `base_dir`, for checks of files the config names relative to it.
    fn validate_at(&self, _base_dir: &std::path::Path, problems: &mut Vec<String>) {
        self.validate(problems)
    }

    /// Builds a running component. Called at start and at every restart.
    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError>;

    /// HTTP routes to mount on the engine's server; most components have none.
    fn http_routes(&self, _ctx: &HttpContext<'_>) -> Option<HttpRoutes> {
        None
    }

    /// For components that look at another node's settings (downcast).
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// `false` for a node configured to send nothing downstream (a
    /// simulator seen only through its BACnet devices): validation then
    /// asks for no reader of it, and refuses one.
    fn emits_messages(&self) -> bool {
        true
    }
}

/// One kind of component, as the registry knows it.
#[derive(Clone, Copy)]
pub struct ComponentDescriptor {
    /// The `type` in pipeline YAML.
    pub type_name: &'static str,
    pub role: Role,
    /// Message kinds it accepts on its inputs.
    pub accepts: KindSet,
    /// Message kinds it emits (dead letters aside: every node may emit them).
    pub emits: KindSet,
    /// One-line description for `twinflow` help and the README.
    pub summary: &'static str,
    /// Parses the node's settings (the YAML mapping minus the common keys).
    pub parse: ParseFn,
}

pub type ParseFn = fn(
    &mut dyn erased_serde::Deserializer<'_>,
) -> Result<Box<dyn ComponentConfig>, erased_serde::Error>;

/// The [`ParseFn`] for a config type.
pub fn parse_config<C: ComponentConfig + DeserializeOwned>(
    de: &mut dyn erased_serde::Deserializer<'_>,
) -> Result<Box<dyn ComponentConfig>, erased_serde::Error> {
    let c: C = erased_serde::deserialize(de)?;
    Ok(Box::new(c))
}

/// The sending side of a node: its out-edges and the dead-letter edge.
pub struct Output {
    pub(crate) id: Arc<str>,
    pub(crate) edges: Vec<OutEdge>,
    pub(crate) dead_letter: Option<EdgeSender<Envelope>>,
    pub(crate) metrics: ComponentMetrics,
    pub(crate) dead_letter_counter: prometheus::IntCounterVec,
}

pub(crate) struct OutEdge {
    pub to: Arc<str>,
    pub accepts: KindSet,
    pub tx: EdgeSender<Envelope>,
    pub closed: bool,
}

impl Output {
    /// Sends a batch to every edge that accepts each message, in order,
    /// waiting where an edge is full.
    pub(crate) async fn send(&mut self, batch: Vec<Envelope>) {
        if batch.is_empty() {
            return;
        }
        self.metrics.sent.inc_by(batch.len() as u64);
        let Some(last) = self.edges.iter().rposition(|e| !e.closed) else {
            return;
        };
        let mut batch = Some(batch);
        for i in 0..=last {
            if self.edges[i].closed {
                continue;
            }
            let edge = &mut self.edges[i];
            let accepts = edge.accepts;
            let items: Vec<Envelope> = if i == last {
                // The last edge takes the batch itself: no copy for the
                // common single-consumer case.
                let mut b = batch.take().unwrap_or_default();
                b.retain(|e| accepts.contains(e.msg.kind()));
                b
            } else {
                batch
                    .iter()
                    .flatten()
                    .filter(|e| accepts.contains(e.msg.kind()))
                    .cloned()
                    .collect()
            };
            let res = edge.tx.send_all(items).await;
            if let Err(Closed { undelivered }) = res {
                edge.closed = true;
                self.metrics.discarded.inc_by(undelivered as u64);
                tracing::warn!(
                    component_id = %self.id,
                    to = %edge.to,
                    undelivered,
                    "downstream node has stopped; its messages are discarded"
                );
            }
        }
    }

    /// Sends one message to every edge that accepts it, without the batch's
    /// allocations.
    pub(crate) async fn send_one(&mut self, env: Envelope) {
        self.metrics.sent.inc();
        let kind = env.msg.kind();
        let Some(last) = self
            .edges
            .iter()
            .rposition(|e| !e.closed && e.accepts.contains(kind))
        else {
            return;
        };
        let mut env = Some(env);
        for i in 0..=last {
            let edge = &mut self.edges[i];
            if edge.closed || !edge.accepts.contains(kind) {
                continue;
            }
            let item = if i == last {
                env.take().expect("the last edge takes it")
            } else {
                env.as_ref().expect("until the last edge").clone()
            };
            if edge.tx.send(item).await.is_err() {
                edge.closed = true;
                self.metrics.discarded.inc();
                tracing::warn!(component_id = %self.id, to = %edge.to,
                    "downstream node has stopped; its messages are discarded");
            }
        }
    }

    /// Routes a dead letter, or logs it when the pipeline has no dead-letter node.
    pub(crate) async fn dead_letter(&mut self, dl: DeadLetter, ack: Option<AckToken>) {
        self.dead_letter_counter
            .with_label_values(&[&*self.id, dl.reason.as_str()])
            .inc();
        match &self.dead_letter {
            Some(tx) => {
                tracing::debug!(component_id = %self.id, reason = %dl.reason, error = %dl.error, "dead letter");
                let env = Envelope {
                    msg: Arc::new(Message::DeadLetter(dl)),
                    ack,
                };
                if tx.send(env).await.is_err() {
                    self.metrics.discarded.inc();
                }
            }
            None => {
                tracing::warn!(component_id = %self.id, reason = %dl.reason, error = %dl.error,
                    payload = %dl.payload, "dead letter (no dead_letter node configured)");
            }
        }
    }

    pub(crate) fn all_closed(&self) -> bool {
        self.edges.iter().all(|e| e.closed)
    }
}
