//! The one place where the engine makes channels.
//!
//! Every edge of a pipeline is its own bounded single-producer queue: the
//! upstream node's runner holds the only [`EdgeSender`], the downstream node's
//! [`Inbox`] holds the [`EdgeReceiver`]. A node with several inputs shares one
//! doorbell ([`Notify`]) across all of them, so fan-in is a round-robin drain
//! of its edges with a single wait point, and each edge keeps its own capacity,
//! overflow policy and depth.
//!
//! Why not `tokio::sync::mpsc`: it cannot drop the *oldest* element
//! (`drop_oldest` needs it), and draining a batch under one lock is what lets a
//! stage move messages at several million a second on two cores.
//!
//! Nothing here is unbounded: with [`Overflow::Block`] a full edge makes the
//! sender wait (backpressure); the drop policies discard only on explicit
//! request in the pipeline YAML and count every discarded message.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// What a full edge does with a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The sender waits until the receiver makes room (backpressure).
    #[default]
    Block,
    /// The new message is discarded and counted.
    DropNewest,
    /// The oldest queued message is discarded and counted; the new one is queued.
    DropOldest,
}

/// The receiver is gone: the message(s) could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the receiving node has stopped; {undelivered} message(s) not delivered")]
pub struct Closed {
    pub undelivered: usize,
}

struct State<T> {
    queue: VecDeque<T>,
    sender_closed: bool,
    receiver_closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    overflow: Overflow,
    /// Rung when a message arrives or the sender closes; shared by all the
    /// edges of one receiving node.
    bell: Arc<Notify>,
    /// Rung when the receiver makes room or goes away.
    not_full: Notify,
    discarded: IntCounter,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic never happens while the lock is held (only queue operations
        // run under it), so a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes one bounded edge. `bell` is the receiving node's doorbell (see
/// [`Inbox::bell`]); `discarded` counts what the drop policies throw away.
pub fn edge<T>(
    capacity: usize,
    overflow: Overflow,
    bell: Arc<Notify>,
    discarded: IntCounter,
) -> (EdgeSender<T>, EdgeReceiver<T>) {
    assert!(
        capacity > 0,
        "edge capacity must be positive (validated before)"
    );
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.min(4096)),
            sender_closed: false,
            receiver_closed: false,
        }),
        capacity,
        overflow,
        bell,
        not_full: Notify::new(),
        discarded,
    });
    (
        EdgeSender {
            shared: shared.clone(),
        },
        EdgeReceiver { shared },
    )
}

/// The sending half of an edge. Dropping it closes the edge: the receiver
/// drains what is queued and then sees the end of the stream.
pub struct EdgeSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> EdgeSender<T> {
    /// Sends one message, waiting for room when the edge blocks.
    pub async fn send(&self, item: T) -> Result<(), Closed> {
        // The one-message path of `send_all`, without a Vec: sources that
        // hand over one reading at a time take it for every message.
        let sh = &*self.shared;
        let mut item = Some(item);
        // First try without registering for "not full": registering takes
        // the Notify's own lock, and an edge with room is the common case.
        let mut registered = false;
        loop {
            let mut notified = pin!(sh.not_full.notified());
            if registered {
                notified.as_mut().enable();
            }
            {
                let mut st = sh.lock();
                if st.receiver_closed {
                    return Err(Closed { undelivered: 1 });
                }
                let full = st.queue.len() >= sh.capacity;
                match (sh.overflow, full) {
                    (Overflow::Block, true) => {}
                    (Overflow::DropNewest, true) => {
                        sh.discarded.inc();
                        return Ok(());
                    }
                    (Overflow::DropOldest, true) => {
                        st.queue.pop_front();
                        sh.discarded.inc();
                        st.queue.push_back(item.take().expect("sent once"));
                    }
                    (_, false) => st.queue.push_back(item.take().expect("sent once")),
                }
            }
            if item.is_none() {
                sh.bell.notify_one();
                return Ok(());
            }
            if registered {
                notified.await;
            } else {
                // Full: register, then look again before waiting, so room
                // made in between is not missed.
                registered = true;
            }
        }
    }

