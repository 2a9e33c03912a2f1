//! `GET /api/pipeline`: the running graph with live numbers.
//!
//! Nodes and edges, node states and live queue depths come from the
//! engine's [`PipelineView`] (the server shares it with every route); the
//! counters come from the pipeline's metrics registry, so they are the very
//! numbers Prometheus scrapes. The engine counts messages per node, not per
//! edge: an edge's `messages` is what its sender emitted (every message a
//! node emits goes to each out-edge whose receiver accepts its type), and
//! a dead-letter edge's is the sender's dead letters.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::routes::Api;
use crate::pipeline::PipelineView;

/// Counter values by metric name and label values.
struct Counters(HashMap<(String, Vec<String>), f64>);

impl Counters {
    fn gather(view: &PipelineView) -> Counters {
        let mut m = HashMap::new();
        for fam in view.metrics.registry().gather() {
            let name = fam.name();
            if !name.starts_with("twinflow_component_")
                && name != "twinflow_dead_letters_total"
                && name != "twinflow_channel_discarded_events_total"
            {
                continue;
            }
            for s in fam.get_metric() {
                let labels: Vec<String> = s
                    .get_label()
                    .iter()
                    .map(|l| l.value().to_string())
                    .collect();
                let v = s.get_counter().get_value() + s.get_gauge().get_value();
                *m.entry((name.to_string(), labels)).or_insert(0.0) += v;
            }
        }
        Counters(m)
    }

    /// The value of `name` summed over series whose labels start with `prefix`.
    fn sum(&self, name: &str, prefix: &[&str]) -> u64 {
        self.0
            .iter()
            .filter(|((n, l), _)| n == name && l.len() >= prefix.len())
            .filter(|((_, l), _)| l.iter().zip(prefix).all(|(a, b)| a == b))
            .map(|(_, v)| *v)
            .sum::<f64>() as u64
    }
}

pub(super) fn pipeline_json(api: &Api, view: &PipelineView) -> Value {
    // Depths first: the gauges Prometheus reads are refreshed by the same
    // call, so the two never disagree for long.
    view.update_gauges();
    let c = Counters::gather(view);
    let dead_letter = api.state.dead_letter.get().cloned().flatten();
    let mut counts: HashMap<Arc<str>, (u64, u64)> = HashMap::new();
    let mut nodes = Vec::with_capacity(view.nodes.len());
    for n in &view.nodes {
        // The label order of the component metrics: id, kind, type.
        let l = [&*n.id, n.role.as_str(), n.type_name];
        let received = c.sum("twinflow_component_received_events_total", &l);
        let sent = c.sum("twinflow_component_sent_events_total", &l);
        counts.insert(n.id.clone(), (received, sent));
        nodes.push((n, received, sent, l));
    }
    let rates = api.state.rates(counts);
    let rate = |id: &Arc<str>| rates.get(id).copied();
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|(n, received, sent, l)| {
            let r = rate(&n.id);
            json!({
                "id": &*n.id,
                "type": n.type_name,
                "kind": n.role.as_str(),
                "state": n.status.state().as_str(),
                "restarts": n.status.restarts(),
                "received": received,
                "sent": sent,
                "errors": c.sum("twinflow_component_errors_total", &l),
                "discarded": c.sum("twinflow_component_discarded_events_total", &l),
                "dead_letters": c.sum("twinflow_dead_letters_total", &[&*n.id]),
                "rate_in": r.map(|r| round(r.0)),
                "rate_out": r.map(|r| round(r.1)),
            })
        })
        .collect();
    let sent_of = |id: &str| {
        view.nodes
            .iter()
            .find(|n| &*n.id == id)
            .map(|n| {
                c.sum(
                    "twinflow_component_sent_events_total",
                    &[id, n.role.as_str(), n.type_name],
                )
            })
            .unwrap_or(0)
    };
    let edges: Vec<Value> = view
        .edges
        .iter()
        .map(|e| {
            let is_dead_letter = dead_letter.as_deref() == Some(&*e.to) && is_implicit(view, e);
            let (messages, rate) = if is_dead_letter {
                (c.sum("twinflow_dead_letters_total", &[&*e.from]), None)
            } else {
                (sent_of(&e.from), rate(&e.from).map(|r| round(r.1)))
            };
            json!({
                "from": &*e.from,
                "to": &*e.to,
                "dead_letter": is_dead_letter,
                "depth": e.probe.depth(),
                "capacity": e.probe.capacity(),
                "discarded": c.sum("twinflow_channel_discarded_events_total", &[&*e.from, &*e.to]),
                "messages": messages,
                "rate": rate,
            })
        })
        .collect();
    json!({
        "name": view.name,
        "dead_letter": dead_letter,
        "failure": view.failure(),
        "ready": view.is_ready(),
        "nodes": nodes,
        "edges": edges,
        "events": {
            "clients": api.state.sse_clients.load(std::sync::atomic::Ordering::Relaxed),
            "skipped": api.state.sse_skipped.load(std::sync::atomic::Ordering::Relaxed),
        },
    })
}

/// Whether an edge into the dead-letter node is the implicit dead-letter
/// edge rather than a declared input. The builder gives every other node an
/// implicit edge, after all declared ones: a node that also declared the
/// dead-letter node's input has two edges to it, the later one implicit.
fn is_implicit(view: &PipelineView, e: &crate::pipeline::builder::EdgeInfo) -> bool {
    let same: Vec<_> = view
        .edges
        .iter()
        .filter(|o| o.from == e.from && o.to == e.to)
        .collect();
    match same.as_slice() {
        [_, last] => std::ptr::eq(*last, e),
        _ => true,
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
