//! Sinks: nodes that deliver messages outside the pipeline.

use crate::pipeline::component::ComponentDescriptor;

pub mod api;
pub mod bacnet_writer;
pub mod file;
pub mod log;
pub mod mqtt_publish;

/// Every sink kind (one line per kind).
pub const COMPONENTS: &[ComponentDescriptor] = &[
    file::DESCRIPTOR,
    log::DESCRIPTOR,
    mqtt_publish::DESCRIPTOR,
    api::DESCRIPTOR,
    bacnet_writer::DESCRIPTOR,
];
