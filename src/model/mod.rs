//! Prediction models (the steady-state physics of the unit cooler) and the
//! engineering units they speak.
pub mod physics;
pub mod units;
