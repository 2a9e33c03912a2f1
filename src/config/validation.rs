//! Graph checks on a parsed pipeline, collected in one pass.
//!
//! Every problem is reported with the node it concerns, so a user fixes the
//! whole file in one round: unknown types, duplicate ids, dangling inputs,
//! cycles, message-type mismatches, misplaced inputs, invalid values.

use std::collections::HashMap;
use std::sync::Arc;

use super::load::{ConfigError, EdgeSpec};
use super::schema::PipelineDoc;
use crate::pipeline::component::{ComponentConfig, ComponentDescriptor, Role};
use crate::pipeline::message::MessageKind;
use crate::pipeline::registry;

/// The validated graph, in node-index terms.
pub struct Graph {
    /// Node indices in topological order.
    pub order: Vec<usize>,
    pub descriptors: Vec<&'static ComponentDescriptor>,
    pub inputs: Vec<Vec<EdgeSpec>>,
}

/// `configs` holds each node's parsed settings (`None` where they did not
/// parse); they tell which nodes send nothing downstream.
pub fn check(
    doc: &PipelineDoc,
    configs: &[Option<Arc<dyn ComponentConfig>>],
    errors: &mut Vec<ConfigError>,
) -> Option<Graph> {
    let start = errors.len();
    let silent = |j: usize| {
        configs
            .get(j)
            .and_then(Option::as_ref)
            .is_some_and(|c| !c.emits_messages())
    };
    let default_cap = doc.channel_capacity.value;
    if default_cap <= 0 {
        errors.push(ConfigError::at(
            doc.channel_capacity.referenced,
            format!("channel_capacity must be at least 1, got {default_cap}"),
        ));
    }
    if doc.batch_size.value <= 0 {
        errors.push(ConfigError::at(
            doc.batch_size.referenced,
            format!(
                "batch_size must be at least 1, got {}",
                doc.batch_size.value
            ),
        ));
    }
    if let Some(b) = &doc.embedded_broker {
        let mut problems = Vec::new();
        b.value.problems(&mut problems);
        for p in problems {
            errors.push(ConfigError::at(b.referenced, p));
        }
    }
    if doc.nodes.is_empty() {
        errors.push(ConfigError {
            line: 0,
            column: 0,
            message: "the pipeline has no nodes".into(),
        });
    }

    // Ids and types.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut descriptors: Vec<Option<&'static ComponentDescriptor>> = Vec::new();
    for (i, n) in doc.nodes.iter().enumerate() {
        let id = &n.value.id;
        if id.value.trim().is_empty() {
            errors.push(ConfigError::at(id.referenced, "node id must not be empty"));
        } else if let Some(&first) = index.get(id.value.as_str()) {
            errors.push(ConfigError::at(
                id.referenced,
                format!(
                    "Duplicate node id \"{}\" (first defined at line {}).",
                    id.value,
                    doc.nodes[first].value.id.referenced.line()
                ),
            ));
        } else {
            index.insert(id.value.as_str(), i);
        }
        let ty = &n.value.type_name;
        let desc = registry::lookup(&ty.value);
        if desc.is_none() {
            let known: Vec<&str> = registry::all().map(|d| d.type_name).collect();
            errors.push(ConfigError::at(
                ty.referenced,
                format!(
                    "Unknown type \"{}\" for node \"{}\". Known types: {}.",
                    ty.value,
                    id.value,
                    known.join(", ")
                ),
            ));
        }
        descriptors.push(desc);
    }

    // Inputs.
    let mut inputs: Vec<Vec<EdgeSpec>> = vec![Vec::new(); doc.nodes.len()];
    let mut upstream: Vec<Vec<usize>> = vec![Vec::new(); doc.nodes.len()];
    for (i, n) in doc.nodes.iter().enumerate() {
        let id = &n.value.id.value;
        let desc = descriptors[i];
        if let Some(d) = desc {
            match d.role {
                Role::Source if !n.value.inputs.is_empty() => errors.push(ConfigError::at(
                    n.value.inputs[0].referenced,
                    format!(
                        "Source \"{id}\" ({}) takes no inputs, but has {}.",
                        d.type_name,
                        n.value.inputs.len()
                    ),
                )),
                Role::Transform | Role::Sink
                    if n.value.inputs.is_empty() && !is_dead_letter(doc, id) =>
                {
                    errors.push(ConfigError::at(
                        n.value.id.referenced,
                        format!(
                            "{} \"{id}\" ({}) has no inputs: list the nodes it reads from under `inputs`.",
                            capitalise(d.role.as_str()),
                            d.type_name
                        ),
                    ))
                }
                _ => {}
            }
        }
        for input in &n.value.inputs {
            let spec = &input.value;
            let cap = spec.capacity.unwrap_or(default_cap);
            // A bad default is reported once, at `channel_capacity`.
            if spec.capacity.is_some() && cap <= 0 {
                errors.push(ConfigError::at(
                    input.referenced,
                    format!(
                        "Input \"{}\" for node \"{id}\": capacity must be at least 1, got {cap}.",
                        spec.from
                    ),
                ));
            }
            if inputs[i].iter().any(|e| e.from == spec.from) {
                errors.push(ConfigError::at(
                    input.referenced,
                    format!("Input \"{}\" is listed twice for node \"{id}\".", spec.from),
                ));
                continue;
            }
            // The input's `kinds` narrow what the edge carries.
            let mut carried = desc.map(|d| d.accepts).unwrap_or_default();
            if let Some(kinds) = &spec.kinds {
                let mut set = crate::pipeline::message::KindSet::EMPTY;
                for k in kinds {
                    match MessageKind::from_name(k) {
                        Some(kind) => set = set.union(crate::pipeline::message::KindSet::of(&[kind])),
                        None => errors.push(ConfigError::at(
                            input.referenced,
                            format!(
                                "Input \"{}\" for node \"{id}\": unknown message type \"{k}\" (known: {}).",
                                spec.from,
                                crate::pipeline::message::KindSet::of(&MessageKind::ALL)
                            ),
                        )),
                    }
                }
                carried = carried.intersection(set);
            }
            match index.get(spec.from.as_str()) {
                None => errors.push(ConfigError::at(
                    input.referenced,
                    format!(
                        "Input \"{}\" for node \"{id}\" doesn't match any node.",
                        spec.from
                    ),
                )),
                Some(&j) => {
                    if silent(j) {
                        errors.push(ConfigError::at(
                            input.referenced,
                            format!(
                                "Input \"{}\" for node \"{id}\" sends nothing downstream: \
                                 it is configured not to (emit_frames: false); read what it \
                                 serves instead (e.g. with a bacnet_poller).",
                                spec.from
                            ),
                        ));
                    }
                    if let (Some(from), Some(to)) = (descriptors[j], desc) {
                        // A source given inputs is reported above.
                        if to.role != Role::Source && !from.emits.intersects(carried) {
                            errors.push(ConfigError::at(
                                input.referenced,
                                format!(
                                    "Node \"{id}\" ({}) accepts {}, but its input \"{}\" ({}) emits {}.",
                                    to.type_name, carried, spec.from, from.type_name, from.emits
                                ),
                            ));
                        }
                    }
                    upstream[i].push(j);
                }
            }
            inputs[i].push(EdgeSpec {
                from: spec.from.clone(),
                capacity: cap.max(1) as usize,
                overflow: spec.overflow,
                kinds: carried,
            });
        }
    }

    // Sources and transforms whose output nobody reads (a node configured
    // to send nothing needs no reader).
    for (j, n) in doc.nodes.iter().enumerate() {
        let Some(d) = descriptors[j] else { continue };
        let duplicate = index.get(n.value.id.value.as_str()) != Some(&j);
        if duplicate || d.role == Role::Sink || silent(j) || upstream.iter().any(|u| u.contains(&j))
        {
            continue;
        }
        errors.push(ConfigError::at(
            n.value.id.referenced,
            format!(
                "{} \"{}\" ({}) is not an input of any node: its messages would go nowhere.",
                capitalise(d.role.as_str()),
                n.value.id.value,
                d.type_name
            ),
        ));
    }

    // The dead-letter node.
    if let Some(dl) = &doc.dead_letter {
        match index.get(dl.value.as_str()) {
            None => errors.push(ConfigError::at(
                dl.referenced,
                format!("dead_letter \"{}\" doesn't match any node.", dl.value),
            )),
            Some(&j) => {
                if let Some(d) = descriptors[j] {
                    if !d.accepts.contains(MessageKind::DeadLetter) {
                        errors.push(ConfigError::at(
                            dl.referenced,
                            format!(
                                "dead_letter \"{}\" ({}) does not accept DeadLetter messages; use a sink such as file, log or mqtt_publish.",
                                dl.value, d.type_name
                            ),
                        ));
                    }
                }
            }
        }
    }

    // Cycles, reported as the chain that closes.
    let order = match topo_order(&upstream) {
        Ok(order) => Some(order),
        Err(cycle) => {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| doc.nodes[i].value.id.value.as_str())
                .collect();
            errors.push(ConfigError::at(
                doc.nodes[cycle[0]].value.id.referenced,
                format!("Cycle in the graph: {}.", names.join(" -> ")),
            ));
            None
        }
    };

    if errors.len() > start {
        return None;
    }
    Some(Graph {
        order: order?,
        descriptors: descriptors
            .into_iter()
            .map(|d| d.expect("checked"))
            .collect(),
        inputs,
    })
}

