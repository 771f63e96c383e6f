//! The Prometheus endpoint: `GET /metrics` (and `HEAD`) over HTTP/1.1 with hyper, rendering a
//! [`prometheus_client`] registry in the Prometheus text format 0.0.4.
//!
//! One request per connection, with bounded request size, time and concurrency: that is all a
//! scraper needs, and it keeps a slow or silent client from holding the daemon.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{HeaderValue, ALLOW, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::prometheus_text, registry::Registry};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};

/// The longest request head we read (hyper's smallest buffer); a scraper sends a few hundred
/// bytes. Longer heads are answered 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client that has not sent its request head in this time is dropped.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 16;
/// How long shutdown waits for scrapes in flight before cutting them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The exposition's content type.
pub const EXPOSITION_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The whole registry in the Prometheus text format 0.0.4.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail; an encoder error would be a bug in a metric type.
    if let Err(error) = prometheus_text::encode(&mut out, registry) {
        tracing::error!(%error, "encoding the metrics registry failed");
    }
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, then gives scrapes in flight
/// a short grace period. Taking the listener (not an address) lets tests bind `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set does not grow with every scrape.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Usually EMFILE or a connection reset before accept: transient. Back off
                    // so a persistent error does not spin, and keep serving.
                    tracing::warn!(%error, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = Arc::clone(&registry);
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let registry = Arc::clone(&registry);
                async move { Ok::<_, Infallible>(route(&req, &registry)) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "metrics endpoint: connection ended with an error");
            }
        });
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!("metrics endpoint: cut scrapes still running at shutdown");
    }
    // Dropping the set aborts whatever is left.
}

fn route(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND);
    }
    match *req.method() {
        // hyper sends no body for HEAD, but keeps the Content-Length of the GET answer.
        Method::GET | Method::HEAD => {
            let mut response = Response::new(Full::new(Bytes::from(render(registry))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(EXPOSITION_CONTENT_TYPE),
            );
            response
        }
        _ => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    }
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let reason = status.canonical_reason().unwrap_or("");
    let mut response = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
