//! What every Seawall daemon (the agent, the collector) needs from the host it runs on.

mod error_chain;

pub use error_chain::ErrorChain;
