//! Which container sources the agent reads: each runtime's socket as configured
//! (`--docker-socket`, `--containerd-socket`, `--cri-socket`, `--podman-socket`), or, when one
//! is not configured, its default socket if it exists on this host when the agent starts.
//! containerd's socket also serves the CRI; it is read through containerd's own API only, so
//! no container is listed twice.

use std::path::PathBuf;

use seawall_engines::{Endpoint, Protocol, SocketChoice};

use super::{Runtime, SourceId};

/// A source of containers the daemon runs as a task of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerSource {
    /// The Docker engine at this socket (`docker.rs`, which also answers lookups).
    Docker {
        /// The engine's unix socket.
        socket: String,
    },
    /// containerd, a CRI runtime or podman (`engines.rs`).
    Engine(Endpoint),
}

impl ContainerSource {
    /// The runtime and socket it reads.
    pub fn id(&self) -> SourceId {
        match self {
            ContainerSource::Docker { socket } => super::docker::source_id(socket),
            ContainerSource::Engine(e) => SourceId {
                runtime: e.runtime,
                socket: e.socket.clone(),
            },
        }
    }
}

/// The sockets configured, one per kind of runtime; `None` means its default, if present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSockets {
    pub docker: Option<PathBuf>,
    pub containerd: Option<PathBuf>,
    pub cri: Option<PathBuf>,
    pub podman: Option<PathBuf>,
}

/// The sources to run for `sockets` on this host.
pub fn choose(sockets: &SourceSockets) -> Vec<ContainerSource> {
    from_endpoints(seawall_engines::endpoints(&SocketChoice {
        docker: sockets.docker.clone(),
        containerd: sockets.containerd.clone(),
        cri: sockets.cri.clone(),
        podman: sockets.podman.clone(),
    }))
}

/// Docker through the agent's own Docker source; every other endpoint through its client.
fn from_endpoints(endpoints: Vec<Endpoint>) -> Vec<ContainerSource> {
    endpoints
        .into_iter()
        .map(|e| match (e.protocol, e.runtime) {
            (Protocol::DockerApi, Runtime::Docker) => ContainerSource::Docker {
                socket: e.socket.display().to_string(),
            },
            _ => ContainerSource::Engine(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_is_read_by_the_agents_own_source_and_the_rest_by_their_clients() {
        let got = from_endpoints(vec![
            Endpoint {
                protocol: Protocol::DockerApi,
                runtime: Runtime::Docker,
                socket: "/var/run/docker.sock".into(),
            },
            Endpoint {
                protocol: Protocol::Containerd,
                runtime: Runtime::Containerd,
                socket: "/run/containerd/containerd.sock".into(),
            },
            Endpoint {
                protocol: Protocol::DockerApi,
                runtime: Runtime::Podman,
                socket: "/run/podman/podman.sock".into(),
            },
        ]);
        assert_eq!(
            got[0],
            ContainerSource::Docker {
                socket: "/var/run/docker.sock".into()
            }
        );
        assert!(
            matches!(&got[1], ContainerSource::Engine(e) if e.protocol == Protocol::Containerd)
        );
        assert!(matches!(&got[2], ContainerSource::Engine(e) if e.runtime == Runtime::Podman));
        assert_eq!(got[2].id().runtime, Runtime::Podman);
    }

    #[test]
    fn a_configured_socket_is_read_even_before_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let got = choose(&SourceSockets {
            containerd: Some(socket.clone()),
            ..Default::default()
        });
        assert!(got.iter().any(|s| s.id()
            == SourceId {
                runtime: Runtime::Containerd,
                socket: socket.clone()
            }));
    }
}
