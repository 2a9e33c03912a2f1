//! Prediction models (the steady-state physics of the unit cooler, ONNX
//! models run by tract, tree ensembles evaluated here) and the engineering
//! units they speak.
pub mod dataset;
pub mod metadata;
pub mod onnx;
pub mod physics;
pub mod serving;
pub mod tree;
pub mod units;