    /// Sends a batch in order, moving as many as fit under each lock.
    pub async fn send_all(&self, items: Vec<T>) -> Result<(), Closed> {
        let mut items = items.into_iter().peekable();
        let sh = &*self.shared;
        while items.peek().is_some() {
            // Register for "not full" before looking, so a receiver that makes
            // room between our check and our wait still wakes us.
            let mut notified = pin!(sh.not_full.notified());
            notified.as_mut().enable();
            let mut pushed = 0usize;
            {
                let mut st = sh.lock();
                if st.receiver_closed {
                    drop(st);
                    return Err(Closed {
                        undelivered: items.count(),
                    });
                }
                match sh.overflow {
                    Overflow::Block => {
                        while st.queue.len() < sh.capacity {
                            match items.next() {
                                Some(x) => {
                                    st.queue.push_back(x);
                                    pushed += 1;
                                }
                                None => break,
                            }
                        }
                    }
                    Overflow::DropNewest => {
                        for x in items.by_ref() {
                            if st.queue.len() < sh.capacity {
                                st.queue.push_back(x);
                                pushed += 1;
                            } else {
                                sh.discarded.inc();
                            }
                        }
                    }
                    Overflow::DropOldest => {
                        for x in items.by_ref() {
                            if st.queue.len() >= sh.capacity {
                                st.queue.pop_front();
                                sh.discarded.inc();
                            }
                            st.queue.push_back(x);
                            pushed += 1;
                        }
                    }
                }
            }
            if pushed > 0 {
                sh.bell.notify_one();
            } else if items.peek().is_some() {
                notified.await;
            }
        }
        Ok(())
    }

    /// A handle to read the edge's depth for metrics.
    pub fn probe(&self) -> EdgeProbe
    where
        T: Send + 'static,
    {
        EdgeProbe {
            inner: self.shared.clone(),
        }
    }
}

impl<T> Drop for EdgeSender<T> {
    fn drop(&mut self) {
        self.shared.lock().sender_closed = true;
        self.shared.bell.notify_one();
    }
}

/// The receiving half of an edge; lives in the downstream node's [`Inbox`].
pub struct EdgeReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Drop for EdgeReceiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.receiver_closed = true;
        // Messages still queued are dropped with the receiver; the builder
        // only drops a receiver when its node is gone for good.
        st.queue.clear();
        drop(st);
        self.shared.not_full.notify_one();
    }
}

/// Reads an edge's depth and capacity without holding either end.
#[derive(Clone)]
pub struct EdgeProbe {
    inner: Arc<dyn DepthProbe>,
}

trait DepthProbe: Send + Sync {
    fn depth(&self) -> usize;
    fn capacity(&self) -> usize;
}

impl<T: Send> DepthProbe for Shared<T> {
    fn depth(&self) -> usize {
        self.lock().queue.len()
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl EdgeProbe {
    pub fn depth(&self) -> usize {
        self.inner.depth()
    }
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

/// All the input edges of one node, merged.
pub struct Inbox<T> {
    edges: Vec<EdgeReceiver<T>>,
    bell: Arc<Notify>,
    /// Where the next round-robin drain starts, so one busy input cannot
    /// starve the others.
    next: usize,
}

impl<T> Inbox<T> {
    /// An inbox with no edges yet; make edges with [`Inbox::bell`], then
    /// [`Inbox::push`] their receivers.
    pub fn new() -> Self {
        Inbox {
            edges: Vec::new(),
            bell: Arc::new(Notify::new()),
            next: 0,
        }
    }

    pub fn bell(&self) -> Arc<Notify> {
        self.bell.clone()
    }

    pub fn push(&mut self, rx: EdgeReceiver<T>) {
        assert!(
            Arc::ptr_eq(&rx.shared.bell, &self.bell),
            "edge made with another inbox's bell"
        );
        self.edges.push(rx);
    }

    /// Moves up to `max` queued messages into `buf` without waiting.
    /// Returns how many were moved and whether every input is closed and empty.
    pub fn try_recv_many(&mut self, buf: &mut Vec<T>, max: usize) -> (usize, bool) {
        let n_edges = self.edges.len();
        let mut moved = 0;
        let mut all_done = true;
        for i in 0..n_edges {
            let idx = (self.next + i) % n_edges;
            let sh = &*self.edges[idx].shared;
            let mut st = sh.lock();
            let take = (max - moved).min(st.queue.len());
            buf.extend(st.queue.drain(..take));
            moved += take;
            if !(st.sender_closed && st.queue.is_empty()) {
                all_done = false;
            }
            drop(st);
            if take > 0 {
                sh.not_full.notify_one();
            }
            if moved == max {
                self.next = (idx + 1) % n_edges.max(1);
                return (moved, false);
            }
        }
        if n_edges > 0 {
            self.next = (self.next + 1) % n_edges;
        }
        (moved, all_done)
    }

    /// Waits for messages and moves up to `max` of them into `buf`. Returns 0
    /// only when every input edge is closed and drained: the end of the stream.
    ///
    /// Cancel-safe: nothing is taken from an edge unless this returns.
    pub async fn recv_many(&mut self, buf: &mut Vec<T>, max: usize) -> usize {
        // Fast path: take what is there without registering on the bell.
        let (n, done) = self.try_recv_many(buf, max);
        if n > 0 || done {
            return n;
        }
        let bell = self.bell.clone();
        loop {
            let mut rung = pin!(bell.notified());
            rung.as_mut().enable();
            let (n, done) = self.try_recv_many(buf, max);
            if n > 0 || done {
                return n;
            }
            rung.await;
        }
    }

    /// Total messages queued on all inputs.
    pub fn depth(&self) -> usize {
        self.edges.iter().map(|e| e.shared.lock().queue.len()).sum()
    }
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn counter() -> IntCounter {
        IntCounter::new("t", "t").unwrap()
    }

    fn one_edge(cap: usize, ov: Overflow) -> (EdgeSender<u32>, Inbox<u32>, IntCounter) {
        let mut inbox = Inbox::new();
        let c = counter();
        let (tx, rx) = edge(cap, ov, inbox.bell(), c.clone());
        inbox.push(rx);
        (tx, inbox, c)
    }

    #[tokio::test]
    async fn block_waits_for_room_and_keeps_order() {
        let (tx, mut inbox, discarded) = one_edge(4, Overflow::Block);
        let producer = tokio::spawn(async move {
            for i in 0..1000u32 {
                tx.send(i).await.unwrap();
            }
        });
        let mut got = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = inbox.recv_many(&mut buf, 3).await;
            if n == 0 {
                break;
            }
            assert!(inbox.depth() <= 4, "the queue never exceeds its capacity");
            got.extend_from_slice(&buf);
        }
        producer.await.unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(discarded.get(), 0);
    }

    #[tokio::test]
    async fn a_full_blocking_edge_holds_the_sender() {
        let (tx, mut inbox, _) = one_edge(2, Overflow::Block);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), tx.send(3)).await;
        assert!(
            third.is_err(),
            "third send must wait while the edge is full"
        );
        let mut buf = Vec::new();
        inbox.try_recv_many(&mut buf, 1);
        tokio::time::timeout(Duration::from_secs(5), tx.send(3))
            .await
            .expect("room was made")
            .unwrap();
    }

