//! The local API: a root-only unix socket (mode 0600) answering one request per connection:
//! `status` (one JSON object), `events` (JSON lines as they happen) or `behaviour` (what each
//! image's containers did, one JSON object, for `seawall profile learn`).

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::broadcast,
};

use super::status::Status;
use crate::learn::LearnQuery;

/// Binds the socket (replacing a stale one) with mode 0600 in a 0700 directory.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves one request per connection until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    status: Arc<Mutex<Status>>,
    bus: broadcast::Sender<Arc<str>>,
    learn: Option<LearnQuery>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                let status = status.clone();
                let rx = bus.subscribe();
                let learn = learn.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(stream, status, rx, learn).await {
                        tracing::debug!(error = %e, "local API session ended");
                    }
                });
            }
        }
    }
}

async fn session(
    stream: UnixStream,
    status: Arc<Mutex<Status>>,
    mut rx: broadcast::Receiver<Arc<str>>,
    learn: Option<LearnQuery>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    // A request is one short line; anything longer is refused.
    let n = BufReader::new(r.take(256)).read_line(&mut line).await?;
    if n == 0 {
        return Ok(());
    }
    match line.trim() {
        "status" => {
            let s = status.lock().map(|s| s.clone()).unwrap_or_default();
            let text = serde_json::to_string(&s).unwrap_or_default();
            w.write_all(text.as_bytes()).await?;
            w.write_all(b"\n").await?;
        }
        "events" => loop {
            match rx.recv().await {
                Ok(l) => {
                    w.write_all(l.as_bytes()).await?;
                    w.write_all(b"\n").await?;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let msg = format!("{{\"kind\":\"agent\",\"message\":\"this subscriber fell behind and missed {n} events\"}}\n");
                    w.write_all(msg.as_bytes()).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        },
        "behaviour" => {
            let answer = match &learn {
                None => Err("learning is off on this agent (--no-learn)".to_string()),
                Some(q) => q
                    .snapshot()
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string())),
            };
            let text = answer.unwrap_or_else(|e| serde_json::json!({ "error": e }).to_string());
            w.write_all(text.as_bytes()).await?;
            w.write_all(b"\n").await?;
        }
        other => {
            w.write_all(
                format!("{{\"error\":\"unknown request {other:?}: send status, events or behaviour\"}}\n")
                    .as_bytes(),
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, as `seawall status`/`events` speak it.
    async fn request(path: &Path, what: &str) -> std::io::Result<BufReader<UnixStream>> {
        let mut s = UnixStream::connect(path).await?;
        s.write_all(format!("{what}\n").as_bytes()).await?;
        Ok(BufReader::new(s))
    }

    #[tokio::test]
    async fn status_and_events_over_a_0600_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api/agent.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let status = Arc::new(Mutex::new(Status {
            node: "n1".into(),
            ..Default::default()
        }));
        let (bus, _) = broadcast::channel(16);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(l, status, bus.clone(), None, async {
            let _ = stop_rx.await;
        }));
        let mut r = request(&path, "status").await.unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let s: Status = serde_json::from_str(&line).unwrap();
        assert_eq!(s.node, "n1");

        let mut r = request(&path, "events").await.unwrap();
        // Wait until the session subscribed, then publish.
        for _ in 0..100 {
            if bus.receiver_count() > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        bus.send(Arc::from("{\"seq\":7}")).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        assert_eq!(line.trim(), "{\"seq\":7}");

        // Without a learner, `behaviour` says why there is nothing.
        let mut r = request(&path, "behaviour").await.unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["error"].as_str().unwrap().contains("--no-learn"), "{v}");
        let _ = stop_tx.send(());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn behaviour_is_what_the_learner_knows() {
        use seawall_proto::event::{Action, Container, Event, Kind, Process, Severity};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let l = bind(&path).unwrap();
        let (mut learner, query, task) = crate::learn::start(
            crate::learn::LearnConfig {
                limits: seawall_profile::BehaviourLimits::default(),
                max_images: 8,
                save_every: std::time::Duration::from_secs(3600),
            },
            None,
            std::future::pending(),
        );
        let task = tokio::spawn(task);
        let (bus, _) = broadcast::channel(16);
        let server = tokio::spawn(serve(
            l,
            Arc::default(),
            bus,
            Some(query),
            std::future::pending(),
        ));
        learner.observe(&Event {
            seq: 1,
            time: "2026-09-21T14:13:20Z".into(),
            node: "n".into(),
            kind: Kind::Exec,
            action: Action::Allowed,
            control: "visibility".into(),
            severity: Severity::Info,
            message: String::new(),
            process: Some(Process {
                exe: "/usr/sbin/nginx".into(),
                exe_source: "image".into(),
                ..Default::default()
            }),
            container: Some(Container {
                id: "c".into(),
                image: "nginx:1.27".into(),
                ..Default::default()
            }),
            file: None,
            network: None,
            intel: None,
        });
        let mut r = request(&path, "behaviour").await.unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let snap: crate::learn::store::Snapshot = serde_json::from_str(&line).unwrap();
        assert_eq!(snap.images.len(), 1);
        assert!(snap.images[0].execs().contains("/usr/sbin/nginx"));
        server.abort();
        task.abort();
    }
}
