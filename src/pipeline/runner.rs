//! The loop that runs one node, and the actix actor that hosts it.
//!
//! One loop shape for every node: wait on the inbox (and a ticker, for
//! components that have one), process a batch, send what it produced, repeat
//! until every input has ended, then flush. Sources instead run until the
//! pipeline's stop token is cancelled. Around every call into the component
//! the runner catches panics; a panic costs the message that caused it (it
//! goes to the dead-letter path), never the messages still queued: they live
//! in the inbox, which the runner owns, not the component.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context};
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::channel::Inbox;
use super::component::{
    BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError, Emitter,
    Envelope, Output, Processor, Role, Source, SourceOutput,
};
use super::message::DeadLetter;
use super::supervisor::Supervisor;

/// Lifecycle state of a node, for `/health` and `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NodeState {
    Starting = 0,
    Running = 1,
    Restarting = 2,
    Stopped = 3,
    Failed = 4,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Starting => "starting",
            NodeState::Running => "running",
            NodeState::Restarting => "restarting",
            NodeState::Stopped => "stopped",
            NodeState::Failed => "failed",
        }
    }
}

/// Shared, lock-free view of a node's state.
#[derive(Debug, Default)]
pub struct NodeStatus {
    state: AtomicU8,
    restarts: AtomicU64,
}

impl NodeStatus {
    pub fn state(&self) -> NodeState {
        match self.state.load(Ordering::Acquire) {
            0 => NodeState::Starting,
            1 => NodeState::Running,
            2 => NodeState::Restarting,
            3 => NodeState::Stopped,
            _ => NodeState::Failed,
        }
    }
    fn set(&self, s: NodeState) {
        self.state.store(s as u8, Ordering::Release);
    }
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

/// How a node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeExit {
    /// Its inputs ended (or, for a source, it was stopped) and it flushed.
    Finished,
    /// It could not be (re)built within the restart budget.
    Failed(String),
}

