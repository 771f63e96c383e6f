//! Where each runtime listens by default, which of those sockets exist on this host, and the
//! host directories a containerised agent needs mounted to reach them and the containers'
//! filesystems (checked against `deploy/kubernetes/` by this crate's manifest test).

use std::{
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
};

use crate::record::Runtime;

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
pub const CRIO_SOCKET: &str = "/var/run/crio/crio.sock";
pub const PODMAN_SOCKET: &str = "/run/podman/podman.sock";

/// How a source is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Docker Engine API (bollard): Docker, podman.
    DockerApi,
    /// containerd's own gRPC API.
    Containerd,
    /// The Kubernetes CRI (`runtime.v1.RuntimeService`).
    Cri,
}

/// A runtime endpoint the agent can read containers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub protocol: Protocol,
    /// The runtime it is expected to be (a CRI socket says which when asked).
    pub runtime: Runtime,
    pub socket: PathBuf,
}

/// Sockets set explicitly (`--docker-socket` etc.); `None` means "the default, if present".
#[derive(Debug, Clone, Default)]
pub struct SocketChoice {
    pub docker: Option<PathBuf>,
    pub containerd: Option<PathBuf>,
    pub cri: Option<PathBuf>,
    pub podman: Option<PathBuf>,
}

/// The default endpoints, in the order they are tried.
pub const DEFAULTS: &[(Protocol, Runtime, &str)] = &[
    (Protocol::DockerApi, Runtime::Docker, DOCKER_SOCKET),
    (Protocol::Containerd, Runtime::Containerd, CONTAINERD_SOCKET),
    (Protocol::Cri, Runtime::CriO, CRIO_SOCKET),
    (Protocol::DockerApi, Runtime::Podman, PODMAN_SOCKET),
];

/// Host directories the containerised agent mounts (same path inside): each default socket's
/// directory (a directory, not the socket file: a runtime that restarts makes a new socket,
/// which a bind mount of the old file would never see), and the runtimes' storage, where the
/// containers' root filesystems and overlay upper directories live.
pub const HOST_DIRS: &[&str] = &[
    "/run/containerd",
    "/var/run/crio",
    "/run/podman",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/lib/containers",
    "/run/containers",
];

impl Endpoint {
    /// Runs this endpoint's source, sending to `tx` until the receiver is dropped.
    pub async fn run(self, tx: tokio::sync::mpsc::Sender<crate::SourceEvent>) {
        match (self.protocol, self.runtime) {
            (Protocol::Containerd, _) => crate::ContainerdSource::new(self.socket).run(tx).await,
            (Protocol::Cri, _) => crate::CriSource::new(self.socket).run(tx).await,
            (Protocol::DockerApi, Runtime::Podman) => {
                crate::DockerApiSource::podman(self.socket).run(tx).await
            }
            (Protocol::DockerApi, _) => crate::DockerApiSource::docker(self.socket).run(tx).await,
        }
    }
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// The endpoints to read: every explicitly chosen socket (whether or not it exists yet: the
/// source reconnects until it does), plus each default socket that exists on this host and
/// was not chosen. containerd's socket also serves the CRI; it is read through containerd's
/// own API only, so its containers are not listed twice.
pub fn endpoints(choice: &SocketChoice) -> Vec<Endpoint> {
    endpoints_with(choice, is_socket)
}

fn endpoints_with(choice: &SocketChoice, exists: impl Fn(&Path) -> bool) -> Vec<Endpoint> {
    let chosen = [
        (Protocol::DockerApi, Runtime::Docker, &choice.docker),
        (
            Protocol::Containerd,
            Runtime::Containerd,
            &choice.containerd,
        ),
        (Protocol::Cri, Runtime::CriO, &choice.cri),
        (Protocol::DockerApi, Runtime::Podman, &choice.podman),
    ];
    let mut out: Vec<Endpoint> = Vec::new();
    for ((protocol, runtime, choice), (_, _, default)) in chosen.into_iter().zip(DEFAULTS) {
        let socket = match choice {
            Some(p) => p.clone(),
            None if exists(Path::new(default)) => PathBuf::from(default),
            None => continue,
        };
        let containerd_cri = protocol == Protocol::Cri
            && out
                .iter()
                .any(|e| e.protocol == Protocol::Containerd && e.socket == socket);
        if !containerd_cri && !out.iter().any(|e| e.socket == socket) {
            out.push(Endpoint {
                protocol,
                runtime,
                socket,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_that_exist_are_found() {
        let got = endpoints_with(&SocketChoice::default(), |p| {
            p == Path::new(CONTAINERD_SOCKET) || p == Path::new(PODMAN_SOCKET)
        });
        assert_eq!(
            got,
            vec![
                Endpoint {
                    protocol: Protocol::Containerd,
                    runtime: Runtime::Containerd,
                    socket: CONTAINERD_SOCKET.into()
                },
                Endpoint {
                    protocol: Protocol::DockerApi,
                    runtime: Runtime::Podman,
                    socket: PODMAN_SOCKET.into()
                },
            ]
        );
        assert!(endpoints_with(&SocketChoice::default(), |_| false).is_empty());
    }

    #[test]
    fn a_chosen_socket_is_used_even_before_it_exists() {
        let choice = SocketChoice {
            containerd: Some("/tmp/test/containerd.sock".into()),
            ..Default::default()
        };
        let got = endpoints_with(&choice, |_| false);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].socket, Path::new("/tmp/test/containerd.sock"));
    }

    #[test]
    fn containerd_is_not_read_twice_through_its_cri() {
        let choice = SocketChoice {
            containerd: Some(CONTAINERD_SOCKET.into()),
            cri: Some(CONTAINERD_SOCKET.into()),
            ..Default::default()
        };
        let got = endpoints_with(&choice, |_| true);
        assert_eq!(
            got.iter().map(|e| e.protocol).collect::<Vec<_>>(),
            [
                Protocol::DockerApi,
                Protocol::Containerd,
                Protocol::DockerApi
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_runtime_is_reported_once_and_retried_until_the_consumer_leaves() {
        let dir = tempfile::tempdir().unwrap();
        for protocol in [Protocol::Containerd, Protocol::Cri, Protocol::DockerApi] {
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let endpoint = Endpoint {
                protocol,
                runtime: Runtime::Podman,
                socket: dir.path().join("absent.sock"),
            };
            let task = tokio::spawn(endpoint.run(tx));
            match rx.recv().await {
                Some(crate::SourceEvent::Disconnected { source, .. }) => {
                    assert_eq!(source.socket, dir.path().join("absent.sock"))
                }
                other => panic!("{protocol:?}: {other:?}"),
            }
            // Many failed attempts later (the clock is paused and auto-advances), nothing more:
            // the consumer heard once that the runtime is down.
            let more = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv()).await;
            assert!(more.is_err(), "{protocol:?}: {more:?}");
            drop(rx);
            tokio::time::timeout(std::time::Duration::from_secs(30), task)
                .await
                .expect("the source ends once its consumer is gone")
                .unwrap();
        }
    }

    #[test]
    fn every_default_socket_lives_in_a_mounted_directory() {
        for (_, _, socket) in DEFAULTS {
            let dir = Path::new(socket).parent().unwrap();
            // Docker's socket sits in /var/run itself, which is mounted file by file.
            if *socket == DOCKER_SOCKET {
                continue;
            }
            assert!(HOST_DIRS.iter().any(|d| Path::new(d) == dir), "{socket}");
        }
    }
}
