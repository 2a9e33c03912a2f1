//! Renders a validated pipeline as Mermaid or Graphviz DOT.

use std::fmt::Write;

use crate::config::PipelineSpec;
use crate::pipeline::channel::Overflow;

fn edge_label(capacity: usize, overflow: Overflow) -> String {
    match overflow {
        Overflow::Block => format!("{capacity}"),
        Overflow::DropNewest => format!("{capacity}, drop_newest"),
        Overflow::DropOldest => format!("{capacity}, drop_oldest"),
    }
}

/// Mermaid flowchart (paste into Markdown, GitHub renders it).
pub fn to_mermaid(spec: &PipelineSpec) -> String {
    let mut s = String::from("flowchart LR\n");
    for n in &spec.nodes {
        let (open, close) = match n.descriptor.role {
            crate::pipeline::component::Role::Source => ("([", "])"),
            crate::pipeline::component::Role::Transform => ("[", "]"),
            crate::pipeline::component::Role::Sink => ("[(", ")]"),
        };
        let _ = writeln!(
            s,
            "    {}{open}\"{}<br/><small>{}</small>\"{close}",
            mermaid_id(&n.id),
            n.id,
            n.descriptor.type_name
        );
    }
    for n in &spec.nodes {
        for e in &n.inputs {
            let _ = writeln!(
                s,
                "    {} -->|{}| {}",
                mermaid_id(&e.from),
                edge_label(e.capacity, e.overflow),
                mermaid_id(&n.id)
            );
        }
    }
    if let Some(dl) = &spec.dead_letter {
        for n in spec.nodes.iter().filter(|n| &n.id != dl) {
            let _ = writeln!(
                s,
                "    {} -.->|dead letters| {}",
                mermaid_id(&n.id),
                mermaid_id(dl)
            );
        }
    }
    s
}

fn mermaid_id(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>()
        + "_n"
}

/// Graphviz DOT (`twinflow graph --dot p.yaml | dot -Tsvg > p.svg`).
pub fn to_dot(spec: &PipelineSpec) -> String {
    let mut s = format!(
        "digraph \"{}\" {{\n    rankdir=LR;\n",
        spec.name.replace('"', "'")
    );
    for n in &spec.nodes {
        let shape = match n.descriptor.role {
            crate::pipeline::component::Role::Source => "invhouse",
            crate::pipeline::component::Role::Transform => "box",
            crate::pipeline::component::Role::Sink => "cylinder",
        };
        let _ = writeln!(
            s,
            "    \"{}\" [shape={shape}, label=\"{}\\n({})\"];",
            n.id, n.id, n.descriptor.type_name
        );
    }
    for n in &spec.nodes {
        for e in &n.inputs {
            let _ = writeln!(
                s,
                "    \"{}\" -> \"{}\" [label=\"{}\"];",
                e.from,
                n.id,
                edge_label(e.capacity, e.overflow)
            );
        }
    }
    if let Some(dl) = &spec.dead_letter {
        for n in spec.nodes.iter().filter(|n| &n.id != dl) {
            let _ = writeln!(s, "    \"{}\" -> \"{dl}\" [style=dashed];", n.id);
        }
    }
    s.push_str("}\n");
    s
}
