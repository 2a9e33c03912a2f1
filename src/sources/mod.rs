//! Sources: nodes that bring messages into the pipeline.

use crate::pipeline::component::ComponentDescriptor;

pub mod simulator;

/// Every source kind (one line per kind).
pub const COMPONENTS: &[ComponentDescriptor] = &[simulator::DESCRIPTOR];
