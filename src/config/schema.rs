//! The pipeline file's schema.
//!
//! ```yaml
//! name: demo
//! channel_capacity: 1024      # default capacity of every edge
//! dead_letter: deadletters    # optional: node that receives what others could not process
//! nodes:
//!   - id: sim
//!     type: simulator
//!     units: 3
//!   - id: predict
//!     type: predictor
//!     inputs: [sim]
//!   - id: out
//!     type: file
//!     inputs:
//!       - from: predict
//!         capacity: 64
//!         overflow: drop_oldest
//!     path: predictions.jsonl
//! ```
//!
//! Parsing is two passes over the same text so that every error keeps its
//! line and column: the first reads the pipeline and each node's common keys
//! (`id`, `type`, `inputs`); the second parses each node's own settings with
//! the config type its `type` names, once per node, so a bad node does not
//! hide the errors of the others.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::de::{
    self, DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::pipeline::channel::Overflow;
use crate::pipeline::component::{ComponentConfig, ParseFn};

/// Where the last key of a node's own settings was, and its name: the YAML
/// layer places errors raised inside a node's settings at the node itself,
/// so the loader uses this to point at the offending key.
pub type LastKey = Rc<RefCell<(Location, String)>>;

/// Keys every node has; the rest belong to the node's type.
pub const COMMON_NODE_KEYS: [&str; 3] = ["id", "type", "inputs"];

pub const DEFAULT_CHANNEL_CAPACITY: i64 = 1024;
pub const DEFAULT_BATCH_SIZE: i64 = 256;

fn default_capacity() -> Spanned<i64> {
    Spanned::new(
        DEFAULT_CHANNEL_CAPACITY,
        Location::UNKNOWN,
        Location::UNKNOWN,
    )
}

fn default_batch() -> Spanned<i64> {
    Spanned::new(DEFAULT_BATCH_SIZE, Location::UNKNOWN, Location::UNKNOWN)
}

/// The pipeline file, first pass.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineDoc {
    /// A name for logs and the API.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Default capacity (messages) of every edge; an input may override it.
    #[serde(default = "default_capacity")]
    pub channel_capacity: Spanned<i64>,
    /// Most messages a node takes from its inputs in one go.
    #[serde(default = "default_batch")]
    pub batch_size: Spanned<i64>,
    /// Id of the node that receives every dead letter.
    #[serde(default)]
    pub dead_letter: Option<Spanned<String>>,
    /// An in-process MQTT broker for a machine with none (the demo).
    #[serde(default)]
    pub embedded_broker: Option<Spanned<crate::protocol::mqtt::EmbeddedBrokerConfig>>,
    /// The nodes of the graph.
    pub nodes: Vec<Spanned<NodeHeader>>,
}

/// A node's common keys (first pass; other keys are read in the second).
#[derive(Debug, Deserialize)]
pub struct NodeHeader {
    pub id: Spanned<String>,
    #[serde(rename = "type")]
    pub type_name: Spanned<String>,
    #[serde(default)]
    pub inputs: Vec<Spanned<InputSpec>>,
}

/// One input of a node: a node id, or an edge with its own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub from: String,
    pub capacity: Option<i64>,
    pub overflow: Overflow,
    /// Only these message types travel on the edge (`SensorFrame`,
    /// `Prediction`, `DriftReport`, `Alert`, `DeadLetter`); default all the
    /// receiver accepts.
    pub kinds: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for InputSpec {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Edge {
            /// Upstream node id.
            from: String,
            /// Capacity of this edge (messages).
            #[serde(default)]
            capacity: Option<i64>,
            /// What a full edge does: block (default), drop_newest, drop_oldest.
            #[serde(default)]
            overflow: Overflow,
            /// Message types carried (default: all the receiver accepts).
            #[serde(default)]
            kinds: Option<Vec<String>>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a node id, or a mapping {from, capacity, overflow}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<InputSpec, E> {
                Ok(InputSpec {
                    from: v.to_string(),
                    capacity: None,
                    overflow: Overflow::Block,
                    kinds: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<InputSpec, A::Error> {
                let e = Edge::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(InputSpec {
                    from: e.from,
                    capacity: e.capacity,
                    overflow: e.overflow,
                    kinds: e.kinds,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Second pass: parses the settings of node `target` with `parse`, skipping
/// everything else in the document.
pub struct NodeSettingsSeed {
    pub target: usize,
    pub parse: ParseFn,
    /// Where the last key of the node's own settings was, so an error raised
    /// on it can be placed even when the YAML layer could not place it.
    pub last_key: LastKey,
}

impl<'de> DeserializeSeed<'de> for NodeSettingsSeed {
    type Value = Option<Box<dyn ComponentConfig>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for NodeSettingsSeed {
    type Value = Option<Box<dyn ComponentConfig>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pipeline mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "nodes" {
                found = map.next_value_seed(NodesSeed {
                    target: self.target,
                    parse: self.parse,
                    last_key: self.last_key.clone(),
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct NodesSeed {
    target: usize,
    parse: ParseFn,
    last_key: LastKey,
}

impl<'de> DeserializeSeed<'de> for NodesSeed {
    type Value = Option<Box<dyn ComponentConfig>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for NodesSeed {
    type Value = Option<Box<dyn ComponentConfig>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of nodes")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut idx = 0;
        loop {
            if idx == self.target {
                let seed = OneNodeSeed {
                    parse: self.parse,
                    last_key: self.last_key.clone(),
                };
                match seq.next_element_seed(seed)? {
                    Some(c) => found = Some(c),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            idx += 1;
        }
        Ok(found)
    }
}

struct OneNodeSeed {
    parse: ParseFn,
    last_key: LastKey,
}

impl<'de> DeserializeSeed<'de> for OneNodeSeed {
    type Value = Box<dyn ComponentConfig>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneNodeSeed {
    type Value = Box<dyn ComponentConfig>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a node mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let filtered = OwnKeys {
            inner: map,
            last_key: self.last_key,
        };
        let de = de::value::MapAccessDeserializer::new(filtered);
        let mut erased = <dyn erased_serde::Deserializer>::erase(de);
        (self.parse)(&mut erased).map_err(de::Error::custom)
    }
}

/// A node's mapping without the common keys.
struct OwnKeys<A> {
    inner: A,
    last_key: LastKey,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for OwnKeys<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.inner.next_key::<Spanned<String>>()? else {
                return Ok(None);
            };
            if COMMON_NODE_KEYS.contains(&key.value.as_str()) {
                self.inner.next_value::<IgnoredAny>()?;
                continue;
            }
            *self.last_key.borrow_mut() = (key.referenced, key.value.clone());
            let kd: de::value::StringDeserializer<A::Error> = key.value.into_deserializer();
            return seed.deserialize(kd).map(Some);
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}
