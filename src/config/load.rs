//! Loading a pipeline file: interpolation, both parse passes, validation.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use serde_saphyr::Location;

use super::interpolate::interpolate;
use super::schema::{NodeSettingsSeed, PipelineDoc};
use super::validation;
use crate::pipeline::channel::Overflow;
use crate::pipeline::component::{ComponentConfig, ComponentDescriptor};
use crate::pipeline::registry;

/// One problem in a pipeline file, with its 1-based position (0 when the
/// problem has no single place, such as a cycle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl ConfigError {
    pub fn at(loc: Location, message: impl Into<String>) -> Self {
        ConfigError {
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
        }
    }
}

/// Every problem found in one pipeline file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if e.line > 0 {
                write!(f, "{}:{}:{}: {}", self.file, e.line, e.column, e.message)?;
            } else {
                write!(f, "{}: {}", self.file, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One edge of the graph, as validated.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    pub from: String,
    pub capacity: usize,
    pub overflow: Overflow,
    /// What the edge carries: the receiver's accepted kinds, narrowed by the
    /// input's `kinds`.
    pub kinds: crate::pipeline::message::KindSet,
}

/// One node, as validated.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    pub descriptor: ComponentDescriptor,
    pub inputs: Vec<EdgeSpec>,
    pub config: Arc<dyn ComponentConfig>,
    pub line: u64,
}

/// A valid pipeline, ready to build.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub name: String,
    /// The file it came from, as given.
    pub file: String,
    /// Relative paths in node settings resolve against this folder.
    pub base_dir: PathBuf,
    pub batch_size: usize,
    pub dead_letter: Option<String>,
    /// The in-process MQTT broker to start first, if any.
    pub embedded_broker: Option<crate::protocol::mqtt::EmbeddedBrokerConfig>,
    /// In topological order: every node after its inputs.
    pub nodes: Vec<NodeSpec>,
}

impl fmt::Debug for ComponentDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.type_name, self.role.as_str())
    }
}

/// Reads, interpolates and validates a pipeline file.
pub fn load_pipeline(path: &Path) -> Result<PipelineSpec, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: file.clone(),
        errors: vec![ConfigError {
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse_pipeline(&text, &file, &base, |k| std::env::var(k).ok())
}

/// Validates pipeline text; `env` supplies `${VAR}` values.
pub fn parse_pipeline(
    text: &str,
    file: &str,
    base_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PipelineSpec, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors {
        file: file.to_string(),
        errors,
    };
    let text = interpolate(text, env).map_err(|errs| {
        fail(
            errs.into_iter()
                .map(|e| ConfigError {
                    line: e.line as u64,
                    column: e.column as u64,
                    message: e.message,
                })
                .collect(),
        )
    })?;

    let doc: PipelineDoc =
        serde_saphyr::from_str(&text).map_err(|e| fail(vec![yaml_error(&e, None)]))?;

    let mut errors = Vec::new();
    let mut configs: Vec<Option<Arc<dyn ComponentConfig>>> = Vec::new();
    for (i, node) in doc.nodes.iter().enumerate() {
        let Some(desc) = registry::lookup(&node.value.type_name.value) else {
            configs.push(None);
            continue; // reported by validation with the list of known types
        };
        let last_key = Rc::new(RefCell::new((node.referenced, String::new())));
        let seed = NodeSettingsSeed {
            target: i,
            parse: desc.parse,
            last_key: last_key.clone(),
        };
        let parsed = serde_saphyr::with_deserializer_from_str(&text, |de| {
            serde::de::DeserializeSeed::deserialize(seed, de)
        });
        match parsed {
            Ok(Some(cfg)) => {
                let mut problems = Vec::new();
                cfg.validate_at(base_dir, &mut problems);
                for p in problems {
                    errors.push(ConfigError::at(
                        node.referenced,
                        format!("{} \"{}\": {p}", desc.role.as_str(), node.value.id.value),
                    ));
                }
                configs.push(Some(Arc::from(cfg)));
            }
            Ok(None) => configs.push(None),
            Err(e) => {
                let (key_loc, key) = last_key.borrow().clone();
                let mut err = yaml_error(&e, None);
                // The YAML layer places errors in a node's settings at the
                // node; the key being read is more precise.
                if key_loc.line() > err.line
                    || (key_loc.line() == err.line && key_loc.column() > err.column)
                {
                    err.line = key_loc.line();
                    err.column = key_loc.column();
                }
                let at_key = if key.is_empty() || err.message.contains(&format!("`{key}`")) {
                    String::new()
                } else {
                    format!("`{key}`: ")
                };
                err.message = format!(
                    "{} \"{}\" ({}): {at_key}{}",
                    desc.role.as_str(),
                    node.value.id.value,
                    desc.type_name,
                    err.message
                );
                errors.push(err);
                configs.push(None);
            }
        }
    }

    let graph = validation::check(&doc, &configs, &mut errors);
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line == 0, e.line, e.column));
        return Err(fail(errors));
    }
    let graph = graph.expect("a graph is returned when there are no errors");
    let nodes = graph
        .order
        .iter()
        .map(|&i| {
            let n = &doc.nodes[i];
            NodeSpec {
                id: n.value.id.value.clone(),
                descriptor: *graph.descriptors[i],
                inputs: graph.inputs[i].clone(),
                config: configs[i]
                    .clone()
                    .expect("every node parsed when there are no errors"),
                line: n.referenced.line(),
            }
        })
        .collect();
    Ok(PipelineSpec {
        name: doc
            .name
            .clone()
            .unwrap_or_else(|| file_stem(file).to_string()),
        file: file.to_string(),
        base_dir: base_dir.to_path_buf(),
        batch_size: doc.batch_size.value as usize,
        dead_letter: doc.dead_letter.as_ref().map(|d| d.value.clone()),
        embedded_broker: doc.embedded_broker.as_ref().map(|b| b.value.clone()),
        nodes,
    })
}

fn file_stem(file: &str) -> &str {
    Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline")
}

/// Turns a YAML/serde error into a positioned error; `fallback` places
/// errors the YAML layer could not.
fn yaml_error(e: &serde_saphyr::Error, fallback: Option<Location>) -> ConfigError {
    let loc = e
        .location()
        .filter(|l| l.line() > 0)
        .or(fallback)
        .unwrap_or(Location::UNKNOWN);
    // The rendered error repeats the position and a snippet; keep the message.
    let msg = e.without_snippet().to_string();
    let msg = strip_position(&msg);
    ConfigError {
        line: loc.line(),
        column: loc.column(),
        message: msg,
    }
}

/// Removes a trailing or leading "at line X column Y" the YAML layer adds,
/// since the position is printed in front.
fn strip_position(msg: &str) -> String {
    let mut m = msg.trim().to_string();
    if let Some(idx) = m.find(" at line ") {
        m.truncate(idx);
    }
    m
}
