//! Protocol clients shared by the components that speak them.

pub mod bacnet;
pub mod bacnet_device;
pub mod mqtt;
