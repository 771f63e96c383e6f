//! What can go wrong talking to a container engine.

use std::path::PathBuf;

use crate::record::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to {runtime} at {}: {source} (is it running? set the socket path)", socket.display())]
    Connect {
        runtime: Runtime,
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{runtime} {call} failed")]
    Rpc {
        runtime: Runtime,
        call: &'static str,
        #[source]
        source: tonic::Status,
    },
    #[error("{runtime} API at {}", socket.display())]
    DockerApi {
        runtime: Runtime,
        socket: PathBuf,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("{runtime} sent a {what} that does not decode")]
    Decode {
        runtime: Runtime,
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{runtime} event subscription did not complete")]
    Subscription {
        runtime: Runtime,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{runtime} closed its event stream")]
    StreamEnded { runtime: Runtime },
    #[error("the CRI runtime at {} calls itself `{name}`, which Seawall does not know (known: containerd, cri-o, docker)", socket.display())]
    UnknownCriRuntime { socket: PathBuf, name: String },
}