fn is_dead_letter(doc: &PipelineDoc, id: &str) -> bool {
    doc.dead_letter.as_ref().is_some_and(|d| d.value == id)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Topological order over "node depends on its upstream nodes", or the nodes
/// of one cycle (first node repeated at the end).
fn topo_order(upstream: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: usize,
        up: &[Vec<usize>],
        mark: &mut [Mark],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match mark[n] {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let pos = stack.iter().position(|&x| x == n).unwrap_or(0);
                // The stack runs downstream -> upstream; print in data-flow order.
                let mut cycle: Vec<usize> = stack[pos..].to_vec();
                cycle.reverse();
                cycle.push(cycle[0]);
                return Err(cycle);
            }
            Mark::New => {}
        }
        mark[n] = Mark::Open;
        stack.push(n);
        for &u in &up[n] {
            visit(u, up, mark, stack, order)?;
        }
        stack.pop();
        mark[n] = Mark::Done;
        order.push(n);
        Ok(())
    }
    let mut mark = vec![Mark::New; upstream.len()];
    let mut order = Vec::with_capacity(upstream.len());
    for n in 0..upstream.len() {
        let mut stack = Vec::new();
        visit(n, upstream, &mut mark, &mut stack, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::topo_order;

    #[test]
    fn orders_upstream_first() {
        // 2 <- 1 <- 0
        let up = vec![vec![], vec![0], vec![1]];
        assert_eq!(topo_order(&up).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn reports_the_cycle_in_flow_order() {
        // 0 -> 1 -> 2 -> 0
        let up = vec![vec![2], vec![0], vec![1]];
        let cycle = topo_order(&up).unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }
}
