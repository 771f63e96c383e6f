//! What operators and service managers ask the running agent.

pub mod api;
pub mod intel;
pub mod metrics;
pub mod status;
