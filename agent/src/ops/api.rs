//! The local API: a root-only unix socket (mode 0600) answering one request per connection:
//! `status` (one JSON object) or `events` (JSON lines as they happen).

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
                tokio::spawn(async move {
                    if let Err(e) = session(stream, status, rx).await {
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
        other => {
            w.write_all(
                format!("{{\"error\":\"unknown request {other:?}: send status or events\"}}\n")
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
        let server = tokio::spawn(serve(l, status, bus.clone(), async {
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
        let _ = stop_tx.send(());
        server.await.unwrap();
    }
}
