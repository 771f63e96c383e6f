//! Container engines as sources of Seawall's container table.
//!
//! Each source (containerd's own API, any CRI runtime such as CRI-O, podman's Docker-compatible
//! API) produces the same [`ContainerRecord`] and the same stream of [`SourceEvent`]s: a full
//! listing after every (re)connect, then created/started/exited/deleted changes. Sources
//! reconnect with backoff when their runtime goes away and list again when it is back, so a
//! consumer that applies `Listed` as "this is the whole truth now" never misses a container
//! started during a gap. Generated protobuf types stay inside this crate.

pub mod backoff;
pub mod cgroup_path;
pub mod containerd;
pub mod cri;
#[cfg(feature = "test-client")]
pub mod cri_pods;
pub mod detect;
pub mod docker_api;
pub mod error;
mod grpc;
pub mod host;
pub mod record;
pub mod rootfs;
pub mod source;

pub use containerd::{ContainerdClient, ContainerdSource};
pub use cri::{CriClient, CriSource};
pub use detect::{endpoints, Endpoint, Protocol, SocketChoice};
pub use docker_api::{DockerApiClient, DockerApiSource};
pub use error::EngineError;
pub use record::{ContainerRecord, PodIdentity, Runtime};
pub use source::{ContainerKey, SourceEvent, SourceId};
