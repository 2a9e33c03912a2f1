//! Turns a validated [`PipelineSpec`] into running actors joined by bounded
//! edges. The builder is the only place that makes channels (through
//! `channel::edge`) and resolves metric labels; components get both injected.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Arbiter};
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::channel::{edge, EdgeProbe, Inbox, Overflow};
use super::component::{BuildContext, Envelope, OutEdge, Output, Role};
use super::message::{KindSet, MessageKind};
use super::runner::{NodeActor, NodeExit, NodeRunner, NodeState, NodeStatus};
use super::supervisor::Supervisor;
use crate::config::{PipelineSpec, Settings};
use crate::metrics::Metrics;

/// A node of a running pipeline, for the API and health.
pub struct NodeInfo {
    pub id: Arc<str>,
    pub type_name: &'static str,
    pub role: Role,
    pub status: Arc<NodeStatus>,
}

/// An edge of a running pipeline.
pub struct EdgeInfo {
    pub from: Arc<str>,
    pub to: Arc<str>,
    pub probe: EdgeProbe,
    depth_gauge: prometheus::IntGauge,
}

/// How a pipeline ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every node finished: sources stopped or ran out, channels drained,
    /// sinks flushed.
    Completed,
    /// The pipeline was stopped because of a failure.
    Failed(String),
}

/// A started pipeline.
pub struct RunningPipeline {
    view: Arc<PipelineView>,
    stop: CancellationToken,
    done: Vec<tokio::sync::oneshot::Receiver<(Arc<str>, NodeExit)>>,
    arbiters: Vec<Arbiter>,
}

/// Starts `spec`. Must run inside an actix `System`.
pub fn start(spec: &PipelineSpec, settings: &Settings, metrics: Arc<Metrics>) -> RunningPipeline {
    let stop = CancellationToken::new();
    let events = super::component::EngineEvents::default();
    let supervisor = Arc::new(Supervisor::new(settings, stop.clone()).with_events(events.clone()));
    let n = spec.nodes.len();
    let index: HashMap<&str, usize> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();

    let mut inboxes: Vec<Inbox<Envelope>> = (0..n).map(|_| Inbox::new()).collect();
    let mut outs: Vec<Vec<OutEdge>> = (0..n).map(|_| Vec::new()).collect();
    let mut dead_txs: Vec<Option<_>> = (0..n).map(|_| None).collect();
    let mut edges = Vec::new();

    let mut add_edge = |from: usize,
                        to: usize,
                        capacity: usize,
                        overflow: Overflow,
                        accepts: KindSet,
                        inboxes: &mut Vec<Inbox<Envelope>>|
     -> (super::channel::EdgeSender<Envelope>, KindSet) {
        let (fid, tid) = (&spec.nodes[from].id, &spec.nodes[to].id);
        let (tx, rx) = edge(
            capacity,
            overflow,
            inboxes[to].bell(),
            metrics.edge_discarded(fid, tid),
        );
        inboxes[to].push(rx);
        metrics
            .channel_capacity
            .with_label_values(&[fid, tid])
            .set(capacity as i64);
        edges.push(EdgeInfo {
            from: Arc::from(fid.as_str()),
            to: Arc::from(tid.as_str()),
            probe: tx.probe(),
            depth_gauge: metrics.channel_depth.with_label_values(&[fid, tid]),
        });
        (tx, accepts)
    };

    for (to, node) in spec.nodes.iter().enumerate() {
        for e in &node.inputs {
            let from = index[e.from.as_str()];
            let (tx, accepts) = add_edge(from, to, e.capacity, e.overflow, e.kinds, &mut inboxes);
            outs[from].push(OutEdge {
                to: Arc::from(node.id.as_str()),
                accepts,
                tx,
                closed: false,
            });
        }
    }
    if let Some(dl) = &spec.dead_letter {
        let to = index[dl.as_str()];
        let cap = spec
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().map(|e| e.capacity))
            .max()
            .unwrap_or(crate::config::schema::DEFAULT_CHANNEL_CAPACITY as usize);
        for from in (0..n).filter(|&i| i != to) {
            let (tx, _) = add_edge(
                from,
                to,
                cap,
                Overflow::Block,
                KindSet::of(&[MessageKind::DeadLetter]),
                &mut inboxes,
            );
            dead_txs[from] = Some(tx);
        }
    }

    let workers = settings.worker_threads().max(1);
    let arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
    let mut nodes = Vec::with_capacity(n);
    let mut done = Vec::with_capacity(n);
    let ids: Vec<Arc<str>> = spec
        .nodes
        .iter()
        .map(|n| Arc::from(n.id.as_str()))
        .collect();
    for (((i, node), inbox), (out_edges, dead)) in spec
        .nodes
        .iter()
        .enumerate()
        .zip(inboxes)
        .zip(outs.into_iter().zip(dead_txs))
    {
        let d = node.descriptor;
        let cm = metrics.component(&node.id, d.role.as_str(), d.type_name);
        let status = Arc::new(NodeStatus::default());
        let runner = NodeRunner {
            id: ids[i].clone(),
            descriptor: d,
            config: node.config.clone(),
            ctx: BuildContext {
                id: ids[i].clone(),
                metrics: metrics.clone(),
                component_metrics: cm.clone(),
                base_dir: spec.base_dir.clone(),
                events: events.clone(),
            },
            inbox,
            output: Output {
                id: ids[i].clone(),
                edges: out_edges,
                dead_letter: dead,
                metrics: cm,
                dead_letter_counter: metrics.dead_letters.clone(),
            },
            supervisor: supervisor.clone(),
            stop: stop.clone(),
            status: status.clone(),
            batch_size: spec.batch_size,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        done.push(rx);
        let actor = NodeActor::new(runner, tx);
        // Spread nodes over the worker threads; downstream neighbours land on
        // different threads so a pipeline's stages run in parallel.
        NodeActor::start_in_arbiter(&arbiters[i % workers].handle(), move |_| actor);
        nodes.push(NodeInfo {
            id: ids[i].clone(),
            type_name: d.type_name,
            role: d.role,
            status,
        });
    }
    tracing::info!(pipeline = %spec.name, nodes = n, edges = edges.len(), workers, "pipeline started");
    RunningPipeline {
        view: Arc::new(PipelineView {
            name: spec.name.clone(),
            nodes,
            edges,
            metrics,
            supervisor,
        }),
        stop,
        done,
        arbiters,
    }
}

