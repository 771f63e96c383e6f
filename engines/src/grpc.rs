//! gRPC over a unix socket, and the generated containerd and CRI clients (used only inside this
//! crate: the rest of Seawall sees `ContainerRecord`s).

use std::{path::Path, time::Duration};

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
/// `call_timeout` bounds each call up to its response head, so a runtime that hangs is taken
/// as gone and reconnected to; event streams get a channel without one, as a runtime may send
/// a stream's head only with its first event.
pub(crate) async fn unix_channel(
    socket: &Path,
    call_timeout: Option<Duration>,
) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    let mut endpoint =
        Endpoint::from_static("http://localhost").connect_timeout(Duration::from_secs(5));
    if let Some(t) = call_timeout {
        endpoint = endpoint.timeout(t);
    }
    endpoint
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

/// The bound on unary calls.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A task that is aborted when dropped (a session that ends early leaves nothing behind).
pub(crate) struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// The task's result; `runtime` names whose task it was if it did not complete.
    pub(crate) async fn join(
        &mut self,
        runtime: crate::record::Runtime,
    ) -> Result<T, crate::error::EngineError> {
        (&mut self.0)
            .await
            .map_err(|source| crate::error::EngineError::Subscription { runtime, source })
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
