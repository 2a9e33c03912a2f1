//! Transforms: nodes that consume messages and emit new ones.

use crate::pipeline::component::ComponentDescriptor;

pub mod alerter;
pub mod drift_monitor;
pub mod predictor;

/// Every transform kind (one line per kind).
pub const COMPONENTS: &[ComponentDescriptor] = &[
    predictor::DESCRIPTOR,
    alerter::DESCRIPTOR,
    drift_monitor::DESCRIPTOR,
];
