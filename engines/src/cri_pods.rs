//! Creating pods and containers through the CRI the way the kubelet does (RunPodSandbox,
//! CreateContainer, StartContainer), so tests can exercise the reading side (`cri.rs`) against
//! a real CRI runtime. Behind the `test-client` feature: the agent never creates anything.

use std::{collections::HashMap, path::Path};

use tonic::transport::Channel;

use crate::{
    error::EngineError,
    grpc::{cri, unix_channel, CALL_TIMEOUT},
    record::Runtime,
};

/// A pod as the kubelet describes it to the runtime.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod's cgroup, cgroupfs syntax (`/kubepods/burstable/pod<uid>`).
    pub cgroup_parent: String,
    /// The pod's own labels (`app = web`); the kubelet gives them to the sandbox only.
    pub labels: HashMap<String, String>,
}

impl PodSpec {
    fn config(&self) -> cri::PodSandboxConfig {
        // Host network: no CNI is needed, and nothing leaves the node.
        let node_net = cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            pid: cri::NamespaceMode::Container as i32,
            ipc: cri::NamespaceMode::Pod as i32,
        };
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            labels: {
                let mut l = self.labels.clone();
                l.extend(self.kubelet_labels(None));
                l
            },
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(node_net),
                }),
            }),
            ..Default::default()
        }
    }

    /// The labels the kubelet puts on a pod's sandbox (`container: None`) or container.
    pub fn kubelet_labels(&self, container: Option<&str>) -> HashMap<String, String> {
        let mut l: HashMap<String, String> = [
            ("io.kubernetes.pod.namespace", self.namespace.as_str()),
            ("io.kubernetes.pod.name", self.name.as_str()),
            ("io.kubernetes.pod.uid", self.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(c) = container {
            l.insert("io.kubernetes.container.name".into(), c.into());
        }
        l
    }
}

/// A CRI client that creates pods and containers.
pub struct CriPods {
    client: cri::runtime_service_client::RuntimeServiceClient<Channel>,
}

fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> EngineError {
    move |source| EngineError::Rpc {
        runtime: Runtime::Containerd,
        call,
        source,
    }
}

impl CriPods {
    pub async fn connect(socket: &Path) -> Result<CriPods, EngineError> {
        let channel = unix_channel(socket, Some(CALL_TIMEOUT))
            .await
            .map_err(|source| EngineError::Connect {
                runtime: Runtime::Containerd,
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(CriPods {
            client: cri::runtime_service_client::RuntimeServiceClient::new(channel),
        })
    }

    /// RunPodSandbox; returns the sandbox id.
    pub async fn run_pod(&mut self, pod: &PodSpec) -> Result<String, EngineError> {
        Ok(self
            .client
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod.config()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(rpc("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// CreateContainer then StartContainer of `command` from `image` in the pod; returns the
    /// container id.
    pub async fn start_container(
        &mut self,
        sandbox_id: &str,
        pod: &PodSpec,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> Result<String, EngineError> {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: image.into(),
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            labels: pod.kubelet_labels(Some(name)),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: pod
                        .config()
                        .linux
                        .and_then(|l| l.security_context.and_then(|s| s.namespace_options)),
                }),
            }),
            ..Default::default()
        };
        let id = self
            .client
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(pod.config()),
            })
            .await
            .map_err(rpc("CreateContainer"))?
            .into_inner()
            .container_id;
        self.client
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(rpc("StartContainer"))?;
        Ok(id)
    }

    /// StopContainer (no grace period) then RemoveContainer.
    pub async fn remove_container(&mut self, id: &str) -> Result<(), EngineError> {
        self.client
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout: 0,
            })
            .await
            .map_err(rpc("StopContainer"))?;
        self.client
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(rpc("RemoveContainer"))?;
        Ok(())
    }

    /// StopPodSandbox then RemovePodSandbox (which removes what is left in it).
    pub async fn remove_pod(&mut self, sandbox_id: &str) -> Result<(), EngineError> {
        self.client
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await
            .map_err(rpc("StopPodSandbox"))?;
        self.client
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.into(),
            })
            .await
            .map_err(rpc("RemovePodSandbox"))?;
        Ok(())
    }
}