impl RunningPipeline {
    /// Asks the sources to stop; the rest drains and flushes behind them.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// A token cancelled when the pipeline is asked to stop (by a signal or
    /// by the supervisor).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Read-only view for the HTTP server and tools.
    pub fn view(&self) -> Arc<PipelineView> {
        self.view.clone()
    }

    /// Waits for every node to end.
    pub async fn wait(self) -> Outcome {
        let exits = join_all(self.done).await;
        for a in &self.arbiters {
            a.stop();
        }
        let mut failures = Vec::new();
        if let Some(r) = self.view.failure() {
            failures.push(r);
        }
        for (id, exit) in exits.into_iter().flatten() {
            if let NodeExit::Failed(why) = exit {
                failures.push(format!("{id}: {why}"));
            }
        }
        if failures.is_empty() {
            Outcome::Completed
        } else {
            Outcome::Failed(failures.join("; "))
        }
    }
}

/// Read-only view of a running pipeline (nodes, edges, metrics).
pub struct PipelineView {
    pub name: String,
    pub nodes: Vec<NodeInfo>,
    pub edges: Vec<EdgeInfo>,
    pub metrics: Arc<Metrics>,
    supervisor: Arc<Supervisor>,
}

impl PipelineView {
    pub fn is_ready(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.status.state() != NodeState::Starting)
    }

    pub fn failure(&self) -> Option<String> {
        self.supervisor.failure()
    }

    pub fn update_gauges(&self) {
        for e in &self.edges {
            e.depth_gauge.set(e.probe.depth() as i64);
        }
        self.metrics.ready.set(self.is_ready() as i64);
    }
}
