//! Seawall's stable event schema (`event`) and, in its own module, the `seawall.v1` gRPC contract.

pub mod event;
pub mod pb;
