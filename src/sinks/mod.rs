//! Sinks: nodes that deliver messages outside the pipeline.

use crate::pipeline::component::ComponentDescriptor;

pub mod file;
pub mod log;

/// Every sink kind (one line per kind).
pub const COMPONENTS: &[ComponentDescriptor] = &[file::DESCRIPTOR, log::DESCRIPTOR];