    #[tokio::test]
    async fn drop_newest_and_drop_oldest_count_what_they_discard() {
        let (tx, mut inbox, discarded) = one_edge(3, Overflow::DropNewest);
        tx.send_all((0..10).collect()).await.unwrap();
        let mut buf = Vec::new();
        inbox.try_recv_many(&mut buf, 100);
        assert_eq!(buf, vec![0, 1, 2]);
        assert_eq!(discarded.get(), 7);

        let (tx, mut inbox, discarded) = one_edge(3, Overflow::DropOldest);
        tx.send_all((0..10).collect()).await.unwrap();
        let mut buf = Vec::new();
        inbox.try_recv_many(&mut buf, 100);
        assert_eq!(buf, vec![7, 8, 9]);
        assert_eq!(discarded.get(), 7);
    }

    #[tokio::test]
    async fn fan_in_drains_every_input_and_ends_when_all_close() {
        let mut inbox = Inbox::new();
        let (a, ra) = edge(8, Overflow::Block, inbox.bell(), counter());
        let (b, rb) = edge(8, Overflow::Block, inbox.bell(), counter());
        inbox.push(ra);
        inbox.push(rb);
        let pa = tokio::spawn(async move { a.send_all((0..100).collect()).await.unwrap() });
        let pb = tokio::spawn(async move { b.send_all((1000..1100).collect()).await.unwrap() });
        let mut got = Vec::new();
        loop {
            let mut buf = Vec::new();
            if inbox.recv_many(&mut buf, 16).await == 0 {
                break;
            }
            got.extend(buf);
        }
        pa.await.unwrap();
        pb.await.unwrap();
        assert_eq!(got.len(), 200);
        let from_a: Vec<_> = got.iter().copied().filter(|x| *x < 1000).collect();
        assert_eq!(from_a, (0..100).collect::<Vec<_>>(), "per-edge order kept");
    }

    #[tokio::test]
    async fn sender_sees_a_closed_receiver() {
        let (tx, inbox, _) = one_edge(1, Overflow::Block);
        tx.send(1).await.unwrap();
        let waiting = tokio::spawn(async move { tx.send(2).await });
        tokio::task::yield_now().await;
        drop(inbox);
        let res = waiting.await.unwrap();
        assert_eq!(res, Err(Closed { undelivered: 1 }));
    }
}
