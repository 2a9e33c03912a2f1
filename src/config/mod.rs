//! Pipeline schema, loading and validation, and the engine's settings.

pub mod duration;
pub mod interpolate;
pub mod load;
pub mod schema;
pub mod settings;
pub mod validation;

pub use load::{
    load_pipeline, parse_pipeline, ConfigError, ConfigErrors, EdgeSpec, NodeSpec, PipelineSpec,
};
pub use settings::{LogFormat, Settings};
