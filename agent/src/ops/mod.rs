//! What operators and service managers ask the running agent.

pub mod api;
pub mod metrics;
pub mod status;
