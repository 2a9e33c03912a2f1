//! Sources: nodes that bring messages into the pipeline.

use crate::pipeline::component::ComponentDescriptor;

pub mod bacnet_poller;
pub mod engine_events;
pub mod mqtt_ingest;
pub mod simulator;

/// Every source kind (one line per kind).
pub const COMPONENTS: &[ComponentDescriptor] = &[
    simulator::DESCRIPTOR,
    mqtt_ingest::DESCRIPTOR,
    engine_events::DESCRIPTOR,
    bacnet_poller::DESCRIPTOR,
];