/// Everything one node needs to run; built by the builder.
pub struct NodeRunner {
    pub id: Arc<str>,
    pub descriptor: ComponentDescriptor,
    pub config: Arc<dyn ComponentConfig>,
    pub ctx: BuildContext,
    pub inbox: Inbox<Envelope>,
    pub output: Output,
    pub supervisor: Arc<Supervisor>,
    pub stop: CancellationToken,
    pub status: Arc<NodeStatus>,
    pub batch_size: usize,
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

async fn next_tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl NodeRunner {
    pub async fn run(self) -> NodeExit {
        let status = self.status.clone();
        let up = self.ctx.component_metrics.up.clone();
        let exit = match self.descriptor.role {
            Role::Source => self.run_source().await,
            Role::Transform | Role::Sink => self.run_processor().await,
        };
        up.set(0);
        status.set(match exit {
            NodeExit::Finished => NodeState::Stopped,
            NodeExit::Failed(_) => NodeState::Failed,
        });
        exit
    }

    /// Records a restart and waits out its backoff. `None`: give up.
    async fn backoff(&self, why: &str) -> Option<()> {
        let m = &self.ctx.component_metrics;
        m.restarts.inc();
        m.up.set(0);
        self.status.restarts.fetch_add(1, Ordering::Relaxed);
        self.status.set(NodeState::Restarting);
        let delay = self.supervisor.on_restart(&self.id, why)?;
        tracing::warn!(component_id = %self.id, component_type = self.descriptor.type_name,
            delay_ms = delay.as_millis() as u64, "restarting component: {why}");
        tokio::time::sleep(delay).await;
        Some(())
    }

    /// Builds the component, retrying with backoff.
    async fn build(&self) -> Result<Component, String> {
        loop {
            let res = std::panic::catch_unwind(AssertUnwindSafe(|| self.config.build(&self.ctx)));
            let why = match res {
                Ok(Ok(c)) => {
                    self.status.set(NodeState::Running);
                    self.ctx.component_metrics.up.set(1);
                    return Ok(c);
                }
                Ok(Err(e)) => format!("failed to start: {e}"),
                Err(p) => format!("panicked while starting: {}", panic_message(&*p)),
            };
            self.ctx.component_metrics.errors.inc();
            tracing::error!(component_id = %self.id, "{why}");
            if self.backoff(&why).await.is_none() {
                return Err(why);
            }
        }
    }

    async fn build_source(&self) -> Result<Box<dyn Source>, String> {
        match self.build().await? {
            Component::Source(s) => Ok(s),
            Component::Processor(_) => Err("built a processor for a source node".into()),
        }
    }

    async fn build_processor(&self) -> Result<Box<dyn Processor>, String> {
        match self.build().await? {
            Component::Processor(p) => Ok(p),
            Component::Source(_) => Err("built a source for a processor node".into()),
        }
    }

    async fn run_source(mut self) -> NodeExit {
        loop {
            let mut src = match self.build_source().await {
                Ok(s) => s,
                Err(e) => return NodeExit::Failed(e),
            };
            let stop = self.stop.clone();
            let mut out = SourceOutput {
                output: &mut self.output,
            };
            let res = AssertUnwindSafe(src.run(&mut out, &stop))
                .catch_unwind()
                .await;
            drop(src);
            let why = match res {
                Ok(Ok(())) => return NodeExit::Finished,
                Ok(Err(e)) => {
                    self.ctx.component_metrics.errors.inc();
                    format!("failed: {e}")
                }
                Err(p) => format!("panicked: {}", panic_message(&*p)),
            };
            tracing::error!(component_id = %self.id, "source {why}");
            if self.stop.is_cancelled() {
                return NodeExit::Finished;
            }
            if self.backoff(&why).await.is_none() {
                return NodeExit::Failed(why);
            }
        }
    }

    fn dead(&self, err: &ComponentError, env: &Envelope) -> DeadLetter {
        DeadLetter {
            component: self.id.to_string(),
            reason: err.reason.to_string(),
            error: err.message.clone(),
            ts: chrono::Utc::now(),
            payload: env.msg.to_json(),
        }
    }

    /// Sends what the component emitted, then its dead letters.
    async fn deliver(output: &mut Output, em: &mut Emitter) {
        if !em.out.is_empty() {
            output.send(std::mem::take(&mut em.out)).await;
        }
        for (dl, ack) in std::mem::take(&mut em.dead) {
            output.dead_letter(dl, ack).await;
        }
    }

    async fn run_processor(mut self) -> NodeExit {
        let mut comp = match self.build_processor().await {
            Ok(c) => c,
            Err(e) => return NodeExit::Failed(e),
        };
        let metrics = self.ctx.component_metrics.clone();
        let mut ticker = comp.tick_interval().map(|d| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut em = Emitter::default();
        let mut buf: Vec<Envelope> = Vec::with_capacity(self.batch_size);
        loop {
            // Ordering: input first (biased), so a busy node is not starved
            // by its ticker, and a tick still runs whenever the inbox waits.
            let n = tokio::select! {
                biased;
                n = self.inbox.recv_many(&mut buf, self.batch_size) => n,
                _ = next_tick(&mut ticker) => {
                    let res = AssertUnwindSafe(comp.tick(&mut em)).catch_unwind().await;
                    match res {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            metrics.errors.inc();
                            tracing::warn!(component_id = %self.id, error = %e, "tick failed");
                        }
                        Err(p) => {
                            em.out.clear();
                            let why = format!("panicked in tick: {}", panic_message(&*p));
                            tracing::error!(component_id = %self.id, "{why}");
                            comp = match self.rebuild(&why).await {
                                Some(c) => c,
                                None => return NodeExit::Failed(why),
                            };
                        }
                    }
                    Self::deliver(&mut self.output, &mut em).await;
                    continue;
                }
            };
            if n == 0 {
                break; // every input ended and is drained
            }
            metrics.received.inc_by(n as u64);
            let mut batch = std::mem::take(&mut buf);
            // One clock read per batch, not two per message: at millions of
            // messages a second the clock would cost more than the relay.
            // Each message is recorded with the batch's mean time.
            let t0 = Instant::now();
            if comp.batched() {
                // The whole batch in one call (a model evaluates it at once).
                let (mark, dead_mark) = (em.out.len(), em.dead.len());
                let res = AssertUnwindSafe(comp.process_batch(&batch, &mut em))
                    .catch_unwind()
                    .await;
                em.current_ack = None;
                match res {
                    Ok(results) => {
                        for (env, r) in batch.iter().zip(results) {
                            if let Err(e) = r {
                                metrics.errors.inc();
                                let dl = self.dead(&e, env);
                                em.dead.push((dl, env.ack.clone()));
                            }
                        }
                        batch.clear();
                    }
                    Err(p) => {
                        // Undo the batch and replay it one message at a time
                        // below, so only the poison message is lost (at the
                        // price of a second restart when it panics again).
                        em.out.truncate(mark);
                        em.dead.truncate(dead_mark);
                        let why = format!("panicked in a batch: {}", panic_message(&*p));
                        tracing::error!(component_id = %self.id, "{why}");
                        comp = match self.rebuild(&why).await {
                            Some(c) => c,
                            None => {
                                Self::deliver(&mut self.output, &mut em).await;
                                return NodeExit::Failed(why);
                            }
                        };
                    }
                }
            }
            for env in batch.drain(..) {
                em.current_ack = env.ack.clone();
                let mark = em.out.len();
                let res = AssertUnwindSafe(comp.process(&env.msg, &mut em))
                    .catch_unwind()
                    .await;
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        metrics.errors.inc();
                        tracing::debug!(component_id = %self.id, reason = e.reason, error = %e, "message failed");
                        let dl = self.dead(&e, &env);
                        em.dead.push((dl, env.ack.clone()));
                    }
                    Err(p) => {
                        // Whatever the poison message produced before the
                        // panic is dropped with it.
                        em.out.truncate(mark);
                        metrics.discarded.inc();
                        let why = format!("panicked: {}", panic_message(&*p));
                        tracing::error!(component_id = %self.id, "{why}");
                        let e = ComponentError::new("panic", why.clone());
                        let dl = self.dead(&e, &env);
                        em.dead.push((dl, env.ack.clone()));
                        comp = match self.rebuild(&why).await {
                            Some(c) => c,
                            None => {
                                Self::deliver(&mut self.output, &mut em).await;
                                return NodeExit::Failed(why);
                            }
                        };
                    }
                }
                em.current_ack = None;
            }
            let mean = t0.elapsed().as_secs_f64() / n as f64;
            for _ in 0..n {
                metrics.processing.observe(mean);
            }
            buf = batch;
            Self::deliver(&mut self.output, &mut em).await;
        }
        let res = AssertUnwindSafe(comp.flush(&mut em)).catch_unwind().await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                metrics.errors.inc();
                tracing::error!(component_id = %self.id, error = %e, "flush failed");
            }
            Err(p) => {
                metrics.errors.inc();
                tracing::error!(component_id = %self.id, "panicked in flush: {}", panic_message(&*p));
            }
        }
        Self::deliver(&mut self.output, &mut em).await;
        NodeExit::Finished
    }

    async fn rebuild(&self, why: &str) -> Option<Box<dyn Processor>> {
        self.backoff(why).await?;
        self.build_processor().await.ok()
    }
}

/// Hosts one node on an actix arbiter: the actor's lifetime is the node's.
/// Data never goes through the actor's mailbox; the node reads its own
/// bounded edges.
pub struct NodeActor {
    runner: Option<NodeRunner>,
    done: Option<tokio::sync::oneshot::Sender<(Arc<str>, NodeExit)>>,
}

impl NodeActor {
    pub fn new(
        runner: NodeRunner,
        done: tokio::sync::oneshot::Sender<(Arc<str>, NodeExit)>,
    ) -> Self {
        NodeActor {
            runner: Some(runner),
            done: Some(done),
        }
    }
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (Some(runner), Some(done)) = (self.runner.take(), self.done.take()) else {
            return;
        };
        let id = runner.id.clone();
        let fut = async move {
            let exit = runner.run().await;
            tracing::debug!(component_id = %id, "node stopped");
            let _ = done.send((id, exit));
        };
        ctx.spawn(actix::fut::wrap_future::<_, Self>(fut).map(|_, _, ctx| ctx.stop()));
    }
}
