//! The runtime: message types, channels, components, the builder and the
//! supervisor.

pub mod builder;
pub mod channel;
pub mod component;
pub mod graph;
pub mod message;
pub mod registry;
pub mod runner;
pub mod state;
pub mod supervisor;

pub use builder::{start, Outcome, PipelineView, RunningPipeline};
pub use component::{
    BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError, Emitter,
    Envelope, Processor, Role, Source, SourceOutput,
};
pub use message::{Alert, DeadLetter, DriftReport, Message, MessageKind, Prediction, SensorFrame};
