//! Prediction models: the steady-state physics of the unit cooler.
pub mod physics;
