//! The Docker engine as a source of the container table (bollard over the unix socket).

use std::{collections::HashMap, time::Duration};

use bollard::{
    container::ListContainersOptions, models::ContainerInspectResponse, system::EventsOptions,
    Docker,
};
use futures_util::{Stream, StreamExt};

use super::table::ContainerInfo;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {socket}: {source} (is dockerd running? set --docker-socket)")]
    Connect {
        socket: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker API: {0}")]
    Api(#[from] bollard::errors::Error),
}

/// One container lifecycle change from the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub container_id: String,
    /// `create`, `start`, `die`, `destroy`, …
    pub action: String,
}

#[derive(Clone)]
pub struct DockerSource {
    docker: Docker,
}

impl DockerSource {
    pub async fn connect(socket: &str) -> Result<Self, DockerError> {
        let err = |source| DockerError::Connect {
            socket: socket.to_string(),
            source,
        };
        let docker =
            Docker::connect_with_unix(socket, 10, bollard::API_DEFAULT_VERSION).map_err(err)?;
        // Speak the engine's version (Debian's docker.io is older than bollard's default).
        let docker = docker.negotiate_version().await.map_err(err)?;
        Ok(Self { docker })
    }

    /// Ids of the running containers.
    pub async fn running(&self) -> Result<Vec<String>, DockerError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: false,
                ..Default::default()
            }))
            .await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Everything the table needs about one container.
    pub async fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        let c = tokio::time::timeout(
            Duration::from_secs(5),
            self.docker.inspect_container(id, None),
        )
        .await
        .map_err(|_| DockerError::Api(bollard::errors::Error::RequestTimeoutError))??;
        let mut info = from_inspect(c);
        if !info.image_id.is_empty() {
            if let Ok(img) = self.docker.inspect_image(&info.image_id).await {
                info.image_digests = img.repo_digests.unwrap_or_default();
            }
        }
        Ok(info)
    }

    /// Container lifecycle events, from now on.
    pub fn lifecycle(&self) -> impl Stream<Item = Result<Lifecycle, DockerError>> + Send + 'static {
        let mut filters = HashMap::new();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        self.docker
            .events(Some(EventsOptions::<String> {
                filters,
                ..Default::default()
            }))
            .filter_map(|ev| async move {
                match ev {
                    Err(e) => Some(Err(DockerError::Api(e))),
                    Ok(m) => {
                        let action = m.action?;
                        let id = m.actor?.id?;
                        // `exec_start: sh` etc. carry a suffix: keep the verb.
                        let action = action.split(':').next().unwrap_or("").trim().to_string();
                        Some(Ok(Lifecycle {
                            container_id: id,
                            action,
                        }))
                    }
                }
            })
    }
}

fn from_inspect(c: ContainerInspectResponse) -> ContainerInfo {
    let config = c.config.unwrap_or_default();
    let graph = c.graph_driver.unwrap_or_default();
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        image_id: c.image.unwrap_or_default(),
        image_digests: Vec::new(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        init_pid: c
            .state
            .and_then(|s| s.pid)
            .filter(|&p| p > 0)
            .map(|p| p as u32)
            .unwrap_or(0),
        rootfs: graph.data.get("MergedDir").cloned(),
        upperdir: graph.data.get("UpperDir").cloned(),
        storage_driver: graph.name,
        profile: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState, DriverData};

    #[test]
    fn inspect_maps_to_a_table_row() {
        let mut labels = HashMap::new();
        labels.insert("io.kubernetes.pod.name".to_string(), "web-0".to_string());
        let mut data = HashMap::new();
        data.insert(
            "MergedDir".to_string(),
            "/var/lib/docker/overlay2/x/merged".to_string(),
        );
        let c = ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/web".into()),
            image: Some("sha256:123".into()),
            config: Some(ContainerConfig {
                image: Some("nginx:1.27".into()),
                labels: Some(labels),
                ..Default::default()
            }),
            state: Some(ContainerState {
                pid: Some(4242),
                ..Default::default()
            }),
            graph_driver: Some(DriverData {
                name: "overlay2".into(),
                data,
            }),
            ..Default::default()
        };
        let info = from_inspect(c);
        assert_eq!(info.name, "web");
        assert_eq!(info.image, "nginx:1.27");
        assert_eq!(info.image_id, "sha256:123");
        assert_eq!(info.init_pid, 4242);
        assert_eq!(info.labels["io.kubernetes.pod.name"], "web-0");
        assert_eq!(
            info.rootfs.as_deref(),
            Some("/var/lib/docker/overlay2/x/merged")
        );
        assert_eq!(info.storage_driver, "overlay2");
    }
}
