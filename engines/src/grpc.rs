//! gRPC over a unix socket, and the generated containerd and CRI clients (used only inside this
//! crate: the rest of Seawall sees `ContainerRecord`s).

use std::path::Path;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

#[allow(clippy::all, dead_code)]
pub(crate) mod containerd {
    pub mod containers {
        tonic::include_proto!("containerd.services.containers.v1");
    }
    pub mod tasks {
        tonic::include_proto!("containerd.services.tasks.v1");
    }
    pub mod events {
        tonic::include_proto!("containerd.services.events.v1");
    }
    pub mod namespaces {
        tonic::include_proto!("containerd.services.namespaces.v1");
    }
    pub mod images {
        tonic::include_proto!("containerd.services.images.v1");
    }
}

#[allow(clippy::all, dead_code)]
pub(crate) mod cri {
    tonic::include_proto!("runtime.v1");
}

/// A channel to the gRPC server on `socket`. The URI is a placeholder: the connector ignores it.
pub(crate) async fn unix_channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_timeout(std::time::Duration::from_secs(5))
        // Bounds each call up to its response head; event streams then run for as long as
        // they last. A runtime that hangs is treated as gone and reconnected to.
        .timeout(std::time::Duration::from_secs(30))
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}
